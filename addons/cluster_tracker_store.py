"""The cluster's tracker store: waits out a database restart, and never forgets a conversation silently.

Rasa wraps every tracker store in its `FailSafeTrackerStore` (rasa/core/agent.py), which
catches any error of the database and carries on: a conversation it cannot read is started
afresh, and one it cannot write is kept in that process's memory. With PostgreSQL down for a
few seconds, the cluster went on answering (HTTP 200) as if every user had just arrived,
their forms and slots forgotten, and those turns never reached PostgreSQL: three users
chatting across a 5-second stop of PostgreSQL with Rasa's SQLTrackerStore got 29 answers,
of which 17 were never stored (2026-12-01, the load of tests/cluster/test_cluster_with_faults.py).

`ClusterTrackerStore` therefore

- retries a read or write that fails for want of the database for up to DATABASE_RETRY_S
  (default 10 s; a PostgreSQL restart takes a few): the turn just takes longer;
- then raises `DatabaseUnavailable`, a `BaseException`, so that neither the fail-safe wrapper
  nor the REST channel (both `except Exception`) turns it into a forgetful answer. The
  request ends without a reply; nginx answers it with a short "try again in a moment"
  message (scripts/cluster.py), the lock is released, and nothing half-done is stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy.exc import InterfaceError, OperationalError

from addons.tracker_store import DatabaseUrlTrackerStore

logger = logging.getLogger(__name__)

DATABASE_RETRY_VARIABLE = "DATABASE_RETRY_S"
DEFAULT_DATABASE_RETRY_S = 10.0
RETRY_INTERVAL_S = 0.5
T = TypeVar("T")


class DatabaseUnavailable(BaseException):
    """The tracker store's database stayed unreachable for the whole retry window."""


def database_retry_s() -> float:
    """DATABASE_RETRY_S from the environment; a bad value stops Rasa at start."""
    raw = os.environ.get(DATABASE_RETRY_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_DATABASE_RETRY_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 600:
        raise ValueError(f"{DATABASE_RETRY_VARIABLE} must be a number of seconds from 0 to 600, got {raw!r}")
    return value


class ClusterTrackerStore(DatabaseUrlTrackerStore):
    """DatabaseUrlTrackerStore that waits for its database, then fails loudly instead of forgetting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.retry_s = database_retry_s()
        super().__init__(*args, **kwargs)

    async def _when_reachable(self, step: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.retry_s
        while True:
            try:
                return await step()
            except (OperationalError, InterfaceError) as error:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(
                        f"the tracker store's database is unreachable: {error}"
                    ) from error
                logger.warning(f"The tracker store's database is unreachable, trying again: {error}")
                await asyncio.sleep(RETRY_INTERVAL_S)

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        retrieve = super().retrieve
        return await self._when_reachable(lambda: retrieve(sender_id))

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        retrieve_full = super().retrieve_full_tracker
        return await self._when_reachable(lambda: retrieve_full(conversation_id))

    async def save(self, tracker: DialogueStateTracker) -> None:
        save = super().save
        await self._when_reachable(lambda: save(tracker))
