"""Each retriever finds the answering passage of a tiny corpus; hybrids fuse their members as configured."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from retrieval.index.encoder import SentenceEncoder
from retrieval.index.ingest import load_passages
from retrieval.index.retrievers import (
    Bm25Retriever,
    DenseRetriever,
    DenseSettings,
    HybridRetriever,
    HybridSettings,
    Retriever,
    TfidfRetriever,
)
from tests.retrieval.conftest import TINY_QUESTIONS


def _retrievers(tiny_docs: Path, encoder: SentenceEncoder) -> dict[str, Retriever]:
    passages = load_passages([tiny_docs])
    embeddings = encoder.encode([f"{p.title}\n{p.text}" for p in passages])
    dense = {
        kind: DenseRetriever.from_embeddings(passages, embeddings, encoder, DenseSettings(index_type=kind))
        for kind in ("flat", "hnsw", "ivf")
    }
    tfidf = TfidfRetriever.build(passages)
    bm25 = Bm25Retriever.build(passages)
    return {
        "tfidf": tfidf,
        "bm25": bm25,
        **{f"dense-{kind}": retriever for kind, retriever in dense.items()},
        "hybrid-linear": HybridRetriever([bm25, dense["flat"]]),
        "hybrid-rrf": HybridRetriever(
            [tfidf, dense["flat"]], HybridSettings(fusion="rrf", weights=(1.0, 1.0))
        ),
        "hybrid-score": HybridRetriever(
            [tfidf, dense["flat"]], HybridSettings(fusion="score", weights=(0.3, 0.7))
        ),
    }


def test_scores_are_the_search_scores_of_any_passages(tiny_docs: Path, encoder: SentenceEncoder) -> None:
    """What linear fusion and the reader's passage priors use: a retriever's own score for any passage,
    in any order (dense ones read the stored vectors back instead of encoding passages again)."""
    for name, retriever in _retrievers(tiny_docs, encoder).items():
        if name.startswith("hybrid"):
            continue
        question = next(iter(TINY_QUESTIONS))
        ranked = retriever.search(question, k=len(retriever.passages))
        shuffled = ranked[::-1]

        scores = retriever.scores(question, [r.passage for r in shuffled])

        np.testing.assert_allclose(scores, [r.score for r in shuffled], atol=1e-5, err_msg=name)
        assert retriever.scores(question, []) == []


def test_linear_fusion_is_the_weighted_sum_of_every_members_score(
    tiny_docs: Path, encoder: SentenceEncoder
) -> None:
    """A passage only one member found still gets the other member's real score, not zero."""
    retrievers = _retrievers(tiny_docs, encoder)
    bm25, dense = retrievers["bm25"], retrievers["dense-flat"]
    hybrid = HybridRetriever([bm25, dense], HybridSettings(weights=(0.5, 10.0), candidates=2))
    question = "Which Roman towns were destroyed when Vesuvius erupted?"

    results = hybrid.search(question, k=5)

    passages = [r.passage for r in results]
    assert results[0].passage.passage_id == TINY_QUESTIONS[question]
    assert len(passages) >= 2  # the union of each member's top 2
    expected = 0.5 * np.array(bm25.scores(question, passages)) + 10.0 * np.array(
        dense.scores(question, passages)
    )
    np.testing.assert_allclose([r.score for r in results], expected, rtol=1e-5)


def test_every_retriever_ranks_the_answering_passage_first(tiny_docs: Path, encoder: SentenceEncoder) -> None:
    for name, retriever in _retrievers(tiny_docs, encoder).items():
        for question, expected in TINY_QUESTIONS.items():
            results = retriever.search(question, k=3)
            assert results, f"{name} returned nothing for {question!r}"
            assert results[0].passage.passage_id == expected, f"{name}: {question!r} -> {results[0]}"
            assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_k_larger_than_the_corpus_returns_each_passage_at_most_once(
    tiny_docs: Path, encoder: SentenceEncoder
) -> None:
    for name, retriever in _retrievers(tiny_docs, encoder).items():
        ids = [r.passage.passage_id for r in retriever.search("Which game has castling?", k=100)]
        assert 0 < len(ids) <= 7 and len(set(ids)) == len(ids), name


def test_hybrid_rejects_mismatched_weights_and_unknown_fusions(tiny_docs: Path) -> None:
    tfidf = TfidfRetriever.build(load_passages([tiny_docs]))
    with pytest.raises(ValueError, match="weights"):
        HybridRetriever([tfidf], dataclasses.replace(HybridSettings(), weights=(1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="unknown fusion"):
        HybridRetriever([tfidf, tfidf], HybridSettings(fusion="max"))  # type: ignore[arg-type]


def test_linear_fusion_needs_members_that_score_given_passages(tiny_docs: Path) -> None:
    tfidf = TfidfRetriever.build(load_passages([tiny_docs]))
    rank_only = HybridRetriever([tfidf, tfidf], HybridSettings(fusion="rrf", weights=(1.0, 1.0)))
    with pytest.raises(ValueError, match="score given passages"):
        HybridRetriever([tfidf, rank_only])


@pytest.mark.parametrize("build", [TfidfRetriever.build, Bm25Retriever.build], ids=["tfidf", "bm25"])
def test_a_score_matrix_row_is_each_questions_scores(tiny_docs: Path, build) -> None:
    """Bulk scoring (training negatives are mined with it) ranks exactly as one question at a time."""
    retriever = build(load_passages([tiny_docs]))
    questions = list(TINY_QUESTIONS)
    matrix = retriever.score_matrix(questions)
    assert matrix.shape == (len(questions), len(retriever.passages))
    for row, question in zip(matrix, questions, strict=True):
        np.testing.assert_allclose(row, retriever.scores(question, retriever.passages), rtol=1e-5)
