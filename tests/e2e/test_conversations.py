"""Whole conversations over Rasa's REST channel with every service really running.

The replies are checked against the responses in domain.yml (tests/e2e/bot_replies.py),
horoscopes against what the loopback horoscope API serves, subscriptions against the
SQLite database and answers against the documents in data/knowledge/. The test that
stops the QA service (serve.sh restarts it) comes last in this module: the stack is
shared by all of them.
"""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from actions.settings import DEFAULT_QA_MIN_CONFIDENCE
from scripts.stack import Stack
from tests.e2e.bot_replies import REPO_ROOT, answered, said
from tests.e2e.rest_chat import HoroscopeApi, RestChat, assert_horoscope, subscribed_sign

KNOWLEDGE_DIR = REPO_ROOT / "data" / "knowledge"
# The QA service loads its index and reader again after a restart.
QA_RESTART_TIMEOUT_S = 240.0


def _document_titles() -> set[str]:
    """The first `# ` heading of each document: what a source title starts with."""
    titles = set()
    for path in KNOWLEDGE_DIR.glob("*.md"):
        heading = re.search(r"^# (.+)$", path.read_text(encoding="utf-8"), re.MULTILINE)
        assert heading, f"{path} has no title"
        titles.add(heading.group(1).strip())
    return titles


def test_horoscope_for_a_sign_comes_from_the_horoscope_api(stack: Stack, horoscope_api: HoroscopeApi) -> None:
    chat = RestChat(stack.rasa_url)

    replies = chat.say("hi")
    assert said(replies, "utter_greet") is not None, replies
    assert said(replies, "utter_ask_horoscope_sign") is not None, replies

    replies = chat.say("Sagittarius")
    assert_horoscope(replies, horoscope_api, "sagittarius")
    assert said(replies, "utter_offer_subscription") is not None, replies

    replies = chat.say("no")
    assert said(replies, "utter_no_problem") is not None, replies
    assert subscribed_sign(stack.database_path, chat.sender_id) is None


def test_sign_worked_out_from_a_date_of_birth(stack: Stack, horoscope_api: HoroscopeApi) -> None:
    chat = RestChat(stack.rasa_url)

    replies = chat.say("I was born on 3 March 1990")
    from_birthdate = said(replies, "utter_sign_from_birthdate")
    assert from_birthdate == {"birthdate_text": "3 March 1990", "horoscope_sign": "Pisces"}, replies
    assert_horoscope(replies, horoscope_api, "pisces")


def test_subscribe_then_unsubscribe(stack: Stack, horoscope_api: HoroscopeApi) -> None:
    chat = RestChat(stack.rasa_url)

    replies = chat.say("what's the horoscope for Capricorn?")
    assert_horoscope(replies, horoscope_api, "capricorn")
    assert said(replies, "utter_offer_subscription") is not None, replies

    replies = chat.say("yes")
    assert said(replies, "utter_subscribed") is not None, replies
    assert subscribed_sign(stack.database_path, chat.sender_id) == "capricorn"

    replies = chat.say("please cancel my subscription")
    assert said(replies, "utter_unsubscribed") is not None, replies
    assert subscribed_sign(stack.database_path, chat.sender_id) is None

    replies = chat.say("unsubscribe me")
    assert said(replies, "utter_not_subscribed") is not None, replies


@pytest.mark.parametrize(
    ("question", "expected_answers"),
    [
        pytest.param("What is the ruling planet of Scorpio?", ("Pluto", "Mars"), id="scorpio-ruler"),
        pytest.param("Who wrote the Tetrabiblos?", ("Ptolemy",), id="tetrabiblos-author"),
    ],
)
def test_a_knowledge_question_is_answered_with_its_source(
    stack: Stack, question: str, expected_answers: tuple[str, ...]
) -> None:
    replies = RestChat(stack.rasa_url).say(question)

    answer = answered(replies)
    assert answer is not None, f"no answer to {question!r}: {replies}"
    assert any(expected in answer["answer"] for expected in expected_answers), answer
    title = answer["source_title"]
    assert any(title == doc or title.startswith(f"{doc} - ") for doc in _document_titles()), title
    # The hedge follows the service's calibrated confidence (the probability the answer is right).
    confidence = _service_confidence(stack, question)
    hedged = said(replies, "utter_answer_unsure") is not None
    assert hedged == (confidence < DEFAULT_QA_MIN_CONFIDENCE), (confidence, replies)


def _service_confidence(stack: Stack, question: str) -> float:
    """The confidence the QA service gives `question`, asked directly."""
    request = urllib.request.Request(
        f"{stack.qa_url}/answer",
        data=json.dumps({"question": question}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["confidence"]


@pytest.mark.parametrize(
    ("question", "declines"),
    [
        # A knowledge question: the QA service finds nothing and the bot says it does not know.
        # (Not "who won the football ...": "who won the football game last night?" is out_of_scope
        # in the NLU data, and retraining can tip such a question either way.)
        pytest.param("Who won the 2014 World Cup?", ("utter_cannot_answer",), id="sport"),
        # Cooking sits between a question and a task ("how do I bake bread?" is out_of_scope in
        # the NLU data): either way the bot declines and says what it can do instead.
        pytest.param(
            "How many eggs go into a pancake batter?",
            ("utter_cannot_answer", "utter_out_of_scope"),
            id="cooking",
        ),
    ],
)
def test_a_question_outside_the_library_gets_i_do_not_know(
    stack: Stack, question: str, declines: tuple[str, ...]
) -> None:
    replies = RestChat(stack.rasa_url).say(question)

    assert any(said(replies, decline) is not None for decline in declines), replies
    assert answered(replies) is None, replies


def test_the_conversation_goes_on_while_the_qa_service_is_restarted(
    stack: Stack, horoscope_api: HoroscopeApi
) -> None:
    """Runs last: the QA service is down for a while."""
    chat = RestChat(stack.rasa_url)

    replies = chat.say("horoscope for aries please")
    assert_horoscope(replies, horoscope_api, "aries")
    replies = chat.say("no thanks")
    assert said(replies, "utter_no_problem") is not None, replies

    stopped = stack.stop_service("qa")

    # serve.sh starts it again at once, but loading the index and the reader takes seconds.
    replies = chat.say("Who wrote the Tetrabiblos?")
    assert said(replies, "utter_qa_unavailable") is not None, replies
    replies = chat.say("what about leo?")
    assert_horoscope(replies, horoscope_api, "leo")

    stack.wait_until_restarted("qa", stopped, f"{stack.qa_url}/readyz", QA_RESTART_TIMEOUT_S)
    answer = answered(chat.say("Who wrote the Tetrabiblos?"))
    assert answer is not None and "Ptolemy" in answer["answer"], answer
    supervisor_log = (stack.log_dir / "supervisor.log").read_text(encoding="utf-8")
    assert "warning: the QA service stopped" in supervisor_log
