"""How a run of bench/turn_latency.py is judged and shown: ratios to Rasa's floor, the targets of
issues 6 and 15, the table and the plot.

Issue 6 set absolute limits at one user. Issue 15 set limits relative to what the same run measured
for Rasa's floor (a rule reply) and for the QA service alone, and a throughput goal against the
custom-action turns per second measured before it (TURNS_PER_S_BEFORE). A target is "met", "not met"
(too slow, or a request of a cell it reads failed) or "not measured" (a cell it needs was not run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import latency_summary, save_plot

BASELINE = "bot"  # Rasa's floor: a rule reply, no custom action
QA_ALONE = "qa-service"
# Custom-action turns per second at 16 users before issue 15 (bench/README.md, the 2026-11-21 run).
TURNS_PER_S_BEFORE = {"horoscope": 7.1, "question": 6.9}
THROUGHPUT_USERS = 16
THROUGHPUT_GAIN = 2.0
QUESTION_SLACK_MS = 25.0
HOROSCOPE_OVER_FLOOR = 1.5

Cells = dict[tuple[str, int], dict[str, Any]]


@dataclass(frozen=True)
class Target:
    issue: int
    text: str
    kind: str
    users: int
    statistic: str  # a cell's key: p50_ms, p95_ms or messages_per_s
    limit: Callable[[Cells], float]  # from the run's own cells
    reads: tuple[str, ...]  # the other kinds the limit is computed from (at the same users)
    at_least: bool = False  # a floor (throughput), not a ceiling

    def judge(self, cells: Cells) -> dict[str, Any]:
        needed = [(kind, self.users) for kind in (self.kind, *self.reads)]
        missing = [key for key in needed if key not in cells or cells[key]["p50_ms"] is None]
        value = limit = None
        if missing:
            verdict = "not measured"
        else:
            value, limit = cells[(self.kind, self.users)][self.statistic], self.limit(cells)
            failed = sum(cells[key]["failed"] for key in needed)
            if failed:
                verdict = f"not met: {failed} requests failed"
            else:
                verdict = "met" if (value >= limit if self.at_least else value <= limit) else "not met"
        return {
            "issue": self.issue,
            "target": self.text,
            "kind": self.kind,
            "users": self.users,
            "statistic": self.statistic,
            "limit": limit,
            "value": value,
            "verdict": verdict,
        }


def _p50(kind: str, users: int = 1) -> Callable[[Cells], float]:
    return lambda cells: cells[(kind, users)]["p50_ms"]


TARGETS = (
    Target(6, "question p50 <= 150 ms", "question", 1, "p50_ms", lambda _: 150.0, ()),
    Target(6, "question p95 <= 300 ms", "question", 1, "p95_ms", lambda _: 300.0, ()),
    Target(6, "horoscope p50 <= 40 ms", "horoscope", 1, "p50_ms", lambda _: 40.0, ()),
    Target(
        15,
        f"horoscope p50 <= {HOROSCOPE_OVER_FLOOR}x Rasa's floor",
        "horoscope",
        1,
        "p50_ms",
        lambda cells: HOROSCOPE_OVER_FLOOR * _p50(BASELINE)(cells),
        (BASELINE,),
    ),
    Target(
        15,
        f"question p50 <= Rasa's floor + the QA service's p50 + {QUESTION_SLACK_MS:.0f} ms",
        "question",
        1,
        "p50_ms",
        lambda cells: _p50(BASELINE)(cells) + _p50(QA_ALONE)(cells) + QUESTION_SLACK_MS,
        (BASELINE, QA_ALONE),
    ),
    *(
        Target(
            15,
            f"{kind} turns/s at {THROUGHPUT_USERS} users >= {THROUGHPUT_GAIN:.0f}x {before} (before)",
            kind,
            THROUGHPUT_USERS,
            "messages_per_s",
            lambda _, before=before: THROUGHPUT_GAIN * before,
            (),
            at_least=True,
        )
        for kind, before in TURNS_PER_S_BEFORE.items()
    ),
)


def pooled_cell(kind: str, users: int, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """A (kind, users) cell from the load generator's results of its rounds: latencies and failures
    pooled, throughput as successes over the rounds' summed time."""
    latencies = [latency for result in rounds for latency in result["latencies_s"]]
    elapsed_s = sum(result["elapsed_s"] for result in rounds)
    errors = {cause: sum(result["errors"][cause] for result in rounds) for cause in rounds[0]["errors"]}
    return {
        "kind": kind,
        "users": users,
        "rounds": len(rounds),
        "requests": sum(result["requests"] for result in rounds),
        "messages_sent": sum(result["messages_sent"] for result in rounds),
        "errors": errors,
        "error_examples": {k: v for result in reversed(rounds) for k, v in result["error_examples"].items()},
        "warmup_errors": sum(result["warmup_errors"] for result in rounds),
        "warmup_error_examples": {
            k: v for result in reversed(rounds) for k, v in result["warmup_error_examples"].items()
        },
        "elapsed_s": elapsed_s,
        "ok": len(latencies),
        "failed": sum(errors.values()),
        **(latency_summary(latencies) if latencies else {"p50_ms": None, "p95_ms": None, "p99_ms": None}),
        "mean_ms": sum(latencies) / len(latencies) * 1000 if latencies else None,
        "messages_per_s": len(latencies) / elapsed_s,
    }


