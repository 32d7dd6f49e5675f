"""The scaled-out assistant under load and faults: what it holds, and that it loses nothing.

Starts `scripts/serve-cluster.sh` with two Rasa instances (PostgreSQL, Redis, nginx, two
action servers, the QA service; data under var/cluster/bench) and runs simulated users
(scripts/cluster_load.py: "hi", a sign, "no", again and again) in three timed phases:

- one instance: the users talk to the first Rasa instance's own port;
- two instances: the same users through nginx, which shares them out;
- faults: through nginx while one fault after another is injected: an action server
  killed, Redis killed (the supervisor restarts both), PostgreSQL stopped and started,
  a Rasa instance killed. A fault counts as survived when a new user is answered again
  within RECOVERY_S.

For each phase: users, messages answered per second, error rate, p95 latency, and events
lost: answered messages missing from PostgreSQL (must be 0). Prints a table and writes
bench/results/reliability.json. The machine's other work shares the CPUs; the ratio of
messages/s between one and two instances is what scaling out bought here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from scripts.cluster_load import ChatLoad, Turn, lost_messages, p95, send  # noqa: E402
from scripts.cluster_stack import Cluster, running_cluster  # noqa: E402

RECOVERY_S = 90.0


def summarise(
    name: str, users: int, turns: list[Turn], seconds: float, cluster: Cluster
) -> dict[str, object]:
    answered = [turn for turn in turns if turn.ok]
    return {
        "phase": name,
        "users": users,
        "messages": len(turns),
        "answered": len(answered),
        "messages_per_s": round(len(answered) / seconds, 2),
        "error_rate": round(1 - len(answered) / len(turns), 4) if turns else 0.0,
        "p95_latency_s": round(p95([turn.latency_s for turn in answered]), 2),
        "events_lost": lost_messages(turns, cluster.user_texts),
    }


def timed_load(url: str, users: int, seconds: float) -> tuple[list[Turn], float]:
    load = ChatLoad(url, users, max_turns=10_000).start()
    started = time.monotonic()
    time.sleep(seconds)
    turns = load.stop()
    return turns, time.monotonic() - started


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
    survived = []
    for name, inject in faults(cluster):
        time.sleep(settle_s)
        inject()
        if recovered(cluster.url):
            survived.append(name)
        print(f"  {name}: {'survived' if name in survived else 'NOT survived'}", flush=True)
    time.sleep(settle_s)
    turns = load.stop()
    summary = summarise("2 instances, faults", users, turns, time.monotonic() - started, cluster)
    return {**summary, "faults_injected": len(faults(cluster)), "faults_survived": len(survived)}, survived


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each load phase")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load before each fault")
    parser.add_argument("--cluster-dir", type=Path, default=REPO_ROOT / "var" / "cluster" / "bench")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "reliability.json")
    args = parser.parse_args()
    shutil.rmtree(args.cluster_dir, ignore_errors=True)  # a fresh database: every event is this run's

    print("Starting the cluster (two Rasa instances load their models: a few minutes) ...", flush=True)
    with running_cluster(args.cluster_dir, instances=2) as cluster:
        phases = []
        for name, url in (("1 instance", cluster.rasa_urls[0]), ("2 instances", cluster.url)):
            turns, seconds = timed_load(url, args.users, args.seconds)
            phases.append(summarise(name, args.users, turns, seconds, cluster))
            print(f"  {name}: {phases[-1]['messages_per_s']} messages/s", flush=True)
        fault_summary, survived = fault_phase(cluster, args.users, args.settle)
        phases.append(fault_summary)

    ratio = round(float(phases[1]["messages_per_s"]) / max(float(phases[0]["messages_per_s"]), 1e-9), 2)
    result = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other work)",
        "phases": phases,
        "faults_survived": survived,
        "messages_per_s_ratio_2_to_1": ratio,
        "events_lost": sum(int(phase["events_lost"]) for phase in phases),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print("\n| phase | users | msg/s | error rate | p95 latency | faults survived | events lost |")
    print("|---|---|---|---|---|---|---|")
    for phase in phases:
        faults_cell = (
            f"{phase['faults_survived']}/{phase['faults_injected']}" if "faults_injected" in phase else "-"
        )
        print(
            f"| {phase['phase']} | {phase['users']} | {phase['messages_per_s']} | {phase['error_rate']:.1%} "
            f"| {phase['p95_latency_s']} s | {faults_cell} | {phase['events_lost']} |"
        )
    print(f"\nmessages/s, 2 instances / 1 instance: {ratio}; events lost: {result['events_lost']}")
    print(f"wrote {args.out}")
    if result["events_lost"]:
        sys.exit("events were lost")


if __name__ == "__main__":
    main()
