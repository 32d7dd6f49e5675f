"""The HTTP contract of the QA service: what /answer accepts and returns, and the shape of every error.

Kept apart from the app so the contract reads in one place (the OpenAPI document is generated
from it) and the answering path can build responses without importing FastAPI.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from retrieval.service.settings import DEFAULT_TOP_K, MAX_QUESTION_CHARS, MAX_TOP_K


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
