"""Faults survived while users chat: each test injects one into the running cluster.

Simulated users (scripts/cluster_load.py) chat through nginx for the whole of each test.
Whatever happens, every message the bot answered (HTTP 200, a reply) is in PostgreSQL, and once
the fault is over users are answered again. Each test bounds its load in turns and its
waits in seconds. The last one kills a Rasa instance (the supervisor restarts it).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from scripts.cluster import UNAVAILABLE_REPLY
from scripts.cluster_load import ChatLoad, Turn, lost_messages, send
from scripts.cluster_stack import Cluster
from tests.cluster.conftest import QA_SERVICE_TIMEOUT_S
from tests.e2e.bot_replies import said

USERS = 3
# Turns that end before a fault is injected, so that it hits users mid-conversation.
WARM_UP_TURNS = 4
RESTART_TIMEOUT_S = 120.0
RECOVERY_TIMEOUT_S = 90.0


def new_sender(name: str) -> str:
    return f"fault-{name}-{time.monotonic_ns()}"


@contextmanager
def users_chatting(cluster: Cluster) -> Iterator[float]:
    """USERS users chat through nginx for the block; yields the moment the fault may start.

    Afterwards: no answered message is missing from PostgreSQL, and every user was
    answered again after the block's fault.
    """
    load = ChatLoad(cluster.url, USERS).start()
    load.wait_for_turns(WARM_UP_TURNS, RECOVERY_TIMEOUT_S)
    fault_at = time.monotonic()
    try:
        yield fault_at
        # Give each user a turn or two after the fault.
        load.wait_for_turns(len(load.turns) + 2 * USERS, RECOVERY_TIMEOUT_S)
    finally:
        turns = load.stop()
    assert lost_messages(turns, cluster.user_texts) == 0
    last = turns[-USERS:]
    assert all(turn.ok and turn.started > fault_at for turn in last), last


def answered_again(url: str, timeout_s: float = RECOVERY_TIMEOUT_S) -> Turn:
    """Sends "hi" as a new user until the bot answers; the answered turn."""
    deadline = time.monotonic() + timeout_s
    while not (turn := send(url, new_sender("probe"), "hi", timeout_s=30)).ok:
        assert time.monotonic() < deadline, f"no answer {timeout_s:.0f}s after the fault: {turn}"
        time.sleep(1)
    return turn


def test_a_frozen_qa_service_costs_an_answer_not_the_conversation(cluster: Cluster) -> None:
    # The real QA service, stopped with SIGSTOP, still accepts connections and never answers:
    # slower than any timeout, the worst case of a slow service, with no stand-in needed.
    chat = new_sender("qa")
    qa = cluster.service_pid("qa")
    with users_chatting(cluster):
        os.kill(qa, signal.SIGSTOP)
        try:
            turn = send(cluster.url, chat, "what is a zodiac sign?")
            replies = send(cluster.url, chat, "horoscope for leo").replies  # horoscopes still work
        finally:
            os.kill(qa, signal.SIGCONT)
    assert turn.ok, turn
    assert said(turn.replies, "utter_qa_unavailable") is not None, turn.replies
    # The action gives up after QA_SERVICE_TIMEOUT; the rest is Rasa's own work on busy cores.
    assert turn.latency_s < QA_SERVICE_TIMEOUT_S + 20, turn.latency_s
    assert said(replies, "utter_horoscope")["horoscope_sign"] == "Leo", replies


def test_a_killed_action_server_replica_is_passed_over_and_restarted(cluster: Cluster) -> None:
    chat = new_sender("actions")
    assert said(send(cluster.url, chat, "hi").replies, "utter_ask_horoscope_sign") is not None
    with users_chatting(cluster):
        killed = cluster.kill_service("actions1")
        # nginx sends the form's action to the other replica.
        replies = send(cluster.url, chat, "Taurus").replies
        assert said(replies, "utter_horoscope")["horoscope_sign"] == "Taurus", replies
        cluster.wait_until_restarted(
            "actions1", killed, f"{cluster.actions_urls[0]}/health", RESTART_TIMEOUT_S
        )


def test_a_restarted_redis_keeps_the_conversations_going(cluster: Cluster) -> None:
    chat = new_sender("redis")
    assert said(send(cluster.url, chat, "hi").replies, "utter_ask_horoscope_sign") is not None
    with users_chatting(cluster):
        killed = cluster.kill_service("redis")
        # The lock store asks again while Redis restarts (addons/lock_store.py): no error.
        replies = send(cluster.url, chat, "Virgo").replies
        cluster.wait_until_restarted("redis", killed, None, RESTART_TIMEOUT_S)
    assert said(replies, "utter_horoscope")["horoscope_sign"] == "Virgo", replies


def test_conversations_go_on_with_their_history_after_postgres_restarts(cluster: Cluster) -> None:
    chat = new_sender("postgres")
    assert said(send(cluster.url, chat, "hi").replies, "utter_ask_horoscope_sign") is not None
    with users_chatting(cluster):
        cluster.postgres.stop()
        try:
            # Longer than the tracker store waits for its database (DATABASE_RETRY_S).
            down = send(cluster.url, new_sender("down"), "hi", timeout_s=60)
        finally:
            cluster.postgres.start()
        answered_again(cluster.url)
    # While PostgreSQL was down: a short apology from nginx, no stack trace, nothing stored.
    assert down.status == 503, down
    assert json.loads(down.body) == json.loads(UNAVAILABLE_REPLY)
    assert cluster.user_texts(down.sender_id) == []
    # The form asked for a sign before the restart; the answer after it completes the form.
    replies = send(cluster.url, chat, "Libra").replies
    assert said(replies, "utter_horoscope")["horoscope_sign"] == "Libra", replies
    assert cluster.user_texts(chat) == ["hi", "Libra"]


def test_nginx_fails_over_when_a_rasa_instance_is_killed(cluster: Cluster) -> None:
    """Runs last: the killed instance takes a minute or more to load again."""
    chats = [new_sender(f"rasa-{n}") for n in range(4)]
    for chat in chats:  # through nginx: some of these conversations live on the instance killed
        assert said(send(cluster.url, chat, "hi").replies, "utter_ask_horoscope_sign") is not None
    with users_chatting(cluster):
        cluster.kill_service("rasa1")
        for chat in chats:
            turn = send(cluster.url, chat, "Aries")
            if turn.status == 503:  # caught on the dying instance: nginx apologises, the user says it again
                turn = send(cluster.url, chat, "Aries")
            assert said(turn.replies, "utter_horoscope")["horoscope_sign"] == "Aries", turn
    for chat in chats:
        assert cluster.user_texts(chat) == ["hi", "Aries"]
