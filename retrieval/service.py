"""The QA service: an HTTP API that answers open questions from the knowledge base.

The index and the reader load once, in a background thread started by the
lifespan handler, so /healthz answers at once and /readyz says what is still
loading (or why loading failed) instead of the port staying closed. Inference
runs in FastAPI's threadpool; a lock per model keeps the Rust tokenizers, which
fail when one instance is used by two threads at once, to one caller each.

python -m retrieval serve --port 8000
curl -s localhost:8000/answer -H 'content-type: application/json' -d '{"question": "Who rules Scorpio?"}'
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrieval.encoder import QUERY_BACKENDS, SentenceEncoder
from retrieval.export import ensure_export
from retrieval.index_store import RetrievalIndex, build_index, load_index
from retrieval.reader import BACKENDS, Answer, Reader

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.1.0"
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
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # anything else is replaced, not echoed into logs

# environment variable -> ServiceConfig field
ENV_VARIABLES = {
    "QA_INDEX_DIR": "index_dir",
    "QA_READER_DIR": "reader_dir",
    "QA_DOCS": "docs",  # os.pathsep-separated; empty: serve the index as it is
    "QA_HOST": "host",
    "QA_PORT": "port",
    "QA_THREADS": "threads",
    "QA_ABSTAIN_THRESHOLD": "abstain_threshold",
    "QA_MIN_RELEVANCE": "min_relevance",
    "QA_READER_BACKEND": "reader_backend",
    "QA_EXPORT_DIR": "export_dir",
    "QA_ENCODER_BACKEND": "encoder_backend",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceConfig:
    """Every setting of the service; defaults serve the repository's knowledge base offline.

    `docs` are the documents the index is (re)built from when missing or outdated; empty serves
    `index_dir` as it is. `abstain_threshold` None keeps the reader's calibrated threshold;
    `min_relevance` is the off-topic cut (see DEFAULT_MIN_RELEVANCE). `reader_backend` "onnx"
    (the default) serves the reader through ONNX Runtime, exported into `export_dir` at start when
    missing or made from other weights: the same answers as "torch", 1.3x its speed on an idle
    2-core CPU and more under load (bench/reader_speed.py); "onnx-int8" is 2.2x, for about
    half an F1 point. `encoder_backend` "onnx" (the default) embeds questions through ONNX
    Runtime: the same vectors, about 3x faster than "torch" (bench/retrieval.py).
    """

    index_dir: Path = REPO_ROOT / "var" / "index"
    reader_dir: Path = REPO_ROOT / "models" / "reader"
    docs: tuple[Path, ...] = (REPO_ROOT / "data" / "knowledge",)
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int | None = None
    abstain_threshold: float | None = None
    min_relevance: float = DEFAULT_MIN_RELEVANCE
    reader_backend: str = "onnx"
    export_dir: Path = REPO_ROOT / "var" / "reader-export"
    encoder_backend: str = "onnx"

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
            "abstain_threshold": float,
            "min_relevance": float,
            "reader_backend": str,
            "export_dir": Path,
            "encoder_backend": str,
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
        if self.reader_backend not in BACKENDS:
            raise ValueError(f"reader_backend {self.reader_backend!r} is not one of {', '.join(BACKENDS)}")
        if self.encoder_backend not in QUERY_BACKENDS:
            raise ValueError(
                f"encoder_backend {self.encoder_backend!r} is not one of {', '.join(QUERY_BACKENDS)}"
            )
        if not -1.0 <= self.min_relevance <= 1.0:
            raise ValueError(f"min_relevance is a cosine similarity, from -1 to 1; got {self.min_relevance}")
        return self


# --- request and response bodies -------------------------------------------------------------------


class AnswerRequest(BaseModel):
    """A question; strict types, so `"top_k": "5"` or `"question": 7` are errors rather than guesses."""

    model_config = ConfigDict(extra="forbid")

    question: StrictStr = Field(min_length=1, max_length=MAX_QUESTION_CHARS, examples=["Who rules Scorpio?"])
    top_k: StrictInt = Field(
        default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="how many retrieved passages the reader reads"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, question: str) -> str:
        if not question.strip():
            raise ValueError("the question is blank (only whitespace)")
        return question


class SourceRef(BaseModel):
    title: str
    passage_id: str


class Source(SourceRef):
    text: str = Field(description="the whole passage the answer was read from")


class CandidateOut(BaseModel):
    text: str
    confidence: float
    source: SourceRef


class Timings(BaseModel):
    retrieve: float
    read: float
    total: float


AbstainReason = Literal["off_topic", "low_confidence"]


class AnswerResponse(BaseModel):
    answer: str | None = Field(description="null when the service abstains")
    confidence: float = Field(description="of the best span, also when abstaining; 0 when off-topic")
    relevance: float = Field(description="cosine similarity of the question and the best passage")
    abstained: bool
    abstain_reason: AbstainReason | None = Field(
        description="off_topic: no passage is close enough to read; low_confidence: the reader is unsure"
    )
    source: Source | None
    candidates: list[CandidateOut]
    timings_ms: Timings


class ErrorBody(BaseModel):
    error: str
    request_id: str
    details: list[dict[str, Any]] | None = None


# --- the models and their loading --------------------------------------------------------------------


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
        self.abstentions = Counter(
            "qa_abstentions", "Questions not answered, by reason", ["reason"], registry=self.registry
        )


class QAService:
    """The loaded index and reader, their load state, and the answering code path."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.index: RetrievalIndex | None = None
        self.reader: Reader | None = None
        self.components = {"index": Component(), "reader": Component()}
        self._retrieve_lock = threading.Lock()
        self._read_lock = threading.Lock()

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
        encoder = SentenceEncoder(threads=self.config.threads, query_backend=self.config.encoder_backend)
        if self.config.docs:
            build = build_index(self.config.docs, self.config.index_dir, encoder=encoder)
            log.info("index %s: %s", self.config.index_dir, "built" if build.built else "up to date")
        self.index = load_index(self.config.index_dir, warm=True, encoder=encoder)
        return {
            "directory": str(self.config.index_dir),
            "passages": len(self.index.passages),
            "encoder_backend": self.config.encoder_backend,
        }

    def _load_reader(self) -> dict[str, Any]:
        source = self.config.reader_dir
        if self.config.reader_backend != "torch":
            exported = ensure_export(source, self.config.export_dir, self.config.threads)
            log.info("reader export %s: %s", self.config.export_dir, "written" if exported else "up to date")
            source = self.config.export_dir
        reader = Reader.load(source, threads=self.config.threads, backend=self.config.reader_backend)
        if self.config.abstain_threshold is not None:
            reader = Reader(
                reader.model,
                reader.tokenizer,
                dataclasses.replace(reader.config, abstain_threshold=self.config.abstain_threshold),
            )
        self.reader = reader
        return {
            "directory": str(self.config.reader_dir),
            "backend": self.config.reader_backend,
            "abstain_threshold": reader.config.abstain_threshold,
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
        """Retrieve `top_k` passages and read them; the models are used by one thread at a time each."""
        if not self.ready or self.index is None or self.reader is None:
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
            with self._read_lock:
                read_started = time.perf_counter()
                answer = self.reader.answer(question, passages, top_n=CANDIDATES, relevances=similarities)
                read = time.perf_counter() - read_started
        total = time.perf_counter() - started
        for stage, seconds in (("retrieve", retrieve), ("read", read), ("total", total)):
            self.metrics.latency.labels(stage).observe(seconds)
        response = _response(
            answer, relevance, Timings(retrieve=retrieve * 1e3, read=read * 1e3, total=total * 1e3)
        )
        if response.abstain_reason is not None:
            self.metrics.abstentions.labels(response.abstain_reason).inc()
        return response


def _response(answer: Answer | None, relevance: float, timings: Timings) -> AnswerResponse:
    """The response body; `answer` None means the question was off-topic and not read."""
    if answer is None:
        return AnswerResponse(
            answer=None,
            confidence=0.0,
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
        answer=None if answer.abstained else answer.text,
        confidence=answer.confidence,
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


# --- the HTTP application ------------------------------------------------------------------------------


def _error(status: int, request: Request, message: str, **extra: Any) -> JSONResponse:
    body = ErrorBody(error=message, request_id=request.state.request_id, **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def _validation_details(error: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as {field, message}, reworded where the body as a whole is wrong."""
    details = []
    for item in error.errors():
        location = item.get("loc", ())
        fields = [str(part) for part in location if part != "body"]
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        if item.get("type") == "json_invalid":
            reason = item.get("ctx", {}).get("error", "parse error")
            fields, message = [], f"the body is not valid JSON ({reason} at character {location[-1]})"
        elif not fields:
            message = f"the body must be a JSON object with a 'question' ({message})"
        details.append({"field": ".".join(fields) or "body", "message": message})
    return details


def create_app(config: ServiceConfig) -> FastAPI:
    """The FastAPI application; its lifespan starts loading the models."""
    service = QAService(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        yield

    app = FastAPI(
        title="Horoscope assistant QA service",
        version=VERSION,
        description=(
            "Answers open questions about astrology from the assistant's knowledge base: hybrid "
            "retrieval (BM25 + dense FAISS, linear fusion) picks passages, a BERT reader extracts the answer "
            "span or abstains. Errors are JSON `{error, request_id}`; send `X-Request-ID` to trace a call."
        ),
        lifespan=lifespan,
    )
    metrics = service.metrics

    @app.middleware("http")
    async def request_id_and_metrics(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Give every request an id (the caller's, if sane), count it, and turn crashes into JSON 500s."""
        given = request.headers.get(REQUEST_ID_HEADER, "")
        request.state.request_id = given if _VALID_REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        try:
            response = await call_next(request)
        except Exception:  # the traceback goes to the log, never to the caller
            log.exception(
                "request_id=%s %s %s failed", request.state.request_id, request.method, request.url.path
            )
            response = _error(500, request, "internal error; quote the request id when reporting it")
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        if response.status_code >= 400 and endpoint != "/readyz":  # a 503 there is a state, not a failure
            log.warning(
                "request_id=%s %s %s -> %d",
                request.state.request_id,
                request.method,
                request.url.path,
                response.status_code,
            )
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        response.headers[REQUEST_ID_HEADER] = request.state.request_id
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        details = _validation_details(error)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return _error(422, request, f"invalid request: {summary}", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, request, str(error.detail))

    @app.exception_handler(NotReadyError)
    async def not_ready(request: Request, error: NotReadyError) -> JSONResponse:
        response = _error(503, request, str(error))
        if error.retryable:
            response.headers["Retry-After"] = "5"
        return response

    @app.post(
        "/answer",
        response_model=AnswerResponse,
        responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}, 500: {"model": ErrorBody}},
    )
    def answer(body: AnswerRequest) -> AnswerResponse:
        """Answer a question from the knowledge base (or abstain). A plain `def`: runs in the threadpool."""
        return service.answer(body.question, body.top_k)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process serves HTTP (models may still be loading)."""
        return {"status": "alive"}

    @app.get("/readyz", responses={503: {"description": "a model is loading or failed to load"}})
    def readyz() -> JSONResponse:
        """Readiness: 200 once the index and the reader are loaded; else 503 with each one's state."""
        return JSONResponse(service.readiness(), status_code=200 if service.ready else 503)

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus text format: requests by endpoint/status, latency by stage, abstentions."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def serve(config: ServiceConfig) -> None:
    """Run the service with uvicorn until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="info")
