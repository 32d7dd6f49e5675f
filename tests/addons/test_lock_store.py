"""Conversation locks across processes on a real Redis: Rasa's RedisLockStore against the addon.

Each of several processes (as several Rasa instances would) repeatedly takes one
conversation's lock and, inside it, does what a turn does to the tracker: reads the stored
events, works a little, writes them back with its own added. With a correct lock every
turn is kept and no two turns overlap. Open-source Rasa 3.6's RedisLockStore reads and
rewrites its ticket queue non-atomically, so processes that ask at the same moment get the
same ticket and run together: turns overlap and are lost. addons.lock_store's
AtomicRedisLockStore does each step in one atomic Redis script.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rasa.core.lock_store import LockError, RedisLockStore

from addons.lock_store import AtomicRedisLockStore
from scripts.cluster import find_binary, free_ports

PROCESSES = 4
TURNS_PER_PROCESS = 15
# Rasa's lock lifetime is 60 s; short here so that a lost ticket costs seconds, not a minute.
LOCK_LIFETIME_S = 5.0
POLL_S = 0.005
# Rasa's store can lose a ticket, and a process holding a lost ticket polls forever: a turn still
# waiting after this long was never given the lock, and counts as stalled instead of hanging.
TURN_DEADLINE_S = 4 * LOCK_LIFETIME_S
CONVERSATION = "shared-conversation"


@pytest.fixture(scope="module")
def redis_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    (port,) = free_ports(1)
    data = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [
            find_binary("redis-server"),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--dir",
            str(data),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=5)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    yield port
    server.terminate()
    server.wait(timeout=30)


def _store(kind: str, port: int) -> RedisLockStore | AtomicRedisLockStore:
    if kind == "rasa":
        return RedisLockStore(host="127.0.0.1", port=port, db=0)
    return AtomicRedisLockStore(client=redis.Redis(port=port, socket_timeout=5))


def _turns(kind: str, port: int, worker: int, start: multiprocessing.synchronize.Barrier) -> None:
    """One process's turns: a read-modify-write of the 'tracker' inside the conversation's lock."""
    store, data = _store(kind, port), redis.Redis(port=port, socket_timeout=5)

    async def turn(number: int) -> None:
        async with store.lock(CONVERSATION, lock_lifetime=LOCK_LIFETIME_S, wait_time_in_seconds=POLL_S):
            data.incr("inside")
            events = data.lrange("tracker", 0, -1)
            await asyncio.sleep(0.01)  # the turn's work: NLU, policies, actions
            overlapped = int(data.get("inside") or 0) > 1
            data.delete("tracker")
            data.rpush("tracker", *events, f"{worker}:{number}")  # saves what it read, plus its turn
            data.decr("inside")
            if overlapped:
                data.incr("overlaps")

    async def all_turns() -> None:
        for number in range(TURNS_PER_PROCESS):
            try:
                await asyncio.wait_for(turn(number), timeout=TURN_DEADLINE_S)
            except LockError:
                data.incr("lock_errors")
            except asyncio.TimeoutError:
                data.incr("stalled")

    start.wait(timeout=60)
    asyncio.run(all_turns())


def run_turns(kind: str, port: int) -> dict[str, int]:
    """Runs every process's turns at once; the turns kept, stored twice, overlapped, refused a lock or
    never given it."""
    redis.Redis(port=port, socket_timeout=5).flushdb()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    workers = [context.Process(target=_turns, args=(kind, port, n, start)) for n in range(PROCESSES)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
    for worker in workers:
        if worker.is_alive():  # ended here, so that it cannot write into the next test's data
            worker.terminate()
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    data = redis.Redis(port=port, socket_timeout=5, decode_responses=True)
    stored = data.lrange("tracker", 0, -1)
    return {
        "kept": len(set(stored)),
        "duplicated": len(stored) - len(set(stored)),
        "overlaps": int(data.get("overlaps") or 0),
        "lock_errors": int(data.get("lock_errors") or 0),
        "stalled": int(data.get("stalled") or 0),
    }


def test_rasas_redis_lock_store_lets_processes_overlap_and_lose_turns(redis_port: int) -> None:
    outcome = run_turns("rasa", redis_port)

    assert outcome["overlaps"] > 0 or outcome["lock_errors"] > 0 or outcome["stalled"] > 0, outcome
    assert outcome["kept"] < PROCESSES * TURNS_PER_PROCESS, outcome


def test_the_atomic_lock_store_keeps_every_turn_one_at_a_time(redis_port: int) -> None:
    outcome = run_turns("atomic", redis_port)

    assert outcome == {
        "kept": PROCESSES * TURNS_PER_PROCESS,
        "duplicated": 0,
        "overlaps": 0,
        "lock_errors": 0,
        "stalled": 0,
    }
    # An idle conversation leaves no lock keys behind.
    assert not redis.Redis(port=redis_port, socket_timeout=5).keys("ticketlock:*")


def test_turns_are_served_in_ticket_order(redis_port: int) -> None:
    store = AtomicRedisLockStore(client=redis.Redis(port=redis_port, socket_timeout=5))
    served: list[int] = []

    async def turn(number: int) -> None:
        async with store.lock("ordered", wait_time_in_seconds=POLL_S):
            served.append(number)
            await asyncio.sleep(0.01)

    async def main() -> None:
        # Tickets are taken in the order the tasks start; each then waits for its turn.
        await asyncio.gather(*(turn(number) for number in range(10)))

    asyncio.run(main())
    assert served == list(range(10))


def test_a_ticket_left_by_a_killed_process_expires(redis_port: int) -> None:
    store = AtomicRedisLockStore(client=redis.Redis(port=redis_port, socket_timeout=5))
    store.issue_ticket("abandoned", lock_lifetime=0.5)  # never released, as by a killed instance

    async def next_turn() -> float:
        started = time.monotonic()
        async with store.lock("abandoned", wait_time_in_seconds=POLL_S):
            return time.monotonic() - started

    assert 0.3 < asyncio.run(next_turn()) < 5.0


def test_configured_from_the_endpoint_file(redis_port: int, tmp_path: Path) -> None:
    from rasa.core.lock_store import LockStore
    from rasa.utils.endpoints import read_endpoint_config

    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        "lock_store:\n  type: addons.lock_store.AtomicRedisLockStore\n"
        f"  url: 127.0.0.1\n  port: {redis_port}\n"
    )
    store = LockStore.create(read_endpoint_config(str(endpoints), "lock_store"))

    assert isinstance(store, AtomicRedisLockStore)
    assert store.issue_ticket("configured") == 1
