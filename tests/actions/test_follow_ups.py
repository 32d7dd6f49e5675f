"""The follow-up rewriter on its own: each kind of follow-up, and the messages it must leave alone."""

from __future__ import annotations

import json

import pytest
from qa_service_server import QaServiceServer
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from test_custom_actions import DOMAIN, make_tracker, run, services

from actions.actions import ActionAnswerQuestion, ActionGetHoroscope, ActionSessionStart
from actions.follow_ups import LastTurn, Rewrite, find_subject, person_in, rewrite
from actions.qa import QaClient
from actions.subscriptions import SubscriptionStore

ELEMENT_OF_ARIES = LastTurn("What element is Aries?", "Fire")
RULER_OF_SCORPIO = LastTurn("What is the ruling planet of Scorpio?", "Mars")
TETRABIBLOS = LastTurn("Who wrote the Tetrabiblos?", "Claudius Ptolemy")
MARS_RULES = LastTurn("Which sign does Mars rule?", "Aries and Scorpio")


@pytest.mark.parametrize(
    ("last", "message", "expected"),
    [
        (ELEMENT_OF_ARIES, "And Leo?", "What element is Leo?"),
        (ELEMENT_OF_ARIES, "and leo", "What element is Leo?"),
        (RULER_OF_SCORPIO, "and of Leo?", "What is the ruling planet of Leo?"),
        (RULER_OF_SCORPIO, "what about Taurus?", "What is the ruling planet of Taurus?"),
        (RULER_OF_SCORPIO, "How about for pisces?", "What is the ruling planet of Pisces?"),
        (MARS_RULES, "and venus?", "Which sign does Venus rule?"),
        (TETRABIBLOS, "and the Almagest?", "Who wrote the Almagest?"),
    ],
)
def test_ellipsis_repeats_the_previous_question_about_the_new_subject(
    last: LastTurn, message: str, expected: str
) -> None:
    assert rewrite(last, message) == Rewrite(expected, "ellipsis")


def test_an_attribute_of_the_subject_just_discussed() -> None:
    assert rewrite(ELEMENT_OF_ARIES, "what about its symbol?") == Rewrite(
        "What is Aries's symbol?", "ellipsis"
    )


@pytest.mark.parametrize(
    ("last", "message", "expected"),
    [
        (ELEMENT_OF_ARIES, "what is its symbol?", "What is Aries's symbol?"),
        (ELEMENT_OF_ARIES, "is it a cardinal sign?", "Is Aries a cardinal sign?"),
        (TETRABIBLOS, "when did he live?", "When did Claudius Ptolemy live?"),
        (TETRABIBLOS, "what else did he write", "What else did Claudius Ptolemy write?"),
        (TETRABIBLOS, "where did his ideas come from?", "Where did Claudius Ptolemy's ideas come from?"),
        (TETRABIBLOS, "what does its title mean?", "What does Tetrabiblos's title mean?"),
    ],
)
def test_pronouns_stand_for_the_subject_or_the_person_answered(
    last: LastTurn, message: str, expected: str
) -> None:
    assert rewrite(last, message) == Rewrite(expected, "pronoun")


def test_a_follow_up_after_an_abstention_is_rewritten_from_the_unanswered_question() -> None:
    unanswered = LastTurn("What is the lucky colour of Virgo?", None)
    assert rewrite(unanswered, "and Libra?") == Rewrite("What is the lucky colour of Libra?", "ellipsis")


@pytest.mark.parametrize(
    ("last", "message"),
    [
        # a full question with its own subject
        (ELEMENT_OF_ARIES, "What is the ruling planet of Leo?"),
        (TETRABIBLOS, "When did Abu Ma'shar live?"),
        (RULER_OF_SCORPIO, "Is Mars a hot planet?"),
        # a topic change
        (ELEMENT_OF_ARIES, "who invented the newspaper horoscope?"),
        (TETRABIBLOS, "how many signs are there?"),
        # "it" that refers to nothing
        (ELEMENT_OF_ARIES, "what does it mean to be born on a cusp?"),
        # the new subject is not of the old one's kind: "what about love?" is no sign
        (ELEMENT_OF_ARIES, "what about love?"),
        # the person is unknown: the answer is no name
        (ELEMENT_OF_ARIES, "when did he live?"),
        # the previous question had no subject to swap
        (LastTurn("How many signs are there?", "twelve"), "and Leo?"),
    ],
)
def test_left_alone(last: LastTurn, message: str) -> None:
    assert rewrite(last, message) == Rewrite(message, "unchanged")


