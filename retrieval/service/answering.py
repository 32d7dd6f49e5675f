"""The models behind the QA service: loading them, tracking their load state, and answering with them.

Loading runs in a background thread so the HTTP app can answer /healthz and /readyz at once.
Retrieval runs one request at a time (a lock); reading runs `read_workers` requests at once, each
worker a Reader with its own tokenizer (the Rust tokenizers fail when one instance is used by two
threads at once) over the one shared model. The metrics live here because the answering path
records them; the app only counts requests and exposes the registry.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from retrieval.index.encoder import SentenceEncoder
from retrieval.index.store import RetrievalIndex, build_index, load_index
from retrieval.reader.backends import EXPORTED_FILES
from retrieval.reader.model import Answer, Reader
from retrieval.service.calibration import AnswerSignals, ConfidenceCalibration
from retrieval.service.schemas import AnswerResponse, CandidateOut, Source, SourceRef, Timings
from retrieval.service.settings import CANDIDATES, FIRST_READ_LEAD, ServiceConfig
from retrieval.training.export import ensure_export

log = logging.getLogger(__name__)


@dataclass
class Component:
    """Load state of one model: "loading", "loaded" or "failed" (with the error's message)."""

    state: str = "loading"
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        shown = {"state": self.state, **self.info}
        return shown if self.error is None else {**shown, "error": self.error}


class NotReadyError(RuntimeError):
    """An answer was asked for before both models are loaded; `retryable` unless a load failed."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Metrics:
    """The service's Prometheus metrics, in a registry of its own so two apps in one process can coexist."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "qa_requests",
            "HTTP requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "qa_latency_seconds", "Answer latency by stage", ["stage"], registry=self.registry
        )
        self.passages_read = Counter(
            "qa_passages_read",
            "Passages the reader read (see ServiceConfig.first_read_confidence)",
            registry=self.registry,
        )
        self.abstentions = Counter(
            "qa_abstentions", "Questions not answered, by reason", ["reason"], registry=self.registry
        )


