"""The passage: the unit that retrievers rank and the reader reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Passage:
    """A piece of a document small enough for the reader's window.

    `passage_id` is stable across re-indexing of unchanged documents, so answers
    can cite their source and tests can name the passage they expect.
    """

    passage_id: str
    title: str
    text: str


@dataclass(frozen=True)
class ScoredPassage:
    """A passage with the retriever's score (higher is better; scales differ per retriever)."""

    passage: Passage
    score: float
