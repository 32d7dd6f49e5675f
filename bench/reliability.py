"""The assistant under load, bad input and faults: the single-machine default against the cluster.

One run measures, with the same simulated users (scripts/cluster_load.py: "hi", a sign, "no",
again and again, a fresh conversation each time) and the same phase length, one stack after
the other so that they do not share the CPUs:

- single machine: `make serve`'s stack (scripts/serve.sh: one Rasa, SQLite tracker store,
  Rasa's in-memory lock store), the baseline;
- cluster, 1 instance: scripts/serve-cluster.sh with RASA_INSTANCES=1 (nginx, PostgreSQL,
  Redis, two action servers, the QA service);
- cluster, 2 instances: the same with RASA_INSTANCES=2, through nginx;
- cluster, 2 instances, faults: the same users while one fault after another is injected: an
  action server killed, Redis killed (the supervisor restarts both), PostgreSQL stopped and
  started, a Rasa instance killed. A fault counts as survived when a new user is answered
  again within RECOVERY_S.

Before each stack's load, a fixed set of bad inputs (BAD_BODIES: a 1 MB message, malformed
and deeply nested JSON, wrong types, control characters, SQL in the sender id ...) is posted
once; one is handled when it gets an answer below 500 in time. For each phase: users,
messages answered per second and its ratio to the baseline, error rate, p95 latency, and
events lost: answered messages missing from the stack's database (SQLite or PostgreSQL; must
be 0), and the machine's 1-minute load average at the phase's end: other work on the same
cores moves these figures more than the stacks' differences do. Prints a
table and writes bench/results/reliability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from scripts.cluster_load import WEBHOOK_PATH, ChatLoad, Turn, lost_messages, p95, send  # noqa: E402
from scripts.cluster_stack import Cluster, running_cluster  # noqa: E402
from scripts.stack import running_stack  # noqa: E402

RECOVERY_S = 90.0
BAD_INPUT_TIMEOUT_S = 30.0
StoredTexts = Callable[[str], list[str]]


def _body(message: object, sender: object = "bench-bad-input") -> bytes:
    return json.dumps({"sender": sender, "message": message}).encode()


# Raw REST-channel bodies a careless or hostile client sends; each must get an answer below 500.
BAD_BODIES: dict[str, bytes] = {
    "1 MB message": _body(("what is my horoscope " * 50_000)[:1_000_000]),
    "not JSON": b'{"sender": "bench-bad-input", "message": ',
    "JSON that is not an object": b'["hi"]',
    "nested 1,000 deep": b'{"sender": "bench-bad-input", "message": ' + b"[" * 1000 + b"]" * 1000 + b"}",
    "message not text": _body(42),
    "blank message": _body("   "),
    "no sender": json.dumps({"message": "hi"}).encode(),
    "control characters": _body("hi\x00\x07\x1b[2J"),
    "emoji and right-to-left text": _body("🙂🔮 مرحبا שלום"),
    "markup": _body("<script>alert(1)</script><b>leo</b>"),
    "SQL in the sender id": _body("hi", sender="bench'); DROP TABLE events; --"),
}


def post_raw(base_url: str, body: bytes) -> int | None:
    """The HTTP status of posting `body` to the REST channel; None when no answer came in time."""
    request = urllib.request.Request(
        base_url + WEBHOOK_PATH, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=BAD_INPUT_TIMEOUT_S) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError):
        return None


def try_bad_inputs(base_url: str) -> dict[str, int]:
    """Posts every BAD_BODIES body once; how many were tried and how many got an answer below 500."""
    handled = 0
    for name, body in BAD_BODIES.items():
        status = post_raw(base_url, body)
        if status is not None and status < 500:
            handled += 1
        else:
            print(f"  bad input {name!r} not handled: {status}", flush=True)
    return {"bad_inputs_tried": len(BAD_BODIES), "bad_inputs_handled": handled}


def sqlite_user_texts(database_path: Path) -> StoredTexts:
    """The texts of a sender's user messages in the SQLite tracker store, in stored order."""

    def texts(sender_id: str) -> list[str]:
        with sqlite3.connect(database_path, timeout=30) as connection:
            rows = connection.execute(
                "SELECT data FROM events WHERE sender_id = ? AND type_name = 'user' ORDER BY id", (sender_id,)
            ).fetchall()
        return [json.loads(data)["text"] for (data,) in rows]

    return texts


def summarise(
    name: str, users: int, turns: list[Turn], seconds: float, stored_texts: StoredTexts
) -> dict[str, object]:
    answered = [turn for turn in turns if turn.ok]
    return {
        "phase": name,
        "users": users,
        "seconds": round(seconds, 1),
        "messages": len(turns),
        "answered": len(answered),
        "messages_per_s": round(len(answered) / seconds, 2),
        "error_rate": round(1 - len(answered) / len(turns), 4) if turns else 0.0,
        "p95_latency_s": round(p95([turn.latency_s for turn in answered]), 2),
        "events_lost": lost_messages(turns, stored_texts),
        # The machine's other work moves the figures more than anything measured here: say how busy it was.
        "load_average_1min": round(os.getloadavg()[0], 1),
    }


