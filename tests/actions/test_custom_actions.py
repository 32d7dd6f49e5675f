"""The custom actions run through the real rasa_sdk machinery (Tracker, CollectingDispatcher, executor).

Collaborators are real too: the loopback horoscope API, the built-in writer and a SQLite file.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import TODAY
from horoscope_api_server import HoroscopeApiServer, served_text
from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActionExecuted, FollowupAction, SessionStarted, SlotSet
from rasa_sdk.executor import ActionExecutor, CollectingDispatcher

from actions.actions import (
    ActionGetHoroscope,
    ActionSessionStart,
    ActionSubscribe,
    ActionUnsubscribe,
    Services,
    ValidateHoroscopeForm,
    default_services,
)
from actions.horoscope import BuiltInHoroscopeProvider, HoroscopeProvider, HttpHoroscopeProvider
from actions.qa import QaClient
from actions.settings import Settings
from actions.subscriptions import SubscriptionStore, engine_for, subscriptions_table

DOMAIN: dict[str, Any] = {
    "forms": {"horoscope_form": {"required_slots": ["horoscope_sign"]}},
    "slots": {
        "horoscope_sign": {"type": "text", "mappings": [{"type": "from_entity", "entity": "horoscope_sign"}]},
        "birthdate": {"type": "text", "mappings": [{"type": "from_entity", "entity": "birthdate"}]},
        "horoscope_delivered": {"type": "bool", "mappings": [{"type": "custom"}]},
        "is_subscribed": {"type": "bool", "mappings": [{"type": "custom"}]},
        "requested_slot": {"type": "any", "mappings": []},
    },
    "session_config": {"session_expiration_time": 60, "carry_over_slots_to_new_session": True},
}
# What the sign form's validation says comes next once it has a sign and no subscription was asked for.
GIVE_HOROSCOPE = FollowupAction("action_get_horoscope")
# Keys every CollectingDispatcher message has; everything else is a response's keyword argument.
_MESSAGE_KEYS = {"text", "buttons", "elements", "custom", "template", "response", "image", "attachment"}


def make_tracker(
    slots: dict[str, Any] | None = None,
    text: str = "",
    intent: str | None = None,
    entities: dict[str, str] | None = None,
    sender_id: str = "alice",
) -> Tracker:
    """A tracker as Rasa sends it to a form's validation action: candidates are the last SlotSet events."""
    all_slots = {name: None for name in DOMAIN["slots"]} | (slots or {})
    entity_list = [{"entity": name, "value": value} for name, value in (entities or {}).items()]
    ranking = [{"name": intent, "confidence": 0.99}] if intent else []
    latest = {
        "text": text,
        "intent": ranking[0] if ranking else {},
        "intent_ranking": ranking,
        "entities": entity_list,
    }
    events = [
        {"event": "user", "text": text, "parse_data": latest},
        SlotSet("requested_slot", "horoscope_sign"),
        ActionExecuted("horoscope_form"),
        *(SlotSet(name, value) for name, value in (entities or {}).items()),
    ]
    return Tracker.from_dict(
        {
            "sender_id": sender_id,
            "slots": all_slots | {"requested_slot": "horoscope_sign"},
            "latest_message": latest,
            "events": events,
            "active_loop": {"name": "horoscope_form"},
        }
    )


def run(action: Action, tracker: Tracker, domain: dict[str, Any] = DOMAIN) -> tuple[list[dict], list[tuple]]:
    """Run an action like the action server does; return its events and (response, kwargs) pairs."""
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tracker, domain))
    said = [
        (message["response"], {key: value for key, value in message.items() if key not in _MESSAGE_KEYS})
        for message in dispatcher.messages
    ]
    return events, said


def services(
    store: SubscriptionStore, provider: HoroscopeProvider | None = None, qa: QaClient | None = None
) -> Services:
    """The built-in writer unless told otherwise; the QA client of the offline defaults."""
    return Services(
        provider or BuiltInHoroscopeProvider(),
        store,
        qa or QaClient.from_settings(Settings.from_env({})),
        today=lambda: TODAY,
    )


@pytest.fixture
def http_services(store: SubscriptionStore, horoscope_api: HoroscopeApiServer) -> Services:
    return services(store, HttpHoroscopeProvider(horoscope_api.url, timeout_s=1.0))


# --- validate_horoscope_form -------------------------------------------------------------


