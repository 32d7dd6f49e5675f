"""A loopback HTTP server that speaks Rasa's REST webhook with scripted replies.

The real assistant never sends markup, buttons or errors on purpose; this server
does, so the widget's handling of them (text only, clickable choices, friendly
errors, timeouts) is tested in a real browser over real HTTP.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WEBHOOK_PATH = "/webhooks/rest/webhook"
INJECTION_TEXT = "<script>window.__pwned=1</script><b>bold</b>"
UNBROKEN_WORD = "Sagittarius" * 30
SERVER_ERROR_MESSAGE = "boom"
# message -> seconds before answering; "stall" outlasts the widget's 15 s request timeout.
DELAYS_S = {"slow": 1.5, "stall": 20.0}

# message -> replies (anything else gets an empty list, like Rasa with nothing to say).
SCRIPTED_REPLIES: dict[str, list[dict[str, Any]]] = {
    "inject": [{"text": INJECTION_TEXT}],
    "choices": [
        {
            "text": "Shall I send it every day?",
            "buttons": [
                {"title": "Yes please", "payload": "/affirm"},
                {"title": "No thanks", "payload": "/deny"},
            ],
        }
    ],
    "/affirm": [{"text": "You picked yes."}],
    "long": [
        {"text": UNBROKEN_WORD},
        {"text": "Pick one", "buttons": [{"title": "Aries", "payload": "aries"}]},
    ],
    "slow": [{"text": "Sorry for the wait."}],
}


class ScriptedRasa:
    """Runs the scripted webhook on a free loopback port; records every message it receives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(body)

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.received)

    def __enter__(self) -> ScriptedRasa:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler_for(server: ScriptedRasa) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean."""

        def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self) -> None:
            self._send(204)

        def do_POST(self) -> None:
            if self.path != WEBHOOK_PATH:
                self._send(404)
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            server.record(body)
            message = body.get("message", "")
            if message == SERVER_ERROR_MESSAGE:
                self._send(500, b"Internal Server Error", "text/plain")
                return
            time.sleep(DELAYS_S.get(message, 0.0))
            replies = [
                {"recipient_id": body.get("sender"), **reply} for reply in SCRIPTED_REPLIES.get(message, [])
            ]
            # After a stall the widget has given up and closed the connection.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(200, json.dumps(replies).encode())

    return _Handler
