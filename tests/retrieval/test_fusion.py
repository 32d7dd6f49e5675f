"""Fitting linear fusion weights: the fit trusts the member that finds the right passages."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from retrieval.index.fusion import fit_linear_weights
from retrieval.index.ingest import load_passages
from retrieval.index.retrievers import Bm25Retriever, HybridRetriever, HybridSettings
from tests.retrieval.conftest import TINY_QUESTIONS

QUESTIONS = list(TINY_QUESTIONS.items())


def _misfiled_bm25(tiny_docs: Path) -> Bm25Retriever:
    """A real BM25 whose passage ids each point at the next passage's text: confidently wrong."""
    passages = load_passages([tiny_docs])
    shifted = passages[1:] + passages[:1]
    return Bm25Retriever.build(
        [dataclasses.replace(p, title=q.title, text=q.text) for p, q in zip(passages, shifted, strict=True)]
    )


def test_fitted_weights_trust_the_member_that_is_right(tiny_docs: Path) -> None:
    right = Bm25Retriever.build(load_passages([tiny_docs]))
    wrong = _misfiled_bm25(tiny_docs)

    weights = fit_linear_weights([wrong, right], QUESTIONS)

    assert weights[1] > 0 and weights[1] > weights[0]
    fused = HybridRetriever([wrong, right], HybridSettings(members=("bm25", "bm25"), weights=weights))
    for question, gold in QUESTIONS:
        assert fused.search(question, k=1)[0].passage.passage_id == gold, question


def test_fitting_needs_a_question_whose_passage_is_found(tiny_docs: Path) -> None:
    right = Bm25Retriever.build(load_passages([tiny_docs]))
    with pytest.raises(ValueError, match="nothing to fit"):
        fit_linear_weights([right], [("Which Roman towns did Vesuvius bury?", "no-such-passage")])
