"""Generated bad input for Rasa's REST channel (hypothesis strategies) and a raw webhook client.

Messages: random unicode (control characters, emoji, right-to-left text; no lone surrogates,
which UTF-8 cannot carry), over-long text (just over and far over MAX_MESSAGE_CHARS), empty and
blank text, binary-looking text (bytes read as latin-1, NULs), markup (HTML, script tags,
Markdown, template syntax, SQL) and Rasa's "/intent{entities}" command syntax. Bodies: not JSON,
JSON of the wrong shape or types, missing fields, deep nesting.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from hypothesis import strategies as st

from tests.e2e.rest_chat import WEBHOOK_PATH

MAX_MESSAGE_CHARS = 2000  # addons/message_limit.py's default, which the test stack runs with

# Pieces random text rarely hits on its own: emoji sequences, right-to-left scripts and marks.
EXOTIC_PIECES = (
    "😀",
    "🙏🏽",
    "👨‍👩‍👧‍👦",
    "🇫🇷",
    "مرحبا، ما هو برجي؟",
    "שלום, מה המזל שלי?",
    "\u202eevil\u202c",
    "\u200f",
    "\u200b",
    "\ufeff",
    "a\u0301\u0301\u0301",
    "\u0000",
    "\x1b[31m",
)
MARKUP = (
    "<script>alert('{}')</script>",
    "<img src=x onerror=alert(1)>{}",
    "<b>{}</b><!--",
    "**{}** _{}_ `{}`",
    "[{}](javascript:alert(1))",
    "```\n{}\n```",
    "{{{{7*7}}}} ${{7*7}} {}",
    "'; DROP TABLE events; -- {}",
)
# Rasa reads a message starting with "/" as an intent, optionally with JSON entities.
COMMANDS = (
    "/{}",
    "/inform{{{}",
    '/inform{{"horoscope_sign": {}}}',
    "/subscribe",
    "/restart",
    "/session_start",
    '/inform{{"birthdate": "{}"}}',
)

unicode_text = st.text(st.characters(codec="utf-8"), max_size=300)
exotic_text = st.lists(st.one_of(st.sampled_from(EXOTIC_PIECES), unicode_text), max_size=8).map("".join)
blank_text = st.text(st.sampled_from(" \t\n\r\x0b\x0c\u00a0\u2028\u3000"), max_size=50)
binary_text = st.binary(max_size=300).map(lambda raw: raw.decode("latin-1"))
markup_text = st.builds(
    lambda template, text: template.format(*[text] * 3), st.sampled_from(MARKUP), unicode_text
)
command_text = st.builds(
    lambda template, text: template.format(text), st.sampled_from(COMMANDS), unicode_text
)
# Built by repetition: hypothesis draws at most a few thousand characters itself.
long_text = st.builds(
    lambda unit, length: (unit * (length // len(unit) + 1))[:length],
    st.one_of(st.sampled_from(["what is my horoscope ", "ab", "😀", "\u0000"]), unicode_text.filter(bool)),
    st.one_of(st.integers(MAX_MESSAGE_CHARS + 1, MAX_MESSAGE_CHARS + 50), st.integers(5_000, 300_000)),
)
messages = st.one_of(unicode_text, exotic_text, blank_text, binary_text, markup_text, command_text, long_text)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | unicode_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=10,
)


def deeply_nested(depth: int) -> bytes:
    """A body whose message is a list nested `depth` deep."""
    return b'{"sender": "fuzz-nested", "message": ' + b"[" * depth + b"]" * depth + b"}"


# Bodies the channel must refuse or take without a 5xx, those Rasa itself answered with a 500
# included: an empty body, JSON that is not an object, a message nested 494-1,023 deep.
malformed_bodies = st.one_of(
    st.binary(max_size=200).filter(lambda raw: not _is_json(raw)),
    json_values.filter(lambda value: not isinstance(value, dict)).map(json.dumps).map(str.encode),
    st.fixed_dictionaries({"sender": json_values, "message": json_values}).map(json.dumps).map(str.encode),
    st.fixed_dictionaries({"message": unicode_text}).map(json.dumps).map(str.encode),
    st.fixed_dictionaries({"sender": unicode_text}).map(json.dumps).map(str.encode),
    st.dictionaries(unicode_text, json_values, max_size=4).map(json.dumps).map(str.encode),
    st.fixed_dictionaries(
        {"sender": st.just("fuzz-metadata"), "message": unicode_text, "metadata": json_values}
    )
    .map(json.dumps)
    .map(str.encode),
    st.one_of(st.integers(400, 1_100), st.integers(1, 100_000)).map(deeply_nested),
)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def message_body(sender: str, text: str) -> bytes:
    """A well-formed webhook body, the text as raw UTF-8 (as a browser sends it)."""
    return json.dumps({"sender": sender, "message": text}, ensure_ascii=False).encode()


@dataclass(frozen=True)
class WebhookResult:
    status: int
    text: str  # the body as sent back
    seconds: float


def post_webhook(rasa_url: str, body: bytes, timeout: float) -> WebhookResult:
    """POSTs `body` as it is to the REST channel; error statuses are returned, not raised."""
    request = urllib.request.Request(
        rasa_url + WEBHOOK_PATH, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return WebhookResult(status, raw.decode("utf-8", errors="replace"), time.monotonic() - started)


STACK_TRACE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|\w+Error: ")


def shows_a_stack_trace(text: str) -> bool:
    """True when `text` holds a Python traceback or an exception's "SomethingError: ..." line."""
    return STACK_TRACE.search(text) is not None