def test_without_a_previous_question_nothing_is_rewritten() -> None:
    assert rewrite(None, "and Leo?") == Rewrite("and Leo?", "unchanged")


def test_subjects_and_people() -> None:
    assert find_subject("What element is Aries?").kind == "sign"
    assert find_subject("Which sign does mars rule?").text == "mars"
    assert find_subject("Who wrote the Tetrabiblos?").text == "Tetrabiblos"
    assert find_subject("how many signs are there?") is None
    assert person_in("Claudius Ptolemy") == "Claudius Ptolemy"
    assert person_in("Mars") is None
    assert person_in("fire") is None


# --- in action_answer_question, against the QA stand-in on loopback ------------------------


def ask(store: SubscriptionStore, qa_service: QaServiceServer, tracker: Tracker) -> tuple[list, list]:
    client = QaClient(qa_service.url, timeout_s=2.0)
    return run(ActionAnswerQuestion(services(store, qa=client)), tracker)


def last_asked(qa_service: QaServiceServer) -> str:
    return json.loads(qa_service.requests_seen[-1])["question"]


AFTER_ARIES = {
    "last_turn": "question",
    "last_question": "What element is Aries?",
    "last_answer": "Fire",
    "last_subject": "Aries",
}


def test_the_action_asks_the_rewritten_follow_up_and_remembers_it(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    tracker = make_tracker(slots=AFTER_ARIES, text="and Leo?", intent="ask_question")
    events, said = ask(store, qa_service, tracker)
    assert last_asked(qa_service) == "What element is Leo?"
    assert said == [("utter_answer", {"answer": "Fire", "source_title": "Leo"})]
    assert SlotSet("last_question", "What element is Leo?") in events
    assert SlotSet("last_subject", "Leo") in events


def test_a_sign_on_its_own_asks_the_last_question_and_is_not_the_users_sign(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    slots = AFTER_ARIES | {"horoscope_sign": "leo"}  # set from the entity by the slot's mapping
    tracker = make_tracker(
        slots=slots, text="I'm a leo", intent="inform_sign", entities={"horoscope_sign": "leo"}
    )
    events, _ = ask(store, qa_service, tracker)
    assert last_asked(qa_service) == "What element is Leo?"
    assert SlotSet("horoscope_sign", None) in events  # the value before the message


def test_a_sign_the_bot_does_not_know_is_refused_not_asked(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    asked_before = len(qa_service.requests_seen)
    tracker = make_tracker(slots=AFTER_ARIES, text="my sign is dragon", intent="inform_sign")
    events, said = ask(store, qa_service, tracker)
    assert said == [("utter_unknown_sign", {})]
    assert events == []  # the last question stays, so "and Leo?" still follows it up
    assert len(qa_service.requests_seen) == asked_before


def test_after_an_abstention_the_unanswered_question_is_followed_up(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    unanswered = {"last_turn": "question", "last_question": "What is the lucky colour of Virgo?"}
    ask(store, qa_service, make_tracker(slots=unanswered, text="what about Aries?", intent="inform_sign"))
    assert last_asked(qa_service) == "What is the lucky colour of Aries?"


def test_without_a_last_question_the_message_is_asked_as_it_stands(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    ask(store, qa_service, make_tracker(text="and Leo?", intent="ask_question"))
    assert last_asked(qa_service) == "and Leo?"


def test_a_horoscope_ends_the_follow_up_context(store: SubscriptionStore) -> None:
    tracker = make_tracker(slots=AFTER_ARIES | {"horoscope_sign": "leo"})
    events, _ = run(ActionGetHoroscope(services(store)), tracker)
    assert SlotSet("last_turn", None) in events


def test_a_new_session_forgets_the_last_question(store: SubscriptionStore) -> None:
    tracker = Tracker.from_dict(
        {"sender_id": "erin", "slots": {name: None for name in DOMAIN["slots"]} | AFTER_ARIES, "events": []}
    )
    events, _ = run(ActionSessionStart(services(store)), tracker)
    assert not [e for e in events if e.get("event") == "slot" and e["name"].startswith("last_")]
