"""The sentence encoder: the reference model's vectors, unit length, remembered for recent questions."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.encoder import EMBEDDING_DIM, SentenceEncoder, packaged_model_dir


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
