"""Benchmark of the QA service's off-topic cut: does best-passage relevance tell astrology from the rest?

Three question sets meet the knowledge-base index and the reader:
  - on-topic: every question of tests/data/knowledge_qa.json (answerable from data/knowledge/);
  - off-topic: a fixed-seed sample of SQuAD dev questions (none is about astrology);
  - hand-written off-topic: tests/data/knowledge_unanswerable.json.
Two signals separate them:
  - the project's: relevance, the dense cosine similarity of the question and its best passage,
    which the service compares with DEFAULT_MIN_RELEVANCE before asking the reader;
  - the baseline, what the reader alone offers: the confidence of its best span over the top hybrid
    passages (only the first --reader-limit off-topic questions are read, to bound the time).
For each: ROC AUC of on-topic against off-topic, and at the cut that rejects --percentile % of the
off-topic questions, the share of on-topic questions kept and of each off-topic set rejected.

    .venv/bin/python bench/abstention.py --off-topic ../shared/data/squad/dev-v1.1.json.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import faiss  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.common import RESULTS_DIR, require_files, save_plot, squad_question_texts, write_report  # noqa: E402
from retrieval.index.encoder import SentenceEncoder  # noqa: E402
from retrieval.index.retrievers import DenseRetriever  # noqa: E402
from retrieval.index.store import IndexStoreError, RetrievalIndex, build_index, load_index  # noqa: E402
from retrieval.reader.model import Reader  # noqa: E402
from retrieval.service.settings import DEFAULT_MIN_RELEVANCE, DEFAULT_TOP_K  # noqa: E402
from retrieval.squad import SquadFormatError  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SETS = ("on_topic", "off_topic", "hand_written")
SET_LABELS = {
    "on_topic": "on-topic (knowledge_qa.json)",
    "off_topic": "off-topic (SQuAD dev sample)",
    "hand_written": "hand-written off-topic",
}
BASELINE = "reader confidence @ percentile"
SERVICE_CHECKS = 5  # questions per set whose batched relevance is compared with the service's
ALLOWED_DRIFT = 0.02  # how far the measured cut may move from DEFAULT_MIN_RELEVANCE before it is flagged


@dataclass(frozen=True)
class Cut:
    """One threshold on one signal and what it does to each question set."""

    signal: str
    threshold: float
    auc: float
    on_topic_kept: float
    off_topic_rejected: float
    hand_written_rejected: float
    off_topic_count: int


def hand_written_questions(path: Path) -> list[str]:
    """The JSON list of questions; anything else stops with a message naming the file."""
    try:
        questions = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SystemExit(f"{path}: unreadable ({error})") from error
    if not isinstance(questions, list) or not all(isinstance(q, str) and q.strip() for q in questions):
        raise SystemExit(f"{path}: expected a JSON list of non-empty question strings")
    return questions


def relevances(index: RetrievalIndex, questions: Sequence[str]) -> np.ndarray:
    """The service's relevance of each question: the cosine similarity of its best passage.

    The questions are encoded in batches (the service encodes one at a time, ~10x slower here);
    the first few are checked against the service's own call so the two cannot drift apart.
    """
    dense = index.retriever("dense")
    if not isinstance(dense, DenseRetriever):
        raise SystemExit(f"{index.directory}: its dense retriever is a {type(dense).__name__}")
    scores = dense.index.search(index.encoder.encode(questions, show_progress=True), 1)[0][:, 0]
    for question, score in zip(questions[:SERVICE_CHECKS], scores, strict=False):
        served = index.search(question, 1, retriever="dense")[0].score
        if abs(served - score) > 1e-4:
            raise SystemExit(f"batched relevance {score:.5f} != the service's {served:.5f} for {question!r}")
    return scores


def confidences(
    index: RetrievalIndex, reader: Reader, questions: Sequence[str], top_k: int, label: str
) -> np.ndarray:
    """The reader's best-span confidence over the question's top hybrid passages, as the service reads."""
    return np.array(
        [
            reader.answer(q, [scored.passage for scored in index.search(q, top_k)]).confidence
            for q in tqdm(questions, desc=f"reader {label}")
        ]
    )


def evaluate_cut(signal: str, scores: dict[str, np.ndarray], threshold: float) -> Cut:
    """Kept = score at or above the threshold, as the service keeps a question with relevance >= its cut."""
    on, off = scores["on_topic"], scores["off_topic"]
    labels = np.concatenate([np.ones(len(on)), np.zeros(len(off))])
    return Cut(
        signal=signal,
        threshold=float(threshold),
        auc=float(roc_auc_score(labels, np.concatenate([on, off]))),
        on_topic_kept=float(np.mean(on >= threshold)),
        off_topic_rejected=float(np.mean(off < threshold)),
        hand_written_rejected=float(np.mean(scores["hand_written"] < threshold)),
        off_topic_count=len(off),
    )


def ratio(value: float, base: float) -> str:
    return f"{value / base:6.2f}" if base else f"{'-':>6}"


def print_table(cuts: Sequence[Cut]) -> None:
    base = next(cut for cut in cuts if cut.signal == BASELINE)
    print(
        f"\n{'signal @ cut':36} {'cut':>6} {'n_off':>5} {'AUC':>6} {'kept_on':>8} {'rej_off':>8} "
        f"{'rej_hand':>8}   AUC/base kept/base rej_off/base"
    )
    for cut in cuts:
        print(
            f"{cut.signal:36} {cut.threshold:6.3f} {cut.off_topic_count:5d} {cut.auc:6.3f} "
            f"{cut.on_topic_kept:8.1%} {cut.off_topic_rejected:8.1%} {cut.hand_written_rejected:8.1%}   "
            f"{ratio(cut.auc, base.auc):>8} {ratio(cut.on_topic_kept, base.on_topic_kept):>9} "
            f"{ratio(cut.off_topic_rejected, base.off_topic_rejected):>12}"
        )


def plot(
    path: Path,
    panels: Sequence[tuple[str, dict[str, np.ndarray], Sequence[tuple[str, float, str]]]],
) -> None:
    """One panel per signal: on/off-topic histograms (as densities), the hand-written set as a rug, cuts."""
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5))
    colours = {"on_topic": "tab:blue", "off_topic": "tab:orange", "hand_written": "tab:red"}
    for axis, (title, scores, cuts) in zip(np.atleast_1d(axes), panels, strict=True):
        everything = np.concatenate(list(scores.values()))
        bins = np.linspace(everything.min(), everything.max(), 41)
        for name in ("on_topic", "off_topic"):
            axis.hist(
                scores[name],
                bins=bins,
                density=True,
                alpha=0.5,
                color=colours[name],
                label=f"{SET_LABELS[name]}, n={len(scores[name])}",
            )
        axis.plot(
            scores["hand_written"],
            np.zeros(len(scores["hand_written"])),
            "|",
            markersize=18,
            markeredgewidth=1.5,
            color=colours["hand_written"],
            label=f"{SET_LABELS['hand_written']}, n={len(scores['hand_written'])}",
        )
        for label, threshold, style in cuts:
            axis.axvline(threshold, color="black", linestyle=style, label=f"{label} = {threshold:.3f}")
        axis.set_title(title)
        axis.set_ylabel("density")
        axis.legend(fontsize=8)
    save_plot(figure, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--off-topic", required=True, type=Path, help="SQuAD file whose questions are the off-topic set"
    )
    parser.add_argument("--off-topic-limit", type=int, default=1000, help="fixed-seed sample of this many")
    parser.add_argument(
        "--reader-limit", type=int, default=200, help="off-topic questions the reader reads (its cost)"
    )
    parser.add_argument(
        "--kb-questions", type=Path, default=REPO_ROOT / "tests/data/knowledge_qa.json", help="on-topic set"
    )
    parser.add_argument(
        "--kb-limit", type=int, default=None, help="only the first N on-topic questions (for a quick try)"
    )
    parser.add_argument(
        "--kb-unanswerable",
        type=Path,
        default=REPO_ROOT / "tests/data/knowledge_unanswerable.json",
        help="JSON list of hand-written off-topic questions",
    )
    parser.add_argument("--docs", type=Path, default=REPO_ROOT / "data/knowledge", help="knowledge base")
    parser.add_argument(
        "--index",
        type=Path,
        default=None,
        help="build (or reuse, if up to date) the index here; default: a temp dir",
    )
    parser.add_argument(
        "--reader", type=Path, default=REPO_ROOT / "models/reader", help="reader model directory"
    )
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="hybrid passages the reader reads")
    parser.add_argument(
        "--percentile", type=float, default=95.0, help="cut = this percentile of off-topic scores"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "abstention.json", help="JSON results")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "abstention.png", help="PNG histograms")
    args = parser.parse_args(argv)

    for name in ("off_topic_limit", "reader_limit", "top_k", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.kb_limit is not None and args.kb_limit < 1:
        parser.error("--kb-limit must be at least 1")
    if not 0 < args.percentile < 100:
        parser.error("--percentile must be between 0 and 100")
    require_files([args.off_topic, args.kb_questions, args.kb_unanswerable])
    if not args.docs.exists():
        raise SystemExit(f"missing knowledge base: {args.docs}")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()

    try:
        on_topic = squad_question_texts(args.kb_questions)[: args.kb_limit]
        off_topic = squad_question_texts(args.off_topic)
    except SquadFormatError as error:
        raise SystemExit(str(error)) from error
    off_topic = random.Random(0).sample(off_topic, min(args.off_topic_limit, len(off_topic)))
    questions = {
        "on_topic": on_topic,
        "off_topic": off_topic,
        "hand_written": hand_written_questions(args.kb_unanswerable),
    }
    read = {**questions, "off_topic": off_topic[: args.reader_limit]}  # the random sample's first N
    print(", ".join(f"{len(questions[s])} {s} ({len(read[s])} read)" for s in SETS), flush=True)

    encoder = SentenceEncoder(threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="abstention-index-") as scratch:
        index_dir = args.index or Path(scratch) / "index"
        try:
            build = build_index([args.docs], index_dir, encoder=encoder)
            index = load_index(index_dir, warm=True, encoder=encoder)
            reader = Reader.load(args.reader, threads=args.threads)
        except (IndexStoreError, OSError, ValueError) as error:
            raise SystemExit(f"cannot load the index or the reader: {error}") from error
        print(f"index {index_dir}: {build.passage_count} passages ({'built' if build.built else 'reused'})")
        relevance = {s: relevances(index, questions[s]) for s in SETS}
        confidence = {s: confidences(index, reader, read[s], args.top_k, s) for s in SETS}

    relevance_cut = float(np.percentile(relevance["off_topic"], args.percentile))
    confidence_cut = float(np.percentile(confidence["off_topic"], args.percentile))
    calibrated = reader.config.abstain_threshold
    relevance_on_read = {**relevance, "off_topic": relevance["off_topic"][: args.reader_limit]}
    cuts = [
        evaluate_cut(BASELINE, confidence, confidence_cut),
        evaluate_cut("reader confidence @ its abstain_thr", confidence, calibrated),
        evaluate_cut("relevance @ percentile", relevance, relevance_cut),
        evaluate_cut("relevance @ percentile, read subset", relevance_on_read, relevance_cut),
        evaluate_cut("relevance @ DEFAULT_MIN_RELEVANCE", relevance, DEFAULT_MIN_RELEVANCE),
    ]
    print_table(cuts)
    drift = relevance_cut - DEFAULT_MIN_RELEVANCE
    print(
        f"\ncut = p{args.percentile:g} of off-topic scores; kept = score >= cut. "
        f"DEFAULT_MIN_RELEVANCE = {DEFAULT_MIN_RELEVANCE:.3f}, measured p{args.percentile:g} relevance = "
        f"{relevance_cut:.3f} ({drift:+.3f})"
    )
    if abs(drift) > ALLOWED_DRIFT:
        print(
            f"WARNING: the measured cut differs from DEFAULT_MIN_RELEVANCE by more than {ALLOWED_DRIFT}; "
            "revisit the default in retrieval/service/settings.py"
        )
    seconds = time.perf_counter() - started
    print(f"wall time {seconds:.0f} s")

    plot(
        args.plot,
        [
            (
                "relevance: best-passage dense cosine",
                relevance,
                [
                    (f"p{args.percentile:g} off-topic", relevance_cut, "-"),
                    ("DEFAULT_MIN_RELEVANCE", DEFAULT_MIN_RELEVANCE, "--"),
                ],
            ),
            (
                f"baseline: reader best-span confidence (top-{args.top_k} hybrid)",
                confidence,
                [
                    (f"p{args.percentile:g} off-topic", confidence_cut, "-"),
                    ("reader abstain_threshold", calibrated, "--"),
                ],
            ),
        ],
    )
    report: dict[str, Any] = {
        "off_topic_file": args.off_topic.name,
        "question_counts": {s: len(questions[s]) for s in SETS},
        "read_counts": {s: len(read[s]) for s in SETS},
        "reader": str(args.reader),
        "passages": build.passage_count,
        "top_k": args.top_k,
        "percentile": args.percentile,
        "threads": args.threads,
        "baseline": BASELINE,
        "default_min_relevance": DEFAULT_MIN_RELEVANCE,
        "measured_relevance_cut": relevance_cut,
        "default_within_tolerance": abs(drift) <= ALLOWED_DRIFT,
        "reader_abstain_threshold": calibrated,
        "cuts": [asdict(cut) for cut in cuts],
        "distributions": {
            signal: {s: {q: float(np.percentile(values[s], q)) for q in (5, 25, 50, 75, 95)} for s in SETS}
            for signal, values in (("relevance", relevance), ("confidence", confidence))
        },
        "wall_seconds": seconds,
    }
    write_report(args.out, report)


if __name__ == "__main__":
    main()
