"""The web chat widget in a real browser, against the real assistant.

The conversation with a horoscope and a question runs through the real Rasa server,
action server, QA service and SQLite database; the scripted webhook (scripted_rasa.py)
supplies what the real bot never sends on purpose: markup, buttons, errors and a reply
that never comes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from scripted_rasa import INJECTION_TEXT, UNBROKEN_WORD, ScriptedRasa

from scripts.stack import Stack, free_port
from tests.e2e.bot_replies import answered, said
from tests.e2e.rest_chat import subscribed_sign

# Rasa answers within a few seconds; the widget itself gives up after 15 s.
ANSWER_TIMEOUT_MS = 30_000
PHONE = {"width": 390, "height": 844}
SCORPIO_QUESTION = "What is the ruling planet of Scorpio?"
SCORPIO_RULERS = ("Pluto", "Mars")


class ChatPage:
    """Drives the widget the way a person does: type, press Enter, click."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.input = page.locator("#chat-input")
        self.send_button = page.locator("#chat-send")
        self.typing = page.locator("#chat-typing")
        self.messages = page.locator("#chat-messages")

    def bubbles(self, author: str) -> Locator:
        return self.messages.locator(f".chat__message--{author} .chat__bubble")

    def transcript(self) -> list[str]:
        return self.messages.locator(".chat__bubble").all_text_contents()

    def sender_id(self) -> str | None:
        return self.page.evaluate("localStorage.getItem('horoscope-chat:sender')")

    def submit(self, text: str) -> None:
        """Types `text` and presses Enter; the message shows up at once."""
        shown = self.bubbles("user").count()
        self.input.fill(text)
        self.input.press("Enter")
        expect(self.bubbles("user")).to_have_count(shown + 1)

    def say(self, text: str) -> list[str]:
        """Sends `text` and returns the bot's answers; fails on an error message."""
        answered = self.bubbles("bot").count()
        self.submit(text)
        expect(self.send_button).to_be_enabled(timeout=ANSWER_TIMEOUT_MS)
        expect(self.bubbles("system")).to_have_count(0)
        expect(self.input).to_have_value("")
        return self.bubbles("bot").all_text_contents()[answered:]


def test_horoscope_conversation_continues_after_a_reload(
    page: Page, services: Stack, screenshot_dir: Path
) -> None:
    chat = ChatPage(page)
    page.goto(services.chat_url())

    # The two messages issue 5 names: a horoscope and a knowledge question in one chat.
    replies = chat.say("What's my horoscope? I'm a Virgo")
    horoscope = said(replies, "utter_horoscope")
    assert horoscope is not None, replies
    assert horoscope["horoscope_sign"] == "Virgo"
    assert said(replies, "utter_offer_subscription") is not None, replies

    replies = chat.say("no")
    assert said(replies, "utter_no_problem") is not None, replies

    replies = chat.say(SCORPIO_QUESTION)
    page.screenshot(path=screenshot_dir / "widget-conversation.png", full_page=True)
    answer = answered(replies)
    assert answer is not None, f"no answer to {SCORPIO_QUESTION!r}: {replies}"
    assert any(ruler in answer["answer"] for ruler in SCORPIO_RULERS), answer

    shown, sender = chat.transcript(), chat.sender_id()
    assert sender
    page.reload()
    assert chat.transcript() == shown
    assert chat.sender_id() == sender
    restored = chat.bubbles("bot").all_text_contents()
    assert said(restored, "utter_horoscope") == horoscope
    assert answered(restored) == answer

    # Rasa still knows the sign: subscribing does not ask for it again.
    replies = chat.say("subscribe me")
    assert said(replies, "utter_ask_horoscope_sign") is None, replies
    assert said(replies, "utter_subscribed") is not None, replies
    assert subscribed_sign(services.database_path, sender) == "virgo"
    page.screenshot(path=screenshot_dir / "widget-after-reload.png", full_page=True)


def test_bot_markup_is_shown_as_text_and_never_run(
    page: Page, services: Stack, scripted_rasa: ScriptedRasa
) -> None:
    chat = ChatPage(page)
    page.goto(services.chat_url(scripted_rasa.url))

    assert chat.say("inject") == [INJECTION_TEXT]
    _assert_shown_as_text(page, chat)
    page.reload()  # now restored from localStorage
    _assert_shown_as_text(page, chat)


def _assert_shown_as_text(page: Page, chat: ChatPage) -> None:
    expect(chat.bubbles("bot")).to_have_text([INJECTION_TEXT])
    assert page.evaluate("typeof window.__pwned") == "undefined"
    expect(chat.messages.locator("script, b")).to_have_count(0)


