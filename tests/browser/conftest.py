"""Fixtures for the browser tests: one set of real services and one Chromium for the session.

Playwright drives Debian's Chromium (apt package `chromium`), never a downloaded browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from scripted_rasa import ScriptedRasa

from scripts.stack import Stack, StackDidNotStart, running_stack

REPO_ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = REPO_ROOT / "tests" / "output"


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole assistant started by scripts/serve.sh, with the built-in horoscope writer."""
    try:
        with running_stack(tmp_path_factory.mktemp("services")) as started:
            yield started
    except StackDidNotStart as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def scripted_rasa() -> Iterator[ScriptedRasa]:
    with ScriptedRasa() as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}; install it with: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: its own localStorage, so its own conversation."""
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
