"""Benchmark of follow-up questions: the rewriter of actions/follow_ups.py against none.

Each conversation of bench/data/follow_ups.json opens with a standalone question and goes on with
follow-ups ("and Leo?", "what is its symbol?", "when did he live?") and topic changes that must be
left alone. Every follow-up is answered twice by the QA service's own answering path (QAService
in-process: hybrid retrieval, the off-topic cut, the reader over the top k passages):
  - the baseline: the follow-up as the user typed it, as the assistant did before follow-ups;
  - rewritten: actions.follow_ups.rewrite() first, from the previous turn as the assistant saw it
    (the question it asked and the answer it got in this same run, so a wrong answer carries on).
Reported per kind of follow-up and over all: answer F1 (best over the gold answers; an abstention
scores 0), the share answered from the right document, and how often the rewriter changed the
message. Opening questions are asked but not scored.

    .venv/bin/python bench/follow_ups.py
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

from actions.follow_ups import LastTurn, rewrite  # noqa: E402
from bench.common import RESULTS_DIR, require_files, write_report  # noqa: E402
from retrieval.reader.metrics import best_over_golds, f1_score  # noqa: E402
from retrieval.service.answering import QAService  # noqa: E402
from retrieval.service.calibrate import loaded_service, same_document  # noqa: E402
from retrieval.service.settings import DEFAULT_TOP_K, REPO_ROOT  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "follow_ups.json"
MODES = ("as_typed", "rewritten")
ALL = "all follow-ups"


@dataclass(frozen=True)
class Scored:
    """One follow-up as one mode asked and the service answered it."""

    conversation: str
    kind: str
    mode: str
    message: str
    asked: str
    answer: str | None
    source: str | None
    f1: float
    right_source: bool


@dataclass(frozen=True)
class Reply:
    answer: str | None
    source: str | None


def answerer(service: QAService, top_k: int) -> Callable[[str], Reply]:
    """The service's answer to a question, each question read once (both modes ask many alike)."""
    seen: dict[str, Reply] = {}

    def ask(question: str) -> Reply:
        if question not in seen:
            response = service.answer(question, top_k)
            seen[question] = Reply(response.answer, response.source.title if response.source else None)
        return seen[question]

    return ask


def run_conversation(conversation: dict[str, Any], mode: str, ask: Callable[[str], Reply]) -> list[Scored]:
    """Ask the conversation's turns in order; in "rewritten" mode each follow-up is made standalone."""
    scored, last = [], None
    for turn in conversation["turns"]:
        message = turn["message"]
        question = rewrite(last, message).question if mode == "rewritten" else message
        reply = ask(question)
        last = LastTurn(question, reply.answer)
        if turn["kind"] == "first":
            continue
        f1 = best_over_golds(f1_score, reply.answer, turn["answers"]) if reply.answer else 0.0
        right_source = reply.source is not None and same_document(reply.source, turn["source"])
        scored.append(
            Scored(
                conversation["id"],
                turn["kind"],
                mode,
                message,
                question,
                reply.answer,
                reply.source,
                f1,
                right_source,
            )
        )
    return scored


def summary(rows: Sequence[Scored]) -> dict[str, float]:
    return {
        "follow_ups": len(rows),
        "f1": 100 * sum(r.f1 for r in rows) / len(rows),
        "right_source": 100 * sum(r.right_source for r in rows) / len(rows),
        "rewritten": 100 * sum(r.asked != " ".join(r.message.split()) for r in rows) / len(rows),
    }


def report(rows: Sequence[Scored]) -> dict[str, dict[str, dict[str, float]]]:
    """Summary by kind (and over all follow-ups) and by mode."""
    kinds = sorted({r.kind for r in rows})
    return {
        group: {
            mode: summary([r for r in rows if r.mode == mode and group in (ALL, r.kind)]) for mode in MODES
        }
        for group in (*kinds, ALL)
    }


def print_table(table: dict[str, dict[str, dict[str, float]]]) -> None:
    print(
        f"\n{'follow-ups':<16}{'n':>4}  {'F1 as typed':>11}{'rewritten':>10}{'Δ':>7}"
        f"  {'source as typed':>15}{'rewritten':>10}{'Δ':>7}  {'changed':>7}"
    )
    for group, modes in table.items():
        base, new = modes["as_typed"], modes["rewritten"]
        f1_gain, source_gain = new["f1"] - base["f1"], new["right_source"] - base["right_source"]
        print(
            f"{group:<16}{new['follow_ups']:>4}  {base['f1']:>11.1f}{new['f1']:>10.1f}{f1_gain:>+7.1f}"
            f"  {base['right_source']:>14.1f}%{new['right_source']:>9.1f}%{source_gain:>+7.1f}"
            f"  {new['rewritten']:>6.0f}%"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=Path, default=DATA)
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "data/knowledge")
    parser.add_argument("--reader", type=Path, default=REPO_ROOT / "models/reader")
    parser.add_argument("--index", type=Path, default=REPO_ROOT / "var/bench-follow-ups/index")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "follow_ups.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_files([args.conversations, args.reader / "config.json"])
    conversations = json.loads(args.conversations.read_text(encoding="utf-8"))["conversations"]
    started = time.perf_counter()
    ask = answerer(loaded_service(args.index, [args.docs], args.reader, args.threads), args.top_k)
    rows = [
        row
        for mode in MODES
        for conversation in conversations
        for row in run_conversation(conversation, mode, ask)
    ]
    table = report(rows)
    print_table(table)
    write_report(
        args.out,
        {
            "conversations": str(args.conversations.relative_to(REPO_ROOT)),
            "reader": str(args.reader),
            "top_k": args.top_k,
            "seconds": round(time.perf_counter() - started, 1),
            "summary": table,
            "follow_ups": [asdict(row) for row in rows],
        },
    )


if __name__ == "__main__":
    main()
