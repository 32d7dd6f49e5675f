"""Rasa's REST channel under generated bad input, every service running (scripts/serve.sh).

Hypothesis sends messages (tests/e2e/fuzz_inputs.py: random unicode, over-long, blank,
binary-looking, markup, "/intent" commands) to a few fixed conversations, and malformed bodies
(not JSON, wrong types, missing fields, deep nesting). Every request must be answered within
REPLY_BOUND_S, never with a 5xx or a stack trace, and no service may crash (the same pids
alive throughout: a crash the supervisor restarts counts too). A malformed body or a blank
message gets a 400 with a one-line error (addons/webhook_body.py) and stores nothing. Afterwards
each conversation still gets its horoscope. Examples are bounded by count and each request by
REPLY_BOUND_S.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scripts.stack import Stack, is_running
from tests.e2e.bot_replies import said
from tests.e2e.fuzz_inputs import (
    MAX_MESSAGE_CHARS,
    WebhookResult,
    deeply_nested,
    malformed_bodies,
    message_body,
    messages,
    post_webhook,
    shows_a_stack_trace,
)
from tests.e2e.rest_chat import HoroscopeApi, RestChat, assert_horoscope

SERVICES = ("rasa", "actions", "qa", "web")
FUZZ_SENDERS = ("fuzz-ana", "fuzz-ben", "fuzz-chloe")
# "At once" against "frozen": a 2,000-character message takes about 0.5 s of NLU on an idle
# core, an open question adds the QA service's own timeout; a 100 KB message used to take 112 s.
REPLY_BOUND_S = 30.0
MESSAGE_EXAMPLES = 80
BODY_EXAMPLES = 80
FUZZ_SETTINGS = settings(
    deadline=None,  # REPLY_BOUND_S bounds each request; hypothesis' deadline would flake under load
    database=None,  # nothing written into the work tree; a failure prints its reproduction blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


@pytest.fixture(scope="module")
def service_pids(stack: Stack) -> dict[str, int]:
    """Each service's pid once the stack is up: the same ones must be alive after every request."""
    pids = {name: stack.service_pid(name) for name in SERVICES}
    assert None not in pids.values(), pids
    return pids  # type: ignore[return-value]


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[str]]:
    """What the fuzzing tried, by kind and status; printed at the end (shown with -s)."""
    counts: Counter[str] = Counter()
    yield counts
    print(f"REST fuzzing: {dict(sorted(counts.items()))}")


def stored_events(database_path: Path, sender: str) -> int:
    """How many events Rasa's tracker store (the SQLite database) holds for `sender`."""
    with sqlite3.connect(database_path) as connection:
        return connection.execute("SELECT COUNT(*) FROM events WHERE sender_id = ?", (sender,)).fetchone()[0]


def refusal(result: WebhookResult) -> str:
    """The error line of a 400, which must be the whole answer: {"error": "<one line>"}."""
    assert result.status == 400, result
    answer = json.loads(result.text)
    assert list(answer) == ["error"] and answer["error"].strip(), result
    assert "\n" not in answer["error"], result
    return answer["error"]


def is_well_formed(body: bytes) -> bool:
    """A JSON object with a non-empty string sender and a string message with something in it."""
    try:
        value: Any = json.loads(body)
    except ValueError:
        return False
    return (
        isinstance(value, dict)
        and isinstance(value.get("sender"), str)
        and bool(value["sender"].strip())
        and isinstance(value.get("message"), str)
        and bool(value["message"].strip())
    )


def assert_held(stack: Stack, service_pids: dict[str, int], result: WebhookResult, sent: str) -> None:
    """Answered in time, no 5xx, no stack trace that the request did not carry itself, nobody crashed."""
    assert result.status < 500, result
    assert result.seconds < REPLY_BOUND_S, result
    assert not shows_a_stack_trace(result.text) or shows_a_stack_trace(sent), result
    assert stack.process.poll() is None, "serve.sh ended"
    for name, pid in service_pids.items():
        assert stack.service_pid(name) == pid and is_running(pid), f"{name} crashed; logs in {stack.log_dir}"


@given(sender=st.sampled_from(FUZZ_SENDERS), text=messages)
@settings(FUZZ_SETTINGS, max_examples=MESSAGE_EXAMPLES)
def test_generated_messages_are_answered_without_errors(
    stack: Stack, service_pids: dict[str, int], tally: Counter[str], sender: str, text: str
) -> None:
    result = post_webhook(stack.rasa_url, message_body(sender, text), timeout=REPLY_BOUND_S)

    assert_held(stack, service_pids, result, text)
    # Rasa strips the text (str.strip): a blank message would reach NLU as an empty one.
    if not text.strip():
        assert refusal(result) == '"message" is empty or only blank space', result
        tally["message, blank"] += 1
        return
    assert result.status == 200, result
    replies = json.loads(result.text)
    assert all(reply["recipient_id"] == sender for reply in replies), replies
    texts = [reply["text"] for reply in replies if "text" in reply]
    over_the_limit = len(text.strip()) > MAX_MESSAGE_CHARS
    if over_the_limit:
        assert said(texts, "utter_message_too_long") is not None, texts
    tally["message, over the limit" if over_the_limit else "message"] += 1


