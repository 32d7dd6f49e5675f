"""The sentence encoder: the reference model's vectors, from PyTorch and from ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.index.encoder import EMBEDDING_DIM, SentenceEncoder, packaged_model_dir


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


def test_onnx_query_encoder_gives_the_pytorch_vectors_and_exports_once(
    encoder: SentenceEncoder, tmp_path: Path
) -> None:
    questions = ["Which sign rules the water?", "?", "word " * 400]  # truncated at 256 tokens like PyTorch
    onnx = SentenceEncoder(threads=2, query_backend="onnx", export_dir=tmp_path)

    for question in questions:
        np.testing.assert_allclose(onnx.encode_query(question), encoder.encode([question]), atol=1e-5)

    options = onnx._onnx_session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"  # see onnx_session
    exported = list(tmp_path.iterdir())
    assert len(exported) == 1 and exported[0].suffix == ".onnx"  # no staging file left behind
    written = exported[0].stat().st_mtime_ns
    SentenceEncoder(query_backend="onnx", export_dir=tmp_path).load()
    assert list(tmp_path.iterdir()) == exported and exported[0].stat().st_mtime_ns == written
    with pytest.raises(ValueError, match="query_backend 'openvino'"):
        SentenceEncoder(query_backend="openvino")
