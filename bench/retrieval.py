"""Benchmark of the retrievers on SQuAD: does each question find its own paragraph?

Not a test: it encodes ~20,000 paragraphs (many minutes on 2 cores). Embeddings
are cached under /tmp (keyed by model and texts), never in the repository; a
dense index's build time is the encoding time measured when the cache was
filled plus the FAISS build.

    .venv/bin/python bench/retrieval.py \
        --corpus ../shared/data/squad/train-v1.1.json.gz ../shared/data/squad/dev-v1.1.json.gz \
        --questions ../shared/data/squad/dev-v1.1.json.gz \
        --fit-questions ../shared/data/squad/train-v1.1.json.gz --out bench/results/retrieval.json

With --fit-questions, the weights of the linear hybrid are fitted in the same run on a sample
of those questions (train, never the asked ones); without, the served defaults are used.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import cached_embeddings, require_files, squad_questions, write_report  # noqa: E402
from retrieval.documents import Passage  # noqa: E402
from retrieval.index.encoder import SentenceEncoder  # noqa: E402
from retrieval.index.fusion import fit_linear_weights  # noqa: E402
from retrieval.index.ingest import load_passages  # noqa: E402
from retrieval.index.retrievers import (  # noqa: E402
    LINEAR_WEIGHTS,
    Bm25Retriever,
    DenseRetriever,
    DenseSettings,
    HybridRetriever,
    HybridSettings,
    Retriever,
    TfidfRetriever,
    TfidfSettings,
    indexed_text,
)

DEPTHS = (1, 5, 20)
BASELINE = "tfidf-unigram-default"


@dataclasses.dataclass
class Built:
    retriever: Retriever
    build_seconds: float
    size_bytes: int | None  # None for a fusion: it stores nothing of its own


def saved_size(retriever: TfidfRetriever | Bm25Retriever | DenseRetriever) -> int:
    """Bytes the retriever's own files take on disk (passages, shared by all, not counted)."""
    with tempfile.TemporaryDirectory() as folder:
        retriever.save(Path(folder))
        return sum(path.stat().st_size for path in Path(folder).iterdir())


def timed_build(build: Callable[[], Retriever], extra_seconds: float = 0.0) -> Built:
    started = time.perf_counter()
    retriever = build()
    seconds = time.perf_counter() - started + extra_seconds
    size = None if isinstance(retriever, HybridRetriever) else saved_size(retriever)
    return Built(retriever, seconds, size)


def build_all(
    passages: list[Passage], encoder: SentenceEncoder, fit_on: Sequence[tuple[str, str]]
) -> tuple[dict[str, Built], tuple[float, ...]]:
    """The retrievers compared, and the linear hybrid's weights (fitted on `fit_on` if any).

    The baseline is the original design: unigram TF-IDF, default settings, no titles.
    """
    untitled = [dataclasses.replace(p, title="") for p in passages]
    embeddings, encode_seconds = cached_embeddings([indexed_text(p) for p in passages], encoder)
    built = {
        BASELINE: timed_build(
            lambda: TfidfRetriever.build(
                untitled, TfidfSettings(ngram_range=(1, 1), sublinear_tf=False, stop_words=None)
            )
        ),
        "tfidf-bigram-sublinear-stop-notitle": timed_build(lambda: TfidfRetriever.build(untitled)),
        "tfidf-bigram-sublinear-stop": timed_build(lambda: TfidfRetriever.build(passages)),
        "bm25": timed_build(lambda: Bm25Retriever.build(passages)),
    }
    onnx_encoder = SentenceEncoder(threads=encoder.threads, query_backend="onnx")  # what the service runs
    dense_designs = {
        "dense-flat": (encoder, DenseSettings(index_type="flat")),
        "dense-hnsw": (encoder, DenseSettings(index_type="hnsw")),
        "dense-flat-onnx-query": (onnx_encoder, DenseSettings(index_type="flat")),
    }
    for name, (query_encoder, settings) in dense_designs.items():
        built[name] = timed_build(
            lambda query_encoder=query_encoder, settings=settings: DenseRetriever.from_embeddings(
                passages, embeddings, query_encoder, settings
            ),
            extra_seconds=encode_seconds,
        )
    linear_weights = LINEAR_WEIGHTS
    if fit_on:
        linear_weights = fit_linear_weights([built["bm25"].retriever, built["dense-flat"].retriever], fit_on)
        print(f"linear fusion weights (bm25, dense) fitted on {len(fit_on)} questions: {linear_weights}")
    hybrids = {
        "hybrid-rrf(tfidf,dense)": (
            ("tfidf-bigram-sublinear-stop", "dense-flat"),
            HybridSettings(members=("tfidf", "dense"), fusion="rrf", weights=(1.0, 1.0)),
        ),
        "hybrid-score(tfidf,dense)": (
            ("tfidf-bigram-sublinear-stop", "dense-flat"),
            HybridSettings(members=("tfidf", "dense"), fusion="score", weights=(0.3, 0.7)),
        ),
        "hybrid-rrf(bm25,dense)": (
            ("bm25", "dense-flat"),
            HybridSettings(members=("bm25", "dense"), fusion="rrf", weights=(1.0, 1.0)),
        ),
        "hybrid-linear(bm25,dense)": (("bm25", "dense-flat"), HybridSettings(weights=linear_weights)),
        "hybrid-linear(bm25,dense-onnx-query)": (
            ("bm25", "dense-flat-onnx-query"),
            HybridSettings(weights=linear_weights),
        ),
    }
    for name, (members, settings) in hybrids.items():
        hybrid = HybridRetriever([built[m].retriever for m in members], settings)
        built[name] = Built(hybrid, sum(built[m].build_seconds for m in members), None)
    return built, linear_weights


