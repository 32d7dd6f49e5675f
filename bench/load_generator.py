"""Closed-loop HTTP load on one endpoint, run as its own process so the client's work is not the server's.

bench/turn_latency.py starts it with .venv-rasa's Python (the venv that has aiohttp) once per
(turn kind, users) cell, writes a JSON spec to its stdin and reads a JSON result from its stdout:

  spec:   {"target": "rasa" | "qa", "url", "messages": [text, ...], "first_message", "users",
           "duration_s", "max_requests", "timeout_s", "warmup", "turns_per_sender", "sender_prefix",
           "expected": [regex, ...], "first_turns": [turns each user made before] (optional)}
  result: {"latencies_s": [...], "requests", "errors": {"timeout", "http", "wrong_reply"},
           "error_examples": {...}, "warmup_errors", "elapsed_s", "turns_by_user": [...]}

Each user sends its next request as soon as the previous one is answered, until `duration_s`
has passed or `max_requests` have been sent in all. Request number n (counted over all users,
warm-up included) sends messages[(first_message + n) % len(messages)], so a list of varied
questions is walked through in order and the next cell can go on where this one stopped.
A reply only counts as a success when one of its texts (a QA reply's text is its answer, "" for
an abstention) fully matches one of the `expected` patterns, so a broken stack cannot look fast.
Latencies are those of the successes; every failure is counted under its cause. A cell measured
in rounds passes each user's turns so far back as `first_turns`, so its conversations go on
(and start anew every `turns_per_sender` turns) as in one long cell.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Spec:
    """What to send where, how hard and for how long; see the module docstring."""

    target: str
    url: str
    messages: tuple[str, ...]
    first_message: int
    users: int
    duration_s: float
    max_requests: int
    timeout_s: float
    warmup: int
    turns_per_sender: int
    sender_prefix: str
    expected: tuple[re.Pattern[str], ...]
    first_turns: tuple[int, ...] = ()

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Spec:
        if raw["target"] not in ("rasa", "qa"):
            raise ValueError(f"target must be 'rasa' or 'qa', got {raw['target']!r}")
        spec = cls(
            **{
                **raw,
                "messages": tuple(raw["messages"]),
                "expected": tuple(re.compile(p, re.DOTALL) for p in raw["expected"]),
                "first_turns": tuple(raw.get("first_turns", ())),
            }
        )
        if not spec.messages or not all(isinstance(m, str) for m in spec.messages):
            raise ValueError("messages must be a non-empty list of texts")
        if min(spec.users, spec.max_requests, spec.turns_per_sender) < 1 or spec.duration_s <= 0:
            raise ValueError("users, max_requests, turns_per_sender and duration_s must be positive")
        if spec.first_turns and len(spec.first_turns) != spec.users:
            raise ValueError("first_turns must give one count per user")
        return spec


@dataclass
class Tally:
    """Successful latencies and failures by cause (with the first example of each)."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)

    def fail(self, cause: str, detail: str) -> None:
        self.errors[cause] += 1
        self.error_examples.setdefault(cause, detail[:300])


def _request_body(spec: Spec, sender: str, message: str) -> dict[str, str]:
    if spec.target == "rasa":
        return {"sender": sender, "message": message}
    return {"question": message}


def _reply_texts(spec: Spec, payload: Any) -> list[str]:
    """The texts a user would see: Rasa's messages, or the QA service's answer ("" when it abstained)."""
    if spec.target == "rasa" and isinstance(payload, list):
        return [m["text"] for m in payload if isinstance(m, dict) and isinstance(m.get("text"), str)]
    if spec.target == "qa" and isinstance(payload, dict):
        if isinstance(payload.get("answer"), str):
            return [payload["answer"]]
        if payload.get("abstained") is True:
            return [""]
    return []


async def _send(session: aiohttp.ClientSession, spec: Spec, sender: str, message: str, tally: Tally) -> None:
    """One request, timed from sending to the whole reply read; the outcome goes into `tally`."""
    started = time.perf_counter()
    try:
        async with session.post(spec.url, json=_request_body(spec, sender, message)) as response:
            body = await response.text()
            elapsed = time.perf_counter() - started
            status = response.status
    except asyncio.TimeoutError:
        tally.fail("timeout", f"no reply within {spec.timeout_s} s")
        return
    except aiohttp.ClientError as error:
        tally.fail("http", f"{type(error).__name__}: {error}")
        return
    if status != 200:
        tally.fail("http", f"HTTP {status}: {body}")
        return
    try:
        texts = _reply_texts(spec, json.loads(body))
    except ValueError:
        texts = []
    if any(pattern.fullmatch(text) for text in texts for pattern in spec.expected):
        tally.latencies_s.append(elapsed)
    else:
        tally.fail("wrong_reply", body or "(empty reply)")


async def run(spec: Spec) -> dict[str, Any]:
    """Warm up (untimed, failures counted apart), then the closed loop of `spec.users` users."""
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    connector = aiohttp.TCPConnector(limit=spec.users)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        numbered = itertools.count(spec.first_message)

        def next_message() -> str:
            return spec.messages[next(numbered) % len(spec.messages)]

        warmup = Tally()
        for _ in range(spec.warmup):
            await _send(session, spec, f"{spec.sender_prefix}-warmup", next_message(), warmup)

        tally = Tally()
        sent = 0
        turns = list(spec.first_turns or [0] * spec.users)
        started = time.monotonic()
        deadline = started + spec.duration_s

        async def user(index: int) -> None:
            nonlocal sent
            while time.monotonic() < deadline and sent < spec.max_requests:
                sent += 1
                conversation = turns[index] // spec.turns_per_sender
                sender = f"{spec.sender_prefix}-u{index}-c{conversation}"
                await _send(session, spec, sender, next_message(), tally)
                turns[index] += 1

        await asyncio.gather(*(user(index) for index in range(spec.users)))
        elapsed = time.monotonic() - started
    return {
        "latencies_s": tally.latencies_s,
        "requests": sent,
        "errors": {cause: tally.errors[cause] for cause in ("timeout", "http", "wrong_reply")},
        "error_examples": tally.error_examples,
        "messages_sent": next(numbered) - spec.first_message,
        "warmup_errors": sum(warmup.errors.values()),
        "warmup_error_examples": warmup.error_examples,
        "elapsed_s": elapsed,
        "turns_by_user": turns,
    }


def main() -> None:
    try:
        spec = Spec.from_json(json.load(sys.stdin))
    except (ValueError, KeyError, TypeError, re.error) as error:
        raise SystemExit(f"load_generator: bad spec on stdin: {type(error).__name__}: {error}") from None
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
