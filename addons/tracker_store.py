"""Rasa's SQL tracker store, configured by the same DATABASE_URL as the actions."""

from __future__ import annotations

from typing import Any

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import SQLTrackerStore
from rasa.shared.core.domain import Domain

from actions.settings import Settings
from addons import rasa_speedups

# Every serving Rasa process imports this module (endpoints.yml): see addons/rasa_speedups.py.
rasa_speedups.apply()


class DatabaseUrlTrackerStore(SQLTrackerStore):
    """SQLTrackerStore that takes one database URL instead of dialect/host/db fields.

    Rasa's endpoint file cannot give an environment variable a default, so the
    URL comes from `Settings` (DATABASE_URL, or a SQLite file under var/).
    SQLTrackerStore accepts a complete URL in `host`.
    """

    def __init__(
        self,
        domain: Domain | None = None,
        host: str | None = None,
        event_broker: EventBroker | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            domain=domain,
            host=host or Settings.from_env().database_url,
            event_broker=event_broker,
            **kwargs,
        )
