"""Reading SQuAD-format files (v1.1 and v2.0, plain or gzipped).

Training, evaluation, benchmarks and knowledge-base ingestion all read SQuAD
files through this one module, so they agree on what a paragraph and a
question are.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SquadFormatError(ValueError):
    """A file that is not valid SQuAD JSON; the message names the file."""


@dataclass(frozen=True)
class SquadAnswer:
    text: str
    start: int  # character offset into the paragraph's context


@dataclass(frozen=True)
class SquadQuestion:
    question_id: str
    question: str
    answers: tuple[SquadAnswer, ...]
    is_impossible: bool = False


@dataclass(frozen=True)
class SquadParagraph:
    title: str
    context: str
    questions: tuple[SquadQuestion, ...] = field(default_factory=tuple)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def _parse_question(raw: dict[str, Any]) -> SquadQuestion:
    answers = tuple(SquadAnswer(text=a["text"], start=int(a["answer_start"])) for a in raw.get("answers", []))
    return SquadQuestion(
        question_id=str(raw["id"]),
        question=raw["question"],
        answers=answers,
        is_impossible=bool(raw.get("is_impossible", False)),
    )


def read_squad(path: str | Path) -> list[SquadParagraph]:
    """Return every paragraph of a SQuAD file with its questions, in file order."""
    path = Path(path)
    try:
        with _open_text(path) as handle:
            payload = json.load(handle)
        return [
            SquadParagraph(
                title=article.get("title", ""),
                context=paragraph["context"],
                questions=tuple(_parse_question(qa) for qa in paragraph.get("qas", [])),
            )
            for article in payload["data"]
            for paragraph in article["paragraphs"]
        ]
    except (
        OSError,
        EOFError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        ValueError,
    ) as error:
        raise SquadFormatError(
            f"{path}: not a readable SQuAD file ({type(error).__name__}: {error})"
        ) from error


def split_of(key: str) -> str:
    """The half ("fit" or "held_out") a question or article belongs to, fixed by a hash of its key.

    The confidence calibration is fitted on the fit halves and reported on the held-out ones, and
    the reader's domain training (retrieval.training.domain) reads only the knowledge base's fit
    half, so both leave the same held-out questions unseen.
    """
    return "fit" if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 == 0 else "held_out"
