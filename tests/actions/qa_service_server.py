"""A real QA service on 127.0.0.1 for tests: the contract of retrieval/service/schemas.py, tiny knowledge.

    POST /answer  {"question": str, "top_k": int?}  200 answer JSON; 422 for an invalid body
    GET  /readyz                                     200
    POST /{face}/answer                              the same question, answered by a broken face:
        unsure     200, the right answer with confidence 0.3
        abstain    200, abstained
        broken     500
        starting   503 (not ready yet)
        slow       the healthy answer after `slow_s` seconds (for client timeouts)
        garbage    200 with an HTML body
        malformed  200 JSON with a confidence of 7 and no "abstained"

The healthy face answers the questions in KNOWLEDGE (matched by keyword) with
confidence 0.92 and abstains on anything else. Run this file to serve it by hand:
    python tests/actions/qa_service_server.py --port 8000
"""

from __future__ import annotations

import json
import re
from typing import Any

from loopback import LoopbackHandler, LoopbackServer

# keyword in the question -> (answer, source title)
KNOWLEDGE = {
    "tetrabiblos": ("Claudius Ptolemy", "History of Astrology"),
    "scorpio": ("Mars, and in modern astrology Pluto", "Scorpio"),
    "ophiuchus": ("a constellation the Sun crosses that is not one of the twelve signs", "The Zodiac"),
}
CONFIDENT = 0.92
UNSURE = 0.3
_PATH = re.compile(r"^(?:/(?P<face>unsure|abstain|broken|starting|slow|garbage|malformed))?/answer$")


def _lookup(question: str) -> tuple[str, str] | None:
    lowered = question.lower()
    return next((found for keyword, found in KNOWLEDGE.items() if keyword in lowered), None)


def _answer_json(question: str, confidence: float, abstain: bool) -> dict[str, Any]:
    found = None if abstain else _lookup(question)
    if found is None:
        return {
            "answer": None,
            "confidence": 0.05,
            "abstained": True,
            "source": None,
            "candidates": [],
            "timings_ms": {"total": 1.0},
        }
    answer, title = found
    source = {"title": title, "passage_id": f"{title.lower()}#1", "text": f"... {answer} ..."}
    return {
        "answer": answer,
        "confidence": confidence,
        "abstained": False,
        "source": source,
        "candidates": [{"answer": answer, "confidence": confidence, "source": source}],
        "timings_ms": {"retrieve": 1.0, "read": 2.0, "total": 3.0},
    }


def _question(body: bytes) -> str | None:
    """The question of a valid request body, None when the body breaks the contract."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    question, top_k = payload.get("question"), payload.get("top_k", 5)
    if not isinstance(question, str) or not question.strip():
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        return None
    return question


class _Handler(LoopbackHandler):
    def do_GET(self) -> None:
        if self.path == "/readyz":
            return self.send(200, "application/json", json.dumps({"ready": True}))
        return self.send(404, "application/json", json.dumps({"detail": "Not Found"}))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests_seen.append(body.decode(errors="replace"))
        match = _PATH.match(self.path)
        if not match:
            return self.send(404, "application/json", json.dumps({"detail": "Not Found"}))
        face = match["face"]
        if face == "slow" and self.wait_slowly():
            return None
        if face == "broken":
            return self.send(500, "text/plain", "Internal Server Error")
        if face == "starting":
            return self.send(503, "application/json", json.dumps({"detail": "index is loading"}))
        if face == "garbage":
            return self.send(200, "text/html", "<html><body>Welcome to nginx!</body></html>")
        if face == "malformed":
            return self.send(200, "application/json", json.dumps({"answer": "Ptolemy", "confidence": 7}))
        question = _question(body)
        if question is None:
            detail = {"detail": "question must be a non-empty string, top_k a positive integer"}
            return self.send(422, "application/json", json.dumps(detail))
        confidence = UNSURE if face == "unsure" else CONFIDENT
        payload = _answer_json(question, confidence, abstain=face == "abstain")
        return self.send(200, "application/json", json.dumps(payload))


class QaServiceServer(LoopbackServer):
    """The QA service served from a background thread; `url` is its base URL."""

    def __init__(self, port: int = 0, slow_s: float = 2.0) -> None:
        super().__init__(_Handler, port, slow_s)


if __name__ == "__main__":
    QaServiceServer.serve_from_command_line("QA service", __doc__)