def test_buttons_send_their_payload_and_show_their_title(
    page: Page, services: Stack, scripted_rasa: ScriptedRasa
) -> None:
    chat = ChatPage(page)
    page.goto(services.chat_url(scripted_rasa.url))

    assert chat.say("choices") == ["Shall I send it every day?"]
    choices = chat.messages.locator(".chat__choice")
    expect(choices).to_have_text(["Yes please", "No thanks"])

    choices.first.click()
    expect(chat.bubbles("bot").last).to_have_text("You picked yes.", timeout=ANSWER_TIMEOUT_MS)
    expect(chat.bubbles("user").last).to_have_text("Yes please")
    assert scripted_rasa.messages()[-1] == {"sender": chat.sender_id(), "message": "/affirm"}
    expect(choices).to_have_count(0)  # answered choices go away


def test_typing_indicator_shows_while_waiting(
    page: Page, services: Stack, scripted_rasa: ScriptedRasa
) -> None:
    chat = ChatPage(page)
    page.goto(services.chat_url(scripted_rasa.url))
    expect(chat.typing).to_be_hidden()

    chat.submit("slow")
    expect(chat.typing).to_be_visible()
    expect(chat.send_button).to_be_disabled()
    expect(chat.bubbles("bot")).to_have_text(["Sorry for the wait."], timeout=ANSWER_TIMEOUT_MS)
    expect(chat.typing).to_be_hidden()


def test_blank_messages_are_not_sent_and_long_ones_are_cut(
    page: Page, services: Stack, scripted_rasa: ScriptedRasa
) -> None:
    chat = ChatPage(page)
    page.goto(services.chat_url(scripted_rasa.url))
    received = len(scripted_rasa.messages())

    chat.input.fill("   ")
    chat.input.press("Enter")
    chat.send_button.click()
    expect(chat.messages.locator(".chat__message")).to_have_count(0)
    assert len(scripted_rasa.messages()) == received

    chat.input.fill("x" * 600)
    assert len(chat.input.input_value()) == 500


@pytest.mark.parametrize(
    ("target", "message", "explanation"),
    [
        pytest.param("nobody", "hello there", "can't reach the assistant", id="rasa-down"),
        pytest.param("scripted", "boom", "error 500", id="http-500"),
        pytest.param("scripted", "stall", "taking too long", id="timeout"),
    ],
)
def test_failures_are_explained_and_the_message_is_kept(
    page: Page,
    services: Stack,
    scripted_rasa: ScriptedRasa,
    target: str,
    message: str,
    explanation: str,
) -> None:
    rasa_url = scripted_rasa.url if target == "scripted" else f"http://127.0.0.1:{free_port()}"
    chat = ChatPage(page)
    page.goto(services.chat_url(rasa_url))

    chat.submit(message)
    expect(chat.bubbles("system")).to_contain_text([explanation], timeout=ANSWER_TIMEOUT_MS)
    expect(chat.input).to_have_value(message)
    expect(chat.messages.locator(".chat__message--failed")).to_have_count(1)
    expect(chat.send_button).to_be_enabled()

    page.reload()  # a message that was not sent is not remembered
    expect(chat.messages.locator(".chat__message")).to_have_count(0)


def test_a_corrupt_stored_transcript_starts_a_fresh_one(
    page: Page, services: Stack, scripted_rasa: ScriptedRasa
) -> None:
    page.add_init_script("localStorage.setItem('horoscope-chat:transcript', '{not json')")
    chat = ChatPage(page)
    page.goto(services.chat_url(scripted_rasa.url))
    expect(chat.messages.locator(".chat__message")).to_have_count(0)
    assert chat.say("inject") == [INJECTION_TEXT]


def test_a_rasa_url_that_is_not_http_is_reported(page: Page, services: Stack) -> None:
    chat = ChatPage(page)
    page.goto(services.chat_url("javascript:alert(1)"))
    expect(chat.bubbles("system")).to_contain_text(["not set up correctly"])


def test_fits_a_phone_screen(
    browser: Browser, services: Stack, scripted_rasa: ScriptedRasa, screenshot_dir: Path
) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        chat = ChatPage(page)
        page.goto(services.chat_url(scripted_rasa.url))
        assert chat.say("long")[0] == UNBROKEN_WORD

        for control in (chat.input, chat.send_button):
            expect(control).to_be_in_viewport()
            box = control.bounding_box()
            assert box is not None
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= PHONE["width"]
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=screenshot_dir / "widget-phone.png")
    finally:
        context.close()
