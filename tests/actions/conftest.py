"""Shared fixtures: a real horoscope API and QA service on loopback, a real SQLite file per test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import pytest
from horoscope_api_server import HoroscopeApiServer
from qa_service_server import QaServiceServer

from actions.subscriptions import SubscriptionStore

# Every test that needs "today" uses this date, so results never depend on the clock.
TODAY = date(2026, 11, 21)


@pytest.fixture(scope="session")
def horoscope_api() -> Iterator[HoroscopeApiServer]:
    with HoroscopeApiServer(slow_s=2.0) as api:
        yield api


@pytest.fixture(scope="session")
def qa_service() -> Iterator[QaServiceServer]:
    with QaServiceServer(slow_s=2.0) as service:
        yield service


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'var' / 'assistant.db'}"


@pytest.fixture
def store(database_url: str) -> SubscriptionStore:
    return SubscriptionStore.from_url(database_url)
