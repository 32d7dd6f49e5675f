"""What the benchmark scripts share: data checks, the SQuAD corpus, cached embeddings, reports.

Each script in bench/ runs as `.venv/bin/python bench/NAME.py ...` from the repository root
and puts the root first on sys.path (its own folder would hide the `retrieval` package behind
bench/retrieval.py), then imports this module as `bench.common`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.documents import Passage
from retrieval.index.encoder import SentenceEncoder
from retrieval.index.ingest import normalise
from retrieval.squad import read_squad

CACHE_DIR = Path("/tmp/retrieval-bench-cache")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def require_files(paths: Iterable[Path]) -> None:
    """Stop with one clear line when input data is missing, instead of a traceback later."""
    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        raise SystemExit(
            "missing data: " + ", ".join(missing) + " (the SQuAD files live in ../shared/data/squad/)"
        )


def cached_embeddings(texts: Sequence[str], encoder: SentenceEncoder) -> tuple[np.ndarray, float]:
    """Embeddings of `texts` and the seconds their encoding took (measured when the cache was filled).

    Cached under /tmp keyed by model and texts, never in the repository.
    """
    digest = hashlib.sha256(str(encoder.model_dir).encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    stem = CACHE_DIR / digest.hexdigest()[:24]
    vectors_path, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    if vectors_path.is_file() and meta_path.is_file():
        return np.load(vectors_path), json.loads(meta_path.read_text())["encode_seconds"]
    started = time.perf_counter()
    vectors = encoder.encode(texts, show_progress=True)
    seconds = time.perf_counter() - started
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(vectors_path, vectors)
    meta_path.write_text(json.dumps({"encode_seconds": seconds, "count": len(texts)}))
    return vectors, seconds


def squad_questions(
    path: Path, passages: Sequence[Passage], limit: int | None
) -> list[tuple[str, str, list[str]]]:
    """(question, id of its own paragraph, gold answers); a fixed-seed sample of `limit` if given."""
    id_by_text = {normalise(p.text): p.passage_id for p in passages}
    rows = []
    for paragraph in read_squad(path):
        gold = id_by_text.get(normalise(paragraph.context))
        if gold is None:
            raise SystemExit(f"{path}: a question paragraph is not in the corpus; add its file to --corpus")
        rows.extend((q.question, gold, [a.text for a in q.answers]) for q in paragraph.questions)
    return random.Random(0).sample(rows, limit) if limit and limit < len(rows) else rows


def squad_question_texts(path: Path) -> list[str]:
    """Every question of a SQuAD-format file, in file order."""
    return [question.question for paragraph in read_squad(path) for question in paragraph.questions]


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds."""
    milliseconds = np.asarray(seconds) * 1000
    return {f"p{q}_ms": float(np.percentile(milliseconds, q)) for q in (50, 95, 99)}


def machine() -> dict[str, Any]:
    """Where a result was measured, saved next to it."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def save_plot(figure: Any, path: Path) -> None:
    """Lay out `figure`, write it as a PNG and close it (pyplot keeps open figures alive)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    print(f"plot written to {path}")


def write_report(path: Path, report: dict[str, Any]) -> None:
    """The results as indented JSON, with the machine they were measured on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**report, "measured_on": machine()}, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {path}")