def test_form_computes_the_sign_from_a_birth_date(store: SubscriptionStore) -> None:
    tracker = make_tracker(
        text="I was born on 3 March 1990", intent="inform_birthdate", entities={"birthdate": "3 March 1990"}
    )
    events, said = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", "pisces"), GIVE_HOROSCOPE]
    assert said == [
        ("utter_sign_from_birthdate", {"birthdate_text": "3 March 1990", "horoscope_sign": "Pisces"})
    ]


def test_form_reads_the_message_when_the_nlu_missed_the_date_entity(store: SubscriptionStore) -> None:
    tracker = make_tracker(text="born on the 23rd of july", intent="inform_birthdate")
    events, said = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", "leo"), GIVE_HOROSCOPE]
    assert said[0][0] == "utter_sign_from_birthdate"


@pytest.mark.parametrize(
    ("birthdate", "reason"),
    [
        ("30 February", "February never has more than 29 days"),
        ("29 February 2001", "2001 was not a leap year, so February had only 28 days"),
        ("1 December 2026", "that date is in the future"),
        ("sometime in spring", "I need the month of your birthday, for example '3 March 1990'"),
    ],
)
def test_form_refuses_an_impossible_birth_date_and_asks_again(
    store: SubscriptionStore, birthdate: str, reason: str
) -> None:
    tracker = make_tracker(
        text=f"my birthday is {birthdate}", intent="inform_birthdate", entities={"birthdate": birthdate}
    )
    events, said = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", None)]  # validated as empty: the form asks again
    assert said == [("utter_invalid_birthdate", {"birthdate_text": birthdate, "reason": reason})]


def test_form_normalises_a_named_sign(store: SubscriptionStore) -> None:
    tracker = make_tracker(
        text="I'm a Capricorne", intent="inform_sign", entities={"horoscope_sign": "Capricorne"}
    )
    events, said = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", "capricorn"), GIVE_HOROSCOPE]
    assert said == []


def test_form_completed_for_a_subscription_goes_on_to_subscribe(store: SubscriptionStore) -> None:
    tracker = make_tracker(
        slots={"subscription_requested": True},
        text="I'm a leo",
        intent="inform_sign",
        entities={"horoscope_sign": "leo"},
    )
    events, _ = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", "leo"), FollowupAction("action_subscribe")]


def test_form_refuses_an_unknown_sign(store: SubscriptionStore) -> None:
    tracker = make_tracker(
        text="my sign is banana", intent="inform_sign", entities={"horoscope_sign": "banana"}
    )
    events, said = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", None)]
    assert said == [("utter_unknown_sign", {})]


def test_a_form_opened_by_a_sign_it_does_not_know_says_so(store: SubscriptionStore) -> None:
    opening = make_tracker(text="my sign is dragon", intent="inform_sign")
    opening.active_loop = {}  # the validation call at the form's activation
    events, said = run(ValidateHoroscopeForm(services(store)), opening)
    assert said == [("utter_unknown_sign", {})]
    assert events == [SlotSet("horoscope_sign", None)]  # validated: the form goes on to ask


def test_inside_the_form_a_sign_it_does_not_know_is_left_to_the_rules(store: SubscriptionStore) -> None:
    waiting = make_tracker(text="my sign is dragon", intent="inform_sign")
    events, said = run(ValidateHoroscopeForm(services(store)), waiting)
    assert (events, said) == ([], [])  # the form rejects; data/rules/sign_form.yml answers


def test_form_prefers_a_named_sign_over_a_birth_date(store: SubscriptionStore) -> None:
    tracker = make_tracker(
        text="I'm a leo, born 3 March",
        intent="inform_sign",
        entities={"horoscope_sign": "leo", "birthdate": "3 March"},
    )
    events, said = run(ValidateHoroscopeForm(services(store)), tracker)
    assert events == [SlotSet("horoscope_sign", "leo"), GIVE_HOROSCOPE]
    assert said == []


def test_form_ignores_messages_without_a_sign_or_a_date(store: SubscriptionStore) -> None:
    events, said = run(ValidateHoroscopeForm(services(store)), make_tracker(text="hmm", intent="deny"))
    assert events == []
    assert said == []


# --- action_get_horoscope ----------------------------------------------------------------


def test_get_horoscope_from_the_http_api(http_services: Services) -> None:
    events, said = run(ActionGetHoroscope(http_services), make_tracker(slots={"horoscope_sign": "cancer"}))
    assert said == [
        (
            "utter_horoscope",
            {"horoscope_sign": "Cancer", "horoscope_text": served_text("cancer", "2026-11-21")},
        )
    ]
    assert events == [
        SlotSet("horoscope_sign", "cancer"),
        SlotSet("horoscope_delivered", True),
        SlotSet("is_subscribed", False),
        FollowupAction("utter_offer_subscription"),
    ]


