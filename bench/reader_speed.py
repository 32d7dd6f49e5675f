"""Reader speed on CPU: questions per second, latency and SQuAD EM/F1 of each way to run the reader.

Each sampled SQuAD question is asked of its own (gold) paragraph, one question at a time as the
QA service asks, so the numbers are the reader's alone (no retrieval). The baseline is the
straightforward way with transformers: the same weights in fp32 PyTorch, the tokenizer's overflow
windows run one at a time, and the answer picked as Hugging Face's question-answering example
does. The other rows are the project's Reader on its backends (PyTorch fp32 and bf16 autocast,
ONNX Runtime fp32 and int8, exported by retrieval.training.export and cached under /tmp keyed by
the reader's files). Every row scores its best span: SQuAD v1.1 questions all have answers, so
abstention is switched off.

    /tmp/plan/quiet.sh .venv/bin/python bench/reader_speed.py \
        --questions ../shared/data/squad/dev-v1.1.json.gz --reader models/reader
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoModelForQuestionAnswering, AutoTokenizer  # noqa: E402

from bench.common import RESULTS_DIR, latency_summary, require_files, save_plot, write_report  # noqa: E402
from retrieval.documents import Passage  # noqa: E402
from retrieval.reader.backends import EXPORTED_FILES  # noqa: E402
from retrieval.reader.features import FeatureConfig  # noqa: E402
from retrieval.reader.metrics import ScoredQuestion, squad_scores  # noqa: E402
from retrieval.reader.model import Reader, ReaderConfig  # noqa: E402
from retrieval.squad import SquadFormatError, read_squad  # noqa: E402
from retrieval.training.export import export_reader  # noqa: E402

BASELINE = "baseline: transformers fp32, window by window"
ONNX_FP32 = "project Reader, onnx fp32"
ONNX_INT8 = "project Reader, onnx int8"
EXPORT_CACHE = Path("/tmp/reader-speed-export")
EXPORT_STAMP = "reader-speed.sha256"  # digest of the reader files an export directory was made from
INT8_F1_BUDGET = 1.0  # the limit: quantisation may cost at most this many F1 points
HF_N_BEST_SIZE = 20  # Hugging Face's question-answering example defaults
HF_MAX_ANSWER_LENGTH = 30

AnswerFunction = Callable[[str, str], str]  # (question, paragraph) -> answer text


@dataclasses.dataclass(frozen=True)
class GoldQuestion:
    question: str
    context: str
    golds: tuple[str, ...]


def sample_questions(path: Path, limit: int | None) -> list[GoldQuestion]:
    """Every question with its own paragraph; a fixed-seed sample of `limit` if given."""
    rows = [
        GoldQuestion(q.question, paragraph.context, tuple(a.text for a in q.answers))
        for paragraph in read_squad(path)
        for q in paragraph.questions
    ]
    return random.Random(0).sample(rows, limit) if limit and limit < len(rows) else rows


def hf_example_best_span(
    windows: Sequence[tuple[np.ndarray, np.ndarray, list[tuple[int, int] | None]]], context: str
) -> str:
    """The answer postprocess_qa_predictions (examples/pytorch/question-answering/utils_qa.py) gives
    on SQuAD v1: over all windows, the n_best_size top start and end logits form spans that lie in
    the paragraph, end after start, and are at most max_answer_length tokens; the highest
    start + end logit wins. `windows` holds (start logits, end logits, character offsets per
    token, None outside the paragraph). The example answers "empty" when no span is valid; "" here.
    """
    best: tuple[float, int, int] | None = None
    for start_logits, end_logits, offsets in windows:
        top_starts = np.argsort(start_logits)[::-1][:HF_N_BEST_SIZE]
        top_ends = np.argsort(end_logits)[::-1][:HF_N_BEST_SIZE]
        for start in top_starts:
            for end in top_ends:
                if offsets[start] is None or offsets[end] is None:
                    continue
                if end < start or end - start + 1 > HF_MAX_ANSWER_LENGTH:
                    continue
                score = float(start_logits[start] + end_logits[end])
                if best is None or score > best[0]:  # strict: the first of equal scores wins, as in the sort
                    best = (score, offsets[start][0], offsets[end][1])
    return "" if best is None else context[best[1] : best[2]]


class StraightforwardReader:
    """The baseline: what one writes with transformers alone, no batching and no export."""

    def __init__(self, reader_dir: Path, features: FeatureConfig) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(reader_dir)
        self.model = AutoModelForQuestionAnswering.from_pretrained(reader_dir, dtype=torch.float32).eval()
        self.features = features

    @torch.inference_mode()
    def answer(self, question: str, context: str) -> str:
        encoded = self.tokenizer(
            question.lstrip(),  # as the example: leading blanks would only waste window room
            context,
            truncation="only_second",
            max_length=self.features.max_length,
            stride=self.features.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        windows = []
        for row, input_ids in enumerate(encoded["input_ids"]):
            output = self.model(
                input_ids=torch.tensor([input_ids]),
                token_type_ids=torch.tensor([encoded["token_type_ids"][row]]),
                attention_mask=torch.tensor([encoded["attention_mask"][row]]),
            )
            spans = zip(encoded["offset_mapping"][row], encoded.sequence_ids(row), strict=True)
            offsets = [tuple(span) if sequence_id == 1 else None for span, sequence_id in spans]
            windows.append((output.start_logits[0].numpy(), output.end_logits[0].numpy(), offsets))
        return hf_example_best_span(windows, context)


def project_reader(model_dir: Path, backend: str, threads: int) -> AnswerFunction:
    """The project's Reader on one backend, never abstaining, asked one question with one passage."""
    loaded = Reader.load(model_dir, threads=threads, backend=backend)
    reader = loaded.with_config(dataclasses.replace(loaded.config, abstain_threshold=0.0))

    def answer(question: str, context: str) -> str:
        return reader.answer(question, [Passage("gold", "", context)], top_n=1).text

    return answer


