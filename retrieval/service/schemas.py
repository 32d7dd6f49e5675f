"""The HTTP contract of the QA service: what /answer accepts and returns, and the shape of every error.

Kept apart from the app so the contract reads in one place (the OpenAPI document is generated
from it) and the answering path can build responses without importing FastAPI.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr, field_validator

from retrieval.service.settings import DEFAULT_TOP_K, MAX_QUESTION_CHARS, MAX_TOP_K

# A question holds one character outside what str.strip() removes. The set is spelled out because
# JSON Schema's regex dialect (ECMA 262, what the OpenAPI document's readers use) has another \s:
# schemathesis took "\x1d" for text under a plain \S.
NOT_BLANK = r"[^\u0009-\u000d\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _integral_number_as_int(value: object) -> object:
    """JSON has one number type and JSON Schema counts 17.0 as an integer, so the documented
    `"type": "integer"` takes it (schemathesis sent it); 2.5, "5" and true stay errors (StrictInt)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class AnswerRequest(BaseModel):
    """A question; strict types, so `"top_k": "5"` or `"question": 7` are errors rather than guesses."""

    model_config = ConfigDict(extra="forbid")

    question: StrictStr = Field(
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        examples=["Who rules Scorpio?"],
        json_schema_extra={"pattern": NOT_BLANK},  # documents _not_blank, which words the error
    )
    top_k: Annotated[StrictInt, BeforeValidator(_integral_number_as_int)] = Field(
        default=DEFAULT_TOP_K, ge=1, le=MAX_TOP_K, description="how many retrieved passages the reader reads"
    )

    @field_validator("question")
    @classmethod
    def _not_blank(cls, question: str) -> str:
        if not re.search(NOT_BLANK, question):
            raise ValueError("the question is blank (only whitespace)")
        return question


class SourceRef(BaseModel):
    title: str
    passage_id: str


class Source(SourceRef):
    text: str = Field(description="the whole passage the answer was read from")


class CandidateOut(BaseModel):
    text: str
    confidence: float = Field(description="the reader's share for this span (uncalibrated)")
    source: SourceRef


class Timings(BaseModel):
    retrieve: float
    read: float
    total: float


AbstainReason = Literal["off_topic", "low_confidence"]


class AnswerResponse(BaseModel):
    question: str = Field(
        description="the question this answer is for, as the service read it (a client that rewrote a "
        "follow-up shows what was asked)"
    )
    answer: str | None = Field(description="null when the service abstains")
    confidence: float = Field(
        description="probability that the answer is right (calibrated on held-out questions, see "
        "retrieval.service.calibration; the reader's share when its model has no calibration), also "
        "when abstaining; 0 when off-topic"
    )
    reader_confidence: float = Field(
        description="the reader's own share for its best span, before calibration; 0 when off-topic"
    )
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
