"""From start/end logits of windows to ranked answer spans with a confidence.

A question's windows may come from several passages and several windows of
one passage. Each span is scored start_logit + end_logit inside the one window
that contains it whole; the confidences are a softmax over the n-best spans of
ALL windows of ALL passages of the question plus one "no answer" option (the
lowest [CLS] score over the windows, i.e. the window most sure it holds the
answer), so they sum to 1 and are comparable across passages.

Optional per-passage priors are added to the scores of that passage's spans. The
reader uses them to lean towards the passages most similar to the question: a weak
reader otherwise picks a confident-looking span from a distractor. On the built-in
knowledge base, reading the top 3 passages with a prior of 30 logits per unit of
cosine similarity below the best passage's scores F1 57.1, against 45.5 without
priors and 50.4 reading only the first passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from retrieval.reader.features import NO_ANSWER_INDEX, Window


@dataclass(frozen=True)
class SpanCandidate:
    """An answer span: exact characters `contexts[pair_index][start:end]`."""

    pair_index: int
    start: int
    end: int
    text: str
    score: float
    confidence: float


@dataclass(frozen=True)
class QuestionPrediction:
    """All candidate spans of one question, best first, and the probability that there is no answer."""

    candidates: tuple[SpanCandidate, ...]
    no_answer_confidence: float

    def best(self, abstain_threshold: float) -> SpanCandidate | None:
        """The answer to give, or None to abstain when even the best span is below the threshold."""
        if not self.candidates or self.candidates[0].confidence < abstain_threshold:
            return None
        return self.candidates[0]


def _window_spans(
    window: Window, start_logits: np.ndarray, end_logits: np.ndarray, max_answer_tokens: int, n_best: int
) -> list[tuple[float, int, int]]:
    """(score, first token, last token) of the best valid spans lying wholly inside this window's passage."""
    offsets = window.context_offsets
    starts = np.argsort(start_logits)[::-1][:n_best]
    ends = np.argsort(end_logits)[::-1][:n_best]
    spans = []
    for start in starts:
        if offsets[start] is None:
            continue
        for end in ends:
            if offsets[end] is None or end < start or end - start + 1 > max_answer_tokens:
                continue
            spans.append((float(start_logits[start] + end_logits[end]), int(start), int(end)))
    return spans


def rank_spans(
    windows: Sequence[Window],
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    contexts: Sequence[str],
    max_answer_tokens: int = 30,
    n_best_per_window: int = 20,
    top_n: int = 5,
    pair_priors: Sequence[float] | None = None,
) -> QuestionPrediction:
    """Rank the answer spans of one question's windows; `contexts[w.pair_index]` is the text of window w.

    `pair_priors[w.pair_index]`, when given, is added to every span score of window w.
    """
    if not windows:
        return QuestionPrediction(candidates=(), no_answer_confidence=1.0)
    best_by_span: dict[tuple[int, int, int], float] = {}
    for window, starts, ends in zip(windows, start_logits, end_logits, strict=True):
        prior = pair_priors[window.pair_index] if pair_priors is not None else 0.0
        for score, first, last in _window_spans(window, starts, ends, max_answer_tokens, n_best_per_window):
            key = (window.pair_index, window.context_offsets[first][0], window.context_offsets[last][1])
            best_by_span[key] = max(score + prior, best_by_span.get(key, -np.inf))
    null_score = min(
        float(s[NO_ANSWER_INDEX] + e[NO_ANSWER_INDEX]) for s, e in zip(start_logits, end_logits, strict=True)
    )
    ranked = sorted(best_by_span.items(), key=lambda item: item[1], reverse=True)
    scores = np.array([score for _, score in ranked] + [null_score])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    candidates = tuple(
        SpanCandidate(
            pair_index=pair_index,
            start=start,
            end=end,
            text=contexts[pair_index][start:end],
            score=score,
            confidence=float(probability),
        )
        for ((pair_index, start, end), score), probability in zip(ranked[:top_n], probabilities, strict=False)
    )
    return QuestionPrediction(candidates=candidates, no_answer_confidence=float(probabilities[-1]))
