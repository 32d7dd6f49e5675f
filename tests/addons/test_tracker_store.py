"""Conversations persist: Rasa's SQL tracker store on DATABASE_URL survives a restart."""

from __future__ import annotations

import asyncio

from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from addons.tracker_store import DatabaseUrlTrackerStore

DOMAIN = Domain.from_yaml(
    """
version: "3.1"
slots:
  horoscope_sign:
    type: text
    mappings:
    - type: custom
"""
)


def test_conversation_survives_a_new_store_on_the_same_database(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'tracker.db'}")
    tracker = DialogueStateTracker.from_events(
        "alice",
        [
            ActionExecuted("action_listen"),
            UserUttered("my sign is leo", intent={"name": "inform_sign", "confidence": 1.0}),
            SlotSet("horoscope_sign", "leo"),
        ],
        slots=DOMAIN.slots,
    )
    asyncio.run(DatabaseUrlTrackerStore(domain=DOMAIN).save(tracker))

    # A fresh store (as after restarting every process) reads the same conversation back.
    restored = asyncio.run(DatabaseUrlTrackerStore(domain=DOMAIN).retrieve("alice"))

    assert restored is not None
    assert restored.get_slot("horoscope_sign") == "leo"
    assert restored.latest_message.text == "my sign is leo"
    assert (tmp_path / "tracker.db").exists()


def test_url_in_endpoint_config_wins_over_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    DatabaseUrlTrackerStore(domain=DOMAIN, host=f"sqlite:///{tmp_path / 'from-endpoints.db'}")

    assert (tmp_path / "from-endpoints.db").exists()
    assert not (tmp_path / "from-env.db").exists()
