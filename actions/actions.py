"""The custom actions of the horoscope assistant (names are the shared contract).

Every action takes its collaborators (`Services`) as a parameter so tests can
run it against a local HTTP server and a temporary database; the action server
builds them once from the environment. No exception leaves an action: a failure
is logged and the user gets a friendly response instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import ActionExecuted, EventType, FollowupAction, SessionStarted, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict
from sqlalchemy.exc import SQLAlchemyError

from actions.conversation import (
    DELIVERED_SLOT,
    FOLLOW_UP_SLOTS,
    LAST_ANSWER_SLOT,
    LAST_QUESTION_SLOT,
    LAST_SOURCE_SLOT,
    LAST_SUBJECT_SLOT,
    LAST_TURN_SLOT,
    REQUESTED_SLOT,
    SIGN_SLOT,
    SUBSCRIBED_SLOT,
    SUBSCRIPTION_REQUESTED_SLOT,
    follow_up_question,
    given_birthdate,
    keep_own_sign,
    names_no_known_sign,
)
from actions.follow_ups import find_subject
from actions.horoscope import HoroscopeProvider, HoroscopeUnavailable, UnknownSign, provider_from_settings
from actions.qa import QaClient, QaUnavailable, QuestionRejected
from actions.settings import DEFAULT_QA_MIN_CONFIDENCE, Settings
from actions.subscriptions import SubscriptionStore
from actions.zodiac import BirthdateError, display_name, normalise_sign, parse_birthdate

logger = logging.getLogger(__name__)

# Rasa runs an action named by a FollowupAction event without asking its policies. Where the rules
# leave exactly one next step (data/rules/horoscope.yml: the completed sign form goes on to the
# horoscope, or to the subscription that was asked for; a horoscope shown to a non-subscriber is
# followed by the offer), the action names that step, so a horoscope turn costs two policy
# predictions instead of four (bench/README.md, "Turn latency"). The rules stay: they train the policies,
# `rasa test` checks them, and they decide wherever an action names nothing.
OFFER_RESPONSE = "utter_offer_subscription"

RunMethod = Callable[[Any, CollectingDispatcher, Tracker, DomainDict], Awaitable[list[EventType]]]


@dataclass(frozen=True)
class Services:
    """What the actions talk to; `today` is injectable so tests control the date."""

    provider: HoroscopeProvider
    store: SubscriptionStore
    qa: QaClient
    today: Callable[[], date] = date.today
    qa_min_confidence: float = DEFAULT_QA_MIN_CONFIDENCE

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(
            provider_from_settings(settings),
            SubscriptionStore.from_url(settings.database_url),
            QaClient.from_settings(settings),
            qa_min_confidence=settings.qa_min_confidence,
        )


@functools.lru_cache(maxsize=1)
def default_services() -> Services:
    """Built once per process from the environment; bad configuration fails here, at start."""
    return Services.from_settings(Settings.from_env())


class _UsesServices:
    """Gives an action its `Services`: the ones passed in, else the process-wide default."""

    def __init__(self, services: Services | None = None) -> None:
        self.services = services or default_services()


def never_raises(
    failure_response: str | None,
    failure_events: Callable[[Tracker, DomainDict], list[EventType]],
) -> Callable[[RunMethod], RunMethod]:
    """Wrap an action's `run`: any exception is logged and answered with `failure_response`."""

    def decorate(run: RunMethod) -> RunMethod:
        @functools.wraps(run)
        async def guarded_run(
            self: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
        ) -> list[EventType]:
            try:
                return await run(self, dispatcher, tracker, domain)
            except Exception:
                logger.exception("Action %s failed for conversation %s", self.name(), tracker.sender_id)
                if failure_response:
                    dispatcher.utter_message(response=failure_response)
                return failure_events(tracker, domain)

        return guarded_run

    return decorate


async def deliver_horoscope(
    dispatcher: CollectingDispatcher, services: Services, sign: str
) -> list[EventType]:
    """Utter today's horoscope of `sign` and say through horoscope_delivered whether it worked."""
    try:
        text = await asyncio.to_thread(services.provider.daily, sign, services.today())
    except UnknownSign:
        logger.warning("Horoscope provider does not know the sign %r", sign)
        dispatcher.utter_message(response="utter_unknown_sign")
        return [SlotSet(SIGN_SLOT, None), SlotSet(DELIVERED_SLOT, False)]
    except HoroscopeUnavailable as error:
        logger.warning("No horoscope for %s: %s", sign, error)
        dispatcher.utter_message(response="utter_horoscope_unavailable")
        return [SlotSet(DELIVERED_SLOT, False)]
    dispatcher.utter_message(
        response="utter_horoscope", horoscope_sign=display_name(sign), horoscope_text=text
    )
    return [SlotSet(DELIVERED_SLOT, True)]


