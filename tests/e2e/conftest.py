"""Fixtures for the end-to-end tests: every service really running on loopback.

scripts/serve.sh starts the QA service, the action server, Rasa and the web server;
the action server fetches horoscopes from the loopback horoscope API of
tests/actions/horoscope_api_server.py, run here as its own process, and keeps
subscriptions in a throwaway SQLite database.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.stack import Stack, StackDidNotStart, free_port, running_stack
from tests.e2e.rest_chat import HoroscopeApi

REPO_ROOT = Path(__file__).resolve().parents[2]

HOROSCOPE_API_SCRIPT = REPO_ROOT / "tests" / "actions" / "horoscope_api_server.py"
API_START_TIMEOUT_S = 60.0


def _wait_until_serving(api: HoroscopeApi, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT_S
    while True:
        try:
            api.todays_text("leo")
            return
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the horoscope API did not start:\n{log_path.read_text(errors='replace')}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def horoscope_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HoroscopeApi]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("horoscope-api") / "api.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(HOROSCOPE_API_SCRIPT), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        api = HoroscopeApi(f"http://127.0.0.1:{port}")
        _wait_until_serving(api, process, log_path)
        yield api
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, horoscope_api: HoroscopeApi) -> Iterator[Stack]:
    try:
        with running_stack(
            tmp_path_factory.mktemp("stack"), env={"HOROSCOPE_API_URL": horoscope_api.url}
        ) as started:
            yield started
    except StackDidNotStart as error:
        pytest.fail(str(error))
