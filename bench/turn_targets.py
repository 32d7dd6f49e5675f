"""The turn-latency targets of issues 6 and 15, judged on one run of bench/turn_latency.py.

Issue 6 set absolute limits at one user. Issue 15 set limits relative to what the same run measured
for Rasa's floor (a rule reply) and for the QA service alone, and a throughput goal against the
custom-action turns per second measured before it (TURNS_PER_S_BEFORE). A target is "met", "not met"
(too slow, or a request of a cell it reads failed) or "not measured" (a cell it needs was not run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
