"""The engines under `make serve-cluster`: PostgreSQL, nginx's configuration, free ports, the schema.

scripts/serve-cluster.sh runs this file's commands; the tests and bench/reliability.py import
`Postgres` to stop, start and query the same database. PostgreSQL, Redis and nginx are
Debian's packages (postgresql, redis-server, nginx; `.ci/run` installs them); a missing one
fails with the command that installs it. Standard library only, so both virtual
environments can import it, except `create-schema`, which runs in the Rasa venv.

PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user the
Debian package creates, and the data directory belongs to that user. That user must be able to
reach the data directory: when the checkout lies in a folder only root may enter (`mktemp -d`
makes those), the data goes to a folder named after it in the system's temporary folder instead.
It listens on 127.0.0.1 only, without a Unix socket, and trusts loopback connections (a local
development cluster; nothing beyond this machine can reach it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEBIAN_PACKAGES = "postgresql redis-server nginx"
DATABASE = "assistant"
SUPERUSER = "postgres"
COMMAND_TIMEOUT_S = 120.0
# PostgreSQL's own limit on waiting for it to start or stop.
PG_CTL_WAIT_S = 60


class MissingBinary(RuntimeError):
    """A Debian package the cluster needs is not installed."""


def find_binary(name: str) -> str:
    """`name` on PATH, in /usr/sbin (nginx, off a user's PATH) or in PostgreSQL's versioned directory
    (newest version); else MissingBinary."""
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    found = (
        shutil.which(name)
        or shutil.which(name, path="/usr/sbin")
        or (str(candidates[-1]) if candidates else None)
    )
    if found is None:
        raise MissingBinary(
            f"{name} is not installed; the cluster needs Debian's packages: "
            f"apt-get update && apt-get install -y {DEBIAN_PACKAGES}"
        )
    return found


def free_ports(count: int) -> list[int]:
    """`count` different loopback ports that nothing listens on right now."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _superuser_can_enter(folder: Path) -> bool:
    """Whether the `postgres` user can reach `folder` (search permission on it and every parent)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = ["runuser", "-u", SUPERUSER, "--", "test", "-x", str(folder)]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, check=True, text=True, capture_output=True, timeout=COMMAND_TIMEOUT_S, **kwargs
    )


@dataclass(frozen=True)
class Postgres:
    """One PostgreSQL server with its data in `data_dir`, listening on 127.0.0.1:`port`."""

    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        """DATABASE_URL for Rasa's SQL tracker store and the actions' subscriptions."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @cached_property
    def home(self) -> Path:
        """Where the cluster's files really are: `data_dir`, unless the server's user cannot reach it."""
        if os.geteuid() != 0 or _superuser_can_enter(self.data_dir.parent):
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"horoscope-postgres-{digest}"

    def _as_owner(self, name: str, *args: str) -> list[str]:
        command = [find_binary(name), *args]
        return ["runuser", "-u", SUPERUSER, "--", *command] if os.geteuid() == 0 else command

    def init(self) -> None:
        """Creates the data directory unless it holds a database cluster already."""
        if self.home != self.data_dir:
            # `data_dir` records where its data went; without that record (var/ was cleared), the
            # old data in the temporary folder is not this cluster's and starts afresh.
            record = self.data_dir / "RELOCATED_TO"
            if not record.exists():
                shutil.rmtree(self.home, ignore_errors=True)
                self.data_dir.mkdir(parents=True, exist_ok=True)
                record.write_text(f"{self.home}\n", encoding="utf-8")
        if (self.home / "PG_VERSION").exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.home, SUPERUSER, SUPERUSER)
        self.home.chmod(0o700)
        _run(self._as_owner("initdb", "-D", str(self.home), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8"))
        with (self.home / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# scripts/cluster.py: loopback only, no Unix socket\n")
            conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")

    def start(self) -> None:
        """Starts the server (waiting until it accepts connections) and creates the database."""
        log = self.home / "server.log"
        _run(
            self._as_owner(
                "pg_ctl", "-D", str(self.home), "-l", str(log), "-w", "-t", str(PG_CTL_WAIT_S),
                "-o", f"-p {self.port}", "start",
            )
        )  # fmt: skip
        if not self.query(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'", database=SUPERUSER):
            self.query(f"CREATE DATABASE {DATABASE}", database=SUPERUSER)

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, committed data stays. Nothing when it is not running."""
        if (self.home / "postmaster.pid").exists():
            _run(self._as_owner("pg_ctl", "-D", str(self.home), "-m", "fast", "-w", "stop"))

    def query(self, sql: str, database: str = DATABASE) -> list[list[str]]:
        """The rows of one SQL statement run by psql, each a list of column texts."""
        result = _run(
            [
                find_binary("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database,
                "-X", "-q", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql,
            ]
        )  # fmt: skip
        return [line.split("\t") for line in result.stdout.splitlines()]


# What nginx answers when no Rasa instance can: all down, or the database out of reach
# (addons/cluster_tracker_store.py). The REST channel's reply format, so the web chat shows it.
UNAVAILABLE_TEXT = "Sorry, my memory is out of reach right now. Please try again in a moment."
UNAVAILABLE_REPLY = json.dumps([{"recipient_id": "", "text": UNAVAILABLE_TEXT}])


def nginx_config(
    root: Path, port: int, rasa_ports: list[int], actions_port: int, actions_ports: list[int]
) -> str:
    """nginx on `port`: web/ and the Rasa instances; on `actions_port`: the action-server replicas.

    When no instance answers a message, nginx replies UNAVAILABLE_REPLY (HTTP 503).

    A replica that refuses connections is skipped for `fail_timeout` and the request goes to
    the next one; a POST that reached a replica is never sent twice (nginx's default for
    non-idempotent requests), so no message is handled twice. The read timeout outlasts a turn.
    """

    def upstream(name: str, ports: list[int]) -> str:
        servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in ports)
        return f"  upstream {name} {{\n{servers}  }}\n"

    proxy = (
        "      proxy_pass http://{0};\n      proxy_next_upstream error timeout http_502 http_503;\n"
        "      proxy_connect_timeout 2s;\n      proxy_read_timeout 180s;\n"
        "      proxy_set_header Host $host;\n"
    )
    # Started as root, nginx's workers would run as `nobody`, which cannot read web/ or write its
    # temporary files when the checkout lies in a folder only root may enter (a `mktemp -d` clone).
    # The server listens on loopback only, so its workers run as the user who started it.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""# Written by scripts/cluster.py for scripts/serve-cluster.sh; rewritten at every start.
{user}pid {root}/nginx.pid;
error_log {root}/error.log warn;
worker_processes 1;
events {{ worker_connections 512; }}
http {{
  include /etc/nginx/mime.types;
  access_log {root}/access.log;
  client_body_temp_path {root}/tmp/body;
  proxy_temp_path {root}/tmp/proxy;
  fastcgi_temp_path {root}/tmp/fastcgi;
  uwsgi_temp_path {root}/tmp/uwsgi;
  scgi_temp_path {root}/tmp/scgi;
  client_max_body_size 2m;
  client_body_buffer_size 2m;
{upstream("rasa", rasa_ports)}{upstream("actions", actions_ports)}
  server {{
    listen 127.0.0.1:{port};
    location / {{ root {REPO_ROOT / "web"}; }}
    location /webhooks/ {{
{proxy.format("rasa")}      error_page 502 503 504 = @unavailable;
    }}
    location @unavailable {{
      default_type application/json;
      return 503 '{UNAVAILABLE_REPLY}';
    }}
    location = /health {{ return 200 "ok"; }}
  }}
  server {{
    listen 127.0.0.1:{actions_port};
    location / {{
{proxy.format("actions")}    }}
  }}
}}
"""


def create_schema(database_url: str) -> None:
    """Creates the tracker store's and the subscriptions' tables once, before several processes race to."""
    os.environ["DATABASE_URL"] = database_url
    sys.path.insert(0, str(REPO_ROOT))
    from actions.subscriptions import SubscriptionStore
    from addons.tracker_store import DatabaseUrlTrackerStore

    DatabaseUrlTrackerStore()
    SubscriptionStore.from_url(database_url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("ports", help="print free loopback ports").add_argument("count", type=int)
    for name in ("postgres-start", "postgres-stop"):
        command = commands.add_parser(name)
        command.add_argument("data_dir", type=Path)
        command.add_argument("port", type=int)
    nginx = commands.add_parser("nginx-config", help="write nginx.conf into ROOT")
    nginx.add_argument("root", type=Path)
    nginx.add_argument("port", type=int)
    nginx.add_argument("actions_port", type=int)
    nginx.add_argument("--rasa", type=int, nargs="+", required=True)
    nginx.add_argument("--actions", type=int, nargs="+", required=True)
    commands.add_parser("create-schema").add_argument("database_url")
    commands.add_parser("check-binaries")
    commands.add_parser("which", help="print where a binary the cluster needs is").add_argument("name")
    describe = commands.add_parser("describe", help="write the cluster's ports as JSON")
    describe.add_argument("path", type=Path)
    describe.add_argument("pairs", nargs="+", help="NAME=VALUE")
    args = parser.parse_args(argv)
    try:
        if args.command == "ports":
            print(" ".join(map(str, free_ports(args.count))))
        elif args.command == "which":
            print(find_binary(args.name))
        elif args.command == "check-binaries":
            for binary in ("initdb", "pg_ctl", "psql", "redis-server", "nginx"):
                find_binary(binary)
        elif args.command == "postgres-start":
            postgres = Postgres(args.data_dir.resolve(), args.port)
            postgres.init()
            postgres.start()
        elif args.command == "postgres-stop":
            Postgres(args.data_dir.resolve(), args.port).stop()
        elif args.command == "nginx-config":
            root = args.root.resolve()
            # nginx makes the directories inside, owned by its worker user.
            (root / "tmp").mkdir(parents=True, exist_ok=True)
            config = nginx_config(root, args.port, args.rasa, args.actions_port, args.actions)
            (root / "nginx.conf").write_text(config, encoding="utf-8")
        elif args.command == "create-schema":
            create_schema(args.database_url)
        elif args.command == "describe":
            args.path.write_text(json.dumps(dict(pair.split("=", 1) for pair in args.pairs), indent=2) + "\n")
    except MissingBinary as error:
        sys.exit(f"error: {error}")
    except subprocess.CalledProcessError as error:
        sys.exit(f"error: {' '.join(error.cmd)} failed:\n{error.stdout}{error.stderr}")


if __name__ == "__main__":
    main()