class QAService:
    """The loaded index and reader, their load state, and the answering code path."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.index: RetrievalIndex | None = None
        self.calibration: ConfidenceCalibration | None = None
        self.components = {"index": Component(), "reader": Component()}
        self._retrieve_lock = threading.Lock()
        self._idle_readers: queue.SimpleQueue[Reader] = queue.SimpleQueue()  # a reader per read worker

    @property
    def ready(self) -> bool:
        return all(component.state == "loaded" for component in self.components.values())

    def start_loading(self) -> None:
        """Load in a daemon thread: a model that hangs while loading never blocks shutdown."""
        threading.Thread(target=self.load, name="qa-model-loader", daemon=True).start()

    def load(self) -> None:
        """Load the index (building it first if `docs` changed) and then the reader; each may fail alone."""
        self._load_component("index", self._load_index)
        self._load_component("reader", self._load_reader)

    def _load_component(self, name: str, loader: Callable[[], dict[str, Any]]) -> None:
        component = self.components[name]
        started = time.perf_counter()
        try:
            info = loader()
        except Exception as error:  # any load failure is reported by /readyz, not raised
            log.exception("loading the %s failed", name)
            component.error = f"{type(error).__name__}: {error}"
            component.state = "failed"
            return
        component.info = {**info, "load_seconds": round(time.perf_counter() - started, 2)}
        component.state = "loaded"
        log.info("%s loaded in %.1f s", name, time.perf_counter() - started)

    def _load_index(self) -> dict[str, Any]:
        config = self.config
        encoder = SentenceEncoder(threads=config.served_threads, query_backend=config.encoder_backend)
        if config.docs:
            build = build_index(config.docs, config.index_dir, encoder=encoder)
            log.info("index %s: %s", config.index_dir, "built" if build.built else "up to date")
        self.index = load_index(config.index_dir, warm=True, encoder=encoder)
        return {
            "directory": str(config.index_dir),
            "passages": len(self.index.passages),
            "encoder_backend": config.encoder_backend,
        }

    def _load_reader(self) -> dict[str, Any]:
        source, backend = self.config.reader_dir, self.config.served_reader_backend
        if backend in EXPORTED_FILES:
            exported = ensure_export(source, self.config.export_dir, self.config.served_threads)
            log.info("reader export %s: %s", self.config.export_dir, "written" if exported else "up to date")
            source = self.config.export_dir
        reader = Reader.load(source, threads=self.config.served_threads, backend=backend)
        if self.config.abstain_threshold is not None:
            reader = reader.with_config(
                dataclasses.replace(reader.config, abstain_threshold=self.config.abstain_threshold)
            )
        self.calibration = ConfidenceCalibration.load(self.config.reader_dir)
        workers = self.config.served_read_workers
        for worker in range(workers):
            self._idle_readers.put(reader if worker == 0 else reader.replica())
        return {
            "directory": str(self.config.reader_dir),
            "backend": backend,
            "read_workers": workers,
            "threads": self.config.served_threads,
            "abstain_threshold": reader.config.abstain_threshold,
            "first_read_confidence": self.config.first_read_confidence,
            "confidence_calibrated": self.calibration is not None,
        }

    def readiness(self) -> dict[str, Any]:
        return {"ready": self.ready, **{name: c.as_dict() for name, c in self.components.items()}}

    def not_ready_reason(self) -> str:
        return "; ".join(
            f"{name} {c.state}" + (f" ({c.error})" if c.error else "")
            for name, c in self.components.items()
            if c.state != "loaded"
        )

    def answer(self, question: str, top_k: int) -> AnswerResponse:
        """Retrieve `top_k` passages and read them (see the module docstring for who waits for whom)."""
        if not self.ready or self.index is None:  # ready: the read workers' readers are queued too
            failed = any(c.state == "failed" for c in self.components.values())
            raise NotReadyError(f"the service is not ready: {self.not_ready_reason()}", retryable=not failed)
        # Stage timings are the models' work; total also counts waiting for a model another request holds.
        started = time.perf_counter()
        with self._retrieve_lock:
            retrieve_started = time.perf_counter()
            passages = [scored.passage for scored in self.index.search(question, top_k)]
            dense = self.index.retriever("dense")
            relevance = dense.search(question, 1)[0].score
            similarities = dense.scores(question, passages)
            retrieve = time.perf_counter() - retrieve_started
        answer, read = None, 0.0
        if relevance >= self.config.min_relevance:
            reader = self._idle_readers.get()  # waits while every read worker is busy
            try:
                read_started = time.perf_counter()
                answer = reader.answer(
                    question,
                    passages,
                    top_n=CANDIDATES,
                    relevances=similarities,
                    enough=self._first_read_enough(similarities, relevance),
                )
                read = time.perf_counter() - read_started
                self.metrics.passages_read.inc(answer.passages_read)
            finally:
                self._idle_readers.put(reader)
        total = time.perf_counter() - started
        for stage, seconds in (("retrieve", retrieve), ("read", read), ("total", total)):
            self.metrics.latency.labels(stage).observe(seconds)
        response = _response(
            question,
            answer,
            relevance,
            Timings(retrieve=retrieve * 1e3, read=read * 1e3, total=total * 1e3),
            self.calibration,
        )
        if response.abstain_reason is not None:
            self.metrics.abstentions.labels(response.abstain_reason).inc()
        return response

    def _first_read_enough(
        self, similarities: list[float], relevance: float
    ) -> Callable[[Answer], bool] | None:
        """When the most relevant passage leads the next by FIRST_READ_LEAD, what makes its answer
        alone enough: a confidence of first_read_confidence (None: read them all at once)."""
        best, runner_up = [*sorted(similarities, reverse=True), -1.0, -1.0][:2]
        if best - runner_up < FIRST_READ_LEAD:
            return None
        threshold = self.config.first_read_confidence
        return lambda answer: _confidence(answer, relevance, self.calibration) >= threshold


def _response(
    question: str,
    answer: Answer | None,
    relevance: float,
    timings: Timings,
    calibration: ConfidenceCalibration | None,
) -> AnswerResponse:
    """The response body; `answer` None means the question was off-topic and not read. The answer's
    confidence is calibrated when the reader has a calibration; candidates keep the reader's shares."""
    if answer is None:
        return AnswerResponse(
            question=question,
            answer=None,
            confidence=0.0,
            reader_confidence=0.0,
            relevance=relevance,
            abstained=True,
            abstain_reason="off_topic",
            source=None,
            candidates=[],
            timings_ms=timings,
        )
    passage = answer.passage
    source = None
    if passage is not None:
        source = Source(title=passage.title, passage_id=passage.passage_id, text=passage.text)
    return AnswerResponse(
        question=question,
        answer=None if answer.abstained else answer.text,
        confidence=_confidence(answer, relevance, calibration),
        reader_confidence=answer.confidence,
        relevance=relevance,
        abstained=answer.abstained,
        abstain_reason="low_confidence" if answer.abstained else None,
        source=source,
        candidates=[
            CandidateOut(
                text=c.text,
                confidence=c.confidence,
                source=SourceRef(title=c.passage.title, passage_id=c.passage.passage_id),
            )
            for c in answer.candidates
        ],
        timings_ms=timings,
    )


def _confidence(answer: Answer, relevance: float, calibration: ConfidenceCalibration | None) -> float:
    """The answer's calibrated confidence, or the reader's share when the reader has no calibration."""
    if calibration is None:
        return answer.confidence
    shares = [(c.text, c.confidence) for c in answer.candidates]
    return calibration.probability(AnswerSignals.of(shares, relevance))
