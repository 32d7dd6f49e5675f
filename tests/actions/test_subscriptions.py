"""The subscription store on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys

from sqlalchemy import create_engine, func, select

from actions.subscriptions import SubscriptionStore, engine_for, subscriptions_table


def row_count(database_url: str) -> int:
    with create_engine(database_url).connect() as connection:
        return connection.execute(select(func.count()).select_from(subscriptions_table)).scalar_one()


def test_subscribe_then_look_up(store: SubscriptionStore) -> None:
    assert store.lookup("alice") is None
    store.subscribe("alice", "leo")
    subscription = store.lookup("alice")
    assert subscription is not None
    assert (subscription.sender_id, subscription.sign) == ("alice", "leo")
    assert store.lookup("bob") is None


def test_subscribing_again_switches_the_sign_without_a_second_row(
    store: SubscriptionStore, database_url: str
) -> None:
    store.subscribe("alice", "leo")
    first = store.lookup("alice")
    store.subscribe("alice", "leo")
    store.subscribe("alice", "pisces")
    again = store.lookup("alice")
    assert again is not None and first is not None
    assert again.sign == "pisces"
    assert again.subscribed_at == first.subscribed_at
    assert row_count(database_url) == 1


def test_unsubscribe_says_whether_there_was_a_subscription(store: SubscriptionStore) -> None:
    store.subscribe("alice", "leo")
    store.subscribe("bob", "virgo")
    assert store.unsubscribe("alice") is True
    assert store.unsubscribe("alice") is False
    assert store.lookup("alice") is None
    assert store.lookup("bob") is not None


def test_subscriptions_survive_a_new_engine_and_a_new_process(
    store: SubscriptionStore, database_url: str
) -> None:
    store.subscribe("alice", "capricorn")
    reopened = SubscriptionStore(create_engine(database_url))
    assert reopened.lookup("alice").sign == "capricorn"  # type: ignore[union-attr]
    script = (
        "import sys; from actions.subscriptions import SubscriptionStore; "
        "print(SubscriptionStore.from_url(sys.argv[1]).lookup('alice').sign)"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", script, database_url], capture_output=True, text=True, check=True
    )
    assert other_process.stdout.strip() == "capricorn"


def test_one_engine_per_database_per_process(database_url: str, tmp_path) -> None:
    assert engine_for(database_url) is engine_for(database_url)
    assert engine_for(database_url) is not engine_for(f"sqlite:///{tmp_path / 'other.db'}")


def test_the_database_folder_is_created(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'deeper' / 'subs.db'}"
    SubscriptionStore.from_url(url).subscribe("alice", "aries")
    assert (tmp_path / "nested" / "deeper" / "subs.db").is_file()
