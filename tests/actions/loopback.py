"""What the loopback test servers share: a threaded HTTP server on 127.0.0.1 run from a thread.

A server module subclasses `LoopbackHandler` for its routes and `LoopbackServer`
for its context manager; slow routes wait on `server.stopping` so shutdown never hangs.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from typing_extensions import Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler], slow_s: float) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.slow_s = slow_s
        self.stopping = threading.Event()
        self.requests_seen: list[str] = []
        self.connections_opened = 0
        self.open_connections: set[socket.socket] = set()

    def close_open_connections(self) -> None:
        """What a process that dies does to its kept-alive connections."""
        for connection in list(self.open_connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class LoopbackHandler(BaseHTTPRequestHandler):
    """Base handler: quiet logs and a `send` that tolerates clients that gave up.

    HTTP/1.1 keeps connections open between requests, as real servers do, and every
    connection is counted, so tests can see whether a client reuses its connections.
    """

    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

    def setup(self) -> None:
        super().setup()
        self.server.connections_opened += 1
        self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        self.server.open_connections.discard(self.connection)
        super().finish()

    def wait_slowly(self) -> bool:
        """Sleep `slow_s` seconds; True when the server is stopping meanwhile."""
        return self.server.stopping.wait(self.server.slow_s)

    def send(self, status: int, content_type: str, body: str) -> None:
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


class LoopbackServer:
    """Serves `handler` from a background thread; `url` is its base URL."""

    def __init__(self, handler: type[LoopbackHandler], port: int = 0, slow_s: float = 2.0) -> None:
        self._server = _Server(port, handler, slow_s)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests_seen(self) -> list[str]:
        return self._server.requests_seen

    @property
    def connections_opened(self) -> int:
        return self._server.connections_opened

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_open_connections()
        self._thread.join()

    @classmethod
    def serve_from_command_line(cls, description: str, usage: str | None) -> None:
        """For running a server module by hand (`--port`): serve until Ctrl+C."""
        parser = argparse.ArgumentParser(
            description=usage, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.add_argument("--port", type=int, default=8000)
        with cls(port=parser.parse_args().port) as server:
            print(f"{description} on {server.url} (Ctrl+C to stop)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