def load_phase(
    name: str, url: str, users: int, seconds: float, stored_texts: StoredTexts
) -> dict[str, object]:
    """Bad inputs once, then `users` chatting with `url` for `seconds`."""
    bad_inputs = try_bad_inputs(url)
    load = ChatLoad(url, users, max_turns=10_000).start()
    started = time.monotonic()
    time.sleep(seconds)
    turns = load.stop()
    summary = {**summarise(name, users, turns, time.monotonic() - started, stored_texts), **bad_inputs}
    print(f"  {name}: {summary['messages_per_s']} messages/s", flush=True)
    return summary


def recovered(url: str) -> bool:
    """A new user is answered within RECOVERY_S."""
    deadline = time.monotonic() + RECOVERY_S
    while time.monotonic() < deadline:
        if send(url, f"bench-probe-{time.monotonic_ns()}", "hi", timeout_s=30).ok:
            return True
        time.sleep(1)
    return False


def faults(cluster: Cluster) -> list[tuple[str, Callable[[], None]]]:
    def restart_postgres() -> None:
        cluster.postgres.stop()
        time.sleep(3)
        cluster.postgres.start()

    return [
        ("action server killed", lambda: cluster.kill_service("actions1")),
        ("Redis killed", lambda: cluster.kill_service("redis")),
        ("PostgreSQL restarted", restart_postgres),
        ("Rasa instance killed", lambda: cluster.kill_service("rasa1")),
    ]


def fault_phase(cluster: Cluster, users: int, settle_s: float) -> tuple[dict[str, object], list[str]]:
    load = ChatLoad(cluster.url, users, max_turns=10_000).start()
    started = time.monotonic()
    injected = faults(cluster)
    survived = []
    for name, inject in injected:
        time.sleep(settle_s)
        inject()
        if recovered(cluster.url):
            survived.append(name)
        print(f"  {name}: {'survived' if name in survived else 'NOT survived'}", flush=True)
    time.sleep(settle_s)
    turns = load.stop()
    name = "cluster, 2 instances, faults"
    summary = summarise(name, users, turns, time.monotonic() - started, cluster.user_texts)
    return {**summary, "faults_injected": len(injected), "faults_survived": len(survived)}, survived


def measure(args: argparse.Namespace) -> tuple[list[dict[str, object]], list[str]]:
    """The four phases, one stack at a time; the faults survived."""
    phases: list[dict[str, object]] = []
    survived: list[str] = []
    print("Starting the single-machine stack (scripts/serve.sh, SQLite) ...", flush=True)
    with running_stack(args.run_dir / "single") as stack:
        phases.append(
            load_phase(
                "single machine (baseline)",
                stack.rasa_url,
                args.users,
                args.seconds,
                sqlite_user_texts(stack.database_path),
            )
        )
    for instances in (1, 2):
        print(f"Starting the cluster with {instances} Rasa instance(s) ...", flush=True)
        with running_cluster(args.run_dir / f"cluster{instances}", instances=instances) as cluster:
            name = f"cluster, {instances} instance{'s' if instances > 1 else ''}"
            phases.append(load_phase(name, cluster.url, args.users, args.seconds, cluster.user_texts))
            if instances == 2:
                fault_summary, survived = fault_phase(cluster, args.users, args.settle)
                phases.append(fault_summary)
    return phases, survived


COLUMNS = (
    "phase",
    "users",
    "msg/s",
    "vs baseline",
    "error rate",
    "p95 latency",
    "faults survived",
    "bad inputs handled",
    "events lost",
    "load average",
)


def print_table(phases: list[dict[str, object]]) -> None:
    print("\n| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for phase in phases:
        faults_cell = (
            f"{phase['faults_survived']}/{phase['faults_injected']}" if "faults_injected" in phase else "-"
        )
        bad_cell = (
            f"{phase['bad_inputs_handled']}/{phase['bad_inputs_tried']}"
            if "bad_inputs_tried" in phase
            else "-"
        )
        cells = (
            phase["phase"],
            phase["users"],
            phase["messages_per_s"],
            f"{phase['ratio_to_baseline']}x",
            f"{phase['error_rate']:.1%}",
            f"{phase['p95_latency_s']} s",
            faults_cell,
            bad_cell,
            phase["events_lost"],
            phase["load_average_1min"],
        )
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each load phase")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load before each fault")
    parser.add_argument("--run-dir", type=Path, default=REPO_ROOT / "var" / "cluster" / "bench")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "reliability.json")
    args = parser.parse_args()
    shutil.rmtree(args.run_dir, ignore_errors=True)  # fresh databases: every event is this run's
    started = time.monotonic()
    phases, survived = measure(args)

    baseline = max(float(phases[0]["messages_per_s"]), 1e-9)
    for phase in phases:
        phase["ratio_to_baseline"] = round(float(phase["messages_per_s"]) / baseline, 2)
    one, two = (float(phase["messages_per_s"]) for phase in phases[1:3])
    result = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other work)",
        "wall_s": round(time.monotonic() - started),
        "phases": phases,
        "faults_survived": survived,
        "messages_per_s_ratio_2_to_1_instances": round(two / max(one, 1e-9), 2),
        "events_lost": sum(int(phase["events_lost"]) for phase in phases),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    print_table(phases)
    print(
        f"\nmessages/s, cluster 2 instances / 1 instance: {result['messages_per_s_ratio_2_to_1_instances']}; "
        f"events lost: {result['events_lost']}; {result['wall_s']} s"
    )
    print(f"wrote {args.out}")
    if result["events_lost"]:
        sys.exit("events were lost")


if __name__ == "__main__":
    main()
