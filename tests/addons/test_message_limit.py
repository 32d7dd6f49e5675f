"""Over-long messages reach Rasa already parsed as `message_too_long`, over real HTTP, both channels;
malformed bodies get a 400 from the REST channel and blank messages reach Rasa from neither.

The channels run in a real Sanic server on loopback, registered the way Rasa registers
them; the agent behind them only records what it is handed. The end-to-end tests
(tests/e2e/test_faults.py, tests/e2e/test_terminal_chat.py) check the reply of the real bot.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa.core.channels.channel import UserMessage, register
from sanic import Sanic
from sanic.server import AsyncioServer

from addons.message_limit import (
    DEFAULT_MAX_MESSAGE_CHARS,
    EXCERPT_CHARS,
    TOO_LONG_INTENT,
    LengthLimitedRestInput,
    LengthLimitedShellInput,
    limit_length,
    max_message_chars,
)
from scripts.stack import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
WEBHOOK_PATH = "/rest/webhook"  # under the prefix each channel is registered with
ONE_MEGABYTE = 1_000_000


class RecordingAgent:
    """Stands in for Rasa's agent: keeps each message it is handed and answers "ok"."""

    def __init__(self) -> None:
        self.messages: list[UserMessage] = []

    async def handle_message(self, message: UserMessage) -> None:
        self.messages.append(message)
        await message.output_channel.send_text_message(message.sender_id, "ok")


@dataclass(frozen=True)
class Served:
    url: str
    agent: RecordingAgent


