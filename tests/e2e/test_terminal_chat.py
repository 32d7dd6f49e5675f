"""`make run`'s terminal chat (scripts/run-chat.sh) in a pseudo-terminal, every service really running.

The screen shows the chat and no dependency warnings (they go to the log), a message over
the length limit gets the "too long" reply and the sign form carries on, Rasa's server
listens on loopback only, and /stop ends the script cleanly.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import sqlite3
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from scripts.stack import REPO_ROOT, SERVICE_START_TIMEOUT_S, stack_environment
from tests.e2e.bot_replies import shown
from tests.e2e.listeners import is_loopback, listening_addresses

RUN_CHAT = REPO_ROOT / "scripts" / "run-chat.sh"
READY_TEXT = "Bot loaded."
REPLY_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 60.0
STORE_TIMEOUT_S = 15.0
# Over the default MAX_MESSAGE_CHARS (2,000); typed through the terminal, so not a megabyte.
LONG_MESSAGE = "horoscope " * 500
# prompt_toolkit asks the terminal where the cursor is and waits for the answer.
CURSOR_POSITION_REQUEST = b"\x1b[6n"
TRUNCATION_MARKER = re.compile(r"\[message too long: ([\d,]+) characters, only the first 200 kept\]")
ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")


@dataclass
class Terminal:
    """A pseudo-terminal a script runs in; `screen` is everything it printed, escape codes removed."""

    master: int
    process: subprocess.Popen[bytes]
    output: bytearray = field(default_factory=bytearray)

    def read_until_closed(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # EIO: every process holding the terminal has exited
                return
            if not chunk:
                return
            if CURSOR_POSITION_REQUEST in chunk:
                os.write(self.master, b"\x1b[1;1R")
            self.output.extend(chunk)

    @property
    def screen(self) -> str:
        return ESCAPE_SEQUENCE.sub("", self.output.decode(errors="replace")).replace("\r", "")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\r")

    def wait_for(self, found: Callable[[str], bool], timeout_s: float, what: str, since: int = 0) -> None:
        """Waits until `found(screen[since:])` holds."""
        deadline = time.monotonic() + timeout_s
        while not found(self.screen[since:]):
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {what} on the terminal; it shows:\n{self.screen[-3000:]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def chat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Terminal, dict[str, str]]]:
    env, _ = stack_environment(tmp_path_factory.mktemp("terminal-chat"))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    process = subprocess.Popen(
        [str(RUN_CHAT)],
        cwd=REPO_ROOT,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    terminal = Terminal(master, process)
    reader = threading.Thread(target=terminal.read_until_closed, daemon=True)
    reader.start()
    try:
        terminal.wait_for(lambda screen: READY_TEXT in screen, 3 * SERVICE_START_TIMEOUT_S, "chat")
        yield terminal, env
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=EXIT_TIMEOUT_S)
        reader.join(timeout=10)
        os.close(master)


def test_the_screen_shows_the_chat_and_no_dependency_warnings(chat: tuple[Terminal, dict[str, str]]) -> None:
    terminal, env = chat
    before_chat = terminal.screen.split(READY_TEXT)[0]

    assert "warning" not in before_chat.lower(), before_chat
    assert [line for line in before_chat.splitlines() if line.strip()] == [
        f"Starting the QA service and the action server (logs in {env['LOG_DIR']}/) ...",
        "Opening the chat. Type /stop or press Ctrl-D to leave.",
    ]
    rasa_log = Path(env["LOG_DIR"], "rasa.log").read_text(errors="replace")
    assert f"Starting Rasa server on http://127.0.0.1:{env['RASA_PORT']}" in rasa_log


def test_every_service_of_the_chat_listens_on_loopback_only(chat: tuple[Terminal, dict[str, str]]) -> None:
    terminal, env = chat
    listening = listening_addresses(terminal.process.pid)

    addresses = [address for found in listening.values() for address in found]
    assert f"127.0.0.1:{env['RASA_PORT']}" in addresses, listening
    assert f"127.0.0.1:{env['ACTIONS_PORT']}" in addresses, listening
    assert all(is_loopback(address) for address in addresses), listening


def test_a_message_over_the_limit_is_declined_and_the_form_asks_again(
    chat: tuple[Terminal, dict[str, str]],
) -> None:
    terminal, env = chat
    since = len(terminal.screen)
    terminal.type("hi")
    terminal.wait_for(
        lambda screen: shown(screen, "utter_ask_horoscope_sign"), REPLY_TIMEOUT_S, "sign question", since
    )

    since = len(terminal.screen)
    terminal.type(LONG_MESSAGE)
    terminal.wait_for(
        lambda screen: shown(screen, "utter_message_too_long") and shown(screen, "utter_ask_horoscope_sign"),
        REPLY_TIMEOUT_S,
        "too-long reply and sign question",
        since,
    )

    # The terminal chat streams replies while Rasa handles the message: the tracker is saved after.
    # What reaches Rasa is 4,999 characters (the line without its trailing space), or 4,095 when
    # the line arrives while the terminal is between prompts in line mode (Linux keeps at most
    # 4,095 characters of a line then): either is over the limit and stored as an excerpt.
    deadline = time.monotonic() + STORE_TIMEOUT_S
    while not _truncation_markers(env) and time.monotonic() < deadline:
        time.sleep(0.5)
    counts = _truncation_markers(env)
    assert counts and all(count > 2000 for count in counts), counts
    assert not any(LONG_MESSAGE.strip() in data for data in _stored_user_events(env))


def _truncation_markers(env: dict[str, str]) -> list[int]:
    """The lengths named by message_limit's "[message too long: N characters, ...]" in stored user events."""
    return [
        int(match.group(1).replace(",", ""))
        for data in _stored_user_events(env)
        for match in TRUNCATION_MARKER.finditer(data)
    ]


def _stored_user_events(env: dict[str, str]) -> list[str]:
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as connection:
        return [data for (data,) in connection.execute("SELECT data FROM events WHERE type_name = 'user'")]


def test_stop_ends_the_chat_and_the_services(chat: tuple[Terminal, dict[str, str]]) -> None:
    """Runs last: the chat is over afterwards."""
    terminal, _ = chat

    terminal.type("/stop")

    assert terminal.process.wait(timeout=EXIT_TIMEOUT_S) == 0
    assert listening_addresses(terminal.process.pid) == {}