def test_get_horoscope_reports_an_existing_subscription(http_services: Services) -> None:
    http_services.store.subscribe("alice", "cancer")
    events, _ = run(ActionGetHoroscope(http_services), make_tracker(slots={"horoscope_sign": "leo"}))
    assert events[-1] == SlotSet("is_subscribed", True)  # and no offer follows


def test_get_horoscope_from_the_built_in_writer(store: SubscriptionStore) -> None:
    events, said = run(ActionGetHoroscope(services(store)), make_tracker(slots={"horoscope_sign": "Lion"}))
    assert said == [
        (
            "utter_horoscope",
            {"horoscope_sign": "Leo", "horoscope_text": BuiltInHoroscopeProvider().daily("leo", TODAY)},
        )
    ]
    assert SlotSet("horoscope_delivered", True) in events


@pytest.mark.parametrize("face", ["/broken", "/slow", "/garbage", "/incomplete"])
def test_get_horoscope_with_a_dead_upstream_apologises(
    store: SubscriptionStore, horoscope_api: HoroscopeApiServer, face: str
) -> None:
    provider = HttpHoroscopeProvider(f"{horoscope_api.url}{face}", timeout_s=0.3)
    events, said = run(
        ActionGetHoroscope(services(store, provider)), make_tracker(slots={"horoscope_sign": "leo"})
    )
    assert said == [("utter_horoscope_unavailable", {})]
    assert SlotSet("horoscope_delivered", False) in events


def test_get_horoscope_with_the_api_not_running(store: SubscriptionStore) -> None:
    provider = HttpHoroscopeProvider("http://127.0.0.1:9", timeout_s=0.3)  # discard port: nothing listens
    events, said = run(
        ActionGetHoroscope(services(store, provider)), make_tracker(slots={"horoscope_sign": "leo"})
    )
    assert said == [("utter_horoscope_unavailable", {})]
    assert SlotSet("horoscope_delivered", False) in events


def test_get_horoscope_without_a_sign_says_so(store: SubscriptionStore) -> None:
    events, said = run(ActionGetHoroscope(services(store)), make_tracker())
    assert said == [("utter_unknown_sign", {})]
    assert events == [SlotSet("horoscope_sign", None), SlotSet("horoscope_delivered", False)]


def test_get_horoscope_still_delivers_when_the_database_fails(
    store: SubscriptionStore, database_url: str
) -> None:
    subscriptions_table.drop(engine_for(database_url))
    events, said = run(ActionGetHoroscope(services(store)), make_tracker(slots={"horoscope_sign": "aries"}))
    assert said[0][0] == "utter_horoscope"
    assert events[-3:] == [
        SlotSet("horoscope_delivered", True),
        SlotSet("is_subscribed", False),
        FollowupAction("utter_offer_subscription"),  # the offer may fail later; the horoscope came first
    ]


# --- action_subscribe / action_unsubscribe -----------------------------------------------


def test_subscribe_stores_the_sign_and_is_idempotent(store: SubscriptionStore) -> None:
    action = ActionSubscribe(services(store))
    for _ in range(2):
        events, said = run(action, make_tracker(slots={"horoscope_sign": "cancer"}))
        assert said == [("utter_subscribed", {"horoscope_sign": "Cancer"})]
        assert events == [SlotSet("horoscope_sign", "cancer"), SlotSet("is_subscribed", True)]
    run(action, make_tracker(slots={"horoscope_sign": "virgo"}))
    assert store.lookup("alice").sign == "virgo"  # type: ignore[union-attr]


def test_subscribe_without_a_sign_subscribes_nobody(store: SubscriptionStore) -> None:
    events, said = run(ActionSubscribe(services(store)), make_tracker())
    assert said == [("utter_unknown_sign", {})]
    assert events == [SlotSet("horoscope_sign", None)]
    assert store.lookup("alice") is None


def test_unsubscribe_and_unsubscribe_again(store: SubscriptionStore) -> None:
    store.subscribe("alice", "leo")
    action = ActionUnsubscribe(services(store))
    assert run(action, make_tracker()) == ([SlotSet("is_subscribed", False)], [("utter_unsubscribed", {})])
    assert run(action, make_tracker()) == ([SlotSet("is_subscribed", False)], [("utter_not_subscribed", {})])
    assert store.lookup("alice") is None


