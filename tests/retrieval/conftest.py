"""Shared fixtures: one loaded encoder and a tiny corpus the tests write themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.index.encoder import SentenceEncoder

TINY_DOCS = {
    "volcanoes.md": """# Volcanoes

A volcano is a rupture in the crust of a planet that lets molten lava, ash and gases escape.

## Eruptions

Mount Vesuvius erupted in 79 AD and buried the Roman towns of Pompeii and Herculaneum under ash.
""",
    "tea.md": """# Tea

Tea is an aromatic drink made by pouring hot water over the cured leaves of Camellia sinensis.

## Green tea

Green tea is not oxidised during processing, which keeps its leaves green and its taste grassy.
""",
    "chess.md": """# Chess

Chess is a board game for two players on a board of sixty-four squares.

## Castling

Castling moves the king two squares towards a rook, and the rook jumps over to the other side of the king.
""",
    "bees.txt": """Honey bees live in colonies with one queen, thousands of female workers and a few drones.

Worker bees perform a waggle dance to tell their sisters the direction and distance of flowers.
""",
}

# question -> id of the passage that answers it (ids follow <file-stem>#<section-slug>-<n>)
TINY_QUESTIONS = {
    "Which Roman towns were destroyed when Vesuvius erupted?": "volcanoes#eruptions-1",
    "Why do green tea leaves stay green?": "tea#green-tea-1",
    "How do bees tell each other where the flowers are?": "bees#intro-1",
    "In which move does the king jump two squares toward a rook?": "chess#castling-1",
}


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def encoder() -> SentenceEncoder:
    """The packaged MiniLM, loaded once per test session."""
    loaded = SentenceEncoder(threads=2)
    loaded.load()
    return loaded


@pytest.fixture
def tiny_docs(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "docs", TINY_DOCS)