async def _start(app: Sanic, port: int) -> AsyncioServer:
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    await server.startup()
    await server.start_serving()
    return server


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """Both channels under /rest/ and /shell/ of one server: Sanic 21 sets up one app per process."""
    app = Sanic("message-limit-test", configure_logging=False)
    app.ctx.agent = RecordingAgent()
    register([LengthLimitedRestInput(max_chars=DEFAULT_MAX_MESSAGE_CHARS)], app, route="/rest/")
    register([LengthLimitedShellInput(max_chars=DEFAULT_MAX_MESSAGE_CHARS)], app, route="/shell/")
    port = free_port()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(_start(app, port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", app.ctx.agent)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()


def _post(url: str, text: str) -> str:
    request = urllib.request.Request(
        url,
        data=json.dumps({"sender": "alice", "message": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read().decode()


def _post_body(url: str, body: bytes) -> tuple[int, Any]:
    """POSTs `body` as it is: the status and the JSON answered (a streamed answer is JSON lines)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, raw = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read().decode()
    return status, [json.loads(line) for line in raw.splitlines() if line]


def _is_too_long(message: UserMessage) -> bool:
    return message.parse_data is not None and message.parse_data["intent"]["name"] == TOO_LONG_INTENT


@pytest.mark.parametrize("query", ["", "?stream=true"], ids=["plain", "streamed"])
@pytest.mark.parametrize("prefix", ["/rest", "/shell"], ids=["rest-channel", "shell-channel"])
def test_a_megabyte_message_is_handed_on_parsed_and_cut(served: Served, prefix: str, query: str) -> None:
    long_text = "horoscope " * (ONE_MEGABYTE // 10 - 1) + "horoscope!"
    short_text = "horoscope for leo"
    url = f"{served.url}{prefix}{WEBHOOK_PATH}{query}"
    served.agent.messages.clear()

    for text in (long_text, short_text):
        assert "ok" in _post(url, text)

    too_long, short = served.agent.messages
    assert _is_too_long(too_long)
    assert too_long.parse_data["entities"] == []
    assert too_long.text.startswith(long_text[:EXCERPT_CHARS])
    assert too_long.text.endswith("[message too long: 1,000,000 characters, only the first 200 kept]")
    assert too_long.parse_data["text"] == too_long.text
    # The message that follows is Rasa's to parse as usual.
    assert short.text == short_text
    assert short.parse_data is None


@pytest.mark.parametrize("query", ["", "?stream=true"], ids=["plain", "streamed"])
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "the body is empty"),
        (b"[]", "the body is an array"),
        (b'{"sender": "alice", "message": ' + b"[" * 500 + b"]" * 500 + b"}", "the body nests more than"),
        (b'{"message": "hi"}', '"sender" is missing'),
        (b'{"sender": ["alice"], "message": "hi"}', '"sender" must be a string, not an array'),
        (b'{"sender": "alice", "message": 7}', '"message" must be a string, not a number'),
        (b'{"sender": "alice", "message": " \\n "}', '"message" is empty or only blank space'),
    ],
    ids=["empty", "array", "nested-500", "no-sender", "sender-list", "message-number", "message-blank"],
)
def test_the_rest_channel_refuses_a_malformed_body_before_rasa_reads_it(
    served: Served, body: bytes, error: str, query: str
) -> None:
    served.agent.messages.clear()

    status, answers = _post_body(f"{served.url}/rest{WEBHOOK_PATH}{query}", body)

    assert status == 400
    assert len(answers) == 1 and answers[0]["error"].startswith(error), answers
    assert served.agent.messages == []


def test_a_good_body_reaches_rasa_with_its_metadata(served: Served) -> None:
    served.agent.messages.clear()
    body = {"sender": "bob", "message": " hi ", "metadata": {"page": "/"}, "input_channel": "site"}

    status, _ = _post_body(f"{served.url}/rest{WEBHOOK_PATH}", json.dumps(body).encode())

    assert status == 200
    (message,) = served.agent.messages
    assert (message.sender_id, message.text, message.metadata) == ("bob", "hi", {"page": "/"})
    assert message.input_channel == "site"


def test_the_health_check_is_not_a_webhook_body(served: Served) -> None:
    with urllib.request.urlopen(f"{served.url}/rest/rest/", timeout=60) as response:
        assert json.loads(response.read()) == {"status": "ok"}


@pytest.mark.parametrize(("query", "answered"), [("", [[]]), ("?stream=true", [])], ids=["plain", "streamed"])
def test_the_terminal_chat_gets_no_reply_to_an_empty_line(served: Served, query: str, answered: list) -> None:
    """Rasa's terminal chat sends "" for an empty line and ends on an error status: nothing is parsed."""
    served.agent.messages.clear()

    status, answers = _post_body(
        f"{served.url}/shell{WEBHOOK_PATH}{query}", b'{"sender": "eve", "message": "  "}'
    )

    assert (status, answers) == (200, answered)
    assert served.agent.messages == []


def test_channels_keep_the_names_and_url_of_rasas_own() -> None:
    """The widget posts to /webhooks/rest/webhook; a channel named cmdline makes `rasa run` a shell."""
    assert LengthLimitedRestInput.name() == "rest"
    assert LengthLimitedShellInput.name() == "cmdline"
    assert LengthLimitedShellInput().url_prefix() == "rest"


@pytest.mark.parametrize(
    ("length", "too_long"),
    [(DEFAULT_MAX_MESSAGE_CHARS, False), (DEFAULT_MAX_MESSAGE_CHARS + 1, True)],
    ids=["at-the-limit", "one-over"],
)
def test_the_limit_is_inclusive(length: int, too_long: bool) -> None:
    message = UserMessage("a" * length, sender_id="alice")

    assert _is_too_long(limit_length(message, DEFAULT_MAX_MESSAGE_CHARS)) is too_long


def test_the_limit_comes_from_max_message_chars() -> None:
    assert max_message_chars({}) == DEFAULT_MAX_MESSAGE_CHARS
    assert max_message_chars({"MAX_MESSAGE_CHARS": " 500 "}) == 500


@pytest.mark.parametrize("raw", ["0", "-5", "2k", "1.5"])
def test_a_bad_limit_is_refused_at_start(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_MESSAGE_CHARS", raw)

    with pytest.raises(ValueError, match="MAX_MESSAGE_CHARS"):
        LengthLimitedRestInput()


def test_the_rest_channel_is_configured_and_the_bot_has_a_reply() -> None:
    credentials = yaml.safe_load((REPO_ROOT / "credentials.yml").read_text(encoding="utf-8"))
    domain = yaml.safe_load((REPO_ROOT / "domain.yml").read_text(encoding="utf-8"))

    assert list(credentials) == ["addons.message_limit.LengthLimitedRestInput"]
    assert TOO_LONG_INTENT in domain["intents"]
    assert len(domain["responses"]["utter_message_too_long"]) >= 2
