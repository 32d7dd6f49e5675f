"""action_answer_question and its client against a real QA service on loopback.

Every face of the service (answers, unsure, abstains, 422, 500, 503, slow,
garbage, malformed, nobody listening) gets exactly one reply to the user, and
the conversation goes on (no events, no exception).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from qa_service_server import CONFIDENT, UNSURE, QaServiceServer
from rasa_sdk.events import FollowupAction, SlotSet
from test_custom_actions import make_tracker, run, services

from actions.actions import ActionAnswerQuestion, Services
from actions.follow_ups import find_subject
from actions.qa import QaAnswer, QaClient, QaUnavailable, QuestionRejected
from actions.subscriptions import SubscriptionStore
from scripts.stack import free_port

TIMEOUT_S = 0.5  # shorter than the server's slow_s, so the slow face times out


def qa_client(service: QaServiceServer, face: str = "") -> QaClient:
    return QaClient(f"{service.url}/{face}" if face else service.url, timeout_s=TIMEOUT_S)


def remembered(question: str, answer: str | None, source: str | None) -> list[SlotSet]:
    """The slots action_answer_question sets once the service replied (see test_follow_ups.py)."""
    subject = find_subject(question)
    return [
        SlotSet("last_turn", "question"),
        SlotSet("last_question", question),
        SlotSet("last_answer", answer),
        SlotSet("last_subject", subject.text if subject else None),
        SlotSet("last_source", source),
    ]


def answer(store: SubscriptionStore, client: QaClient, text: str, intent: str = "ask_question"):
    tracker = make_tracker(text=text, intent=intent)
    return run(ActionAnswerQuestion(services(store, qa=client)), tracker)


# --- the client ---------------------------------------------------------------------------


def test_client_posts_the_question_and_reads_the_answer(qa_service: QaServiceServer) -> None:
    found = qa_client(qa_service).ask("Who wrote the Tetrabiblos?")
    assert found == QaAnswer(
        "Claudius Ptolemy", CONFIDENT, "History of Astrology", question="Who wrote the Tetrabiblos?"
    )
    assert json.loads(qa_service.requests_seen[-1]) == {"question": "Who wrote the Tetrabiblos?"}


def test_client_reports_an_abstention(qa_service: QaServiceServer) -> None:
    found = qa_client(qa_service).ask("How do I bake bread?")
    assert found.abstained
    assert found.answer is None and found.source_title is None


def test_client_refused_question_is_not_an_outage(qa_service: QaServiceServer) -> None:
    with pytest.raises(QuestionRejected):
        qa_client(qa_service).ask("   ")


@pytest.mark.parametrize("face", ["broken", "starting", "slow", "garbage", "malformed"])
def test_client_failures_are_unavailable(qa_service: QaServiceServer, face: str) -> None:
    with pytest.raises(QaUnavailable):
        qa_client(qa_service, face).ask("Who wrote the Tetrabiblos?")


def test_client_with_nobody_listening_is_unavailable() -> None:
    with pytest.raises(QaUnavailable, match="unreachable"):
        QaClient(f"http://127.0.0.1:{free_port()}", timeout_s=TIMEOUT_S).ask("what is ophiuchus?")


def test_client_keeps_one_connection_for_many_questions(qa_service: QaServiceServer) -> None:
    client = qa_client(qa_service)
    client.ask("Who wrote the Tetrabiblos?")
    opened = qa_service.connections_opened
    for question in ("What is a sign?", "What is a planet?", "Who was Ptolemy?"):
        client.ask(question)
    assert qa_service.connections_opened == opened


def test_client_recovers_when_the_service_restarts() -> None:
    """A pooled connection to a service that went away is replaced, not reused into an error."""
    port = free_port()
    client = QaClient(f"http://127.0.0.1:{port}", timeout_s=TIMEOUT_S)
    with QaServiceServer(port=port):
        assert client.ask("Who wrote the Tetrabiblos?").answer == "Claudius Ptolemy"
    with pytest.raises(QaUnavailable, match="unreachable"):
        client.ask("Who wrote the Tetrabiblos?")
    with QaServiceServer(port=port):
        assert client.ask("Who wrote the Tetrabiblos?").answer == "Claudius Ptolemy"


# --- the action ---------------------------------------------------------------------------


def test_a_confident_answer_names_its_source(store: SubscriptionStore, qa_service: QaServiceServer) -> None:
    events, said = answer(store, qa_client(qa_service), "What is the ruling planet of Scorpio?")
    assert events == remembered(
        "What is the ruling planet of Scorpio?", "Mars, and in modern astrology Pluto", "Scorpio"
    )
    assert said == [
        ("utter_answer", {"answer": "Mars, and in modern astrology Pluto", "source_title": "Scorpio"})
    ]


def test_the_latest_user_text_is_what_gets_asked(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    answer(store, qa_client(qa_service), "  what's ophiuchus  ", intent="nlu_fallback")
    assert json.loads(qa_service.requests_seen[-1]) == {"question": "what's ophiuchus"}


def test_a_low_confidence_answer_says_it_is_unsure(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    events, said = answer(store, qa_client(qa_service, "unsure"), "who wrote the tetrabiblos")
    assert Services.qa_min_confidence > UNSURE
    assert events == remembered("who wrote the tetrabiblos", "Claudius Ptolemy", "History of Astrology")
    assert said == [
        ("utter_answer_unsure", {"answer": "Claudius Ptolemy", "source_title": "History of Astrology"})
    ]


def test_the_confidence_threshold_comes_from_the_services(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    strict = replace(services(store, qa=qa_client(qa_service)), qa_min_confidence=0.95)
    _, said = run(ActionAnswerQuestion(strict), make_tracker(text="who wrote the tetrabiblos"))
    assert said[0][0] == "utter_answer_unsure"


@pytest.mark.parametrize("face", ["", "abstain"])
def test_an_abstention_says_what_the_bot_can_do(
    store: SubscriptionStore, qa_service: QaServiceServer, face: str
) -> None:
    question = "How do I bake bread?" if not face else "Who wrote the Tetrabiblos?"
    events, said = answer(store, qa_client(qa_service, face), question)
    assert said == [("utter_cannot_answer", {})]
    # An unanswered question is remembered too: "and Leo?" after it is rewritten from it.
    assert events == remembered(question, None, None)


def test_with_no_form_waiting_the_action_names_listen_as_the_next_step(
    store: SubscriptionStore, qa_service: QaServiceServer
) -> None:
    tracker = make_tracker(text="who wrote the tetrabiblos")
    in_form, _ = run(ActionAnswerQuestion(services(store, qa=qa_client(qa_service))), tracker)
    tracker.active_loop = {}
    no_form, _ = run(ActionAnswerQuestion(services(store, qa=qa_client(qa_service))), tracker)
    assert not [event for event in in_form if event.get("event") == "followup"]  # the policies decide
    assert no_form == [*in_form, FollowupAction("action_listen")]


def test_an_empty_message_is_not_sent(store: SubscriptionStore, qa_service: QaServiceServer) -> None:
    seen = len(qa_service.requests_seen)
    events, said = answer(store, qa_client(qa_service), "   ", intent="nlu_fallback")
    assert (events, said) == ([], [("utter_cannot_answer", {})])
    assert len(qa_service.requests_seen) == seen


@pytest.mark.parametrize("face", ["broken", "starting", "slow", "garbage", "malformed"])
def test_a_failing_service_is_reported_plainly(
    store: SubscriptionStore, qa_service: QaServiceServer, face: str
) -> None:
    events, said = answer(store, qa_client(qa_service, face), "Who wrote the Tetrabiblos?")
    assert (events, said) == ([], [("utter_qa_unavailable", {})])


def test_a_service_that_is_not_running_is_reported_plainly(store: SubscriptionStore) -> None:
    client = QaClient(f"http://127.0.0.1:{free_port()}", timeout_s=TIMEOUT_S)
    assert answer(store, client, "what's ophiuchus") == ([], [("utter_qa_unavailable", {})])
