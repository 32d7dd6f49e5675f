"""Simulated users chatting with the assistant over Rasa's REST channel, for fault tests and benchmarks.

Each user runs the same short conversation again and again under a fresh sender id ("hi",
a sign, "no": a form, a slot, a custom action and a yes/no offer), until stopped or out of
turns, and every turn is recorded: status, latency, replies. `lost_messages` then compares
the turns the bot answered (HTTP 200 with a reply) with what the tracker store kept. Standard
library only; every request has a timeout.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

WEBHOOK_PATH = "/webhooks/rest/webhook"
TURN_TIMEOUT_S = 120.0
SIGNS = ("aries", "taurus", "gemini", "cancer", "leo", "virgo", "libra", "scorpio", "sagittarius")
CONVERSATION = ("hi", "{sign}", "no")


@dataclass(frozen=True)
class Turn:
    """One message and what came of it; `status` is None when no HTTP answer came at all."""

    sender_id: str
    text: str
    status: int | None
    started: float
    latency_s: float
    replies: list[str]
    body: str

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.replies)


def send(base_url: str, sender_id: str, text: str, timeout_s: float = TURN_TIMEOUT_S) -> Turn:
    """Posts one message to the REST channel at `base_url`; never raises for HTTP or network errors."""
    request = urllib.request.Request(
        base_url + WEBHOOK_PATH,
        data=json.dumps({"sender": sender_id, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    started = time.monotonic()
    status, body = None, ""
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, body = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        body = str(error)
    replies: list[str] = []
    if status == 200:
        replies = [reply.get("text", "") for reply in json.loads(body)]
    return Turn(sender_id, text, status, started, time.monotonic() - started, replies, body)


@dataclass
class ChatLoad:
    """`users` threads chatting with `base_url` until `stop()` or `max_turns` each."""

    base_url: str
    users: int
    max_turns: int = 60
    pause_s: float = 0.2
    turns: list[Turn] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _chat(self, user: int) -> None:
        for number in range(self.max_turns):
            if self._stop.is_set():
                return
            conversation, step = divmod(number, len(CONVERSATION))
            if step == 0:
                sender_id = f"load-{user}-{uuid.uuid4().hex[:12]}"
            sign = SIGNS[(user + conversation) % len(SIGNS)]
            turn = send(self.base_url, sender_id, CONVERSATION[step].format(sign=sign))
            with self._lock:
                self.turns.append(turn)
            self._stop.wait(self.pause_s)

    def start(self) -> ChatLoad:
        self._threads = [
            threading.Thread(target=self._chat, args=(user,), daemon=True) for user in range(self.users)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = TURN_TIMEOUT_S + 10) -> list[Turn]:
        """Lets each user finish the turn under way; the turns of all users, in the order they ended."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        with self._lock:
            return sorted(self.turns, key=lambda turn: turn.started + turn.latency_s)

    def wait_for_turns(self, count: int, timeout_s: float) -> None:
        """Blocks until at least `count` turns have ended, so that a fault hits users mid-chat."""
        deadline = time.monotonic() + timeout_s
        while len(self.turns) < count and time.monotonic() < deadline:
            time.sleep(0.2)


def lost_messages(turns: list[Turn], stored_texts: Callable[[str], list[str]]) -> int:
    """Answered messages (HTTP 200, a reply) missing from what the tracker store kept for their sender."""
    lost = 0
    for sender_id in {turn.sender_id for turn in turns}:
        answered = Counter(turn.text for turn in turns if turn.sender_id == sender_id and turn.ok)
        lost += sum((answered - Counter(stored_texts(sender_id))).values())
    return lost


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
