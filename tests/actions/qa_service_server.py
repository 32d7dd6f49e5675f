"""A real QA service on 127.0.0.1 for tests, speaking the service's contract, with tiny knowledge.

The contract is retrieval/service/schemas.py, exported to tests/contracts/qa_service.json (this
venv cannot import the service's pydantic v2 models): requests are validated against it, and
tests/actions/test_qa_contract.py checks every reply below against it.

    POST /answer  {"question": str, "top_k": int?}  200 answer; 422 error body for an invalid request
    GET  /readyz                                     200
    POST /{face}/answer                              the same question, answered by another face:
        unsure     200, the right answer with confidence 0.3
        abstain    200, abstained: the reader is unsure (low_confidence)
        broken     500 error body (an internal error)
        starting   503 error body (models still loading)
        slow       the healthy answer after `slow_s` seconds (for client timeouts)
        garbage    200 with an HTML body (outside the contract: a proxy's page)
        malformed  200 JSON with a confidence of 7 and no "abstained" (outside the contract)

Every answer echoes the question it answered. The healthy face answers the questions in
KNOWLEDGE (matched by keyword) with confidence 0.92 and abstains as off-topic on anything
else. Run this file to serve it by hand:
    python tests/actions/qa_service_server.py --port 8000
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from loopback import LoopbackHandler, LoopbackServer

CONTRACT_FILE = Path(__file__).resolve().parents[1] / "contracts" / "qa_service.json"
CONTRACT: dict[str, Any] = json.loads(CONTRACT_FILE.read_text())

# keyword in the question -> (answer, source title)
KNOWLEDGE = {
    "tetrabiblos": ("Claudius Ptolemy", "History of Astrology"),
    "scorpio": ("Mars, and in modern astrology Pluto", "Scorpio"),
    "element is aries": ("Fire", "Aries"),
    "element is leo": ("Fire", "Leo"),
    "ophiuchus": ("a constellation the Sun crosses that is not one of the twelve signs", "The Zodiac"),
}
CONFIDENT = 0.92
UNSURE = 0.3
ABSTAINING = 0.05
ON_TOPIC_RELEVANCE = 0.71
OFF_TOPIC_RELEVANCE = 0.12  # under the service's 0.30 cut
_PATH = re.compile(r"^(?:/(?P<face>unsure|abstain|broken|starting|slow|garbage|malformed))?/answer$")


def contract_errors(body_kind: str, body: Any) -> list[dict[str, str]]:
    """How `body` breaks the contract's schema for `body_kind` ("request", "answer" or "error").

    Each as the service's 422 details are: {"field": dotted path or "body", "message"}.
    """
    # The contract is JSON Schema 2020-12, but every keyword it uses ($ref into $defs, anyOf, enum,
    # bounds, pattern) means the same in Draft 7, which is what the Rasa venv's jsonschema 3.2 has
    # (pinned for speed: bench/README.md, "Turn latency").
    validator = Draft7Validator(CONTRACT[body_kind])
    return [
        {"field": ".".join(map(str, error.absolute_path)) or "body", "message": error.message}
        for error in validator.iter_errors(body)
    ]


def _lookup(question: str) -> tuple[str, str] | None:
    lowered = question.lower()
    return next((found for keyword, found in KNOWLEDGE.items() if keyword in lowered), None)


def _answer_body(question: str, face: str) -> dict[str, Any]:
    """Off-topic when no passage is close; else the span, or a low_confidence abstention."""
    found = _lookup(question)
    if found is None:
        return {
            "question": question,
            "answer": None,
            "confidence": 0.0,
            "reader_confidence": 0.0,
            "relevance": OFF_TOPIC_RELEVANCE,
            "abstained": True,
            "abstain_reason": "off_topic",
            "source": None,
            "candidates": [],
            "timings_ms": {"retrieve": 1.0, "read": 0.0, "total": 1.0},
        }
    answer, title = found
    abstained = face == "abstain"
    confidence = {"unsure": UNSURE, "abstain": ABSTAINING}.get(face, CONFIDENT)
    reference = {"title": title, "passage_id": f"{title.lower().replace(' ', '-')}#0-0"}
    return {
        "question": question,
        "answer": None if abstained else answer,
        "confidence": confidence,
        "reader_confidence": confidence,
        "relevance": ON_TOPIC_RELEVANCE,
        "abstained": abstained,
        "abstain_reason": "low_confidence" if abstained else None,
        "source": {**reference, "text": f"... {answer} ..."},
        "candidates": [{"text": answer, "confidence": confidence, "source": reference}],
        "timings_ms": {"retrieve": 1.0, "read": 2.0, "total": 3.0},
    }


def _request_errors(body: bytes) -> tuple[str | None, list[dict[str, str]]]:
    """The question of a request body, or the reasons the service would answer 422."""
    try:
        payload = json.loads(body)
    except ValueError as error:
        return None, [{"field": "body", "message": f"the body is not valid JSON ({error})"}]
    errors = contract_errors("request", payload)
    if not errors and not payload["question"].strip():
        errors = [{"field": "question", "message": "the question is blank (only whitespace)"}]
    return (None, errors) if errors else (payload["question"], [])


class _Handler(LoopbackHandler):
    def send_json(self, status: int, body: dict[str, Any]) -> None:
        self.send(status, "application/json", json.dumps(body))

    def send_error_body(self, status: int, message: str, **extra: Any) -> None:
        """The service's error shape: {"error", "request_id", "details"?}."""
        request_id = self.headers.get("X-Request-ID") or uuid.uuid4().hex
        self.send_json(status, {"error": message, "request_id": request_id, **extra})

    def do_GET(self) -> None:
        if self.path == "/readyz":
            return self.send_json(200, {"ready": True})
        return self.send_error_body(404, "Not Found")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests_seen.append(body.decode(errors="replace"))
        match = _PATH.match(self.path)
        if not match:
            return self.send_error_body(404, "Not Found")
        face = match["face"] or ""
        if face == "slow" and self.wait_slowly():
            return None
        if face == "broken":
            return self.send_error_body(500, "internal error; quote the request id when reporting it")
        if face == "starting":
            return self.send_error_body(503, "the service is not ready: index loading; reader loading")
        if face == "garbage":
            return self.send(200, "text/html", "<html><body>Welcome to nginx!</body></html>")
        if face == "malformed":
            return self.send_json(200, {"answer": "Ptolemy", "confidence": 7})
        question, errors = _request_errors(body)
        if question is None:
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
            return self.send_error_body(422, f"invalid request: {summary}", details=errors)
        return self.send_json(200, _answer_body(question, face))


class QaServiceServer(LoopbackServer):
    """The QA service served from a background thread; `url` is its base URL."""

    def __init__(self, port: int = 0, slow_s: float = 2.0) -> None:
        super().__init__(_Handler, port, slow_s)


if __name__ == "__main__":
    QaServiceServer.serve_from_command_line("QA service", __doc__)
