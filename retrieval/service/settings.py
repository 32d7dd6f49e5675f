"""Every setting of the QA service in one place, so the CLI, the schemas and the benchmarks share them.

The defaults are measured, not guessed (see DEFAULT_TOP_K and DEFAULT_MIN_RELEVANCE), and
bench/abstention.py checks the off-topic cut against them. A bad QA_* value or option fails here,
at start, naming what was wrong. Validating the backends imports the reader module (torch).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.index.encoder import QUERY_BACKENDS
from retrieval.reader.backends import BACKENDS
from retrieval.training.distributed import native_cpu_bf16

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_QUESTION_CHARS = 1000
MAX_TOP_K = 20
# Passages read per question. On the knowledge base's questions 3 scores as well as 5 (F1 57.1
# against 56.5 with the relevance priors) for 40% less reading.
DEFAULT_TOP_K = 3
CANDIDATES = 5  # alternative answers listed in a response
# Below this cosine similarity between the question and the best passage, the question is
# off-topic and the reader is not asked. 0.30 is the 95th percentile of the best-passage
# similarity of 1,000 SQuAD dev questions (none about astrology) against the built-in knowledge
# base; it keeps 98.6% of tests/data/knowledge_qa.json (bench/abstention.py measures both).
DEFAULT_MIN_RELEVANCE = 0.30

# The reader backend "auto" serves: bf16 autocast where the CPU computes bf16 natively (AVX-512
# BF16 or AMX), 1.3x ONNX Runtime fp32 on a knowledge-base question with the same answers; ONNX
# Runtime fp32 elsewhere (bf16 emulated in software would be slower than fp32).
AUTO_READER_BACKEND = "auto"
READER_BACKENDS = (AUTO_READER_BACKEND, *BACKENDS)

# Questions read at once when read_workers is unset. With 16 clients on 2 cores, two workers answer
# 1.3x the questions per second of one: one question's single-threaded steps (tokenising, picking
# spans) run while the other's matrix products use the cores.
DEFAULT_READ_WORKERS = 2
# When threads is unset the cores are shared out among the read workers (one thread each here).
# A question alone then takes longer (QA service p50 84-105 ms against 62-68 ms with every core's
# threads), but beside Rasa under 16 users question turns ran at 0.65-0.67x the floor's throughput
# against 0.50-0.60x in six alternating runs (0.60x in the full run after): with two workers of
# two threads each, four busy threads share two cores with Rasa and the action server
# (make bench-turns, session 16, bench/README.md).

# A question whose most relevant passage leads the next by FIRST_READ_LEAD (cosine; the next one's
# prior is then 3.6 logits or more behind) is read from that passage first, and its other passages
# are read only when the answer's confidence is below DEFAULT_FIRST_READ_CONFIDENCE. Of 1,188 SQuAD
# dev questions (calibrate's sample) and the knowledge base's 141, no answer changed, and 22% of the
# knowledge base's reading (tokens) and 10% of SQuAD's was saved (session 17, bench/README.md).
FIRST_READ_LEAD = 0.08
DEFAULT_FIRST_READ_CONFIDENCE = 0.8

# environment variable -> ServiceConfig field
ENV_VARIABLES = {
    "QA_INDEX_DIR": "index_dir",
    "QA_READER_DIR": "reader_dir",
    "QA_DOCS": "docs",  # os.pathsep-separated; empty: serve the index as it is
    "QA_HOST": "host",
    "QA_PORT": "port",
    "QA_THREADS": "threads",
    "QA_READ_WORKERS": "read_workers",
    "QA_ABSTAIN_THRESHOLD": "abstain_threshold",
    "QA_MIN_RELEVANCE": "min_relevance",
    "QA_READER_BACKEND": "reader_backend",
    "QA_EXPORT_DIR": "export_dir",
    "QA_ENCODER_BACKEND": "encoder_backend",
    "QA_FIRST_READ_CONFIDENCE": "first_read_confidence",
}


@dataclass(frozen=True)
class ServiceConfig:
    """Every setting of the service; defaults serve the repository's knowledge base offline.

    `docs` are the documents the index is (re)built from when missing or outdated; empty serves
    `index_dir` as it is. `abstain_threshold` None keeps the reader's calibrated threshold;
    `min_relevance` is the off-topic cut (see DEFAULT_MIN_RELEVANCE). `reader_backend` "auto"
    (the default) is "torch-bf16" on CPUs with native bf16 and "onnx" elsewhere (see
    AUTO_READER_BACKEND). "onnx" serves the reader through ONNX Runtime, exported into
    `export_dir` at start when missing or made from other weights: the same answers as "torch",
    1.3x its speed on an idle 2-core CPU and more under load (bench/reader_speed.py); "onnx-int8"
    is 2.2x, for about half an F1 point. `encoder_backend` "onnx" (the default) embeds questions
    through ONNX Runtime: the same vectors, about 3x faster than "torch" (bench/retrieval.py).
    `read_workers` None reads DEFAULT_READ_WORKERS questions at once (no more than the cores);
    `threads` None shares the cores out among them (`served_threads`). `first_read_confidence`:
    see FIRST_READ_LEAD (above 1, every passage is always read).
    """

    index_dir: Path = REPO_ROOT / "var" / "index"
    reader_dir: Path = REPO_ROOT / "models" / "reader"
    docs: tuple[Path, ...] = (REPO_ROOT / "data" / "knowledge",)
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int | None = None
    read_workers: int | None = None
    abstain_threshold: float | None = None
    min_relevance: float = DEFAULT_MIN_RELEVANCE
    reader_backend: str = AUTO_READER_BACKEND
    export_dir: Path = REPO_ROOT / "var" / "reader-export"
    encoder_backend: str = "onnx"
    first_read_confidence: float = DEFAULT_FIRST_READ_CONFIDENCE

    @property
    def served_reader_backend(self) -> str:
        """The backend the reader runs on: `reader_backend`, with "auto" decided for this CPU."""
        if self.reader_backend != AUTO_READER_BACKEND:
            return self.reader_backend
        return "torch-bf16" if native_cpu_bf16() else "onnx"

    @property
    def served_threads(self) -> int:
        """CPU threads per model: `threads`, else the cores shared out among the read workers."""
        return self.threads or max(1, (os.cpu_count() or 1) // self.served_read_workers)

    @property
    def served_read_workers(self) -> int:
        """How many questions are read at once: `read_workers`, else DEFAULT_READ_WORKERS but no more
        than the CPU's cores."""
        return self.read_workers or max(1, min(DEFAULT_READ_WORKERS, os.cpu_count() or 1))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServiceConfig:
        """Defaults overridden by the QA_* variables that are set; a malformed value names its variable."""
        parsers: dict[str, Callable[[str], Any]] = {
            "index_dir": Path,
            "reader_dir": Path,
            "docs": lambda raw: tuple(Path(part) for part in raw.split(os.pathsep) if part),
            "host": str,
            "port": int,
            "threads": int,
            "read_workers": int,
            "abstain_threshold": float,
            "min_relevance": float,
            "reader_backend": str,
            "export_dir": Path,
            "encoder_backend": str,
            "first_read_confidence": float,
        }
        values = {}
        for variable, name in ENV_VARIABLES.items():
            if variable in environ:
                try:
                    values[name] = parsers[name](environ[variable])
                except ValueError as error:
                    raise ValueError(f"{variable}={environ[variable]!r} is not valid ({error})") from error
        return cls(**values).validated()

    def with_overrides(self, **overrides: Any) -> ServiceConfig:
        """This config with the overrides that are not None (the command-line options that were given)."""
        return dataclasses.replace(
            self, **{name: value for name, value in overrides.items() if value is not None}
        ).validated()

    def validated(self) -> ServiceConfig:
        """Self, if the values make sense: a bad port fails at start with its value, not at bind time."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not between 0 and 65535")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.read_workers is not None and self.read_workers < 1:
            raise ValueError(f"read_workers must be at least 1, got {self.read_workers}")
        if self.reader_backend not in READER_BACKENDS:
            raise ValueError(
                f"reader_backend {self.reader_backend!r} is not one of {', '.join(READER_BACKENDS)}"
            )
        if self.encoder_backend not in QUERY_BACKENDS:
            raise ValueError(
                f"encoder_backend {self.encoder_backend!r} is not one of {', '.join(QUERY_BACKENDS)}"
            )
        if not self.first_read_confidence >= 0.0:
            raise ValueError(
                "first_read_confidence is a probability (above 1: read every passage); "
                f"got {self.first_read_confidence}"
            )
        if not -1.0 <= self.min_relevance <= 1.0:
            raise ValueError(f"min_relevance is a cosine similarity, from -1 to 1; got {self.min_relevance}")
        return self
