"""Starts the whole assistant with scripts/serve.sh, the way a person does, for tests and benchmarks.

The QA service, the action server, Rasa (REST channel, CORS for the widget's origin)
and the static web server listen on free loopback ports and keep their data in a
throwaway SQLite database in `run_dir`. Their logs and pid files go to `run_dir/log`,
next to serve.sh's own output (serve.log). `stack_environment` gives scripts/run-chat.sh
the same setup. Standard library only, so both virtual environments can import it
(`from scripts.stack import running_stack`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVE_SCRIPT = REPO_ROOT / "scripts" / "serve.sh"
# serve.sh gives each service this long; Rasa loads its model in 20-60 s on two busy cores.
SERVICE_START_TIMEOUT_S = 240
READY_LINE = "Chat ready:"
# The signal to a stopped service, until it is gone; then SIGKILL.
SERVICE_STOP_TIMEOUT_S = 30
SERVE_STOP_TIMEOUT_S = 60
PORT_NAMES = ("RASA_PORT", "ACTIONS_PORT", "WEB_PORT", "QA_PORT")
# running_stack chooses these itself; the Stack it returns would not describe overrides of them.
RESERVED_ENV = frozenset({*PORT_NAMES, "DATABASE_URL", "LOG_DIR"})


class StackDidNotStart(RuntimeError):
    """serve.sh exited or never reported the chat ready; the message holds its output."""


@dataclass(frozen=True)
class Stack:
    """Where the started services listen and where they keep their data and logs."""

    web_url: str
    rasa_url: str
    qa_url: str
    actions_url: str
    database_path: Path
    log_dir: Path
    # serve.sh; its services run in its session (start_new_session).
    process: subprocess.Popen[bytes] = field(repr=False)

    def chat_url(self, rasa_url: str | None = None) -> str:
        """The widget's page, talking to `rasa_url` (the real Rasa by default)."""
        return f"{self.web_url}/?{urlencode({'rasa': rasa_url or self.rasa_url})}"

    def service_pid(self, name: str) -> int | None:
        """The pid of service `name` (actions, qa, rasa, web) from its pid file; None without one."""
        try:
            return int((self.log_dir / f"{name}.pid").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def stop_service(self, name: str, signum: int = signal.SIGTERM) -> int:
        """Sends `signum` to one service and waits until it is gone, for serve.sh to see; its pid."""
        pid = self.service_pid(name)
        if pid is None:
            raise RuntimeError(f"service {name} has no pid file in {self.log_dir}")
        stop_process(pid, signum)
        return pid

    def wait_until_restarted(self, name: str, old_pid: int, ready_url: str, timeout_s: float) -> int:
        """Waits until service `name` runs as another pid than `old_pid` and `ready_url` answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            pid = self.service_pid(name)
            if pid not in (None, old_pid) and answers(ready_url):
                return pid
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not back within {timeout_s:.0f}s; logs in {self.log_dir}")
            time.sleep(0.5)


def answers(url: str) -> bool:
    """True when a GET of `url` succeeds within 2 seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def stop_process(pid: int, signum: int = signal.SIGTERM) -> None:
    """Sends `signum` to `pid` and waits until it has exited; SIGKILL when that takes too long."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + SERVICE_STOP_TIMEOUT_S
    while is_running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + SERVICE_STOP_TIMEOUT_S
        time.sleep(0.2)


def is_running(pid: int) -> bool:
    """False once `pid` has exited, zombie included (serve.sh, not us, reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stack_environment(
    run_dir: Path, env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """The environment of serve.sh or run-chat.sh on free ports, data and logs in `run_dir`; the ports.

    `env` overrides the environment the services see (HOROSCOPE_API_URL, RASA_MODEL, QA_*);
    the ports, DATABASE_URL and LOG_DIR are chosen here and cannot be overridden.
    """
    overrides = dict(env or {})
    if reserved := sorted(RESERVED_ENV & overrides.keys()):
        raise ValueError(f"the stack sets {', '.join(reserved)} itself; do not pass them in env")
    log_dir = run_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in PORT_NAMES}
    process_env = {
        **os.environ,
        "HOROSCOPE_API_URL": "",  # the built-in horoscope writer unless `env` says otherwise
        "START_TIMEOUT": str(SERVICE_START_TIMEOUT_S),
        **overrides,
        **{name: str(port) for name, port in ports.items()},
        "DATABASE_URL": f"sqlite:///{run_dir / 'assistant.db'}",
        "LOG_DIR": str(log_dir),
    }
    return process_env, ports


def stop_script(process: subprocess.Popen[bytes], timeout_s: float = SERVE_STOP_TIMEOUT_S) -> None:
    """serve.sh (and serve-cluster.sh) stop their services on SIGTERM; the script's whole process
    group is killed if it hangs."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def ready_script(
    script: Path,
    env: Mapping[str, str],
    output_path: Path,
    ready_line: str,
    ready_timeout_s: float,
    stop_timeout_s: float,
    error: type[RuntimeError],
) -> Iterator[subprocess.Popen[bytes]]:
    """Runs a serve script in its own session until the block ends, once it has printed `ready_line`;
    raises `error` with the script's output if it exits or stays silent past the timeout."""
    with output_path.open("wb") as output:
        process = subprocess.Popen(
            [str(script)],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + ready_timeout_s
        while ready_line not in output_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise error(
                    f"scripts/{script.name} did not get ready (logs in {output_path.parent}):\n"
                    + output_path.read_text(errors="replace")
                )
            time.sleep(0.5)
        yield process
    finally:
        stop_script(process, stop_timeout_s)


@contextmanager
def running_stack(run_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Stack]:
    """Runs serve.sh until the block ends; the logs and the database stay in `run_dir`.

    `env` as for `stack_environment`.
    """
    process_env, ports = stack_environment(run_dir, env)
    log_dir = Path(process_env["LOG_DIR"])
    # serve.sh starts the services side by side; all of them may take the full timeout.
    with ready_script(
        SERVE_SCRIPT,
        process_env,
        log_dir / "serve.log",
        READY_LINE,
        3 * SERVICE_START_TIMEOUT_S,
        SERVE_STOP_TIMEOUT_S,
        StackDidNotStart,
    ) as process:
        yield Stack(
            web_url=f"http://127.0.0.1:{ports['WEB_PORT']}",
            rasa_url=f"http://127.0.0.1:{ports['RASA_PORT']}",
            qa_url=f"http://127.0.0.1:{ports['QA_PORT']}",
            actions_url=f"http://127.0.0.1:{ports['ACTIONS_PORT']}",
            database_path=run_dir / "assistant.db",
            log_dir=log_dir,
            process=process,
        )
