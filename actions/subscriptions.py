"""Who subscribed to a daily horoscope, in the SQL database of DATABASE_URL.

One row per conversation (sender_id): subscribing again changes the sign, it
never adds a second row, and subscribed_at keeps the first subscription's time.
Works on SQLite and PostgreSQL (atomic upsert of each).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Column, DateTime, MetaData, String, Table, create_engine, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

_metadata = MetaData()

subscriptions_table = Table(
    "horoscope_subscriptions",
    _metadata,
    Column("sender_id", String(255), primary_key=True),
    Column("sign", String(32), nullable=False),
    Column("subscribed_at", DateTime(timezone=True), nullable=False),
)

_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@dataclass(frozen=True)
class Subscription:
    sender_id: str
    sign: str
    subscribed_at: datetime


@functools.cache
def engine_for(database_url: str) -> Engine:
    """One engine (and connection pool) per database per process."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, future=True, pool_pre_ping=True)


class SubscriptionStore:
    """Subscribe, unsubscribe and look up; creates its table when missing."""

    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in _UPSERT_INSERTS:
            raise ValueError(f"subscriptions need SQLite or PostgreSQL, not {dialect!r}")
        self._engine = engine
        self._insert = _UPSERT_INSERTS[dialect]
        _metadata.create_all(engine)

    @classmethod
    def from_url(cls, database_url: str) -> SubscriptionStore:
        return cls(engine_for(database_url))

    def subscribe(self, sender_id: str, sign: str) -> None:
        """Subscribe `sender_id` to `sign`; if already subscribed, switch to `sign`."""
        statement = self._insert(subscriptions_table).values(
            sender_id=sender_id, sign=sign, subscribed_at=datetime.now(timezone.utc)
        )
        statement = statement.on_conflict_do_update(
            index_elements=[subscriptions_table.c.sender_id], set_={"sign": statement.excluded.sign}
        )
        with self._engine.begin() as connection:
            connection.execute(statement)

    def unsubscribe(self, sender_id: str) -> bool:
        """Remove the subscription; True if there was one."""
        statement = delete(subscriptions_table).where(subscriptions_table.c.sender_id == sender_id)
        with self._engine.begin() as connection:
            return connection.execute(statement).rowcount > 0

    def lookup(self, sender_id: str) -> Subscription | None:
        statement = select(subscriptions_table).where(subscriptions_table.c.sender_id == sender_id)
        with self._engine.connect() as connection:
            row = connection.execute(statement).one_or_none()
        return Subscription(**row._mapping) if row else None
