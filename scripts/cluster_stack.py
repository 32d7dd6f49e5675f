"""Starts the scaled-out assistant with scripts/serve-cluster.sh, for tests and benchmarks.

Like scripts/stack.py for serve.sh: the cluster runs on free loopback ports with its data
and logs in `run_dir`; `Cluster` says where each part listens and stops, starts or queries
them (PostgreSQL through `scripts.cluster.Postgres`). Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scripts.cluster import Postgres, free_ports
from scripts.stack import SERVICE_START_TIMEOUT_S, answers, ready_script, stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "serve-cluster.sh"
READY_LINE = "Cluster ready:"
# The Rasa instances load side by side on two busy cores.
CLUSTER_START_TIMEOUT_S = 3 * SERVICE_START_TIMEOUT_S
CLUSTER_STOP_TIMEOUT_S = 90


class ClusterDidNotStart(RuntimeError):
    """serve-cluster.sh exited or never reported ready; the message holds its output."""


@dataclass(frozen=True)
class Cluster:
    """Where the cluster's parts listen, and their logs; read from CLUSTER_DIR/cluster.json."""

    url: str
    rasa_urls: list[str]
    actions_urls: list[str]
    qa_url: str
    postgres: Postgres
    redis_port: int
    log_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @classmethod
    def from_description(cls, run_dir: Path, process: subprocess.Popen[bytes]) -> Cluster:
        described = json.loads((run_dir / "cluster.json").read_text(encoding="utf-8"))

        def urls(key: str) -> list[str]:
            return [f"http://127.0.0.1:{port}" for port in described[key].split()]

        return cls(
            url=described["url"],
            rasa_urls=urls("rasa_ports"),
            actions_urls=urls("actions_ports"),
            qa_url=described["qa_url"],
            postgres=Postgres(run_dir / "postgres", int(described["postgres_port"])),
            redis_port=int(described["redis_port"]),
            log_dir=Path(described["log_dir"]),
            process=process,
        )

    def service_pid(self, name: str) -> int:
        """The pid of service `name` (rasa1, actions2, qa, redis, nginx) from its pid file."""
        return int((self.log_dir / f"{name}.pid").read_text(encoding="utf-8"))

    def kill_service(self, name: str, signum: int = signal.SIGKILL) -> int:
        """Sends `signum` to one service and waits until it is gone; its pid."""
        pid = self.service_pid(name)
        stop_process(pid, signum)
        return pid

    def wait_until_restarted(self, name: str, old_pid: int, ready_url: str | None, timeout_s: float) -> None:
        """Waits until the supervisor runs `name` again as another pid and `ready_url` answers."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                restarted = self.service_pid(name) != old_pid
            except (FileNotFoundError, ValueError):
                restarted = False
            if restarted and (ready_url is None or answers(ready_url)):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} was not back within {timeout_s:.0f}s; logs in {self.log_dir}")
            time.sleep(0.5)

    def user_texts(self, sender_id: str) -> list[str]:
        """The texts of `sender_id`'s user messages in PostgreSQL's events table, in stored order."""
        quoted = sender_id.replace("'", "''")
        rows = self.postgres.query(
            "SELECT data::json->>'text' FROM events "
            f"WHERE sender_id = '{quoted}' AND type_name = 'user' ORDER BY id"
        )
        return [row[0] for row in rows]


@contextmanager
def running_cluster(
    run_dir: Path, instances: int = 2, env: Mapping[str, str] | None = None
) -> Iterator[Cluster]:
    """Runs serve-cluster.sh with `instances` Rasa instances until the block ends.

    `env` adds to the environment the services see (HOROSCOPE_API_URL, QA_SERVICE_TIMEOUT ...).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    process_env = {
        **os.environ,
        "HOROSCOPE_API_URL": "",
        "START_TIMEOUT": str(CLUSTER_START_TIMEOUT_S),
        **(env or {}),
        "RASA_INSTANCES": str(instances),
        "CLUSTER_PORT": str(port),
        "CLUSTER_DIR": str(run_dir),
        "LOG_DIR": str(run_dir / "log"),
    }
    with ready_script(
        CLUSTER_SCRIPT,
        process_env,
        run_dir / "serve-cluster.log",
        READY_LINE,
        CLUSTER_START_TIMEOUT_S + 60,
        CLUSTER_STOP_TIMEOUT_S,
        ClusterDidNotStart,
    ) as process:
        yield Cluster.from_description(run_dir, process)