def files_digest(folder: Path) -> str:
    """SHA-256 over the names and contents of a folder's files: changes when the reader is replaced."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def exported(
    reader_dir: Path, digest: str, export_dir: Path | None, threads: int
) -> tuple[Path, float | None]:
    """An export directory of the reader whose files have `digest`, and the export's seconds (None when
    an earlier export of the same files was reused)."""
    out = export_dir or EXPORT_CACHE / digest[:16]
    stamp = out / EXPORT_STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return out, None
    print(f"exporting {reader_dir} to {out} ...", flush=True)
    started = time.perf_counter()
    export_reader(reader_dir, out, threads)
    seconds = time.perf_counter() - started
    stamp.write_text(digest + "\n")
    return out, seconds


def measure(
    variants: dict[str, AnswerFunction], questions: Sequence[GoldQuestion], warmup: int, block: int
) -> tuple[dict[str, dict[str, float]], dict[str, list[str]]]:
    """Speed and EM/F1 per variant; each answer is timed alone after untimed warm-up questions.

    Each variant answers a block of questions in a row, as a service running one backend would;
    the variants take turns block by block, so a burst of load from other work on a shared machine
    is spread over all of them. Each block starts with one untimed answer: ONNX Runtime's and
    OpenMP's threads keep spinning briefly after a run and would slow the next variant's first one.
    """
    for answer in variants.values():
        for question in questions[:warmup]:
            answer(question.question, question.context)
    latencies: dict[str, list[float]] = {name: [] for name in variants}
    predictions: dict[str, list[str]] = {name: [] for name in variants}
    with tqdm(total=len(questions) * len(variants), desc="answers") as progress:
        for block_start in range(0, len(questions), block):
            chunk = questions[block_start : block_start + block]
            for name, answer in variants.items():
                answer(chunk[0].question, chunk[0].context)
                for question in chunk:
                    started = time.perf_counter()
                    predictions[name].append(answer(question.question, question.context))
                    latencies[name].append(time.perf_counter() - started)
                progress.update(len(chunk))
    rows = {}
    for name, seconds in latencies.items():
        scored = [ScoredQuestion(q.golds, p) for q, p in zip(questions, predictions[name], strict=True)]
        scores = squad_scores(scored)
        rows[name] = {
            "questions_per_second": len(questions) / sum(seconds),
            **latency_summary(seconds),
            "exact": scores["exact"],
            "f1": scores["f1"],
        }
    return rows, predictions


def same_rate(left: Sequence[str], right: Sequence[str]) -> float:
    return sum(a == b for a, b in zip(left, right, strict=True)) / len(left)


def int8_verdict(rows: dict[str, dict[str, Any]], predictions: dict[str, list[str]]) -> dict[str, Any]:
    """Does int8 quantisation cost more F1 than the issue allows, against ONNX fp32 on the same questions?"""
    loss = rows[ONNX_FP32]["f1"] - rows[ONNX_INT8]["f1"]
    return {
        "f1_loss_points": loss,
        "budget_points": INT8_F1_BUDGET,
        "loses_more_than_budget": loss > INT8_F1_BUDGET,
        "same_answer_rate": same_rate(predictions[ONNX_INT8], predictions[ONNX_FP32]),
    }


def print_table(rows: dict[str, dict[str, Any]], verdict: dict[str, Any]) -> None:
    print(
        f"{'variant':46} {'q/s':>7} {'p50ms':>7} {'p95ms':>7} {'EM':>6} {'F1':>6}   "
        f"{'speedup':>7} {'dF1':>6} {'same':>6}"
    )
    for name, row in rows.items():
        print(
            f"{name:46} {row['questions_per_second']:7.1f} {row['p50_ms']:7.1f} {row['p95_ms']:7.1f} "
            f"{row['exact']:6.1f} {row['f1']:6.1f}   {row['speedup_vs_baseline']:7.2f} "
            f"{row['f1_diff_vs_baseline']:+6.2f} {row['same_answer_rate_vs_baseline']:6.1%}"
        )
    status = "LOSES MORE than" if verdict["loses_more_than_budget"] else "within"
    print(
        f"int8 vs ONNX fp32: F1 {-verdict['f1_loss_points']:+.2f} points, {status} the "
        f"{verdict['budget_points']:g}-point budget; same answer on {verdict['same_answer_rate']:.1%}"
    )


def plot(rows: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    names = list(rows)
    speeds = [rows[name]["questions_per_second"] for name in names]
    figure, axes = plt.subplots(figsize=(8, 3.6))
    bars = axes.barh(names[::-1], speeds[::-1], color=["#888888", *["#3b7dd8"] * (len(names) - 1)][::-1])
    for bar, name in zip(bars, names[::-1], strict=True):
        axes.annotate(
            f"F1 {rows[name]['f1']:.1f}  ({rows[name]['speedup_vs_baseline']:.2f}x)",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    axes.set_xlabel("questions per second (one at a time, gold paragraph)")
    axes.set_xlim(0, max(speeds) * 1.35)
    axes.set_title(title, fontsize=10)
    save_plot(figure, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", required=True, type=Path, help="SQuAD file whose questions are asked")
    parser.add_argument("--reader", type=Path, default=Path("models/reader"), help="reader model directory")
    parser.add_argument("--limit", type=int, default=200, help="fixed random sample of this many questions")
    parser.add_argument("--warmup", type=int, default=5, help="untimed questions first, per variant")
    parser.add_argument(
        "--block", type=int, default=25, help="questions each variant answers in a row before the next's turn"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads")
    parser.add_argument(
        "--export-dir", type=Path, default=None, help=f"export here (default: a cache under {EXPORT_CACHE})"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "reader_speed.json", help="JSON results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if min(args.limit, args.block, args.threads) < 1 or args.warmup < 0:
        parser.error("--limit, --block and --threads must be at least 1, --warmup at least 0")
    require_files([args.questions])
    if not (args.reader / "config.json").is_file():
        raise SystemExit(f"{args.reader} is not a reader model directory (no config.json)")

    torch.set_num_threads(args.threads)
    try:
        questions = sample_questions(args.questions, args.limit)
    except SquadFormatError as error:
        raise SystemExit(str(error)) from None
    if not questions:
        raise SystemExit(f"{args.questions} has no questions")
    digest = files_digest(args.reader)
    export_dir, export_seconds = exported(args.reader, digest, args.export_dir, args.threads)
    features = ReaderConfig.load(args.reader).features
    variants = {
        BASELINE: StraightforwardReader(args.reader, features).answer,
        "project Reader, torch fp32": project_reader(args.reader, "torch", args.threads),
        # the QA service's default where the CPU computes bf16 natively (QA_READER_BACKEND=auto)
        "project Reader, torch bf16 autocast": project_reader(args.reader, "torch-bf16", args.threads),
        ONNX_FP32: project_reader(export_dir, "onnx", args.threads),
        ONNX_INT8: project_reader(export_dir, "onnx-int8", args.threads),
    }
    print(f"{len(questions)} questions, {args.threads} threads, reader {args.reader}", flush=True)
    load_before = os.getloadavg()[0]
    rows, predictions = measure(variants, questions, args.warmup, args.block)
    base = rows[BASELINE]
    for name, row in rows.items():
        row["speedup_vs_baseline"] = row["questions_per_second"] / base["questions_per_second"]
        row["f1_diff_vs_baseline"] = row["f1"] - base["f1"]
        row["same_answer_rate_vs_baseline"] = same_rate(predictions[name], predictions[BASELINE])
    verdict = int8_verdict(rows, predictions)
    print_table(rows, verdict)
    report = {
        "questions": args.questions.name,
        "question_count": len(questions),
        "limit": args.limit,
        "warmup": args.warmup,
        "block": args.block,
        "threads": args.threads,
        "reader": str(args.reader),
        "reader_files_sha256": digest,
        "export_dir": str(export_dir),
        "export_seconds": export_seconds,  # null: an export of the same reader files was reused
        "exported_files": EXPORTED_FILES,
        "features": dataclasses.asdict(features),
        "scoring": "best span of every variant (abstention off); SQuAD v1.1 official EM/F1 in percent",
        "baseline": BASELINE,
        "int8_vs_onnx_fp32": verdict,
        # Other work on a shared machine slows every variant; the 1-minute load average tells how busy it was.
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "wall_seconds": time.perf_counter() - started,
        "results": rows,
    }
    write_report(args.out, report)
    title = f"Reader on CPU, {args.threads} threads, {len(questions)} SQuAD dev questions"
    plot(rows, args.out.with_suffix(".png"), title)


if __name__ == "__main__":
    main()
