"""SQuAD exact match and F1, as in the official v1.1 / v2.0 evaluation scripts.

Numbers reported by this project are comparable with published SQuAD results
only if the normalisation is exactly the official one, so it is reproduced here.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

RIGHT_F1 = 0.5  # an answer counts as right when its F1 against a gold answer reaches this
_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse white space (official order)."""
    text = text.lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1; two empty answers agree (SQuAD 2.0 "no answer")."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not prediction_tokens or not gold_tokens:
        return float(prediction_tokens == gold_tokens)
    common = Counter(prediction_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric, prediction: str, golds: Sequence[str]) -> float:
    """The official max over gold answers; an unanswerable question's only gold answer is ""."""
    return max(metric(prediction, gold) for gold in (golds or [""]))


@dataclass(frozen=True)
class ScoredQuestion:
    """One evaluated question: the gold answers and what the reader predicted ("" = abstained)."""

    golds: tuple[str, ...]
    prediction: str

    @property
    def has_answer(self) -> bool:
        return bool(self.golds)

    @property
    def exact(self) -> float:
        return best_over_golds(exact_match, self.prediction, self.golds)

    @property
    def f1(self) -> float:
        return best_over_golds(f1_score, self.prediction, self.golds)


def squad_scores(questions: Sequence[ScoredQuestion]) -> dict[str, float]:
    """EM and F1 in percent; with unanswerable questions also the SQuAD 2.0 HasAns_/NoAns_ splits."""
    if not questions:
        raise ValueError("no questions to score")
    scores: dict[str, float] = {
        "exact": 100.0 * sum(q.exact for q in questions) / len(questions),
        "f1": 100.0 * sum(q.f1 for q in questions) / len(questions),
        "total": float(len(questions)),
    }
    if all(q.has_answer for q in questions):
        return scores
    for prefix, subset in (
        ("HasAns", [q for q in questions if q.has_answer]),
        ("NoAns", [q for q in questions if not q.has_answer]),
    ):
        if subset:
            scores[f"{prefix}_exact"] = 100.0 * sum(q.exact for q in subset) / len(subset)
            scores[f"{prefix}_f1"] = 100.0 * sum(q.f1 for q in subset) / len(subset)
            scores[f"{prefix}_total"] = float(len(subset))
    return scores


def best_abstention_threshold(
    confidences: Sequence[float], questions: Sequence[ScoredQuestion]
) -> tuple[float, float]:
    """The confidence threshold (abstain below it) that maximises F1, and that F1 in percent.

    `questions[i].prediction` is the answer given when question i is not abstained on.
    Like the official script's best-threshold search, every observed confidence is a candidate.
    """
    if len(confidences) != len(questions) or not questions:
        raise ValueError("need one confidence per question, and at least one question")
    order = sorted(range(len(questions)), key=lambda i: confidences[i])
    abstain_f1 = [float(not q.has_answer) for q in questions]
    total = sum(q.f1 for q in questions)  # threshold 0: answer everything
    best_total, best_threshold = total, 0.0
    for position, index in enumerate(order):
        total += abstain_f1[index] - questions[index].f1  # now abstain on this one too
        next_confidence = confidences[order[position + 1]] if position + 1 < len(order) else 1.0 + 1e-9
        if next_confidence == confidences[index]:
            continue  # a threshold cannot split equal confidences
        if total > best_total:
            best_total, best_threshold = total, next_confidence
    return best_threshold, 100.0 * best_total / len(questions)
