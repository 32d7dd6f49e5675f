"""Fit the QA service's confidence calibration on held-out questions, and report it before and after.

Questions go through the service's own answering path (QAService: hybrid retrieval, the reader
over the top k passages with its relevance priors), so what is calibrated is what users get:
  - SQuAD: a sample of v1.1 dev questions, answered from an index of every dev paragraph (about
    1,000 Wikipedia paragraphs: the right one must be found among its article's siblings);
  - the knowledge base: tests/data/knowledge_qa.json against data/knowledge/;
  - SQuAD 2.0's unanswerable dev questions (same articles), to check that they get low confidence.
Each answerable set is split in two by a hash (SQuAD by article, the knowledge base by question):
the calibration is fitted on the "fit" halves together and every figure is reported on the
"held-out" halves. The hedge threshold is the lowest calibrated confidence at which at least
--precision of each set's fit-half answers are right (SQuAD's and the knowledge base's alike, not
only the two pooled); the assistant's QA_MIN_CONFIDENCE uses it.

    .venv/bin/python -m retrieval.service.calibrate --squad ../shared/data/squad/dev-v1.1.json.gz \
        --squad-v2 ../shared/data/squad/dev-v2.0.json.gz --reader models/reader --write
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from retrieval.digest import file_digest
from retrieval.reader.metrics import RIGHT_F1, best_over_golds, f1_score
from retrieval.service.answering import QAService
from retrieval.service.calibration import (
    AnswerSignals,
    ConfidenceCalibration,
    expected_calibration_error,
    hedge_threshold,
    reliability_bins,
)
from retrieval.service.settings import (
    AUTO_READER_BACKEND,
    DEFAULT_FIRST_READ_CONFIDENCE,
    DEFAULT_TOP_K,
    READER_BACKENDS,
    REPO_ROOT,
    ServiceConfig,
)
from retrieval.squad import read_squad, split_of

ANSWERABLE_SETS = ("squad", "knowledge_base")
OLD_HEDGE = 0.5  # the assistant's QA_MIN_CONFIDENCE before calibration, applied to the reader's share


@dataclass(frozen=True)
class Question:
    set_name: str
    split: str  # "fit" or "held_out"
    question_id: str
    question: str
    answers: tuple[str, ...]  # empty for an unanswerable question
    title: str  # the article or document the answer is in


@dataclass(frozen=True)
class Record:
    """One question as the service answered it: what the calibration reads, and whether it was right."""

    set_name: str
    split: str
    question_id: str
    answer: str | None
    candidates: tuple[tuple[str, float], ...]  # (text, the reader's share), best first
    relevance: float
    f1: float
    right: bool
    right_source: bool
    read: bool  # False when the relevance cut found it off-topic


def same_document(passage_title: str, document: str) -> bool:
    """Knowledge-base passages are titled "<document> - <section>"; SQuAD's by their article."""
    title, document = passage_title.casefold(), document.casefold()
    return title == document or title.startswith(f"{document} - ")


def signals_of(record: Record) -> AnswerSignals:
    return AnswerSignals.of(record.candidates, record.relevance)


def squad_questions(path: Path, set_name: str, limit: int, seed: int, impossible: bool) -> list[Question]:
    """A fixed-seed sample of a SQuAD file's answerable (or, with `impossible`, unanswerable) questions."""
    rows = [
        Question(
            set_name,
            split_of(paragraph.title),
            q.question_id,
            q.question,
            tuple(a.text for a in q.answers),
            paragraph.title.replace("_", " "),
        )
        for paragraph in read_squad(path)
        for q in paragraph.questions
        if q.is_impossible == impossible
    ]
    return random.Random(seed).sample(rows, limit) if 0 < limit < len(rows) else rows


def knowledge_questions(path: Path) -> list[Question]:
    return [
        Question(
            "knowledge_base",
            split_of(q.question_id),
            q.question_id,
            q.question,
            tuple(a.text for a in q.answers),
            paragraph.title,
        )
        for paragraph in read_squad(path)
        for q in paragraph.questions
    ]


def answer_all(service: QAService, questions: Sequence[Question], top_k: int) -> list[Record]:
    records = []
    for question in tqdm(questions, desc=questions[0].set_name if questions else "questions", unit="q"):
        response = service.answer(question.question, top_k)
        predicted = response.answer or (response.candidates[0].text if response.candidates else "")
        f1 = best_over_golds(f1_score, predicted, question.answers) if question.answers else 0.0
        title = response.source.title if response.source else None
        records.append(
            Record(
                question.set_name,
                question.split,
                question.question_id,
                response.answer,
                tuple((c.text, c.confidence) for c in response.candidates),
                response.relevance,
                f1,
                bool(question.answers) and f1 >= RIGHT_F1,
                title is not None and same_document(title, question.title),
                response.abstain_reason != "off_topic",
            )
        )
    return records


