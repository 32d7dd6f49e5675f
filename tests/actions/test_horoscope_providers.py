"""Horoscope providers against a real HTTP server on loopback, and the built-in writer."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import TODAY
from horoscope_api_server import HoroscopeApiServer, served_text

from actions.horoscope import (
    BuiltInHoroscopeProvider,
    HoroscopeUnavailable,
    HttpHoroscopeProvider,
    UnknownSign,
    provider_from_settings,
)
from actions.settings import Settings
from actions.zodiac import SIGNS
from scripts.stack import free_port

SHORT_TIMEOUT_S = 0.3


def http_provider(api: HoroscopeApiServer, face: str = "") -> HttpHoroscopeProvider:
    return HttpHoroscopeProvider(f"{api.url}{face}", timeout_s=SHORT_TIMEOUT_S)


def test_http_provider_returns_the_served_horoscope(horoscope_api: HoroscopeApiServer) -> None:
    text = http_provider(horoscope_api).daily("leo", TODAY)
    assert text == served_text("leo", "2026-11-21")
    assert horoscope_api.requests_seen[-1] == "/horoscope/leo?date=2026-11-21"


def test_http_provider_404_means_unknown_sign(horoscope_api: HoroscopeApiServer) -> None:
    with pytest.raises(UnknownSign):
        http_provider(horoscope_api).daily("ophiuchus", TODAY)


@pytest.mark.parametrize(
    ("face", "logged"),
    [
        ("/slow", "unreachable"),  # the server answers after 2 s, the client waits 0.3 s
        ("/broken", "HTTP 500"),
        ("/garbage", "non-JSON"),
        ("/incomplete", "unexpected payload"),
        ("/stale", "unexpected payload"),  # a horoscope for another day is not today's
    ],
)
def test_http_provider_failures_are_typed_and_logged(
    horoscope_api: HoroscopeApiServer, face: str, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="actions.horoscope"), pytest.raises(HoroscopeUnavailable):
        http_provider(horoscope_api, face).daily("leo", TODAY)
    assert logged in caplog.text


def test_http_provider_connection_refused_is_unavailable() -> None:
    provider = HttpHoroscopeProvider(f"http://127.0.0.1:{free_port()}", timeout_s=SHORT_TIMEOUT_S)
    with pytest.raises(HoroscopeUnavailable):
        provider.daily("leo", TODAY)


def test_http_provider_keeps_one_connection_for_many_requests(horoscope_api: HoroscopeApiServer) -> None:
    provider = http_provider(horoscope_api)
    provider.daily("leo", TODAY)
    opened = horoscope_api.connections_opened
    for sign in ("aries", "virgo", "pisces"):
        assert provider.daily(sign, TODAY) == served_text(sign, "2026-11-21")
    assert horoscope_api.connections_opened == opened


def test_http_provider_recovers_when_the_api_restarts() -> None:
    """A pooled connection to an API that went away is replaced, not reused into an error."""
    port = free_port()
    provider = HttpHoroscopeProvider(f"http://127.0.0.1:{port}", timeout_s=SHORT_TIMEOUT_S)
    with HoroscopeApiServer(port=port):
        assert provider.daily("leo", TODAY) == served_text("leo", "2026-11-21")
    with pytest.raises(HoroscopeUnavailable):
        provider.daily("leo", TODAY)
    with HoroscopeApiServer(port=port):
        assert provider.daily("leo", TODAY) == served_text("leo", "2026-11-21")


def test_built_in_provider_is_stable_for_a_sign_and_day() -> None:
    assert BuiltInHoroscopeProvider().daily("virgo", TODAY) == BuiltInHoroscopeProvider().daily(
        "virgo", TODAY
    )


def test_built_in_provider_is_identical_across_processes() -> None:
    """Python's hash() is salted per process; the seed must not depend on it."""
    script = (
        "import datetime, actions.horoscope as h; "
        "print(h.BuiltInHoroscopeProvider().daily('virgo', datetime.date(2026, 11, 21)))"
    )
    texts = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert texts == {BuiltInHoroscopeProvider().daily("virgo", TODAY)}


def test_built_in_provider_differs_per_sign_and_per_day() -> None:
    provider = BuiltInHoroscopeProvider()
    assert len({provider.daily(sign, TODAY) for sign in SIGNS}) == len(SIGNS)
    month = [TODAY + timedelta(days=offset) for offset in range(31)]
    assert len({provider.daily("aries", day) for day in month}) == len(month)
    assert "Aries" in provider.daily("aries", TODAY)


def test_built_in_provider_refuses_unknown_signs() -> None:
    with pytest.raises(UnknownSign):
        BuiltInHoroscopeProvider().daily("ophiuchus", TODAY)


def test_factory_picks_the_provider_from_settings() -> None:
    assert isinstance(provider_from_settings(Settings.from_env({})), BuiltInHoroscopeProvider)
    http = Settings.from_env({"HOROSCOPE_API_URL": "http://127.0.0.1:9"})
    assert isinstance(provider_from_settings(http), HttpHoroscopeProvider)