def check_targets(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every target's verdict on these cells."""
    by_cell = {(cell["kind"], cell["users"]): cell for cell in cells}
    return [target.judge(by_cell) for target in TARGETS]


def print_targets(verdicts: list[dict[str, Any]]) -> None:
    print("\nTargets:")
    for verdict in verdicts:
        unit = "/s" if verdict["statistic"] == "messages_per_s" else " ms"
        value = "-" if verdict["value"] is None else f"{verdict['value']:.1f}{unit}"
        limit = "-" if verdict["limit"] is None else f"{verdict['limit']:.1f}{unit}"
        print(
            f"  issue {verdict['issue']}, {verdict['users']} user(s): {verdict['target']}: "
            f"{value} (limit {limit}) -> {verdict['verdict']}"
        )


def add_ratios(cells: list[dict[str, Any]]) -> None:
    """p50 of each cell over the baseline's p50 at the same number of users."""
    baseline = {cell["users"]: cell["p50_ms"] for cell in cells if cell["kind"] == BASELINE}
    for cell in cells:
        floor = baseline.get(cell["users"])
        cell["p50_vs_baseline"] = cell["p50_ms"] / floor if cell["p50_ms"] and floor else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(cells: list[dict[str, Any]]) -> None:
    print(
        f"\n{'kind':<11}{'users':>6}{'requests':>10}{'errors':>8}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}{'msgs/s':>9}{'p50/' + BASELINE:>11}"
    )
    for cell in cells:
        ratio = "-" if cell["p50_vs_baseline"] is None else f"{cell['p50_vs_baseline']:.2f}x"
        print(
            f"{cell['kind']:<11}{cell['users']:>6}{cell['requests']:>10}{cell['failed']:>8}"
            f"{_ms(cell['p50_ms']):>9}{_ms(cell['p95_ms']):>9}{_ms(cell['p99_ms']):>9}"
            f"{cell['messages_per_s']:>9.1f}{ratio:>11}"
        )
    by_cell = {(cell["kind"], cell["users"]): cell for cell in cells}
    for (kind, users), cell in by_cell.items():
        floor = by_cell.get(("qa-service", users))
        if kind == "question" and cell["p50_ms"] and floor and floor["p50_ms"]:
            print(
                f"question turn over the QA service alone at {users} user(s): "
                f"{cell['p50_ms'] - floor['p50_ms']:+.1f} ms p50"
            )
    for cell in cells:
        for cause, example in {**cell["error_examples"], **cell["warmup_error_examples"]}.items():
            print(f"! {cell['kind']} x {cell['users']}: {cause}, e.g. {example}")


def plot(cells: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    figure, (latency_axes, rate_axes) = plt.subplots(1, 2, figsize=(11, 4.5))
    for number, kind in enumerate(dict.fromkeys(cell["kind"] for cell in cells)):
        rows = [cell for cell in cells if cell["kind"] == kind and cell["p50_ms"] is not None]
        users = [cell["users"] for cell in rows]
        color = f"C{number}"
        latency_axes.plot(users, [c["p50_ms"] for c in rows], "o-", color=color, label=f"{kind} p50")
        latency_axes.plot(users, [c["p95_ms"] for c in rows], "s--", color=color, label=f"{kind} p95")
        rate_axes.plot(users, [c["messages_per_s"] for c in rows], "o-", color=color, label=kind)
    measured_users = sorted({cell["users"] for cell in cells})
    for axes in (latency_axes, rate_axes):
        axes.set_xscale("log", base=2)
        axes.set_xticks(measured_users, [str(users) for users in measured_users])
        axes.xaxis.set_minor_locator(NullLocator())
        axes.set_xlabel("concurrent users")
        axes.grid(True, which="both", alpha=0.3)
    latency_axes.set_yscale("log")
    latency_axes.set_ylabel("latency (ms)")
    latency_axes.set_title("Turn latency (closed loop, loopback)")
    latency_axes.legend(fontsize=7, ncol=2)
    rate_axes.set_ylabel("successful messages / s")
    rate_axes.set_title("Sustained throughput")
    rate_axes.legend(fontsize=8)
    save_plot(figure, path)
