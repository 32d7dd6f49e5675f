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

import argparse
import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

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


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.requests_seen.append(self.path)
        match = _PATH.match(parts.path)
        day = parse_qs(parts.query).get("date", [""])[0]
        if not match:
            return self._send(404, "application/json", json.dumps({"error": "not found"}))
        face, sign = match["face"], match["sign"]
        if face == "slow" and self.server.stopping.wait(self.server.slow_s):
            return None
        if face == "broken":
            return self._send(500, "application/json", json.dumps({"error": "internal error"}))
        if face == "garbage":
            return self._send(200, "text/html", "<html><body>Horoscopes are down</body></html>")
        if sign not in SIGNS:
            return self._send(404, "application/json", json.dumps({"error": f"unknown sign {sign}"}))
        if not _ISO_DATE.match(day):
            return self._send(400, "application/json", json.dumps({"error": "date=YYYY-MM-DD required"}))
        payload = {"sign": sign, "date": day, "horoscope": served_text(sign, day)}
        if face == "incomplete":
            del payload["horoscope"]
        if face == "stale":
            payload["date"] = STALE_DATE
        return self._send(200, "application/json", json.dumps(payload))

    def _send(self, status: int, content_type: str, body: str) -> None:
        data = body.encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing left to answer

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, slow_s: float) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.slow_s = slow_s
        self.stopping = threading.Event()
        self.requests_seen: list[str] = []


class HoroscopeApiServer:
    """The API served from a background thread; `url` is its base URL."""

    def __init__(self, port: int = 0, slow_s: float = 2.0) -> None:
        self._server = _Server(port, slow_s)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests_seen(self) -> list[str]:
        return self._server.requests_seen

    def __enter__(self) -> HoroscopeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    with HoroscopeApiServer(port=args.port) as api:
        print(f"Horoscope API on {api.url} (Ctrl+C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
