"""The one place that reads the actions' configuration from the environment.

Every default works offline: no HOROSCOPE_API_URL means the built-in horoscope
writer, no DATABASE_URL means a SQLite file under var/ in the repository.
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


class SettingsError(ValueError):
    """A configuration value is unusable; raised at start so nothing fails later mid-conversation."""


@dataclass(frozen=True)
class Settings:
    """Validated configuration of the custom actions."""

    horoscope_api_url: str | None
    horoscope_api_timeout: float
    database_url: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate HOROSCOPE_API_URL, HOROSCOPE_API_TIMEOUT and DATABASE_URL."""
        env = os.environ if environ is None else environ
        return cls(
            horoscope_api_url=_api_url(env.get("HOROSCOPE_API_URL", "")),
            horoscope_api_timeout=_timeout(env.get("HOROSCOPE_API_TIMEOUT", "")),
            database_url=_database_url(env.get("DATABASE_URL", "")),
        )


def _api_url(raw: str) -> str | None:
    url = raw.strip().rstrip("/")
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"HOROSCOPE_API_URL must be an http(s) URL like http://host:8000, got {raw!r}")
    return url


def _timeout(raw: str) -> float:
    if not raw.strip():
        return DEFAULT_API_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        raise SettingsError(f"HOROSCOPE_API_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise SettingsError(f"HOROSCOPE_API_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return seconds


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
