"""Benchmark of the retrievers on SQuAD: does each question find its own paragraph?

Not a test: it encodes ~20,000 paragraphs (many minutes on 2 cores). Embeddings
are cached under /tmp (keyed by model and texts), never in the repository; a
dense index's build time is the encoding time measured when the cache was
filled plus the FAISS build.

    .venv/bin/python bench/retrieval.py \
        --corpus ../shared/data/squad/train-v1.1.json.gz ../shared/data/squad/dev-v1.1.json.gz \
        --questions ../shared/data/squad/dev-v1.1.json.gz --out bench/results/retrieval.json
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
from retrieval.encoder import SentenceEncoder  # noqa: E402
from retrieval.ingest import load_passages  # noqa: E402
from retrieval.retrievers import (  # noqa: E402
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


def build_all(passages: list[Passage], encoder: SentenceEncoder) -> dict[str, Built]:
    """The retrievers compared; baseline is the original design: unigram TF-IDF, defaults, no titles."""
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
    for kind in ("flat", "hnsw"):
        settings = DenseSettings(index_type=kind)
        built[f"dense-{kind}"] = timed_build(
            lambda settings=settings: DenseRetriever.from_embeddings(passages, embeddings, encoder, settings),
            extra_seconds=encode_seconds,
        )
    hybrids = {
        "hybrid-rrf(tfidf,dense)": (("tfidf-bigram-sublinear-stop", "dense-flat"), HybridSettings()),
        "hybrid-score(tfidf,dense)": (
            ("tfidf-bigram-sublinear-stop", "dense-flat"),
            HybridSettings(fusion="score", weights=(0.3, 0.7)),
        ),
        "hybrid-rrf(bm25,dense)": (("bm25", "dense-flat"), HybridSettings(members=("bm25", "dense"))),
    }
    for name, (members, settings) in hybrids.items():
        hybrid = HybridRetriever([built[m].retriever for m in members], settings)
        built[name] = Built(hybrid, sum(built[m].build_seconds for m in members), None)
    return built


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
    parser.add_argument("--threads", type=int, default=2, help="torch and FAISS threads")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    require_files([*args.corpus, args.questions])
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    passages = load_passages(args.corpus)
    questions = [(q, gold) for q, gold, _ in squad_questions(args.questions, passages, args.limit)]
    print(f"{len(passages)} passages, {len(questions)} questions", flush=True)
    encoder = SentenceEncoder(threads=args.threads)
    rows = {}
    for name, built in build_all(passages, encoder).items():
        rows[name] = {**evaluate(built.retriever, questions), "build_seconds": built.build_seconds}
        rows[name]["size_bytes"] = built.size_bytes
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
            "results": rows,
        }
        write_report(args.out, report)


if __name__ == "__main__":
    main()
