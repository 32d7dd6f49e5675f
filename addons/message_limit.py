"""Input channels that answer an over-long message without reading it: bounded work per message.

Rasa's NLU costs grow with the square of a message's length (DIET's attention over every
token: a 100 KB message took 25-112 s, a 1 MB one ran out of memory or took over 14 minutes)
and the server answers nobody else meanwhile. A
message longer than MAX_MESSAGE_CHARS (default 2,000 characters, ~0.5 s of NLU) is
therefore never parsed: the channel hands Rasa a `UserMessage` whose `parse_data` is
already filled in with the intent `message_too_long`, which Rasa's processor takes
as it is instead of running the NLU pipeline (MessageProcessor._handle_message_with_tracker);
the rules then say `utter_message_too_long` and let a running form ask again. The
conversation stores only the first `EXCERPT_CHARS` characters with a marker saying
how long the message was, not megabytes.

Why the channel and not another hook: it is the only place that sees the text before
both the NLU pipeline and the tracker store. A custom NLU component cannot stop the
pipeline's other components from running, nor change the text the tracker stores (the
processor takes that from the `UserMessage`, not from the parse); a "/message_too_long"
rewrite (Rasa's RegexMessageHandler path, no NLU) would need the channel all the same
and would store that command instead of the user's words. One wrapper around
`on_new_message` covers plain and streamed (`?stream=true`, what the shell uses) REST
requests alike, in both of the channels people use:

- `LengthLimitedRestInput`, named `rest` like Rasa's REST channel (so the web widget's
  URL stays /webhooks/rest/webhook), is configured in credentials.yml for `rasa run`;
- `LengthLimitedShellInput`, named `cmdline` like Rasa's own shell channel, which makes
  `rasa run --connector addons.message_limit.LengthLimitedShellInput` start the same
  terminal chat as `rasa shell` (scripts/run-chat.sh). `rasa shell` itself cannot take
  it: it always uses Rasa's built-in `cmdline` channel, so it has no limit.

The REST channel also refuses a malformed body (not a JSON object, no usable sender, a message
that is not text or only blank space) with a 400 before Rasa reads it (addons/webhook_body.py).
The terminal chat's client, Rasa's own, always sends a string sender and message, and a 400 would
end it (it raises on any error status); it can send an empty line, which, like any blank message,
is answered with nothing instead of being parsed.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rasa.core.channels.channel import UserMessage
from rasa.core.channels.console import CmdlineInput
from rasa.core.channels.rest import RestInput
from sanic import Blueprint

from addons.webhook_body import refuse_malformed_body

MAX_MESSAGE_CHARS_VARIABLE = "MAX_MESSAGE_CHARS"
DEFAULT_MAX_MESSAGE_CHARS = 2000
# What the conversation keeps of an over-long message: enough to recognise it.
EXCERPT_CHARS = 200
TOO_LONG_INTENT = "message_too_long"

MessageHandler = Callable[[UserMessage], Awaitable[Any]]


def max_message_chars(environ: Mapping[str, str] | None = None) -> int:
    """MAX_MESSAGE_CHARS from the environment; a bad value stops Rasa at start, not mid-chat."""
    raw = (os.environ if environ is None else environ).get(MAX_MESSAGE_CHARS_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_MESSAGE_CHARS
    if not raw.isdecimal() or int(raw) < 1:
        raise ValueError(f"{MAX_MESSAGE_CHARS_VARIABLE} must be a whole number above 0, got {raw!r}")
    return int(raw)


def stored_text(text: str) -> str:
    """The start of an over-long message and a marker with its length: what the tracker keeps."""
    marker = f"[message too long: {len(text):,} characters, only the first {EXCERPT_CHARS} kept]"
    return f"{text[:EXCERPT_CHARS]} {marker}"


def limit_length(message: UserMessage, max_chars: int) -> UserMessage:
    """`message` as it is, or, when its text is over `max_chars`, cut and marked as not to be parsed."""
    text = message.text
    if not isinstance(text, str) or len(text) <= max_chars:
        return message
    message.text = stored_text(text)
    intent = {"name": TOO_LONG_INTENT, "confidence": 1.0}
    message.parse_data = {"text": message.text, "intent": intent, "intent_ranking": [intent], "entities": []}
    return message


class _LengthLimit:
    """Mixin for a RestInput subclass: every message passes `limit_length` on its way to Rasa.

    A blank message (Rasa strips the text) is not handed on at all: the request is answered with
    no replies, nothing is stored and NLU, which could read it as any intent, never sees it.
    """

    def __init__(self, max_chars: int | None = None) -> None:
        super().__init__()
        self.max_chars = max_message_chars() if max_chars is None else max_chars

    def blueprint(self, on_new_message: MessageHandler) -> Blueprint:
        """The parent's routes, with a handler that limits each message first."""

        async def limited(message: UserMessage) -> Any:
            if not message.text:
                return None
            return await on_new_message(limit_length(message, self.max_chars))

        return super().blueprint(limited)


class LengthLimitedRestInput(_LengthLimit, RestInput):
    """Rasa's REST channel (`rest`) with the length limit: the web widget and HTTP clients.

    A malformed body gets a 400 before Rasa's handler runs (addons/webhook_body.py).
    """

    def blueprint(self, on_new_message: MessageHandler) -> Blueprint:
        """The length-limited routes, behind a check of each request's body."""
        routes = super().blueprint(on_new_message)
        routes.middleware(refuse_malformed_body, "request")
        return routes


class LengthLimitedShellInput(_LengthLimit, CmdlineInput):
    """Rasa's terminal chat (`cmdline`) with the length limit, for `rasa run --connector`."""
