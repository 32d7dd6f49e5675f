"""Where the day's horoscope comes from: a remote HTTP API or the built-in writer.

Both providers answer `daily(sign, day)` with the text, or raise `UnknownSign` /
`HoroscopeUnavailable`; the actions only know this interface.
"""

from __future__ import annotations

import hashlib
import logging
import random
from datetime import date
from typing import Protocol
from urllib.parse import quote

import requests

from actions.settings import Settings
from actions.zodiac import SIGNS, display_name

logger = logging.getLogger(__name__)


class HoroscopeError(Exception):
    """Base of the provider failures the actions turn into friendly answers."""


class UnknownSign(HoroscopeError):
    """The provider does not know this sign."""


class HoroscopeUnavailable(HoroscopeError):
    """The provider could not give a horoscope right now (down, slow, or answered nonsense)."""


class HoroscopeProvider(Protocol):
    def daily(self, sign: str, day: date) -> str:
        """Horoscope text of `sign` (canonical lowercase name) for `day`."""
        ...


class HttpHoroscopeProvider:
    """Client of GET {base_url}/horoscope/{sign}?date=YYYY-MM-DD (see README).

    One `requests.Session` keeps connections to the API open between requests.
    """

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._session = requests.Session()

    def daily(self, sign: str, day: date) -> str:
        url = f"{self._base_url}/horoscope/{quote(sign, safe='')}"
        try:
            response = self._session.get(url, params={"date": day.isoformat()}, timeout=self._timeout_s)
        except requests.RequestException as error:
            logger.warning("Horoscope API %s unreachable: %s", url, error)
            raise HoroscopeUnavailable(f"horoscope API unreachable: {error}") from error
        if response.status_code == 404:
            raise UnknownSign(f"horoscope API does not know the sign {sign!r}")
        if response.status_code != 200:
            logger.warning("Horoscope API %s answered HTTP %s", url, response.status_code)
            raise HoroscopeUnavailable(f"horoscope API answered HTTP {response.status_code}")
        return _horoscope_text(response, sign, day)


def _horoscope_text(response: requests.Response, sign: str, day: date) -> str:
    """The horoscope from a 200 answer, refusing anything that is not the documented JSON."""
    try:
        payload = response.json()
    except ValueError as error:
        logger.warning("Horoscope API %s answered non-JSON: %.200r", response.url, response.text)
        raise HoroscopeUnavailable("horoscope API answered non-JSON") from error
    text = payload.get("horoscope") if isinstance(payload, dict) else None
    if (
        not isinstance(text, str)
        or not text.strip()
        or payload.get("sign") != sign
        or payload.get("date") != day.isoformat()
    ):
        logger.warning("Horoscope API %s answered an unexpected payload: %.200r", response.url, payload)
        raise HoroscopeUnavailable("horoscope API answered an unexpected payload")
    return text.strip()


_OPENINGS = (
    "The Moon lights up your sense of adventure today.",
    "A quiet morning gives way to a lively afternoon.",
    "Venus smiles on your plans today.",
    "Mercury sharpens your words today.",
    "The stars ask you to slow down a little today.",
    "Mars lends you extra energy today.",
    "Jupiter widens your horizons today.",
    "Saturn rewards your patience today.",
    "An unexpected message could change the shape of your day.",
    "Today feels like a fresh page.",
)
_FOCUS = (
    "Put your attention on an old friendship that deserves a call.",
    "A work question you have been avoiding is easier than it looks.",
    "Money matters go well if you read the small print.",
    "Your home is where the good news arrives.",
    "A creative idea wants to be written down before it fades.",
    "Someone close to you needs you to listen more than to advise.",
    "A short trip or a walk somewhere new clears your head.",
    "Your health benefits from an early night.",
    "A decision you postponed is ready to be made.",
    "Learning something small today pays off later.",
)
_ADVICE = (
    "Say yes to the invitation you almost turned down.",
    "Trust your first instinct, then check the facts.",
    "Be generous with your time, but keep an hour for yourself.",
    "Let someone else take the lead for once.",
    "Finish one thing before you start the next.",
    "Keep your plans flexible after sunset.",
    "A kind word costs nothing and opens doors.",
    "Ask the question everyone else is too shy to ask.",
    "Tidy one corner of your life and the rest follows.",
    "Laugh at the small setbacks; they pass quickly.",
)
_LUCKY_COLOURS = ("red", "blue", "green", "gold", "silver", "violet", "orange", "turquoise")


class BuiltInHoroscopeProvider:
    """Writes the horoscope itself, so the assistant works offline.

    The text is chosen by a random generator seeded with sha256("sign:date"):
    the same all day everywhere (unlike Python's salted hash()), different per
    sign (the sign is named in it) and per day.
    """

    def daily(self, sign: str, day: date) -> str:
        if sign not in SIGNS:
            raise UnknownSign(f"no such sign: {sign!r}")
        seed = int.from_bytes(hashlib.sha256(f"{sign}:{day.isoformat()}".encode()).digest()[:8], "big")
        rng = random.Random(seed)
        return (
            f"{rng.choice(_OPENINGS)} {rng.choice(_FOCUS)} {rng.choice(_ADVICE)} "
            f"Lucky colour for {display_name(sign)}: {rng.choice(_LUCKY_COLOURS)}; "
            f"lucky number: {rng.randint(1, 99)}."
        )


def provider_from_settings(settings: Settings) -> HoroscopeProvider:
    """The HTTP API when HOROSCOPE_API_URL is set, else the built-in writer."""
    if settings.horoscope_api_url:
        return HttpHoroscopeProvider(settings.horoscope_api_url, settings.horoscope_api_timeout)
    return BuiltInHoroscopeProvider()
