"""Dense retrieval at scale: how exact, HNSW and IVF FAISS indexes trade speed, memory and recall.

The base vectors are the real MiniLM embeddings of the SQuAD paragraphs (cached under /tmp by
bench/retrieval.py). Sizes above the real corpus are SYNTHETIC: copies of real vectors plus
isotropic Gaussian noise, re-normalised, with sigma chosen so a copy's cosine to its origin is
about --copy-cosine (the measured value is reported). They keep the real vectors' cluster
structure but not their exact geometry, so absolute recall is indicative only. Queries are real
SQuAD questions encoded with the same model.

Per size, the exact IndexFlatIP is the baseline: each approximate index is scored by recall@k
against it on the same vectors, and by single-query latency relative to it.

    /tmp/plan/quiet.sh .venv/bin/python bench/retrieval_scale.py \
        --corpus ../shared/data/squad/train-v1.1.json.gz ../shared/data/squad/dev-v1.1.json.gz \
        --questions ../shared/data/squad/dev-v1.1.json.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    cached_embeddings,
    latency_summary,
    require_files,
    save_plot,
    squad_questions,
    write_report,
)
from retrieval.index.encoder import SentenceEncoder  # noqa: E402
from retrieval.index.ingest import load_passages  # noqa: E402
from retrieval.index.retrievers import DenseSettings, apply_search_settings, indexed_text, new_index  # noqa: E402

BASELINE = "flat"
INDEX_TYPES = ("flat", "hnsw", "ivf")
CHUNK = 50_000  # vectors generated / added per step: bounds the scratch memory and feeds the progress bar


@dataclasses.dataclass(frozen=True)
class Synthetic:
    """How vectors beyond the real corpus are made: row i copies real row i % len(real), plus noise."""

    sigma: float
    seed: int

    def fill(self, real: np.ndarray, size: int) -> np.ndarray:
        """`size` unit vectors: the real ones, then noisy copies made in chunks (same seed, same vectors)."""
        vectors = np.empty((size, real.shape[1]), dtype=np.float32)
        count = min(size, len(real))
        vectors[:count] = real[:count]
        rng = np.random.default_rng(self.seed)
        for start in range(count, size, CHUNK):
            stop = min(start + CHUNK, size)
            chunk = real[np.arange(start, stop) % len(real)]
            chunk += self.sigma * rng.standard_normal(chunk.shape, dtype=np.float32)
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            vectors[start:stop] = chunk
        return vectors


def sigma_for_cosine(cosine: float, dimensions: int) -> float:
    """Noise scale giving a copy this expected cosine to its origin: |x + s*g|^2 ~ 1 + d*s^2 for unit x."""
    return math.sqrt((1 / cosine**2 - 1) / dimensions)


def copy_cosines(real: np.ndarray, vectors: np.ndarray) -> dict[str, float] | None:
    """Cosine of each synthetic copy to its origin (None when the size has no copies)."""
    if len(vectors) <= len(real):
        return None
    rows = np.arange(len(real), len(vectors))
    cosines = np.einsum("ij,ij->i", vectors[rows], real[rows % len(real)])
    return {"mean": float(cosines.mean()), "min": float(cosines.min()), "max": float(cosines.max())}


def resident_bytes() -> int:
    """This process's resident set size, from /proc (Linux).

    Heap that earlier indexes freed is handed back first (glibc's malloc_trim), or a new index
    would fill it without raising the count.
    """
    libc = ctypes.CDLL(None)
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def serialized_bytes(index: faiss.Index) -> int:
    """Length of faiss.serialize_index(index), counted while writing so no copy of the index is held."""
    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    return total


def chunks(size: int) -> Iterator[slice]:
    return (slice(start, min(start + CHUNK, size)) for start in range(0, size, CHUNK))


@dataclasses.dataclass
class Built:
    index: faiss.Index | None  # None: the build went over --max-build-seconds and was dropped
    seconds: float
    rss_increase: int
    added: int


def build(
    settings: DenseSettings, vectors: np.ndarray, train_per_list: int, max_seconds: float, seed: int
) -> Built:
    """Index `vectors` as `settings` says, stopping between chunks once `max_seconds` are spent.

    IVF trains on a fixed-seed sample of `train_per_list` points per list (faiss wants >= 39)
    rather than on everything: k-means over a million points would dominate the run.
    """
    rss_before = resident_bytes()
    started = time.perf_counter()
    index = new_index(settings, len(vectors))
    if not index.is_trained:
        sample_size = min(len(vectors), train_per_list * index.nlist)
        sample = np.random.default_rng(seed).choice(len(vectors), sample_size, replace=False)
        index.train(vectors[np.sort(sample)])
    added = 0
    parts = list(chunks(len(vectors)))
    for part in tqdm(parts, desc=f"  build {settings.index_type}", unit="chunk", leave=False):
        if time.perf_counter() - started > max_seconds:
            break
        index.add(vectors[part])
        added = part.stop
    seconds = time.perf_counter() - started
    rss_increase = resident_bytes() - rss_before
    if added < len(vectors):
        return Built(None, seconds, rss_increase, added)
    apply_search_settings(index, settings)
    return Built(index, seconds, rss_increase, added)


def single_query_latencies(index: faiss.Index, queries: np.ndarray, k: int, repeats: int) -> np.ndarray:
    """Seconds per search of one query at a time (the service's pattern), after one warm-up search.

    Each query's best of `repeats` runs: on a shared machine a descheduled OpenMP thread otherwise
    adds milliseconds that belong to the neighbours, not to the index.
    """
    index.search(queries[:1], k)
    latencies = np.full(len(queries), np.inf)
    for _ in range(repeats):
        for row in range(len(queries)):
            started = time.perf_counter()
            index.search(queries[row : row + 1], k)
            latencies[row] = min(latencies[row], time.perf_counter() - started)
    return latencies


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact top-k that the approximate top-k also returns."""
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(e)) / k for a, e in zip(found, exact, strict=True)]))


