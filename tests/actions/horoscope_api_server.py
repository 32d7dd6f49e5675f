"""A real horoscope HTTP API on 127.0.0.1 for tests, with a healthy and several broken faces.

    GET /horoscope/{sign}?date=YYYY-MM-DD             200 contract JSON, 404 for an unknown sign
    GET /slow/horoscope/{sign}?date=...               same, after `slow_s` seconds (for client timeouts)
    GET /broken/horoscope/{sign}?date=...             500
    GET /garbage/horoscope/{sign}?date=...            200 with an HTML body
    GET /incomplete/horoscope/{sign}?date=...         200 JSON without the "horoscope" field
    GET /stale/horoscope/{sign}?date=...              200 JSON for the right sign but another day

Use it as a context manager (`with HoroscopeApiServer() as api: api.url`), or run
this file to serve the healthy API on a fixed port for manual or end-to-end runs:
    python tests/actions/horoscope_api_server.py --port 8000
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

from loopback import LoopbackHandler, LoopbackServer

SIGNS = frozenset(
    {
        "aries",
        "taurus",
        "gemini",
        "cancer",
        "leo",
        "virgo",
        "libra",
        "scorpio",
        "sagittarius",
        "capricorn",
        "aquarius",
        "pisces",
    }
)
_PATH = re.compile(r"^(?:/(?P<face>slow|broken|garbage|incomplete|stale))?/horoscope/(?P<sign>[^/]+)$")
STALE_DATE = "2000-01-01"
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def served_text(sign: str, day: str) -> str:
    """The horoscope the healthy API returns, so tests can tell it came over HTTP."""
    return f"Served horoscope for {sign} on {day}: the stars favour integration tests."


class _Handler(LoopbackHandler):
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.requests_seen.append(self.path)
        match = _PATH.match(parts.path)
        day = parse_qs(parts.query).get("date", [""])[0]
        if not match:
            return self.send(404, "application/json", json.dumps({"error": "not found"}))
        face, sign = match["face"], match["sign"]
        if face == "slow" and self.wait_slowly():
            return None
        if face == "broken":
            return self.send(500, "application/json", json.dumps({"error": "internal error"}))
        if face == "garbage":
            return self.send(200, "text/html", "<html><body>Horoscopes are down</body></html>")
        if sign not in SIGNS:
            return self.send(404, "application/json", json.dumps({"error": f"unknown sign {sign}"}))
        if not _ISO_DATE.match(day):
            return self.send(400, "application/json", json.dumps({"error": "date=YYYY-MM-DD required"}))
        payload = {"sign": sign, "date": day, "horoscope": served_text(sign, day)}
        if face == "incomplete":
            del payload["horoscope"]
        if face == "stale":
            payload["date"] = STALE_DATE
        return self.send(200, "application/json", json.dumps(payload))


class HoroscopeApiServer(LoopbackServer):
    """The API served from a background thread; `url` is its base URL."""

    def __init__(self, port: int = 0, slow_s: float = 2.0) -> None:
        super().__init__(_Handler, port, slow_s)


if __name__ == "__main__":
    HoroscopeApiServer.serve_from_command_line("Horoscope API", __doc__)
