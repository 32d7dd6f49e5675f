"""The turn benchmark's load generator against a real HTTP server on loopback: a cell measured in
rounds carries each user's conversations on, and only the expected reply counts.

Runs in .venv-rasa, the venv with aiohttp that bench/turn_latency.py starts the generator with.
The server is a stand-in for Rasa's REST channel on purpose: what is checked is the generator's own
bookkeeping (senders, counts), which a real Rasa would only make slow and nondeterministic; the
benchmark itself, and tests/e2e, run the real stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from bench.load_generator import Spec, run


def spec(url: str, **overrides: Any) -> Spec:
    raw = {
        "target": "rasa",
        "url": url,
        "messages": ["hello"],
        "first_message": 0,
        "users": 1,
        "duration_s": 30.0,
        "max_requests": 3,
        "timeout_s": 5.0,
        "warmup": 0,
        "turns_per_sender": 2,
        "sender_prefix": "cell",
        "expected": ["ok"],
        **overrides,
    }
    return Spec.from_json(raw)


def against_rest_channel(load: Callable[[str], Awaitable[Any]]) -> tuple[Any, list[str]]:
    """Run `load(url)` against a stand-in for Rasa's REST channel on loopback, which records each
    sender and answers "ok" (or "hmm" to the message "wrong"); its result and the senders seen."""
    senders: list[str] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.json()
        senders.append(body["sender"])
        return web.json_response([{"text": "hmm" if body["message"] == "wrong" else "ok"}])

    async def main() -> Any:
        app = web.Application()
        app.router.add_post("/webhook", webhook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            return await load(f"http://127.0.0.1:{port}/webhook")
        finally:
            await runner.cleanup()

    return asyncio.run(main()), senders


def test_a_second_round_goes_on_with_the_users_conversations() -> None:
    async def two_rounds(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
        first = await run(spec(url))
        return first, await run(spec(url, first_turns=first["turns_by_user"]))

    (first, second), senders = against_rest_channel(two_rounds)

    assert first["turns_by_user"] == [3] and second["turns_by_user"] == [6]
    # two turns a conversation, counted across both rounds as in one cell of six requests
    assert senders == ["cell-u0-c0", "cell-u0-c0", "cell-u0-c1", "cell-u0-c1", "cell-u0-c2", "cell-u0-c2"]


def test_only_the_expected_reply_counts() -> None:
    result, _ = against_rest_channel(lambda url: run(spec(url, messages=["hello", "wrong"], max_requests=4)))

    assert len(result["latencies_s"]) == 2
    assert result["errors"]["wrong_reply"] == 2


def test_first_turns_must_name_every_user() -> None:
    with pytest.raises(ValueError, match="one count per user"):
        spec("http://127.0.0.1:1/webhook", users=2, first_turns=[3])