def measure_size(
    size: int, real: np.ndarray, queries: np.ndarray, synthetic: Synthetic, args: argparse.Namespace
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All index types on `size` vectors: the exact one first, as the others' baseline."""
    vectors = synthetic.fill(real, size)
    data = {"size": size, "real": min(size, len(real)), "copy_cosine": copy_cosines(real, vectors)}
    rows: list[dict[str, Any]] = []
    exact_ids = None
    for index_type in INDEX_TYPES:
        settings = DenseSettings(
            index_type=index_type,
            hnsw_m=args.hnsw_m,
            hnsw_ef_construction=args.hnsw_ef_construction,
            hnsw_ef_search=args.hnsw_ef_search,
            ivf_probes=args.ivf_probes,
            use_gpu=False,
        )
        row: dict[str, Any] = {"size": size, "index": index_type}
        if index_type == "hnsw" and size > args.hnsw_max_size:
            rows.append({**row, "skipped": f"HNSW skipped above --hnsw-max-size {args.hnsw_max_size}"})
            print(f"  {size} {index_type}: skipped (above --hnsw-max-size)", flush=True)
            continue
        max_seconds = math.inf if index_type == BASELINE else args.max_build_seconds  # baseline: never cut
        built = build(settings, vectors, args.ivf_train_per_list, max_seconds, args.seed)
        row.update(build_seconds=built.seconds, rss_increase_bytes=built.rss_increase)
        if built.index is None:
            rate = built.added / built.seconds
            projection = f" ({rate:.0f}/s, so ~{size / rate:.0f} s for all)" if rate else ""
            row["skipped"] = (
                f"build stopped at --max-build-seconds {args.max_build_seconds:g} after {built.added} vectors"
                + projection
            )
            rows.append(row)
            print(f"  {size} {index_type}: {row['skipped']}", flush=True)
            continue
        index = built.index
        row["index_bytes"] = serialized_bytes(index)
        if isinstance(index, faiss.IndexIVF):
            row["ivf_lists"] = index.nlist
        _, found = index.search(queries, args.k)
        if exact_ids is None:
            exact_ids = found
        row[f"recall@{args.k}"] = recall(found, exact_ids)
        row.update(latency_summary(single_query_latencies(index, queries, args.k, args.repeats)))
        rows.append(row)
        print(f"  {size} {index_type}: {row}", flush=True)
        del index, built
    baseline = rows[0]
    for row in rows:
        if "p50_ms" in row:
            row["speedup_p50"] = baseline["p50_ms"] / row["p50_ms"]
    return data, rows


def print_table(rows: Sequence[dict[str, Any]], k: int) -> None:
    print(
        f"{'size':>9} {'index':6} {'build_s':>8} {'index_MB':>9} {'rssΔ_MB':>8} {'p50_ms':>8} {'p95_ms':>8} "
        f"{f'recall@{k}':>9}   p50 speed-up vs flat"
    )
    for row in rows:
        if "p50_ms" not in row:
            print(f"{row['size']:>9} {row['index']:6} {row['skipped']}")
            continue
        print(
            f"{row['size']:>9} {row['index']:6} {row['build_seconds']:8.1f} {row['index_bytes'] / 1e6:9.1f} "
            f"{row['rss_increase_bytes'] / 1e6:8.1f} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} "
            f"{row[f'recall@{k}']:9.3f}   {row['speedup_p50']:8.1f}x"
        )


def plot(rows: Sequence[dict[str, Any]], k: int, path: Path) -> None:
    """p50 latency against corpus size, log-log, one line per index type, recall@k written at each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for index_type in INDEX_TYPES:
        points = [row for row in rows if row["index"] == index_type and "p50_ms" in row]
        if not points:
            continue
        sizes = [row["size"] for row in points]
        latencies = [row["p50_ms"] for row in points]
        axes.plot(sizes, latencies, marker="o", label=index_type)
        if index_type != BASELINE:
            for row in points:
                axes.annotate(
                    f"R@{k}={row[f'recall@{k}']:.2f}",
                    (row["size"], row["p50_ms"]),
                    textcoords="offset points",
                    xytext=(4, 6),
                    fontsize=8,
                )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("vectors in the index (beyond the real corpus: noisy copies)")
    axes.set_ylabel("single-query p50 latency (ms)")
    axes.set_title("Dense retrieval at scale (MiniLM, 384-d, faiss CPU)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    save_plot(figure, path)


def sizes_argument(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or sizes[0] < 1000:
        raise argparse.ArgumentTypeError("every size must be at least 1000 (IVF needs training points)")
    return sizes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", nargs="+", required=True, type=Path, help="SQuAD files: the real vectors")
    parser.add_argument("--questions", required=True, type=Path, help="SQuAD file: the queries")
    parser.add_argument("--sizes", type=sizes_argument, default="20000,200000,1000000", help="index sizes")
    parser.add_argument("--queries", type=int, default=200, help="fixed random sample of this many questions")
    parser.add_argument("--k", type=int, default=10, help="depth of the search and of recall@k")
    parser.add_argument("--repeats", type=int, default=3, help="time each query this often, keep the best")
    parser.add_argument("--threads", type=int, default=2, help="FAISS (OpenMP) and torch threads")
    parser.add_argument("--copy-cosine", type=float, default=0.9, help="target cosine of a synthetic copy")
    parser.add_argument("--seed", type=int, default=0, help="seed of noise and IVF training sample")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    parser.add_argument(
        "--hnsw-ef-construction", type=int, default=40, help="HNSW build beam (DenseSettings: 80, ~2x slower)"
    )
    parser.add_argument("--hnsw-ef-search", type=int, default=128, help="HNSW search beam width")
    parser.add_argument("--hnsw-max-size", type=int, default=10**9, help="skip HNSW above this many vectors")
    parser.add_argument("--ivf-probes", type=int, default=16, help="IVF lists searched per query")
    parser.add_argument("--ivf-train-per-list", type=int, default=40, help="IVF training points per list")
    parser.add_argument(
        "--max-build-seconds", type=float, default=240, help="drop an index whose build runs longer"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "retrieval_scale.json", help="JSON report")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "retrieval_scale.png", help="PNG plot")
    args = parser.parse_args(argv)
    if min(args.queries, args.k, args.threads, args.repeats, args.max_build_seconds) <= 0:
        parser.error("--queries, --k, --threads, --repeats and --max-build-seconds must be positive")
    if not 0 < args.copy_cosine < 1:
        parser.error(f"--copy-cosine must be between 0 and 1, got {args.copy_cosine}")

    require_files([*args.corpus, args.questions])
    started = time.perf_counter()
    faiss.omp_set_num_threads(args.threads)
    passages = load_passages(args.corpus)
    encoder = SentenceEncoder(threads=args.threads)
    real, _ = cached_embeddings([indexed_text(p) for p in passages], encoder)
    questions = [q for q, _, _ in squad_questions(args.questions, passages, args.queries)]
    queries, _ = cached_embeddings(questions, encoder)
    synthetic = Synthetic(sigma_for_cosine(args.copy_cosine, real.shape[1]), args.seed)
    print(f"{len(real)} real vectors, {len(queries)} queries, noise sigma {synthetic.sigma:.4f}", flush=True)

    sizes, rows = [], []
    for size in args.sizes:
        data, size_rows = measure_size(size, real, queries, synthetic, args)
        sizes.append(data)
        rows.extend(size_rows)
    print_table(rows, args.k)
    wall = time.perf_counter() - started
    print(f"wall time {wall:.0f} s")
    write_report(
        args.out,
        {
            "corpus": [path.name for path in args.corpus],
            "questions": args.questions.name,
            "query_count": len(queries),
            "k": args.k,
            "threads": args.threads,
            "latency": f"per query the best of {args.repeats} single-query searches, then percentiles",
            "baseline": BASELINE,
            "synthetic": {
                "method": "row i >= real count: real[i % real count] + N(0, sigma^2 I), re-normalised",
                "target_copy_cosine": args.copy_cosine,
                "sigma": synthetic.sigma,
                "seed": args.seed,
            },
            "settings": {
                name: getattr(args, name)
                for name in (
                    "hnsw_m",
                    "hnsw_ef_construction",
                    "hnsw_ef_search",
                    "hnsw_max_size",
                    "ivf_probes",
                    "ivf_train_per_list",
                    "max_build_seconds",
                )
            },
            "sizes": sizes,
            "results": rows,
            "wall_seconds": wall,
        },
    )
    plot(rows, args.k, args.plot)


if __name__ == "__main__":
    main()
