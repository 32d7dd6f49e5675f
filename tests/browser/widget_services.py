"""Starts the web chat's real services with scripts/serve.sh, the way a person does.

The action server, Rasa (REST channel, CORS for the widget's origin) and the
static web server listen on free loopback ports and keep their data in a
throwaway SQLite database.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[2]
# serve.sh gives each service this long; Rasa loads its model in 20-60 s on two busy cores.
SERVICE_START_TIMEOUT_S = 240
READY_LINE = "Chat ready:"


class ServicesDidNotStart(RuntimeError):
    """serve.sh exited or never reported the chat ready; the message holds its output."""


@dataclass(frozen=True)
class Services:
    """Where the started services listen and where they keep their data."""

    web_url: str
    rasa_url: str
    database_path: Path

    def chat_url(self, rasa_url: str | None = None) -> str:
        """The widget's page, talking to `rasa_url` (the real Rasa by default)."""
        return f"{self.web_url}/?{urlencode({'rasa': rasa_url or self.rasa_url})}"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """serve.sh stops its services on SIGTERM; its whole process group is killed if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def running_services(run_dir: Path) -> Iterator[Services]:
    """Runs serve.sh until the block ends; its logs and database stay in `run_dir`.

    serve.sh's own defaults apply otherwise (RASA_MODEL from the environment, say).
    """
    database_path = run_dir / "assistant.db"
    ports = {name: free_port() for name in ("RASA_PORT", "ACTIONS_PORT", "WEB_PORT", "QA_PORT")}
    env = {
        **os.environ,
        **{name: str(port) for name, port in ports.items()},
        "DATABASE_URL": f"sqlite:///{database_path}",
        "HOROSCOPE_API_URL": "",
        "LOG_DIR": str(run_dir / "log"),
        "START_TIMEOUT": str(SERVICE_START_TIMEOUT_S),
    }
    output_path = run_dir / "serve.out"
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [str(REPO_ROOT / "scripts" / "serve.sh")],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 3 * SERVICE_START_TIMEOUT_S
        while READY_LINE not in output_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServicesDidNotStart(
                    f"scripts/serve.sh did not get ready (logs in {run_dir / 'log'}):\n"
                    + output_path.read_text(errors="replace")
                )
            time.sleep(0.5)
        yield Services(
            web_url=f"http://127.0.0.1:{ports['WEB_PORT']}",
            rasa_url=f"http://127.0.0.1:{ports['RASA_PORT']}",
            database_path=database_path,
        )
    finally:
        _stop(process)
