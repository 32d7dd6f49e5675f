"""addons.rasa_speedups gives Rasa's own answers: the same replies accepted and refused with the same
message, the same event classes found, the same errors for names no event has."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from jsonschema import ValidationError
from rasa.core.actions.action import RemoteAction
from rasa.shared.core.events import Event, SlotSet
from rasa.shared.utils.common import all_subclasses
from rasa_sdk import events as sdk_events

from addons import rasa_speedups
from addons.rasa_speedups import RASA_RESOLVE_BY_TYPE, RASA_VALIDATE_ACTION_RESULT

ACTION = RemoteAction("action_get_horoscope", None)

# Replies as the action server sends them (rasa_sdk's own event dicts) and broken ones.
VALID_REPLIES: list[dict[str, Any]] = [
    {},
    {"events": [], "responses": []},
    {
        "events": [
            sdk_events.SlotSet("horoscope_sign", "virgo"),
            sdk_events.SlotSet("horoscope_delivered", True),
            sdk_events.FollowupAction("utter_offer_subscription"),
            sdk_events.ActiveLoop(None),
            sdk_events.SessionStarted(),
            sdk_events.ActionExecuted("action_listen"),
            sdk_events.BotUttered("hello", {"buttons": []}),
        ],
        "responses": [{"response": "utter_horoscope", "horoscope_sign": "Virgo", "horoscope_text": "Calm."}],
    },
]
INVALID_REPLIES: list[Any] = [
    [],
    {"events": "not a list"},
    {"events": [{"name": "horoscope_sign", "value": "virgo"}]},  # no "event" key
    {"events": [{"event": "slot", "name": 3, "value": "virgo"}]},
    {"events": [{"event": "no_such_event"}]},
    {"responses": ["a text, not an object"]},
    {"events": [sdk_events.SlotSet("horoscope_sign", "virgo")], "responses": "utter_greet"},
]


@pytest.fixture(autouse=True)
def speedups_applied() -> None:
    rasa_speedups.apply()


@pytest.mark.parametrize("reply", VALID_REPLIES)
def test_replies_rasa_accepts_are_accepted(reply: dict[str, Any]) -> None:
    assert RASA_VALIDATE_ACTION_RESULT(ACTION, reply) is True
    assert ACTION._validate_action_result(reply) is True


@pytest.mark.parametrize("reply", INVALID_REPLIES)
def test_replies_rasa_refuses_are_refused_with_rasas_message(reply: Any) -> None:
    with pytest.raises(ValidationError) as rasa_error:
        RASA_VALIDATE_ACTION_RESULT(ACTION, reply)
    with pytest.raises(ValidationError) as patched_error:
        ACTION._validate_action_result(reply)
    assert patched_error.value.message == rasa_error.value.message
    assert "Failed to validate Action server response" in patched_error.value.message


def test_every_event_name_resolves_to_rasas_class() -> None:
    names = {cls.type_name for cls in all_subclasses(Event)}
    assert {"slot", "action", "user", "bot", "followup", "active_loop", "session_started"} <= names
    for name in names:
        assert Event.resolve_by_type(name) is RASA_RESOLVE_BY_TYPE(name)


def test_names_no_event_has_behave_as_in_rasa() -> None:
    assert Event.resolve_by_type("no_such_event", SlotSet) is SlotSet
    assert Event.resolve_by_type("topic") is None  # Rasa's backwards compatibility
    with pytest.raises(ValueError, match="Unknown event name 'no_such_event'"):
        Event.resolve_by_type("no_such_event")


def test_an_event_class_defined_later_is_found() -> None:
    Event.resolve_by_type("slot")  # the table exists before the new class does

    class LateEvent(SlotSet):
        type_name = "late_event_for_this_test"

    assert Event.resolve_by_type("late_event_for_this_test") is LateEvent
    assert Event.from_parameters({"event": "late_event_for_this_test", "name": "s", "value": 1}) == LateEvent(
        "s", 1
    )


def test_rasa_processes_get_the_speedups_from_the_tracker_store_module() -> None:
    """What `rasa run` does with endpoints.yml: import the tracker store module, nothing else."""
    check = (
        "import addons.tracker_store\n"
        "from rasa.core.actions.action import RemoteAction\n"
        "from rasa.shared.core.events import Event\n"
        "from addons import rasa_speedups\n"
        "assert RemoteAction._validate_action_result is rasa_speedups.validate_action_result\n"
        "assert Event.resolve_by_type is rasa_speedups.resolve_event_by_type\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=120)
