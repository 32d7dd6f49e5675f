"""Client of the QA service that answers open questions from the document library.

POST {base_url}/answer with {"question": str} answers
{"answer": str|null, "confidence": 0..1, "abstained": bool, "abstain_reason",
 "source": {"title", "passage_id", "text"}|null, "relevance", "candidates", ...};
errors are {"error", "request_id"}: 422 for a question it refuses, 503 while it
is not ready. The contract is retrieval/service/schemas.py (exported for the
tests to tests/contracts/qa_service.json); this client reads only answer,
confidence, abstained, source.title and question (the question it answered,
echoed so a rewritten follow-up can be seen; optional for older services).
The action only sees `QaAnswer` or one of the two exceptions below, never a
transport detail.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import requests

from actions.settings import Settings

logger = logging.getLogger(__name__)


class QaUnavailable(Exception):
    """The service could not answer right now (down, slow, 5xx or a reply outside its contract)."""


class QuestionRejected(Exception):
    """The service refused this question as invalid (HTTP 422)."""


@dataclass(frozen=True)
class QaAnswer:
    """What the service found: an answer with its source, or an abstention (answer None)."""

    answer: str | None
    confidence: float
    source_title: str | None
    question: str | None = None

    @property
    def abstained(self) -> bool:
        return self.answer is None


class QaClient:
    """Posts questions to the QA service; every call is bounded by `timeout_s`.

    One `requests.Session` keeps connections to the service open between questions (a
    pool, shared by the action server's worker threads), instead of a new one per question.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._url = f"{base_url.rstrip('/')}/answer"
        self._timeout_s = timeout_s
        self._session = requests.Session()

    @classmethod
    def from_settings(cls, settings: Settings) -> QaClient:
        return cls(settings.qa_service_url, settings.qa_service_timeout)

    def ask(self, question: str) -> QaAnswer:
        try:
            response = self._session.post(self._url, json={"question": question}, timeout=self._timeout_s)
        except requests.RequestException as error:
            logger.warning("QA service %s unreachable: %s", self._url, error)
            raise QaUnavailable(f"QA service unreachable: {error}") from error
        if response.status_code == 422:
            logger.info("QA service refused the question %.200r: %.200r", question, response.text)
            raise QuestionRejected(f"QA service refused the question: {response.text[:200]}")
        if response.status_code != 200:
            logger.warning("QA service %s answered HTTP %s", self._url, response.status_code)
            raise QaUnavailable(f"QA service answered HTTP {response.status_code}")
        try:
            return _parse_answer(response.json())
        except (ValueError, TypeError, KeyError) as error:
            logger.warning("QA service %s answered outside its contract: %.200r", self._url, response.text)
            raise QaUnavailable(f"QA service answered outside its contract: {error}") from error


def _parse_answer(payload: Any) -> QaAnswer:
    """The documented JSON as a `QaAnswer`; anything else raises ValueError/TypeError/KeyError."""
    if not isinstance(payload, dict):
        raise TypeError("the answer is not a JSON object")
    confidence = payload["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise TypeError("confidence is not a number")
    if not math.isfinite(confidence) or not 0 <= confidence <= 1:
        raise ValueError(f"confidence {confidence!r} is outside 0..1")
    abstained = payload["abstained"]
    if not isinstance(abstained, bool):
        raise TypeError("abstained is not a boolean")
    question = payload.get("question")
    if question is not None and not isinstance(question, str):
        raise TypeError("question is not a string")
    answer = payload.get("answer")
    if abstained or answer is None:
        return QaAnswer(answer=None, confidence=float(confidence), source_title=None, question=question)
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("answer is not a non-empty string")
    title = (payload.get("source") or {})["title"]
    if not isinstance(title, str) or not title.strip():
        raise ValueError("source title is not a non-empty string")
    return QaAnswer(
        answer=answer.strip(), confidence=float(confidence), source_title=title.strip(), question=question
    )
