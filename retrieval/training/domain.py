"""A training file for the knowledge base's domain: its fit-half questions and questions written
from its documents, mixed into a SQuAD sample.

    python -m retrieval.training.domain --squad ../shared/data/squad/train-v1.1.json.gz \
        --knowledge tests/data/knowledge_qa.json --authored tests/data/knowledge_authored_qa.json \
        [tests/data/knowledge_authored_qa_2.json] --out var/domain/train.json

Trained on SQuAD alone, the reader misreads the knowledge base's short domain phrasings: asked
"Which element does Aries belong to?" over "It is a fire sign", it answers "Sun". This writes a
SQuAD-format file with the knowledge base's questions of the *fit* half (retrieval.squad.split_of,
the split the confidence calibration reports by), each repeated `repeat` times, the authored
questions (written from data/knowledge/'s passages by a writer who never saw knowledge_qa.json;
none repeats one of its questions word for word, tests/reader/test_domain.py checks) each
repeated `authored_repeat` times, beside a random sample of SQuAD questions replayed so the reader
keeps what it learned there. The held-out half is never written, so `make calibrate-confidence`
still reports on questions the reader never saw. Only paragraphs with questions are written:
negatives are mined among those (negatives.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from retrieval.squad import SquadParagraph, SquadQuestion, read_squad, split_of

log = logging.getLogger(__name__)


def repeated(
    paragraphs: Sequence[SquadParagraph], repeat: int, keep: Callable[[SquadQuestion], bool]
) -> list[SquadParagraph]:
    """The paragraphs with the questions `keep` accepts, holding only those, each `repeat` times
    (ids suffixed so every copy is its own training question)."""
    kept = [
        SquadParagraph(
            p.title,
            p.context,
            tuple(
                SquadQuestion(f"{q.question_id}-r{copy}", q.question, q.answers, q.is_impossible)
                for q in p.questions
                if keep(q)
                for copy in range(repeat)
            ),
        )
        for p in paragraphs
    ]
    return [p for p in kept if p.questions]


def knowledge_fit_half(paragraphs: Sequence[SquadParagraph], repeat: int) -> list[SquadParagraph]:
    """The knowledge base's paragraphs with fit-half questions, holding only those, each `repeat` times."""
    return repeated(paragraphs, repeat, lambda q: split_of(q.question_id) == "fit")


def squad_sample(paragraphs: Sequence[SquadParagraph], questions: int, seed: int) -> list[SquadParagraph]:
    """The paragraphs holding a seeded random `questions` of a SQuAD file's questions, with only those."""
    ids = [q.question_id for p in paragraphs for q in p.questions]
    kept = set(random.Random(seed).sample(ids, questions)) if questions < len(ids) else set(ids)
    sampled = [
        SquadParagraph(p.title, p.context, tuple(q for q in p.questions if q.question_id in kept))
        for p in paragraphs
    ]
    return [p for p in sampled if p.questions]


def as_squad_json(paragraphs: Sequence[SquadParagraph], version: str) -> dict[str, Any]:
    """SQuAD v1.1 JSON of the paragraphs, grouped into articles by title in order of appearance."""
    articles: dict[str, list[dict[str, Any]]] = {}
    for p in paragraphs:
        articles.setdefault(p.title, []).append(
            {
                "context": p.context,
                "qas": [
                    {
                        "id": q.question_id,
                        "question": q.question,
                        "answers": [{"text": a.text, "answer_start": a.start} for a in q.answers],
                    }
                    for q in p.questions
                ],
            }
        )
    return {
        "version": version,
        "data": [{"title": title, "paragraphs": rows} for title, rows in articles.items()],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.training.domain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD v1.1 training file")
    parser.add_argument("--knowledge", type=Path, required=True, help="the knowledge base's questions")
    parser.add_argument("--out", type=Path, required=True, help="the training file to write (.json)")
    parser.add_argument(
        "--authored", type=Path, nargs="*", default=[], help="files of questions written from the documents"
    )
    parser.add_argument("--authored-repeat", type=int, default=2, help="copies of each authored question")
    parser.add_argument("--squad-questions", type=int, default=4000, help="SQuAD questions replayed")
    parser.add_argument("--repeat", type=int, default=6, help="copies of each fit-half question")
    parser.add_argument("--seed", type=int, default=29)
    args = parser.parse_args(argv)
    if args.squad_questions < 0 or min(args.repeat, args.authored_repeat) < 1:
        parser.error("--squad-questions must be 0 or more, --repeat and --authored-repeat at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    domain = knowledge_fit_half(read_squad(args.knowledge), args.repeat)
    written = [paragraph for path in args.authored for paragraph in read_squad(path)]
    authored = repeated(written, args.authored_repeat, lambda q: True)
    replay = squad_sample(read_squad(args.squad), args.squad_questions, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = as_squad_json(
        [*domain, *authored, *replay],
        version=f"domain-{args.repeat}x-{args.authored_repeat}x-{args.squad_questions}",
    )
    args.out.write_text(json.dumps(payload) + "\n", encoding="utf-8")
    counted = [sum(len(p.questions) for p in part) for part in (domain, authored, replay)]
    log.info(
        "wrote %s: %d knowledge-base questions (fit half x %d), %d authored (x %d) and %d SQuAD questions",
        args.out,
        counted[0],
        args.repeat,
        counted[1],
        args.authored_repeat,
        counted[2],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
