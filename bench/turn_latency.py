"""Turn latency through Rasa's REST channel with every service running: p50/p95/p99 and messages/s.

Starts the whole stack with scripts/serve.sh on free loopback ports (a throwaway SQLite database,
the built-in horoscope writer, so no turn waits on a network upstream) unless --rasa-url and
--qa-url point at one already running. For each number of concurrent users and each turn kind,
bench/load_generator.py runs in its own process (.venv-rasa, which has aiohttp): a few untimed
warm-up requests, then closed-loop users for --duration seconds or --max-requests in all. A cell
is measured in --rounds rounds, the kinds taking turns round by round (each round starting with
the next kind), so the machine's drift over a run falls on every kind alike and a ratio to the
floor compares turns measured in the same minutes; a cell's figures pool its rounds.

Turn kinds: bot ("are you a bot?": NLU, policies and a templated reply by a rule, no custom action)
is Rasa's own floor, the baseline every row is compared with at the same number of users; greet
("hello": the reply also opens the sign form, whose validation runs on the action server); horoscope
(form and custom action, no network); question (custom action -> QA service: the knowledge base's
hand-written questions, each asked in turn, so the QA service's embedding cache does not answer
for it); qa-service (POST /answer alone, the same questions: the question turn's floor). Each user
starts a new conversation every --turns-per-sender turns, so one turn in that many also runs
action_session_start. A reply counts only when it is the expected one (the bot's answer, the
greeting, Virgo's horoscope, an answer or "I don't know" from the QA service), so a broken stack
cannot produce fast nonsense; failures are counted by cause. Ratios, targets, table and plot:
bench/turn_report.py.

    .venv/bin/python bench/turn_latency.py --users 1 4 16 --duration 15
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path; the repository root must.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from tqdm import tqdm  # noqa: E402

from bench.common import RESULTS_DIR, squad_question_texts, write_report  # noqa: E402
from bench.turn_replies import expected_replies  # noqa: E402
from bench.turn_report import (  # noqa: E402
    BASELINE,
    add_ratios,
    check_targets,
    plot,
    pooled_cell,
    print_table,
    print_targets,
)
from retrieval.index.encoder import QUERY_CACHE_SIZE  # noqa: E402
from scripts.stack import REPO_ROOT, StackDidNotStart, running_stack  # noqa: E402

LOAD_GENERATOR = REPO_ROOT / "bench" / "load_generator.py"
DEFAULT_MODEL = "models/horoscope.tar.gz"  # serve.sh's default
PROBE_TIMEOUT_S = 30.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})  # the load never leaves the machine
# Environment variables that set the services' thread and worker counts (unset: the library default).
THREAD_VARIABLES = (
    "QA_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "TF_INTRA_OP_PARALLELISM_THREADS",
    "TF_INTER_OP_PARALLELISM_THREADS",
    "SANIC_WORKERS",
    "ACTION_SERVER_SANIC_WORKERS",
)


@dataclass(frozen=True)
class TurnKind:
    name: str
    target: str  # "rasa": the REST channel; "qa": the QA service's /answer
    message: str | None  # sent with every request; None: the knowledge base's questions in turn

    def messages(self, questions: tuple[str, ...]) -> tuple[str, ...]:
        return questions if self.message is None else (self.message,)


KNOWLEDGE_QUESTIONS = REPO_ROOT / "tests" / "data" / "knowledge_qa.json"
# Knowledge-base questions a request intent may answer instead (help, unsubscribe, ...): the question
# turns ask the rest, and tests/nlu/test_routing.py checks that every one of those reaches the QA service.
ROUTING = REPO_ROOT / "tests" / "data" / "routing.json"
NOT_ROUTED_TO_QA = frozenset(json.loads(ROUTING.read_text(encoding="utf-8"))["knowledge_base_elsewhere"])
QUESTION_ORDER_SEED = 7


def varied_questions() -> tuple[str, ...]:
    """The knowledge base's hand-written questions, shuffled once. More of them than the QA service's
    question-embedding cache holds, so a question comes round again only after it has left the cache."""
    questions = [q for q in squad_question_texts(KNOWLEDGE_QUESTIONS) if q not in NOT_ROUTED_TO_QA]
    random.Random(QUESTION_ORDER_SEED).shuffle(questions)
    return tuple(questions)


KINDS = (
    TurnKind(BASELINE, "rasa", "are you a bot?"),
    TurnKind("greet", "rasa", "hello"),
    TurnKind("horoscope", "rasa", "what's the horoscope for virgo today"),
    TurnKind("question", "rasa", None),
    TurnKind("qa-service", "qa", None),
)


@dataclass(frozen=True)
class Endpoints:
    rasa_url: str
    qa_url: str


def _post_json(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:
        return json.load(response)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
        return response.read().decode("utf-8", errors="replace")


def qa_reply(endpoints: Endpoints, question: str) -> dict[str, Any]:
    """The QA service's own reply to the question, which the question turn must pass on."""
    found = _post_json(f"{endpoints.qa_url}/answer", {"question": question})
    if not isinstance(found.get("abstained"), bool) or not (found["abstained"] or found.get("answer")):
        raise ValueError(f"the QA service's reply to {question!r} is outside its contract: {found}")
    return found