class ValidateHoroscopeForm(_UsesServices, FormValidationAction):
    """Fills horoscope_sign from a sign name or from a birth date."""

    def name(self) -> str:
        return "validate_horoscope_form"

    @never_raises("utter_default", lambda tracker, domain: [SlotSet(SIGN_SLOT, None)])
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events = await super().run(dispatcher, tracker, domain)
        signs = [
            event["value"] for event in events if event.get("event") == "slot" and event["name"] == SIGN_SLOT
        ]
        if signs and signs[-1] is not None:  # the form's one slot is filled: the form completes now
            wanted = tracker.get_slot(SUBSCRIPTION_REQUESTED_SLOT)
            events.append(FollowupAction("action_subscribe" if wanted else "action_get_horoscope"))
        return events

    def extract_horoscope_sign(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Compute the sign from a birth date in the latest message, unless a sign was named too."""
        birthdate_text = given_birthdate(tracker)
        if not birthdate_text and tracker.active_loop_name is None and names_no_known_sign(tracker):
            # The form opens on a sign it does not know ("my sign is dragon"): say so before it asks.
            # Once the form waits, the rule for an unknown sign inside it says so instead.
            dispatcher.utter_message(response="utter_unknown_sign")
            return {SIGN_SLOT: None}
        if not birthdate_text or next(tracker.get_latest_entity_values(SIGN_SLOT), None):
            return {}
        try:
            sign = parse_birthdate(birthdate_text, today=self.services.today()).sign
        except BirthdateError as error:
            logger.info("Unusable birth date %r: %s", birthdate_text, error.reason)
            dispatcher.utter_message(
                response="utter_invalid_birthdate", birthdate_text=birthdate_text, reason=error.reason
            )
            # An explicit None counts as "validated", so the form asks again instead of being rejected.
            return {SIGN_SLOT: None}
        dispatcher.utter_message(
            response="utter_sign_from_birthdate",
            birthdate_text=birthdate_text,
            horoscope_sign=display_name(sign),
        )
        return {SIGN_SLOT: sign}

    def validate_horoscope_sign(
        self, slot_value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        """Canonical sign name, or None (and a hint) when it is no sign."""
        if slot_value is None:
            return {SIGN_SLOT: None}
        sign = normalise_sign(str(slot_value))
        if sign is None:
            dispatcher.utter_message(response="utter_unknown_sign")
        return {SIGN_SLOT: sign}


def _horoscope_failed(tracker: Tracker, domain: DomainDict) -> list[EventType]:
    return [SlotSet(DELIVERED_SLOT, False)]


def _no_events(tracker: Tracker, domain: DomainDict) -> list[EventType]:
    return []


def _sign_or_apologise(dispatcher: CollectingDispatcher, tracker: Tracker) -> str | None:
    """The canonical sign in horoscope_sign, or None after telling the user it is not one."""
    sign = normalise_sign(tracker.get_slot(SIGN_SLOT))
    if sign is None:
        dispatcher.utter_message(response="utter_unknown_sign")
    return sign


class ActionGetHoroscope(_UsesServices, Action):
    """Today's horoscope for the sign in horoscope_sign; also refreshes is_subscribed."""

    def name(self) -> str:
        return "action_get_horoscope"

    @never_raises("utter_horoscope_unavailable", _horoscope_failed)
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        sign = _sign_or_apologise(dispatcher, tracker)
        if sign is None:
            return [SlotSet(SIGN_SLOT, None), SlotSet(DELIVERED_SLOT, False)]
        events = [SlotSet(SIGN_SLOT, sign), *await deliver_horoscope(dispatcher, self.services, sign)]
        if tracker.get_slot(LAST_TURN_SLOT) is not None:
            # "what about Leo?" after a horoscope switches the sign: the last question stops steering.
            events.append(SlotSet(LAST_TURN_SLOT, None))
        subscribed = await self._is_subscribed(tracker.sender_id)
        events.append(SlotSet(SUBSCRIBED_SLOT, subscribed))
        if SlotSet(DELIVERED_SLOT, True) in events and not subscribed:
            events.append(FollowupAction(OFFER_RESPONSE))
        return events

    async def _is_subscribed(self, sender_id: str) -> bool:
        """False when the database cannot tell: the horoscope matters more than the offer."""
        try:
            return await asyncio.to_thread(self.services.store.lookup, sender_id) is not None
        except SQLAlchemyError:
            logger.exception("Subscription lookup failed for conversation %s", sender_id)
            return False


class ActionSubscribe(_UsesServices, Action):
    """Subscribe this conversation to the daily horoscope of horoscope_sign."""

    def name(self) -> str:
        return "action_subscribe"

    @never_raises("utter_subscription_unavailable", _no_events)
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        sign = _sign_or_apologise(dispatcher, tracker)
        if sign is None:
            return [SlotSet(SIGN_SLOT, None)]
        await asyncio.to_thread(self.services.store.subscribe, tracker.sender_id, sign)
        dispatcher.utter_message(response="utter_subscribed", horoscope_sign=display_name(sign))
        return [SlotSet(SIGN_SLOT, sign), SlotSet(SUBSCRIBED_SLOT, True)]


class ActionUnsubscribe(_UsesServices, Action):
    """End this conversation's subscription, saying so when there was none."""

    def name(self) -> str:
        return "action_unsubscribe"

    @never_raises("utter_subscription_unavailable", _no_events)
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        removed = await asyncio.to_thread(self.services.store.unsubscribe, tracker.sender_id)
        dispatcher.utter_message(response="utter_unsubscribed" if removed else "utter_not_subscribed")
        return [SlotSet(SUBSCRIBED_SLOT, False)]


def _session_started(tracker: Tracker, domain: DomainDict) -> list[EventType]:
    """SessionStarted plus the previous session's slots when the domain carries them over."""
    events: list[EventType] = [SessionStarted()]
    if domain.get("session_config", {}).get("carry_over_slots_to_new_session", True):
        events += [
            SlotSet(name, value)
            for name, value in tracker.current_slot_values().items()
            # A follow-up after a pause is not tied to the old session's question.
            if value is not None and name != REQUESTED_SLOT and name not in FOLLOW_UP_SLOTS
        ]
    return events


def _plain_session_start(tracker: Tracker, domain: DomainDict) -> list[EventType]:
    return [*_session_started(tracker, domain), ActionExecuted("action_listen")]


class ActionSessionStart(_UsesServices, Action):
    """Starts a session as Rasa does; a returning subscriber is greeted with today's horoscope."""

    def name(self) -> str:
        return "action_session_start"

    @never_raises(None, _plain_session_start)
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events = _session_started(tracker, domain)
        subscription = await asyncio.to_thread(self.services.store.lookup, tracker.sender_id)
        if subscription is None:
            events.append(SlotSet(SUBSCRIBED_SLOT, False))
        else:
            events += [SlotSet(SIGN_SLOT, subscription.sign), SlotSet(SUBSCRIBED_SLOT, True)]
            dispatcher.utter_message(
                response="utter_welcome_back_subscriber", horoscope_sign=display_name(subscription.sign)
            )
            events += await deliver_horoscope(dispatcher, self.services, subscription.sign)
        return [*events, ActionExecuted("action_listen")]


class ActionAnswerQuestion(_UsesServices, Action):
    """Answers the latest message from the document library through the QA service.

    Runs for ask_question, for messages the NLU did not understand and for a sign named
    after a knowledge answer (a follow-up); whatever the service does, the user gets one
    reply and the conversation goes on.
    """

    def name(self) -> str:
        return "action_answer_question"

    @never_raises("utter_qa_unavailable", _no_events)
    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events = await self._reply(dispatcher, tracker)
        # With no form waiting, the rules always listen after a reply (data/rules, data/stories):
        # naming action_listen spares Rasa a policy prediction, as OFFER_RESPONSE does. While the
        # sign form waits, the policies decide whether it asks again or lets go.
        return events if tracker.active_loop_name else [*events, FollowupAction("action_listen")]

    async def _reply(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
        """Answer, refuse or apologise; the events to remember what was asked."""
        message = (tracker.latest_message.get("text") or "").strip()
        if not message:
            dispatcher.utter_message(response="utter_cannot_answer")
            return []
        follow_up = follow_up_question(tracker, message)
        if not follow_up.rewritten and names_no_known_sign(tracker):
            dispatcher.utter_message(response="utter_unknown_sign")
            return []
        question = follow_up.question
        try:
            found = await asyncio.to_thread(self.services.qa.ask, question)
        except QuestionRejected:
            dispatcher.utter_message(response="utter_cannot_answer")
            return []
        except QaUnavailable:
            dispatcher.utter_message(response="utter_qa_unavailable")
            return []
        if found.abstained:
            dispatcher.utter_message(response="utter_cannot_answer")
        else:
            sure = found.confidence >= self.services.qa_min_confidence
            dispatcher.utter_message(
                response="utter_answer" if sure else "utter_answer_unsure",
                answer=found.answer,
                source_title=found.source_title,
            )
        asked = found.question or question
        subject = find_subject(asked)
        return [
            *keep_own_sign(tracker),
            SlotSet(LAST_TURN_SLOT, "question"),
            SlotSet(LAST_QUESTION_SLOT, asked),
            SlotSet(LAST_ANSWER_SLOT, found.answer),
            SlotSet(LAST_SUBJECT_SLOT, subject.text if subject else None),
            SlotSet(LAST_SOURCE_SLOT, found.source_title),
        ]
