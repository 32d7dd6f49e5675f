"""The one place that reads the actions' configuration from the environment.

Every default works offline: no HOROSCOPE_API_URL means the built-in horoscope
writer, no DATABASE_URL means a SQLite file under var/ in the repository, and
the QA service is expected on loopback (QA_SERVICE_URL, default
http://127.0.0.1:8000). The QA service's confidence is the probability that its
answer is right (calibrated on held-out questions: retrieval.service.calibration);
answers below QA_MIN_CONFIDENCE (default 0.80) are given with a warning that the
bot is not sure. 0.80 is the calibration's `hedge_below` for the shipped reader,
the lowest confidence at which 90% of the answers to each set of its fitting
questions (SQuAD's and the knowledge base's) are right; on held-out questions 90.0%
of the unhedged answers are right (SQuAD dev) and 98.4% (the knowledge base, 60 of 61):
bench/results/confidence.json. tests/actions/test_settings.py keeps the two equal.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_FILE = REPO_ROOT / "var" / "assistant.db"
DEFAULT_API_TIMEOUT_S = 3.0
DEFAULT_QA_SERVICE_URL = "http://127.0.0.1:8000"
DEFAULT_QA_TIMEOUT_S = 5.0
DEFAULT_QA_MIN_CONFIDENCE = 0.80


class SettingsError(ValueError):
    """A configuration value is unusable; raised at start so nothing fails later mid-conversation."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration of the custom actions."""

    horoscope_api_url: str | None
    horoscope_api_timeout: float
    database_url: str
    qa_service_url: str = DEFAULT_QA_SERVICE_URL
    qa_service_timeout: float = DEFAULT_QA_TIMEOUT_S
    qa_min_confidence: float = DEFAULT_QA_MIN_CONFIDENCE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every variable; a bad value fails here, with its name."""
        env = os.environ if environ is None else environ
        return cls(
            horoscope_api_url=_http_url("HOROSCOPE_API_URL", env.get("HOROSCOPE_API_URL", "")),
            horoscope_api_timeout=_seconds(
                "HOROSCOPE_API_TIMEOUT", env.get("HOROSCOPE_API_TIMEOUT", ""), DEFAULT_API_TIMEOUT_S
            ),
            database_url=_database_url(env.get("DATABASE_URL", "")),
            qa_service_url=_http_url("QA_SERVICE_URL", env.get("QA_SERVICE_URL", ""))
            or DEFAULT_QA_SERVICE_URL,
            qa_service_timeout=_seconds(
                "QA_SERVICE_TIMEOUT", env.get("QA_SERVICE_TIMEOUT", ""), DEFAULT_QA_TIMEOUT_S
            ),
            qa_min_confidence=_fraction(
                "QA_MIN_CONFIDENCE", env.get("QA_MIN_CONFIDENCE", ""), DEFAULT_QA_MIN_CONFIDENCE
            ),
        )


def _http_url(name: str, raw: str) -> str | None:
    """The URL without a trailing slash, None when unset."""
    url = raw.strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL like http://host:8000, got {raw!r}")
    return url


def _number(name: str, raw: str, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be {what}, got {raw!r}")
    return value


def _seconds(name: str, raw: str, default: float) -> float:
    if not raw.strip():
        return default
    seconds = _number(name, raw, "a number of seconds")
    if seconds <= 0:
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return seconds


def _fraction(name: str, raw: str, default: float) -> float:
    if not raw.strip():
        return default
    value = _number(name, raw, "a number between 0 and 1")
    if not 0 <= value <= 1:
        raise SettingsError(f"{name} must be a number between 0 and 1, got {raw!r}")
    return value


def _database_url(raw: str) -> str:
    url = raw.strip()
    if not url:
        DEFAULT_DATABASE_FILE.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{DEFAULT_DATABASE_FILE}"
    try:
        make_url(url)
    except ArgumentError:
        raise SettingsError(
            "DATABASE_URL must be a SQLAlchemy URL like sqlite:///path.db or "
            "postgresql://user:password@host/db (value not shown: it may hold a password)"
        ) from None
    return url
