"""What the tracker says about the conversation: the slots the actions share, and how the latest
message reads against the turns before it (a birth date given, a follow-up, a sign named or not)."""

from __future__ import annotations

import logging

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet

from actions.follow_ups import LastTurn, Rewrite, rewrite
from actions.zodiac import normalise_sign

logger = logging.getLogger(__name__)

SIGN_SLOT = "horoscope_sign"
DELIVERED_SLOT = "horoscope_delivered"
SUBSCRIBED_SLOT = "is_subscribed"
BIRTHDATE_ENTITY = "birthdate"
REQUESTED_SLOT = "requested_slot"
SUBSCRIPTION_REQUESTED_SLOT = "subscription_requested"
# What the last knowledge question was: set by action_answer_question, read by the next one to
# make a follow-up standalone, cleared by a horoscope and by a new session.
LAST_TURN_SLOT = "last_turn"  # "question" after a knowledge answer (or abstention); steers the dialogue
LAST_QUESTION_SLOT = "last_question"
LAST_ANSWER_SLOT = "last_answer"
LAST_SUBJECT_SLOT = "last_subject"
LAST_SOURCE_SLOT = "last_source"
FOLLOW_UP_SLOTS = (LAST_TURN_SLOT, LAST_QUESTION_SLOT, LAST_ANSWER_SLOT, LAST_SUBJECT_SLOT, LAST_SOURCE_SLOT)


def given_birthdate(tracker: Tracker) -> str | None:
    """The birth date the user just gave: the NLU entity, else the whole message of an inform_birthdate."""
    entity = next(tracker.get_latest_entity_values(BIRTHDATE_ENTITY), None)
    if entity:
        return str(entity)
    if tracker.get_intent_of_latest_message(skip_fallback_intent=False) == "inform_birthdate":
        return tracker.latest_message.get("text") or None
    return None


def follow_up_question(tracker: Tracker, message: str) -> Rewrite:
    """The message, rewritten as a standalone question when it follows up the last one.

    A sign named on its own after a knowledge answer (the NLU's inform_sign: "Leo", "I'm a leo")
    asks the last question about that sign, as "and Leo?" does.
    """
    last_question = tracker.get_slot(LAST_QUESTION_SLOT)
    if not last_question or tracker.get_slot(LAST_TURN_SLOT) != "question":
        return Rewrite(message, "unchanged")
    last = LastTurn(last_question, tracker.get_slot(LAST_ANSWER_SLOT))
    result = rewrite(last, message)
    sign = next(tracker.get_latest_entity_values(SIGN_SLOT), None)
    if not result.rewritten and sign and tracker.get_intent_of_latest_message() == "inform_sign":
        result = rewrite(last, f"and {normalise_sign(str(sign)) or sign}?")
    if result.rewritten:
        logger.info(
            "Follow-up in conversation %s (%s): %r -> %r",
            tracker.sender_id,
            result.kind,
            message,
            result.question,
        )
    return result


def names_no_known_sign(tracker: Tracker) -> bool:
    """The user gave their sign (inform_sign) but named none of the twelve ("my sign is dragon"):
    the reply is the list of signs, whether the message opens the sign form or follows an answer."""
    return (
        tracker.get_intent_of_latest_message() == "inform_sign"
        and next(tracker.get_latest_entity_values(SIGN_SLOT), None) is None
    )


def keep_own_sign(tracker: Tracker) -> list[EventType]:
    """Undo horoscope_sign's mapping when a sign named in a follow-up set it: Leo was asked about,
    not given as the user's own sign."""
    if tracker.get_intent_of_latest_message() != "inform_sign":
        return []
    before, seen_user = None, False
    for event in reversed(tracker.events):
        if event.get("event") == "user":
            seen_user = True
        elif seen_user and event.get("event") == "slot" and event.get("name") == SIGN_SLOT:
            before = event.get("value")
            break
    return [] if tracker.get_slot(SIGN_SLOT) == before else [SlotSet(SIGN_SLOT, before)]
