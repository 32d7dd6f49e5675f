"""Follow-up questions over Rasa's REST channel with every service really running.

"and Leo?" after a knowledge answer is the same question about Leo, answered from Leo's document
by the real QA service; after a horoscope it is Leo's horoscope. The action server logs each
rewrite, so the test also reads what was asked.
"""

from __future__ import annotations

from scripts.stack import Stack
from tests.e2e.bot_replies import answered
from tests.e2e.rest_chat import HoroscopeApi, RestChat, assert_horoscope


def _action_log(stack: Stack) -> str:
    return "\n".join(
        path.read_text(encoding="utf-8", errors="replace") for path in stack.log_dir.glob("*.log")
    )


def test_and_leo_after_a_ruler_question_is_answered_about_leo(stack: Stack) -> None:
    chat = RestChat(stack.rasa_url)

    # Which span the reader picks is the reader's business (bench/follow_ups.py scores it); this
    # test checks what the assistant does with the follow-up: asks about Leo, from Leo's document.
    # (The element question is no example of that: the stage-5 reader answers "Which element does
    # Leo belong to?" from the fire signs' passage, "Aries, Leo and Sagittarius", a reader error.)
    first = chat.say("Which planet governs Aries?")
    assert answered(first) is not None, first

    replies = chat.say("and Leo?")
    follow_up = answered(replies)
    assert follow_up is not None, replies
    assert follow_up["source_title"].startswith("Leo"), follow_up
    assert "'and Leo?' -> 'Which planet governs Leo?'" in _action_log(stack)


def test_what_about_leo_after_a_horoscope_switches_the_sign(
    stack: Stack, horoscope_api: HoroscopeApi
) -> None:
    chat = RestChat(stack.rasa_url)

    assert_horoscope(chat.say("horoscope for aries please"), horoscope_api, "aries")
    assert_horoscope(chat.say("what about leo?"), horoscope_api, "leo")