def stack_settings(endpoints: Endpoints, model: Path | None) -> dict[str, Any]:
    """What the measured stack ran: Rasa, the QA service's index and reader and, for a stack started
    here (`model` given), the Rasa model file and the thread settings.
    """
    settings: dict[str, Any] = {
        "rasa": _get(f"{endpoints.rasa_url}/").strip(),
        "qa_service": json.loads(_get(f"{endpoints.qa_url}/readyz")),
        "horoscope_provider": "built-in writer (HOROSCOPE_API_URL empty): no network upstream",
    }
    if model is not None:  # started here, so the services saw this process's environment
        settings["thread_variables"] = {name: os.environ.get(name) for name in THREAD_VARIABLES}
        settings["thread_variables_note"] = (
            "None: unset, the library default (torch: one thread per core; ONNX Runtime: its default; "
            "Rasa and the action server: one Sanic worker)"
        )
        settings["rasa_model"] = {
            "path": str(model.relative_to(REPO_ROOT) if model.is_relative_to(REPO_ROOT) else model),
            "bytes": model.stat().st_size,
            "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        }
    return settings


def run_round(
    python: Path,
    kind: TurnKind,
    url: str,
    users: int,
    args: argparse.Namespace,
    expected: list[str],
    messages: tuple[str, ...],
    first_message: int,
    sender_prefix: str,
    first_turns: list[int],
) -> dict[str, Any]:
    """One round of a (kind, users) cell, measured by the load generator in its own process: its
    messages start at `first_message`, its users' conversations go on from `first_turns`."""
    duration_s = args.duration / args.rounds
    spec = {
        "target": kind.target,
        "url": url,
        "messages": list(messages),
        "first_message": first_message,
        "users": users,
        "duration_s": duration_s,
        "max_requests": math.ceil(args.max_requests / args.rounds),
        "timeout_s": args.timeout,
        "warmup": args.warmup,
        "turns_per_sender": args.turns_per_sender,
        "sender_prefix": sender_prefix,
        "expected": expected,
        "first_turns": first_turns,
    }
    bound_s = (args.warmup + 1) * args.timeout + duration_s + 30
    try:
        done = subprocess.run(
            [str(python), str(LOAD_GENERATOR)],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=bound_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"the load generator ran past {bound_s:.0f} s on {kind.name} x {users}") from None
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed on {kind.name} x {users}:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def taking_turns(kinds: Sequence[TurnKind], round_number: int) -> list[TurnKind]:
    """The kinds in the order of one round: each round starts one kind further on."""
    start = round_number % len(kinds)
    return [*kinds[start:], *kinds[:start]]


@contextmanager
def stack_endpoints(args: argparse.Namespace) -> Iterator[tuple[Endpoints, Path | None]]:
    """The stack to measure: the running one given by URL, else a fresh one (and the model it serves)."""
    if args.rasa_url:
        yield Endpoints(args.rasa_url.rstrip("/"), args.qa_url.rstrip("/")), None
        return
    model = REPO_ROOT / os.environ.get("RASA_MODEL", DEFAULT_MODEL)  # serve.sh runs in the repository root
    with tempfile.TemporaryDirectory(prefix="turn-latency-") as scratch:
        run_dir = args.run_dir or Path(scratch)
        print(f"starting the stack (logs in {run_dir / 'log'}) ...", flush=True)
        try:
            with running_stack(run_dir) as stack:
                yield Endpoints(stack.rasa_url, stack.qa_url), model
        except StackDidNotStart as error:
            raise SystemExit(str(error)) from None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 16], help="concurrent users per cell")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per cell")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per cell, the kinds taking turns")
    parser.add_argument("--max-requests", type=int, default=300, help="requests per cell, all users together")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests before each round")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before a request counts as timed out"
    )
    parser.add_argument(
        "--turns-per-sender",
        type=int,
        default=10,
        help="each user starts a new conversation after this many turns (the tracker stays a realistic size)",
    )
    parser.add_argument(
        "--kinds", nargs="+", choices=[k.name for k in KINDS], default=[k.name for k in KINDS]
    )
    parser.add_argument("--rasa-url", help="measure the stack already running here (needs --qa-url)")
    parser.add_argument("--qa-url", help="its QA service")
    parser.add_argument("--run-dir", type=Path, help="keep the started stack's logs and database here")
    parser.add_argument(
        "--client-python",
        type=Path,
        default=REPO_ROOT / ".venv-rasa" / "bin" / "python",
        help="Python with aiohttp that runs the load generator",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "turn_latency.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "turn_latency.png")
    args = parser.parse_args(argv)
    if bool(args.rasa_url) != bool(args.qa_url):
        parser.error("--rasa-url and --qa-url go together")
    if any(url and urlsplit(url).hostname not in LOOPBACK_HOSTS for url in (args.rasa_url, args.qa_url)):
        parser.error("--rasa-url and --qa-url must be on loopback (127.0.0.1, localhost or ::1)")
    if (
        min(*args.users, args.rounds, args.max_requests, args.turns_per_sender) < 1
        or min(args.duration, args.timeout) <= 0
    ):
        parser.error(
            "--users, --duration, --rounds, --max-requests, --timeout and --turns-per-sender must be positive"
        )
    if not args.client_python.is_file():
        raise SystemExit(
            f"no Python at {args.client_python}; create .venv-rasa (see README) or pass --client-python"
        )
    kinds = [kind for kind in KINDS if kind.name in args.kinds]

    questions = varied_questions()
    load_before = os.getloadavg()  # what else this machine was doing: the run's numbers move with it
    started = time.perf_counter()
    with stack_endpoints(args) as (endpoints, model):
        try:
            found = qa_reply(endpoints, questions[0])
            expected = expected_replies()
            settings = stack_settings(endpoints, model)
        except (OSError, ValueError, KeyError, TypeError) as error:  # URLError is an OSError
            raise SystemExit(
                f"the stack does not answer as expected: {type(error).__name__}: {error}"
            ) from None
        urls = {"rasa": f"{endpoints.rasa_url}/webhooks/rest/webhook", "qa": f"{endpoints.qa_url}/answer"}
        rounds: dict[tuple[int, str], list[dict[str, Any]]] = {}
        run_id = uuid.uuid4().hex[:8]
        questions_asked = 0  # every round asking questions goes on where the one before stopped
        plan = [
            (users, kind)
            for users in sorted(set(args.users))
            for round_number in range(args.rounds)
            for kind in taking_turns(kinds, round_number)
        ]
        for users, kind in tqdm(plan, desc="rounds", unit="round"):
            asks_questions = kind.message is None
            before = rounds.setdefault((users, kind.name), [])
            result = run_round(
                args.client_python,
                kind,
                urls[kind.target],
                users,
                args,
                expected[kind.name],
                kind.messages(questions),
                questions_asked if asks_questions else 0,
                f"bench-{run_id}-{kind.name}-{users}",
                before[-1]["turns_by_user"] if before else [],
            )
            if asks_questions:
                questions_asked += result["messages_sent"]
            before.append(result)
        cells = [pooled_cell(kind, users, results) for (users, kind), results in rounds.items()]
    wall_s = time.perf_counter() - started

    add_ratios(cells)
    targets = check_targets(cells)
    print_table(cells)
    print_targets(targets)
    print(
        f"{questions_asked} questions asked, walking through {len(questions)} different ones; the QA "
        f"service keeps the embeddings of its last {QUERY_CACHE_SIZE} questions"
    )
    print(f"load average before the run: {load_before[0]:.2f}")
    print(f"wall time {wall_s:.0f} s")
    write_report(
        args.out,
        {
            "benchmark": "turn latency through Rasa's REST channel, whole stack on loopback",
            "baseline": BASELINE,
            "messages": {
                kind.name: kind.message or f"{len(questions)} knowledge-base questions in turn"
                for kind in kinds
            },
            "questions": {
                "from": str(KNOWLEDGE_QUESTIONS.relative_to(REPO_ROOT)),
                "different": len(questions),
                "asked": questions_asked,
                "qa_service_question_cache": QUERY_CACHE_SIZE,
            },
            "load_average_before": load_before[0],
            "settings": {
                name: getattr(args, name)
                for name in (
                    "users",
                    "duration",
                    "rounds",
                    "max_requests",
                    "warmup",
                    "timeout",
                    "turns_per_sender",
                )
            },
            "stack": settings,
            "qa_probe": {
                "question": questions[0],
                **{k: found.get(k) for k in ("answer", "confidence", "abstained")},
            },
            "cells": cells,
            "targets": targets,
            "wall_seconds": wall_s,
        },
    )
    plot(cells, args.plot)


if __name__ == "__main__":
    main()
