"""The assistant under load, faults and bad input, every service really running (scripts/serve.sh).

A megabyte message gets the "too long" reply at once while other conversations go on;
nothing listens beyond loopback; a killed action server is restarted and the conversation
goes on. The last test kills Rasa itself, which ends serve.sh and the module's stack.
Timings are bounded generously, only to tell "at once" from "minutes".
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from scripts.stack import Stack, is_running
from tests.e2e.bot_replies import said
from tests.e2e.listeners import is_loopback, listening_addresses
from tests.e2e.rest_chat import HoroscopeApi, RestChat, assert_horoscope, subscribed_sign

ONE_MEGABYTE = 1_000_000
# Parsing a message of this size took over 14 minutes; the reply now needs no NLU at all.
TOO_LONG_REPLY_BOUND_S = 30.0
RESTART_TIMEOUT_S = 240.0
SERVE_EXIT_TIMEOUT_S = 120.0


def megabyte_message() -> str:
    return ("what is my horoscope " * (ONE_MEGABYTE // 21 + 1))[:ONE_MEGABYTE]


def stored_user_texts(stack: Stack, sender_id: str) -> list[str]:
    """The texts of the user messages Rasa's tracker store keeps for `sender_id`, in order."""
    with sqlite3.connect(stack.database_path) as connection:
        rows = connection.execute(
            "SELECT data FROM events WHERE sender_id = ? AND type_name = 'user' ORDER BY id", (sender_id,)
        ).fetchall()
    return [json.loads(data)["text"] for (data,) in rows]


def test_a_megabyte_message_is_declined_at_once_while_others_are_answered(
    stack: Stack, horoscope_api: HoroscopeApi
) -> None:
    flooder, other = RestChat(stack.rasa_url), RestChat(stack.rasa_url)

    with ThreadPoolExecutor(max_workers=1) as pool:
        started = time.monotonic()
        flood = pool.submit(flooder.say, megabyte_message())
        # Another conversation meanwhile: a greeting, then a horoscope through the action server.
        assert said(other.say("hi"), "utter_greet") is not None
        assert_horoscope(other.say("Taurus"), horoscope_api, "taurus")
        replies = flood.result()
    elapsed = time.monotonic() - started

    assert said(replies, "utter_message_too_long") is not None, replies
    assert elapsed < TOO_LONG_REPLY_BOUND_S
    (stored,) = stored_user_texts(stack, flooder.sender_id)
    assert stored.startswith("what is my horoscope what is my horoscope")
    assert stored.endswith("[message too long: 1,000,000 characters, only the first 200 kept]")


def test_a_running_form_and_an_offer_carry_on_after_a_message_that_is_too_long(
    stack: Stack, horoscope_api: HoroscopeApi
) -> None:
    chat = RestChat(stack.rasa_url)
    assert said(chat.say("hi"), "utter_ask_horoscope_sign") is not None

    replies = chat.say(megabyte_message())
    assert said(replies, "utter_message_too_long") is not None, replies
    assert said(replies, "utter_ask_horoscope_sign") is not None, replies

    replies = chat.say("Gemini")
    assert_horoscope(replies, horoscope_api, "gemini")
    assert said(replies, "utter_offer_subscription") is not None, replies

    replies = chat.say(megabyte_message())
    assert said(replies, "utter_message_too_long") is not None, replies
    assert said(replies, "utter_offer_subscription") is not None, replies

    assert said(chat.say("yes"), "utter_subscribed") is not None
    assert subscribed_sign(stack.database_path, chat.sender_id) == "gemini"


def test_every_service_listens_on_loopback_only(stack: Stack) -> None:
    listening = listening_addresses(stack.process.pid)

    addresses = [address for found in listening.values() for address in found]
    ports = {int(address.rsplit(":", 1)[1]) for address in addresses}
    # Rasa, the action server, the web server and the QA service, at least.
    for url in (stack.rasa_url, stack.actions_url, stack.web_url, stack.qa_url):
        assert int(url.rsplit(":", 1)[1]) in ports, (url, listening)
    assert all(is_loopback(address) for address in addresses), listening


def test_the_conversation_goes_on_after_the_action_server_is_killed(
    stack: Stack, horoscope_api: HoroscopeApi
) -> None:
    chat = RestChat(stack.rasa_url)
    replies = chat.say("horoscope for aries please")
    assert_horoscope(replies, horoscope_api, "aries")

    killed = stack.stop_service("actions", signal.SIGKILL)
    stack.wait_until_restarted("actions", killed, f"{stack.actions_url}/health", RESTART_TIMEOUT_S)

    # The offer made before the crash is still open; the restarted server subscribes.
    assert said(chat.say("yes"), "utter_subscribed") is not None
    assert subscribed_sign(stack.database_path, chat.sender_id) == "aries"
    assert_horoscope(chat.say("what about leo?"), horoscope_api, "leo")
    supervisor_log = (stack.log_dir / "supervisor.log").read_text(encoding="utf-8")
    assert "warning: the action server stopped (exit status 137); restarting it in 1s" in supervisor_log


def test_serve_says_so_and_stops_everything_when_rasa_dies(stack: Stack) -> None:
    """Runs last: the stack is gone afterwards."""
    others = [stack.service_pid(name) for name in ("actions", "qa", "web")]

    stack.stop_service("rasa", signal.SIGKILL)

    try:
        status = stack.process.wait(timeout=SERVE_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("serve.sh kept running after Rasa died") from None
    assert status == 1
    serve_output = (stack.log_dir / "serve.log").read_text(errors="replace")
    assert "error: the Rasa server stopped (exit status 137)" in serve_output
    assert listening_addresses(stack.process.pid) == {}
    assert all(pid is not None and not is_running(pid) for pid in others)
