"""Negative passages for training the reader to compare passages: paragraphs without the answer.

At serving time the reader reads several retrieved passages and must prefer the span in the
right one. Trained on each question's own paragraph alone, it never sees a passage without the
answer, so its span scores are not comparable across passages. Each training question therefore
also gets passages that do not hold its answer (Clark and Gardner 2018): another paragraph of the
same article (same topic, other facts) and the best BM25 match among the other paragraphs (the
kind of distractor retrieval puts first; BM25 hard negatives are also how DPR trained).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from retrieval.documents import Passage
from retrieval.index.retrievers import Bm25Retriever
from retrieval.reader.metrics import normalize_answer
from retrieval.training.data import Example, NegativeSettings

QUESTION_CHUNK = 2048  # questions scored against every paragraph at once (a dense chunk x paragraphs)
CANDIDATES = 8  # BM25 matches looked at per question to find one without the answer


def holds_answer(context: str, answers: Sequence[str]) -> bool:
    """True if the paragraph contains any gold answer (compared normalised, as SQuAD scores them)."""
    return _holds(f" {normalize_answer(context)} ", answers)


def _holds(normalized_context: str, answers: Sequence[str]) -> bool:
    """holds_answer for a context already normalised and padded with spaces (mining checks each
    paragraph against thousands of questions, so it is normalised once)."""
    return any(f" {normalize_answer(a)} " in normalized_context for a in answers if normalize_answer(a))


def mine_negatives(examples: Sequence[Example], settings: NegativeSettings) -> list[list[str]]:
    """For each example, the contexts of its negative passages (none holds one of its answers)."""
    contexts = sorted({e.paragraph.context for e in examples})
    title_of = {e.paragraph.context: e.paragraph.title for e in examples}
    by_article: dict[str, list[str]] = {}
    for context in contexts:
        by_article.setdefault(title_of[context], []).append(context)
    normalized = {context: f" {normalize_answer(context)} " for context in contexts}
    rng = random.Random(settings.seed)
    negatives: list[list[str]] = []
    for example in examples:
        if not settings.same_article:
            negatives.append([])
            continue
        answers = [a.text for a in example.question.answers]
        siblings = [
            c
            for c in by_article[example.paragraph.title]
            if c != example.paragraph.context and not _holds(normalized[c], answers)
        ]
        negatives.append(rng.sample(siblings, min(settings.same_article, len(siblings))))
    if settings.retrieved:
        retrieved = bm25_candidates(examples, contexts)
        for example, chosen, candidates in zip(examples, negatives, retrieved, strict=True):
            answers = [a.text for a in example.question.answers]
            taken, wanted = {example.paragraph.context, *chosen}, len(chosen) + settings.retrieved
            for row in candidates:
                if len(chosen) >= wanted:
                    break
                if contexts[row] not in taken and not _holds(normalized[contexts[row]], answers):
                    chosen.append(contexts[row])
                    taken.add(contexts[row])
    return negatives


def bm25_candidates(examples: Sequence[Example], contexts: Sequence[str]) -> list[np.ndarray]:
    """The CANDIDATES best BM25 paragraphs (row numbers in `contexts`) of each example's question."""
    titles = {e.paragraph.context: e.paragraph.title for e in examples}
    passages = [Passage(str(row), titles[c], c) for row, c in enumerate(contexts)]
    bm25 = Bm25Retriever.build(passages)
    results: list[np.ndarray] = []
    for start in range(0, len(examples), QUESTION_CHUNK):
        scores = bm25.score_matrix([e.question.question for e in examples[start : start + QUESTION_CHUNK]])
        best = np.argpartition(-scores, min(CANDIDATES, scores.shape[1] - 1), axis=1)[:, :CANDIDATES]
        order = np.take_along_axis(scores, best, axis=1).argsort(axis=1)[:, ::-1]
        results.extend(np.take_along_axis(best, order, axis=1))
    return results
