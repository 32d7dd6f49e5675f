"""Each retriever finds the answering passage of a tiny corpus; the encoder matches the reference model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from retrieval.encoder import EMBEDDING_DIM, SentenceEncoder, packaged_model_dir
from retrieval.ingest import load_passages
from retrieval.retrievers import (
    Bm25Retriever,
    DenseRetriever,
    DenseSettings,
    HybridRetriever,
    HybridSettings,
    Retriever,
    TfidfRetriever,
)
from tests.retrieval.conftest import TINY_QUESTIONS


def test_encoder_gives_unit_vectors_equal_to_sentence_transformers(encoder: SentenceEncoder) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    texts = ["Which sign rules the water?", "Pisces is a water sign.", "word " * 400]
    reference = sentence_transformers.SentenceTransformer(str(packaged_model_dir()), device="cpu")

    vectors = encoder.encode(texts)

    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, reference.encode(texts, normalize_embeddings=True), atol=1e-4)


def test_query_embeddings_are_remembered_and_read_only(encoder: SentenceEncoder) -> None:
    """The service embeds each question twice (ranking, relevance): the second time is a cache hit."""
    question = "Which sign rules the water?"

    first = encoder.encode_query(question)

    np.testing.assert_allclose(first, encoder.encode([question]), atol=1e-6)
    assert encoder.encode_query(question) is first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0


def _retrievers(tiny_docs: Path, encoder: SentenceEncoder) -> dict[str, Retriever]:
    passages = load_passages([tiny_docs])
    embeddings = encoder.encode([f"{p.title}\n{p.text}" for p in passages])
    dense = {
        kind: DenseRetriever.from_embeddings(passages, embeddings, encoder, DenseSettings(index_type=kind))
        for kind in ("flat", "hnsw", "ivf")
    }
    tfidf = TfidfRetriever.build(passages)
    return {
        "tfidf": tfidf,
        "bm25": Bm25Retriever.build(passages),
        **{f"dense-{kind}": retriever for kind, retriever in dense.items()},
        "hybrid-rrf": HybridRetriever([tfidf, dense["flat"]]),
        "hybrid-score": HybridRetriever(
            [tfidf, dense["flat"]], HybridSettings(fusion="score", weights=(0.3, 0.7))
        ),
    }


def test_dense_similarities_are_the_search_scores_of_any_passages(
    tiny_docs: Path, encoder: SentenceEncoder
) -> None:
    """What the reader's passage priors use: the stored vectors, read back for passages in any order."""
    for name, retriever in _retrievers(tiny_docs, encoder).items():
        if not name.startswith("dense"):
            continue
        question = next(iter(TINY_QUESTIONS))
        ranked = retriever.search(question, k=len(retriever.passages))
        shuffled = ranked[::-1]

        similarities = retriever.similarities(question, [r.passage for r in shuffled])

        np.testing.assert_allclose(similarities, [r.score for r in shuffled], atol=1e-5, err_msg=name)
        assert retriever.similarities(question, []) == []


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


def test_hybrid_rejects_mismatched_weights(tiny_docs: Path) -> None:
    tfidf = TfidfRetriever.build(load_passages([tiny_docs]))
    with pytest.raises(ValueError, match="weights"):
        HybridRetriever([tfidf], dataclasses.replace(HybridSettings(), weights=(1.0, 1.0)))
