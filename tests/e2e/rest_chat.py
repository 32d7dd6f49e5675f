"""HTTP clients for the end-to-end tests (stdlib urllib, every call with a timeout).

`RestChat` is one person talking to Rasa's REST channel; `HoroscopeApi` reads the
loopback horoscope API directly, so a test knows which text the bot must relay
(`assert_horoscope`); `subscribed_sign` reads what a conversation stored in the
assistant's SQLite database.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from tests.e2e.bot_replies import said

WEBHOOK_PATH = "/webhooks/rest/webhook"
# A turn runs NLU, the policies and maybe an action that calls the QA service (its own
# timeout is 10 s) on two busy cores; the first turn also warms Rasa up.
TURN_TIMEOUT_S = 120.0
API_TIMEOUT_S = 10.0


def subscribed_sign(database_path: Path, sender_id: str) -> str | None:
    """The sign `sender_id` is subscribed to, or None."""
    with sqlite3.connect(database_path) as connection:
        row = connection.execute(
            "SELECT sign FROM horoscope_subscriptions WHERE sender_id = ?", (sender_id,)
        ).fetchone()
    return row[0] if row else None


def _get_json(url: str, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


@dataclass
class RestChat:
    """One conversation: its own sender id, so its own tracker and subscription."""

    rasa_url: str
    sender_id: str = field(default_factory=lambda: f"e2e-{uuid.uuid4().hex}")

    def say(self, text: str) -> list[str]:
        """Sends `text`; the bot's text replies in order."""
        request = urllib.request.Request(
            self.rasa_url + WEBHOOK_PATH,
            data=json.dumps({"sender": self.sender_id, "message": text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=TURN_TIMEOUT_S) as response:
            replies = json.loads(response.read())
        assert isinstance(replies, list), replies
        assert all(reply.get("recipient_id") == self.sender_id for reply in replies), replies
        return [reply["text"] for reply in replies if "text" in reply]


@dataclass(frozen=True)
class HoroscopeApi:
    """The loopback horoscope API the action server is pointed at."""

    url: str

    def todays_text(self, sign: str) -> str:
        """What the API serves for `sign` today: the text the bot has to pass on word for word."""
        query = f"{self.url}/horoscope/{sign}?date={date.today().isoformat()}"
        return _get_json(query, API_TIMEOUT_S)["horoscope"]


def assert_horoscope(replies: list[str], api: HoroscopeApi, sign: str) -> None:
    """The reply relays, word for word, what the horoscope API serves for `sign` today."""
    horoscope = said(replies, "utter_horoscope")
    assert horoscope is not None, replies
    assert horoscope["horoscope_sign"] == sign.capitalize()
    assert horoscope["horoscope_text"] == api.todays_text(sign)
