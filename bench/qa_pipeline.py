"""Benchmark of open-domain QA on SQuAD: retrieve from ~20,000 paragraphs, then read; EM/F1 per design.

Each sampled dev question is answered from the whole corpus by
  - the baseline, the original design: unigram TF-IDF with default settings over untitled passages
    (as bench/retrieval.py's baseline), its top-1 passage read by the reader;
  - the project's pipeline: the served hybrid retriever (BM25 + dense flat, linear fusion) and the
    reader over its top k passages, for every k in --depths;
  - the upper bound: the reader on the question's own (gold) paragraph.
The hit rate (gold paragraph among the first k) separates retrieval losses from reading losses.

The reader never abstains here: SQuAD v1.1 questions all have answers, so the best span is taken
even below the reader's calibrated abstention threshold. Its decision is otherwise the Reader's
(Reader.rank over the windows of all k passages, with its relevance priors from the dense
similarities, as in the QA service). The service's first read (a leading passage read alone when
its answer is confident; QA service settings, FIRST_READ_LEAD) is not applied here: it changed
no answer of 1,188 SQuAD dev questions (bench/README.md, "Confidence calibration").
Each window's logits are computed once: the passages ranked (previous k, k] are tokenised and
scored in their own call, so the seconds for k (retrieval + reading the first k passages) are
measured, not estimated; serving reads its k passages in one call, batched a little differently.

    .venv/bin/python bench/qa_pipeline.py \
        --corpus ../shared/data/squad/train-v1.1.json.gz ../shared/data/squad/dev-v1.1.json.gz \
        --questions ../shared/data/squad/dev-v1.1.json.gz --threads 1

The default 200 questions take about 7 minutes on the shared 2-core machine (each reads ~25 windows);
on a machine busy with other work, --threads 1 is faster than 2 (two threads wait on each other).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import faiss  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    cached_embeddings,
    require_files,
    save_plot,
    squad_questions,
    write_report,
)
from retrieval.documents import Passage  # noqa: E402
from retrieval.index.encoder import SentenceEncoder  # noqa: E402
from retrieval.index.ingest import load_passages  # noqa: E402
from retrieval.index.retrievers import (  # noqa: E402
    Bm25Retriever,
    DenseRetriever,
    DenseSettings,
    HybridRetriever,
    Retriever,
    TfidfRetriever,
    TfidfSettings,
    indexed_text,
)
from retrieval.reader.features import QAPair, Window, encode_pairs  # noqa: E402
from retrieval.reader.metrics import ScoredQuestion, squad_scores  # noqa: E402
from retrieval.reader.model import Reader  # noqa: E402

DEFAULT_DEPTHS = "1,3,5,10,20"
BASELINE = "baseline: tfidf-unigram-default top-1"
HYBRID = "hybrid-linear(bm25,dense)"
GOLD = "upper bound: gold paragraph"


@dataclasses.dataclass(frozen=True)
class Reading:
    """The answer found in the first k passages, and the seconds that took, for each k read; and the
    answer for each (k, relevance weight) of a sweep (the same logits, ranked with other priors)."""

    predictions: dict[int, str]
    seconds: dict[int, float]
    swept: dict[tuple[int, float], str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Tally:
    """One design at one depth, summed over the questions asked."""

    scored: list[ScoredQuestion] = dataclasses.field(default_factory=list)
    hits: int = 0
    seconds: float = 0.0

    def add(self, golds: Sequence[str], prediction: str, hit: bool, seconds: float) -> None:
        self.scored.append(ScoredQuestion(golds=tuple(golds), prediction=prediction))
        self.hits += hit
        self.seconds += seconds

    def summary(self, depth: int) -> dict[str, float]:
        scores = squad_scores(self.scored)
        return {
            "k": depth,
            "hit_rate": 100.0 * self.hits / len(self.scored),
            "exact": scores["exact"],
            "f1": scores["f1"],
            "seconds_per_question": self.seconds / len(self.scored),
        }


def parse_depths(text: str) -> tuple[int, ...]:
    """ "1,3,5" -> (1, 3, 5): sorted, distinct, each at least 1."""
    try:
        depths = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"depths must be comma-separated integers, got {text!r}") from None
    if not depths or depths[0] < 1:
        raise argparse.ArgumentTypeError(f"depths must be integers of at least 1, got {text!r}")
    return tuple(depths)


def build_retrievers(
    passages: list[Passage], encoder: SentenceEncoder
) -> tuple[Retriever, Retriever, DenseRetriever]:
    """The baseline (unigram TF-IDF, defaults, no titles), the hybrid, built as bench/retrieval.py does,
    and its dense member (whose similarities the reader's passage priors use, as in the service)."""
    untitled = [dataclasses.replace(p, title="") for p in passages]
    baseline = TfidfRetriever.build(
        untitled, TfidfSettings(ngram_range=(1, 1), sublinear_tf=False, stop_words=None)
    )
    embeddings, _ = cached_embeddings([indexed_text(p) for p in passages], encoder)
    dense = DenseRetriever.from_embeddings(passages, embeddings, encoder, DenseSettings(index_type="flat"))
    hybrid = HybridRetriever([Bm25Retriever.build(passages), dense])  # the served settings
    return baseline, hybrid, dense


def encode_band(
    reader: Reader, question: str, ranked: Sequence[Passage], indices: Sequence[int]
) -> list[Window]:
    """Windows of the passages ranked[i] for i in `indices`, numbered as pairs of the whole ranking."""
    windows = encode_pairs(
        reader.tokenizer,
        [QAPair(question=question, context=ranked[i].text) for i in indices],
        reader.config.features,
    )
    return [dataclasses.replace(w, pair_index=indices[w.pair_index]) for w in windows]


def read_at_depths(
    reader: Reader,
    question: str,
    ranked: Sequence[Passage],
    depths: Sequence[int],
    relevances: Sequence[float] | None = None,
    sweep: Sequence[float] = (),
) -> Reading:
    """The reader's best span (never abstaining) in the first k passages of `ranked`, for each k in depths
    (and for each relevance weight in `sweep`). Of the first k it reads those the service would
    (Reader.passages_to_read), each passage read once however many depths include it."""
    contexts = [passage.text for passage in ranked]
    # One prior per passage, relative to the best of all `ranked`: a constant shift per question,
    # so the best span among the first k is the one the service picks reading only those k.
    priors = reader.passage_priors(len(ranked), relevances)
    read: dict[int, list[tuple[Window, tuple[np.ndarray, np.ndarray]]]] = {}  # passage -> windows, logits
    scoring_seconds = 0.0
    predictions, seconds, swept = {}, {}, {}
    for depth in depths:
        started = time.perf_counter()
        kept = reader.passages_to_read(depth, None if relevances is None else relevances[:depth])
        band = encode_band(reader, question, ranked, [i for i in kept if i not in read])
        for window, logit in zip(band, reader.window_logits(band) if band else [], strict=True):
            read.setdefault(window.pair_index, []).append((window, logit))
        windows = [window for i in kept for window, _ in read.get(i, [])]
        logits = [logit for i in kept for _, logit in read.get(i, [])]
        ranking_started = time.perf_counter()
        scoring_seconds += ranking_started - started
        prediction = reader.rank(windows, logits, contexts, priors, top_n=1)
        best = prediction.best(abstain_threshold=0.0)  # every SQuAD v1.1 question has an answer
        predictions[depth] = best.text if best is not None else ""
        seconds[depth] = scoring_seconds + time.perf_counter() - ranking_started
        for weight in sweep:
            other = reader.rank(
                windows, logits, contexts, reader.passage_priors(len(ranked), relevances, weight), 1
            )
            swept[depth, weight] = other.candidates[0].text if other.candidates else ""
    return Reading(predictions, seconds, swept)


def timed_search(retriever: Retriever, question: str, k: int) -> tuple[list[Passage], float]:
    started = time.perf_counter()
    ranked = [scored.passage for scored in retriever.search(question, k)]
    return ranked, time.perf_counter() - started


def run(
    questions: Sequence[tuple[str, str, list[str]]],
    passages_by_id: dict[str, Passage],
    baseline: Retriever,
    hybrid: Retriever,
    dense: DenseRetriever,
    reader: Reader,
    depths: Sequence[int],
    sweep: Sequence[float] = (),
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Answer every question with each design: the rows of the table, keyed by name, and the hybrid's
    F1 for each relevance weight of `sweep` (keyed by weight, then k)."""
    tallies = {(BASELINE, 1): Tally(), **{(HYBRID, k): Tally() for k in depths}, (GOLD, 1): Tally()}
    swept = {(k, weight): Tally() for k in depths for weight in sweep}
    for question, gold_id, golds in tqdm(questions, desc="questions", unit="q"):
        ranked, search_seconds = timed_search(baseline, question, 1)
        reading = read_at_depths(reader, question, ranked, (1,))
        hit = gold_id in (p.passage_id for p in ranked)
        tallies[BASELINE, 1].add(golds, reading.predictions[1], hit, search_seconds + reading.seconds[1])

        ranked, search_seconds = timed_search(hybrid, question, max(depths))
        reading = read_at_depths(reader, question, ranked, depths, dense.scores(question, ranked), sweep)
        ids = [p.passage_id for p in ranked]
        for k in depths:
            tallies[HYBRID, k].add(
                golds, reading.predictions[k], gold_id in ids[:k], search_seconds + reading.seconds[k]
            )
        for (k, weight), tally in swept.items():
            tally.add(golds, reading.swept[k, weight], gold_id in ids[:k], 0.0)

        reading = read_at_depths(reader, question, [passages_by_id[gold_id]], (1,))
        tallies[GOLD, 1].add(golds, reading.predictions[1], True, reading.seconds[1])
    rows = {
        (name if name != HYBRID else f"{HYBRID} top-{k}"): tally.summary(k)
        for (name, k), tally in tallies.items()
    }
    sweep_f1: dict[str, dict[str, float]] = {}
    for (k, weight), tally in swept.items():
        sweep_f1.setdefault(f"{weight:g}", {})[str(k)] = tally.summary(k)["f1"]
    return rows, sweep_f1


def print_sweep(sweep_f1: dict[str, dict[str, float]], served: float) -> None:
    """F1 of the hybrid pipeline by relevance weight (rows) and passages read (columns)."""
    depths = list(next(iter(sweep_f1.values())))
    print(f"\nF1 by relevance weight (logits per cosine unit; served: {served:g}) and passages read k")
    print(f"{'weight':>8} " + " ".join(f"{'k=' + k:>7}" for k in depths))
    for weight, by_k in sweep_f1.items():
        print(f"{weight:>8} " + " ".join(f"{by_k[k]:7.1f}" for k in depths))


def print_table(rows: dict[str, dict[str, float]]) -> None:
    base = rows[BASELINE]
    print(
        f"{'design':38} {'k':>3} {'hit@k':>6} {'EM':>6} {'F1':>6} {'s/q':>7}   "
        f"{'EM/base':>7} {'F1/base':>7} {'s/base':>7}"
    )
    for name, row in rows.items():
        print(
            f"{name:38} {row['k']:3d} {row['hit_rate']:6.1f} {row['exact']:6.1f} {row['f1']:6.1f} "
            f"{row['seconds_per_question']:7.3f}   {ratio(row['exact'], base['exact']):>7} "
            f"{ratio(row['f1'], base['f1']):>7} "
            f"{ratio(row['seconds_per_question'], base['seconds_per_question']):>7}"
        )


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}" if base else "-"


def plot(rows: dict[str, dict[str, float]], path: Path) -> None:
    """F1, EM and hit rate of the hybrid pipeline against k, with the baseline and the upper bound."""
    hybrid_rows = [row for name, row in rows.items() if name.startswith(HYBRID)]
    depths = [row["k"] for row in hybrid_rows]
    figure, axes = plt.subplots(figsize=(11, 5))
    for key, label, color in (
        ("hit_rate", "retrieval hit rate (gold paragraph in top k)", "tab:gray"),
        ("f1", "F1, hybrid + reader", "tab:blue"),
        ("exact", "EM, hybrid + reader", "tab:orange"),
    ):
        axes.plot(depths, [row[key] for row in hybrid_rows], marker="o", color=color, label=label)
    for name, style in ((BASELINE, ":"), (GOLD, "--")):
        for key, color in (("f1", "tab:blue"), ("exact", "tab:orange")):
            metric = "F1" if key == "f1" else "EM"
            axes.axhline(rows[name][key], linestyle=style, color=color, alpha=0.7, label=f"{metric}, {name}")
    axes.set_xscale("log")
    axes.set_xticks(depths, [str(depth) for depth in depths])
    axes.minorticks_off()
    axes.set_xlabel("passages read (k)")
    axes.set_ylabel("percent")
    axes.set_ylim(0, 102)
    axes.set_title("Open-domain QA on SQuAD dev: hybrid retriever + reader vs k")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes.grid(alpha=0.3)
    save_plot(figure, path)


def directory_digest(directory: Path) -> str:
    """SHA-256 over the names and bytes of the files in a model directory: which weights were measured."""
    digest = hashlib.sha256()
    for file in sorted(path for path in directory.iterdir() if path.is_file()):
        digest.update(file.name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", nargs="+", required=True, type=Path, help="SQuAD files whose paragraphs are indexed"
    )
    parser.add_argument(
        "--questions", required=True, type=Path, help="SQuAD v1.1 file whose questions are asked"
    )
    parser.add_argument(
        "--limit", type=int, default=200, help="ask a fixed random sample of this many questions"
    )
    parser.add_argument(
        "--depths", type=parse_depths, default=DEFAULT_DEPTHS, help="passages read by the hybrid pipeline"
    )
    parser.add_argument("--reader", type=Path, default=Path("models/reader"), help="reader model directory")
    parser.add_argument(
        "--relevance-weight",
        type=float,
        default=None,
        help="override the reader's relevance_weight (logits per unit of cosine; 0 = passages as equals)",
    )
    parser.add_argument(
        "--sweep-relevance-weights",
        type=lambda text: tuple(float(part) for part in text.split(",") if part.strip()),
        default=(0.0, 15.0, 30.0, 60.0, 120.0),
        help="also rank the same logits with these relevance weights (comma-separated; '' for none)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "qa_pipeline.json", help="JSON results")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "qa_pipeline.png", help="PNG plot")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")

    require_files([*args.corpus, args.questions])
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    try:
        reader = Reader.load(args.reader, threads=args.threads)
    except (FileNotFoundError, OSError) as error:
        raise SystemExit(f"cannot load the reader: {error}") from None
    if args.relevance_weight is not None:
        config = dataclasses.replace(reader.config, relevance_weight=args.relevance_weight)
        reader = reader.with_config(config)
    passages = load_passages(args.corpus)
    questions = squad_questions(args.questions, passages, args.limit)
    print(f"{len(passages)} passages, {len(questions)} questions, depths {args.depths}", flush=True)
    baseline, hybrid, dense = build_retrievers(passages, SentenceEncoder(threads=args.threads))
    passages_by_id = {passage.passage_id: passage for passage in passages}

    started = time.perf_counter()
    rows, sweep_f1 = run(
        questions, passages_by_id, baseline, hybrid, dense, reader, args.depths, args.sweep_relevance_weights
    )
    print(f"answered in {time.perf_counter() - started:.0f} s")
    print_table(rows)
    if sweep_f1:
        print_sweep(sweep_f1, reader.config.relevance_weight)
    plot(rows, args.plot)
    write_report(
        args.out,
        {
            "corpus": [path.name for path in args.corpus],
            "questions": args.questions.name,
            "passages": len(passages),
            "question_count": len(questions),
            "limit": args.limit,
            "depths": list(args.depths),
            "threads": args.threads,
            "reader": {
                "directory": str(args.reader),
                "sha256": directory_digest(args.reader),
                "config": dataclasses.asdict(reader.config),
                "abstains": False,
            },
            "baseline": BASELINE,
            "seconds": "mean per question: retrieval + tokenising, scoring and ranking the k passages read",
            "results": rows,
            "f1_by_relevance_weight_and_k": sweep_f1,
        },
    )


if __name__ == "__main__":
    main()