def evaluate(retriever: Retriever, questions: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Top-k accuracy (the question's own paragraph among the first k) and single-query latency."""
    hits = dict.fromkeys(DEPTHS, 0)
    latencies = []
    for question, gold in questions:
        started = time.perf_counter()
        results = retriever.search(question, max(DEPTHS))
        latencies.append(time.perf_counter() - started)
        ids = [r.passage.passage_id for r in results]
        for depth in DEPTHS:
            hits[depth] += gold in ids[:depth]
    milliseconds = np.array(latencies) * 1000
    return {
        **{f"top{depth}": hits[depth] / len(questions) for depth in DEPTHS},
        "p50_ms": float(np.percentile(milliseconds, 50)),
        "p95_ms": float(np.percentile(milliseconds, 95)),
    }


def print_table(rows: dict[str, dict[str, float]]) -> None:
    base = rows[BASELINE]
    print(
        f"{'retriever':38} {'top1':>6} {'top5':>6} {'top20':>6} {'p50ms':>7} {'p95ms':>7} "
        f"{'build_s':>8} {'MB':>7}   top1/base top5/base p95/base"
    )
    for name, row in rows.items():
        size = f"{row['size_bytes'] / 1e6:7.1f}" if row["size_bytes"] is not None else f"{'-':>7}"
        print(
            f"{name:38} {row['top1']:6.1%} {row['top5']:6.1%} {row['top20']:6.1%} {row['p50_ms']:7.1f} "
            f"{row['p95_ms']:7.1f} {row['build_seconds']:8.1f} {size}   "
            f"{row['top1'] / base['top1']:9.2f} {row['top5'] / base['top5']:9.2f} "
            f"{row['p95_ms'] / base['p95_ms']:8.2f}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", nargs="+", required=True, type=Path, help="SQuAD files whose paragraphs are indexed"
    )
    parser.add_argument("--questions", required=True, type=Path, help="SQuAD file whose questions are asked")
    parser.add_argument(
        "--limit", type=int, default=None, help="ask a fixed random sample of this many questions"
    )
    parser.add_argument(
        "--fit-questions", type=Path, default=None, help="SQuAD file whose questions fit the linear fusion"
    )
    parser.add_argument("--fit-limit", type=int, default=4000, help="how many of those questions to fit on")
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    require_files([*args.corpus, args.questions, *([args.fit_questions] if args.fit_questions else [])])
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    passages = load_passages(args.corpus)
    questions = [(q, gold) for q, gold, _ in squad_questions(args.questions, passages, args.limit)]
    print(f"{len(passages)} passages, {len(questions)} questions", flush=True)
    encoder = SentenceEncoder(threads=args.threads)
    fit_on = []
    if args.fit_questions:
        if args.fit_questions.resolve() == args.questions.resolve():
            raise SystemExit("--fit-questions is the --questions file; fit on other questions (train)")
        fit_on = [(q, gold) for q, gold, _ in squad_questions(args.fit_questions, passages, args.fit_limit)]
    built, linear_weights = build_all(passages, encoder, fit_on)
    rows = {}
    for name, one in built.items():
        rows[name] = {**evaluate(one.retriever, questions), "build_seconds": one.build_seconds}
        rows[name]["size_bytes"] = one.size_bytes
        print(f"  {name}: {rows[name]}", flush=True)
    print_table(rows)
    if args.out:
        report = {
            "corpus": [path.name for path in args.corpus],
            "questions": args.questions.name,
            "passages": len(passages),
            "question_count": len(questions),
            "limit": args.limit,
            "threads": args.threads,
            "baseline": BASELINE,
            "linear_weights": {"bm25": linear_weights[0], "dense": linear_weights[1]},
            "fit_questions": args.fit_questions.name if args.fit_questions else None,
            "fit_limit": args.fit_limit if args.fit_questions else None,
            "results": rows,
        }
        write_report(args.out, report)


if __name__ == "__main__":
    main()