def test_subscription_actions_apologise_when_the_database_fails(
    store: SubscriptionStore, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    subscriptions_table.drop(engine_for(database_url))
    for action in (ActionSubscribe(services(store)), ActionUnsubscribe(services(store))):
        events, said = run(action, make_tracker(slots={"horoscope_sign": "leo"}))
        assert (events, said) == ([], [("utter_subscription_unavailable", {})])
    assert "no such table" in caplog.text


# --- action_session_start ----------------------------------------------------------------


def session_tracker(sender_id: str, slots: dict[str, Any] | None = None) -> Tracker:
    all_slots = {name: None for name in DOMAIN["slots"]} | (slots or {})
    return Tracker.from_dict({"sender_id": sender_id, "slots": all_slots, "events": []})


def test_session_start_welcomes_back_a_subscriber_with_the_horoscope(http_services: Services) -> None:
    http_services.store.subscribe("carol", "taurus")
    events, said = run(
        ActionSessionStart(http_services), session_tracker("carol", {"birthdate": "1 May 1990"})
    )
    assert said == [
        ("utter_welcome_back_subscriber", {"horoscope_sign": "Taurus"}),
        (
            "utter_horoscope",
            {"horoscope_sign": "Taurus", "horoscope_text": served_text("taurus", "2026-11-21")},
        ),
    ]
    assert events == [
        SessionStarted(),
        SlotSet("birthdate", "1 May 1990"),
        SlotSet("horoscope_sign", "taurus"),
        SlotSet("is_subscribed", True),
        SlotSet("horoscope_delivered", True),
        ActionExecuted("action_listen"),
    ]


def test_session_start_of_a_subscriber_when_the_api_is_down(store: SubscriptionStore, horoscope_api) -> None:
    store.subscribe("carol", "taurus")
    provider = HttpHoroscopeProvider(f"{horoscope_api.url}/broken", timeout_s=0.3)
    events, said = run(ActionSessionStart(services(store, provider)), session_tracker("carol"))
    assert said == [
        ("utter_welcome_back_subscriber", {"horoscope_sign": "Taurus"}),
        ("utter_horoscope_unavailable", {}),
    ]
    assert events[0] == SessionStarted() and events[-1] == ActionExecuted("action_listen")
    assert SlotSet("horoscope_delivered", False) in events


def test_session_start_of_someone_else_is_plain(store: SubscriptionStore) -> None:
    store.subscribe("carol", "taurus")
    tracker = session_tracker("dave", {"horoscope_sign": "leo", "is_subscribed": True, "requested_slot": "x"})
    events, said = run(ActionSessionStart(services(store)), tracker)
    assert said == []
    assert events == [
        SessionStarted(),
        SlotSet("horoscope_sign", "leo"),
        SlotSet("is_subscribed", True),
        SlotSet("is_subscribed", False),  # the database, not the old session, decides
        ActionExecuted("action_listen"),
    ]


def test_session_start_carries_no_slots_over_when_the_domain_says_so(store: SubscriptionStore) -> None:
    domain = DOMAIN | {"session_config": {"carry_over_slots_to_new_session": False}}
    events, _ = run(
        ActionSessionStart(services(store)), session_tracker("dave", {"horoscope_sign": "leo"}), domain
    )
    assert events == [SessionStarted(), SlotSet("is_subscribed", False), ActionExecuted("action_listen")]


def test_session_start_still_starts_when_the_database_fails(
    store: SubscriptionStore, database_url: str
) -> None:
    subscriptions_table.drop(engine_for(database_url))
    events, said = run(
        ActionSessionStart(services(store)), session_tracker("carol", {"horoscope_sign": "leo"})
    )
    assert said == []
    assert events == [SessionStarted(), SlotSet("horoscope_sign", "leo"), ActionExecuted("action_listen")]


# --- the action server's view ------------------------------------------------------------


def test_the_action_server_registers_every_contract_action(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("HOROSCOPE_API_URL", raising=False)
    default_services.cache_clear()
    try:
        executor = ActionExecutor()
        executor.register_package("actions")
    finally:
        default_services.cache_clear()
    assert set(executor.actions) == {
        "validate_horoscope_form",
        "action_get_horoscope",
        "action_subscribe",
        "action_unsubscribe",
        "action_session_start",
        "action_answer_question",
    }