def loaded_service(
    index_dir: Path,
    docs: Sequence[Path],
    reader: Path,
    threads: int,
    reader_backend: str = "torch",
    first_read_confidence: float = DEFAULT_FIRST_READ_CONFIDENCE,
) -> QAService:
    config = ServiceConfig(
        index_dir=index_dir,
        docs=tuple(docs),
        reader_dir=reader,
        reader_backend=reader_backend,
        encoder_backend="torch",
        threads=threads,
        first_read_confidence=first_read_confidence,
    )
    service = QAService(config)
    service.load()
    if not service.ready:
        raise SystemExit(f"the QA service did not load: {service.not_ready_reason()}")
    return service


def summary(records: Sequence[Record], confidences: Sequence[float], hedge_below: float) -> dict[str, Any]:
    """How an answer set fares with these confidences and this hedge threshold."""
    right = [r.right for r in records]
    unhedged = [ok for ok, c in zip(right, confidences, strict=True) if c >= hedge_below]
    right_hedged = sum(ok and c < hedge_below for ok, c in zip(right, confidences, strict=True))
    return {
        "questions": len(records),
        "f1": 100 * sum(r.f1 for r in records) / max(len(records), 1),
        "share_right": sum(right) / max(len(records), 1),
        "right_source": sum(r.right_source for r in records) / max(len(records), 1),
        "ece": expected_calibration_error(confidences, right),
        "mean_confidence": sum(confidences) / max(len(confidences), 1),
        "answered_unhedged": len(unhedged) / max(len(records), 1),
        "unhedged_right": sum(unhedged) / len(unhedged) if unhedged else None,
        "right_answers_hedged": right_hedged / max(sum(right), 1),
    }


def report(
    records: Sequence[Record], calibration: ConfidenceCalibration, hedge_below: float
) -> dict[str, dict[str, Any]]:
    """Per set, on its held-out half: before (the reader's share, hedged below OLD_HEDGE) and after.
    A question the relevance cut kept from the reader counts with confidence 0 (the bot declines)."""
    rows: dict[str, dict[str, Any]] = {}
    for set_name in (*ANSWERABLE_SETS, "squad_unanswerable"):
        held_out = [r for r in records if r.set_name == set_name and r.split == "held_out"]
        if not held_out:
            continue
        before = [signals_of(r).reader_confidence for r in held_out]
        after = [calibration.probability(signals_of(r)) if r.read else 0.0 for r in held_out]
        right = [r.right for r in held_out]
        rows[set_name] = {
            "before": summary(held_out, before, OLD_HEDGE),
            "after": summary(held_out, after, hedge_below),
            "halves": {
                split: {
                    "questions": len(part),
                    "f1": 100 * sum(r.f1 for r in part) / max(len(part), 1),
                    "right_source": sum(r.right_source for r in part) / max(len(part), 1),
                }
                for split in ("fit", "held_out")
                if (part := [r for r in records if r.set_name == set_name and r.split == split])
            },
            "reliability_before": [asdict(b) for b in reliability_bins(before, right)],
            "reliability_after": [asdict(b) for b in reliability_bins(after, right)],
        }
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.service.calibrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--squad", type=Path, required=True, help="SQuAD v1.1 dev file (index and questions)")
    parser.add_argument(
        "--squad-v2", type=Path, help="the matching SQuAD 2.0 dev file: unanswerable questions"
    )
    parser.add_argument("--kb-questions", type=Path, default=REPO_ROOT / "tests/data/knowledge_qa.json")
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "data/knowledge")
    parser.add_argument("--reader", type=Path, default=REPO_ROOT / "models/reader")
    parser.add_argument(
        "--work", type=Path, default=REPO_ROOT / "var/calibration", help="indexes and records"
    )
    parser.add_argument("--squad-questions", type=int, default=1200)
    parser.add_argument("--unanswerable-questions", type=int, default=300)
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K)
    parser.add_argument(
        "--precision", type=float, default=0.9, help="share of unhedged answers that must be right"
    )
    parser.add_argument(
        "--reader-backend",
        choices=READER_BACKENDS,
        default=AUTO_READER_BACKEND,
        help="as the service's (default auto: what the service serves on this CPU)",
    )
    parser.add_argument(
        "--first-read-confidence",
        type=float,
        default=DEFAULT_FIRST_READ_CONFIDENCE,
        help="as the service's (above 1: read every passage at once)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="save the calibration into --reader")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench/results/confidence.json")
    args = parser.parse_args(argv)
    # the backend the questions are answered with, "auto" decided for this CPU as the service does
    args.reader_backend = ServiceConfig(reader_backend=args.reader_backend).served_reader_backend
    return args