@given(body=malformed_bodies)
@settings(FUZZ_SETTINGS, max_examples=BODY_EXAMPLES)
def test_malformed_bodies_get_no_server_error(
    stack: Stack, service_pids: dict[str, int], tally: Counter[str], body: bytes
) -> None:
    result = post_webhook(stack.rasa_url, body, timeout=REPLY_BOUND_S)

    assert_held(stack, service_pids, result, body.decode("utf-8", errors="replace"))
    # Rasa is handed only a body it can use; anything else is refused with a reason (the channel
    # refuses a few more: a sender over 255 characters, metadata that is not an object, Infinity).
    if result.status == 200:
        assert is_well_formed(body), result
    else:
        refusal(result)
    tally[f"malformed body, {result.status}"] += 1


REFUSED_SENDER = "fuzz-refused"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # Rasa answered these with a 500 (request.json.get on what is not an object; a deep copy
        # of the message in its error handler, RecursionError from 494 to 1,023 levels).
        (b"", "the body is empty: expected a JSON object like"),
        (b"[]", "the body is an array: expected a JSON object like"),
        (b'["hi"]', "the body is an array: expected a JSON object like"),
        (b'"hi"', "the body is a string: expected a JSON object like"),
        (b"7", "the body is a number: expected a JSON object like"),
        (b"null", "the body is null: expected a JSON object like"),
        (b"true", "the body is true or false: expected a JSON object like"),
        (deeply_nested(500), "the body nests more than 32 levels deep"),
        (deeply_nested(1_023), "the body nests more than 32 levels deep"),
        # Rasa took these: into one "default" conversation, as "['a']", dropped with 200 [], or to NLU.
        (b'{"message": "yes"}', '"sender" is missing: expected a JSON object like'),
        (b'{"sender": null, "message": "yes"}', '"sender" is missing: expected a JSON object like'),
        (b'{"sender": "", "message": "yes"}', '"sender" is empty or only blank space'),
        (b'{"sender": ["fuzz-refused"], "message": "yes"}', '"sender" must be a string, not an array'),
        (b'{"sender": "fuzz-refused", "message": 7}', '"message" must be a string, not a number'),
        (b'{"sender": "fuzz-refused"}', '"message" is missing: expected a JSON object like'),
        (b'{"sender": "fuzz-refused", "message": " \\n\\t "}', '"message" is empty or only blank space'),
        (b'{"sender": "fuzz-refused", "message": "yes", "metadata": 7}', '"metadata" must be an object'),
    ],
    ids=[
        "empty",
        "array",
        "array-of-text",
        "string",
        "number",
        "null",
        "boolean",
        "message-nested-500",
        "message-nested-1023",
        "no-sender",
        "null-sender",
        "empty-sender",
        "list-sender",
        "number-message",
        "no-message",
        "blank-message",
        "metadata-number",
    ],
)
def test_bodies_rasa_mishandled_are_refused_with_a_clear_error(
    stack: Stack, service_pids: dict[str, int], body: bytes, error: str
) -> None:
    result = post_webhook(stack.rasa_url, body, timeout=REPLY_BOUND_S)

    assert_held(stack, service_pids, result, body.decode())
    assert refusal(result).startswith(error), result
    assert stored_events(stack.database_path, REFUSED_SENDER) == 0


def test_no_request_went_into_a_shared_default_conversation(stack: Stack) -> None:
    """Runs after the fuzzing (file order): Rasa files a request without a sender under "default"."""
    assert stored_events(stack.database_path, "default") == 0


@pytest.mark.parametrize("sender", FUZZ_SENDERS)
def test_every_fuzzed_conversation_still_gets_its_horoscope(
    stack: Stack, service_pids: dict[str, int], horoscope_api: HoroscopeApi, sender: str
) -> None:
    """Runs after the fuzzing (file order): each conversation it wrote to still works.

    The fuzzing may leave a conversation in the subscription form (a "/subscribe" command asks for
    the sign); there the sign first completes the subscription, and the next request gets the horoscope.
    """
    chat = RestChat(stack.rasa_url, sender)
    replies = chat.say("what's the horoscope for Leo?")
    if said(replies, "utter_horoscope") is None:
        assert said(replies, "utter_subscribed") is not None, replies
        replies = chat.say("what's the horoscope for Leo?")

    assert_horoscope(replies, horoscope_api, "leo")
    assert all(stack.service_pid(name) == pid for name, pid in service_pids.items())
