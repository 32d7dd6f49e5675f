"""One conversation across several Rasa instances: PostgreSQL keeps it, Redis orders it.

Messages are sent straight to each instance's own port, alternating, so that every turn is
handled by another process than the one before; the simultaneous ones then race for the
conversation's lock in Redis (addons.lock_store.AtomicRedisLockStore), and the events in
PostgreSQL say whether any turn was lost or two ran at once.
"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from scripts.cluster_load import SIGNS, Turn, send
from scripts.cluster_stack import Cluster
from tests.e2e.bot_replies import said

SIMULTANEOUS_MESSAGES = 8


def new_sender(name: str) -> str:
    return f"cluster-{name}-{time.monotonic_ns()}"


def test_nginx_serves_the_web_chat_and_passes_messages_to_the_instances(cluster: Cluster) -> None:
    with urllib.request.urlopen(cluster.url + "/", timeout=10) as page:
        assert b"<html" in page.read()

    turn = send(cluster.url, new_sender("nginx"), "hi")

    assert turn.ok, turn
    assert said(turn.replies, "utter_greet") is not None, turn.replies


def test_a_conversation_keeps_its_form_slots_and_history_across_instances(cluster: Cluster) -> None:
    sender = new_sender("alternating")
    first, second = cluster.rasa_urls

    replies = send(first, sender, "hi").replies
    assert said(replies, "utter_ask_horoscope_sign") is not None, replies  # the form asks, on instance 1

    replies = send(second, sender, "Gemini").replies  # instance 2 fills the form's slot
    assert said(replies, "utter_horoscope")["horoscope_sign"] == "Gemini", replies
    assert said(replies, "utter_offer_subscription") is not None, replies

    replies = send(first, sender, "yes").replies  # instance 1 answers the offer instance 2 made
    assert said(replies, "utter_subscribed") is not None, replies
    stored = cluster.postgres.query(f"SELECT sign FROM horoscope_subscriptions WHERE sender_id = '{sender}'")
    assert stored == [["gemini"]]

    replies = send(second, sender, "please cancel my subscription").replies
    assert said(replies, "utter_unsubscribed") is not None, replies
    assert cluster.user_texts(sender) == ["hi", "Gemini", "yes", "please cancel my subscription"]


def test_simultaneous_messages_through_different_instances_run_one_at_a_time(cluster: Cluster) -> None:
    sender = new_sender("simultaneous")
    texts = [f"horoscope for {sign}" for sign in SIGNS[:SIMULTANEOUS_MESSAGES]]
    instances = [cluster.rasa_urls[n % len(cluster.rasa_urls)] for n in range(len(texts))]

    with ThreadPoolExecutor(max_workers=len(texts)) as pool:
        turns: list[Turn] = list(pool.map(send, instances, [sender] * len(texts), texts))

    # Every message answered, each with its own sign's horoscope: no turn saw another's state.
    for turn, sign in zip(turns, SIGNS[:SIMULTANEOUS_MESSAGES], strict=True):
        assert turn.ok, turn
        assert said(turn.replies, "utter_horoscope")["horoscope_sign"] == sign.capitalize(), turn.replies
    # None lost: every message is stored, once.
    stored = cluster.user_texts(sender)
    assert sorted(stored) == sorted(texts)
    # One at a time, in order: each turn ends (action_listen) before the next message is read, and
    # the messages are stored in the order their answers came back.
    events = cluster.postgres.query(
        f"SELECT type_name, action_name FROM events WHERE sender_id = '{sender}' ORDER BY id"
    )
    kinds = [
        "user" if kind == "user" else "listen" if action == "action_listen" else "" for kind, action in events
    ]
    flow = [kind for kind in kinds if kind]
    assert flow[-2 * len(texts) :] == ["user", "listen"] * len(texts), events
    answered_order = [turn.text for turn in sorted(turns, key=lambda turn: turn.started + turn.latency_s)]
    assert stored == answered_order
