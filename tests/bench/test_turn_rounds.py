"""How bench/turn_latency.py puts a cell together from its rounds: the kinds take turns, and a
cell pools its rounds' latencies, failures and time. Runs in the QA venv (.venv), as the benchmark."""

from __future__ import annotations

from typing import Any

import pytest

from bench.turn_latency import KINDS, taking_turns
from bench.turn_report import pooled_cell


def round_result(latencies_s: list[float], elapsed_s: float, wrong: int = 0) -> dict[str, Any]:
    """What the load generator returns for one round."""
    return {
        "latencies_s": latencies_s,
        "requests": len(latencies_s) + wrong,
        "messages_sent": len(latencies_s) + wrong + 1,
        "errors": {"timeout": 0, "http": 0, "wrong_reply": wrong},
        "error_examples": {"wrong_reply": f"reply {elapsed_s}"} if wrong else {},
        "warmup_errors": 0,
        "warmup_error_examples": {},
        "elapsed_s": elapsed_s,
        "turns_by_user": [len(latencies_s) + wrong],
    }


def test_each_round_starts_one_kind_further_on() -> None:
    orders = [[kind.name for kind in taking_turns(KINDS, number)] for number in range(len(KINDS) + 1)]

    assert [order[0] for order in orders[:-1]] == [kind.name for kind in KINDS]  # every kind goes first once
    assert all(sorted(order) == sorted(orders[0]) for order in orders)  # each round runs every kind
    assert orders[-1] == orders[0]


def test_a_cell_pools_its_rounds() -> None:
    rounds = [round_result([0.1, 0.3], 2.0, wrong=1), round_result([0.2, 0.4, 0.5], 3.0)]

    cell = pooled_cell("question", 4, rounds)

    assert (cell["kind"], cell["users"], cell["rounds"]) == ("question", 4, 2)
    assert (cell["requests"], cell["ok"], cell["failed"]) == (6, 5, 1)
    assert cell["errors"]["wrong_reply"] == 1 and cell["error_examples"] == {"wrong_reply": "reply 2.0"}
    assert cell["p50_ms"] == pytest.approx(300.0)  # the median of all five latencies, not of the rounds'
    assert cell["messages_per_s"] == pytest.approx(5 / 5.0)  # successes over the rounds' summed time