def collect(args: argparse.Namespace) -> list[Record]:
    """Every question answered by the service with the reader under calibration (records cached per
    reader and question set in --work, so the report can be redone without answering again)."""
    key = hashlib.sha256(
        json.dumps(
            [
                args.reader_backend,
                file_digest(args.reader / "model.safetensors"),
                file_digest(args.reader / "reader_config.json"),
                str(args.squad),
                str(args.squad_v2),
                args.squad_questions,
                args.unanswerable_questions,
                args.top_k,
                args.seed,
                args.first_read_confidence,
            ]
        ).encode()
    ).hexdigest()[:16]
    cached = args.work / f"records-{key}.jsonl"
    if cached.exists():
        rows = [json.loads(line) for line in cached.read_text(encoding="utf-8").splitlines()]
        return [Record(**{**row, "candidates": tuple(map(tuple, row["candidates"]))}) for row in rows]
    served = (args.reader, args.threads, args.reader_backend, args.first_read_confidence)
    squad = loaded_service(args.work / "squad-index", [args.squad], *served)
    records = answer_all(
        squad, squad_questions(args.squad, "squad", args.squad_questions, args.seed, False), args.top_k
    )
    if args.squad_v2 is not None:
        unanswerable = squad_questions(
            args.squad_v2, "squad_unanswerable", args.unanswerable_questions, args.seed, True
        )
        records += answer_all(
            squad, [dataclasses.replace(q, split="held_out") for q in unanswerable], args.top_k
        )
    knowledge = loaded_service(args.work / "kb-index", [args.docs], *served)
    records += answer_all(knowledge, knowledge_questions(args.kb_questions), args.top_k)
    args.work.mkdir(parents=True, exist_ok=True)
    cached.write_text("".join(json.dumps(asdict(r)) + "\n" for r in records), encoding="utf-8")
    return records


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    records = collect(args)
    fit = [r for r in records if r.split == "fit" and r.read and r.set_name in ANSWERABLE_SETS]
    calibration = ConfidenceCalibration.fit(
        [signals_of(r) for r in fit],
        [r.right for r in fit],
        fitted_on={
            "questions": {name: sum(r.set_name == name for r in fit) for name in ANSWERABLE_SETS},
            "right_f1": RIGHT_F1,
            "top_k": args.top_k,
            "reader_backend": args.reader_backend,
            "first_read_confidence": args.first_read_confidence,
            "command": "python -m retrieval.service.calibrate",
        },
    )
    fitted = [calibration.probability(signals_of(r)) for r in fit]
    lowest = hedge_threshold(fitted, [r.right for r in fit], args.precision, [r.set_name for r in fit])
    hedge_below = math.ceil(100 * lowest) / 100  # a setting a person would type (QA_MIN_CONFIDENCE)
    calibration = ConfidenceCalibration(
        calibration.weights,
        calibration.bias,
        {**calibration.fitted_on, "hedge_below": hedge_below, "precision": args.precision},
    )
    rows = report(records, calibration, hedge_below)
    print_table(rows, hedge_below)
    plot_reliability(rows, args.out.with_suffix(".png"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"calibration": asdict(calibration), "held_out": rows}, indent=2) + "\n", encoding="utf-8"
    )
    print(f"report: {args.out}, reliability diagram: {args.out.with_suffix('.png')}")
    if args.write:
        print(f"calibration saved: {calibration.save(args.reader)}")


def print_table(rows: dict[str, dict[str, Any]], hedge_below: float) -> None:
    print(
        f"\nheld-out questions; before: the reader's share, hedged below {OLD_HEDGE}; "
        f"after: calibrated, hedged below {hedge_below:.3f}"
    )
    columns = (
        "set",
        "questions",
        "F1",
        "right",
        "mean confidence before -> after",
        "ECE before -> after",
        "answered unhedged before -> after",
        "unhedged right before -> after",
        "right answers hedged before -> after",
    )
    print("| " + " | ".join(columns) + " |\n|" + " --- |" * len(columns))

    def share(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    def change(before: dict[str, Any], after: dict[str, Any], key: str, shown=share) -> str:
        return f"{shown(before[key])} -> {shown(after[key])}"

    for name, row in rows.items():
        before, after = row["before"], row["after"]
        cells = (
            name,
            str(after["questions"]),
            f"{after['f1']:.1f}",
            share(after["share_right"]),
            change(before, after, "mean_confidence", lambda v: f"{v:.2f}"),
            change(before, after, "ece", lambda v: f"{v:.3f}"),
            change(before, after, "answered_unhedged"),
            change(before, after, "unhedged_right"),
            change(before, after, "right_answers_hedged"),
        )
        print("| " + " | ".join(cells) + " |")
    print("\n| set | half | questions | F1 | right source |\n| --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        for half, scores in row["halves"].items():
            print(
                f"| {name} | {half} | {scores['questions']} | {scores['f1']:.1f} | "
                f"{100 * scores['right_source']:.1f}% |"
            )


def plot_reliability(rows: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answerable = [name for name in ANSWERABLE_SETS if name in rows]
    figure, axes = plt.subplots(1, len(answerable), figsize=(5 * len(answerable), 4.5), squeeze=False)
    for axis, name in zip(axes[0], answerable, strict=True):
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        for key, label in (("reliability_before", "reader's share"), ("reliability_after", "calibrated")):
            bins = rows[name][key]
            axis.plot(
                [b["mean_confidence"] for b in bins],
                [b["share_right"] for b in bins],
                marker="o",
                label=label,
            )
        axis.set(
            title=f"{name} (held out)",
            xlabel="confidence",
            ylabel="share of answers right",
            xlim=(0, 1),
            ylim=(0, 1),
        )
        axis.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
