"""The QA service's HTTP layer: an API that answers open questions from the knowledge base.

Only the web concerns live here (request ids, error bodies, metrics per request, the routes), so
the answering path in answering.py stays testable without a server. The lifespan handler starts
loading the models in the background, so /healthz answers at once and /readyz says what is still
loading (or why loading failed) instead of the port staying closed. Inference runs in FastAPI's
threadpool.

python -m retrieval serve --port 8000
curl -s localhost:8000/answer -H 'content-type: application/json' -d '{"question": "Who rules Scorpio?"}'
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from retrieval.service.answering import NotReadyError, QAService
from retrieval.service.schemas import AnswerRequest, AnswerResponse, ErrorBody
from retrieval.service.settings import ServiceConfig

VERSION = "0.1.0"
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # anything else is replaced, not echoed into logs

log = logging.getLogger(__name__)


def _error(status: int, request: Request, message: str, **extra: Any) -> JSONResponse:
    body = ErrorBody(error=message, request_id=request.state.request_id, **extra)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def _invalid(request: Request, details: list[dict[str, Any]]) -> JSONResponse:
    """The 422 for a request the contract rejects: a one-line summary and each field's problem."""
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
    return _error(422, request, f"invalid request: {summary}", details=details)


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
        return _invalid(request, _validation_details(error))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        """Errors as JSON bodies, their headers kept (a 405's Allow); an undecodable body is a 422."""
        cause = error.__cause__
        if isinstance(cause, UnicodeDecodeError):  # FastAPI's undocumented 400; found by fuzzing
            message = f"the body is not valid JSON (not UTF-8: {cause.reason} at byte {cause.start})"
            return _invalid(request, [{"field": "body", "message": message}])
        response = _error(error.status_code, request, str(error.detail))
        response.headers.update(error.headers or {})
        return response

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
