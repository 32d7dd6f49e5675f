"""A REST webhook body checked before Rasa reads it: a malformed request gets a 400 and one clear line.

Rasa's RestInput reads `request.json.get(...)` and trusts what it finds. Found by the fuzz tests
(tests/e2e/test_fuzz_rest.py): an empty body, or JSON that is not an object, crashes it
(AttributeError, answered 500); a message nested ~500-1,000 deep crashes its own error handler
(copy.deepcopy: RecursionError, 500). Worse, silently: a missing or empty sender puts the message
into one "default" conversation shared by everybody who does the same; a sender of another type
becomes its string ("['a']"); a message that is not a string is dropped with `200 []`; a blank
message runs NLU (once read as `affirm` at 0.89, so a blank message after the subscription offer
could subscribe someone).

`read_webhook_body` refuses all of these, and `refuse_malformed_body`, a request middleware on the
REST channel's blueprint (addons/message_limit.py), answers them with `400 {"error": "..."}`
before Rasa's handler runs: nothing is stored and no NLU runs. The body is parsed here, once, and
handed to Rasa as the request's parsed JSON, so Rasa reads exactly what was checked.
"""

from __future__ import annotations

import json
from typing import Any

from sanic import response
from sanic.request import Request
from sanic.response import HTTPResponse

# Levels of arrays and objects, the body itself being the first: room for any metadata a client
# sends, far below the ~500 at which deep copies of a message or a tracker exceed Python's
# recursion limit.
MAX_NESTING = 32
# Rasa's SQL tracker store keeps the sender id in a VARCHAR(255), which PostgreSQL enforces.
MAX_SENDER_CHARS = 255
EXPECTED = 'expected a JSON object like {"sender": "<conversation id>", "message": "<text>"}'
_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "true or false",
    type(None): "null",
}


class MalformedBody(ValueError):
    """Why a webhook body is refused, in one line fit to send back to the client."""


def _kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words."""
    return _JSON_TYPE_NAMES[type(value)]


def _refuse_constant(name: str) -> Any:
    """json.loads would take NaN and Infinity, which are not JSON (RFC 8259) and not data to store."""
    raise ValueError(f"{name} is not JSON")


def _nests_deeper_than(value: Any, limit: int) -> bool:
    """True when `value`'s arrays and objects nest more than `limit` levels (no recursion to overflow)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _parse(raw: bytes) -> Any:
    if not raw.strip():
        raise MalformedBody(f"the body is empty: {EXPECTED}")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise MalformedBody(f"the body is not UTF-8 text: {EXPECTED}") from None
    except RecursionError:  # deeper than Python's recursion limit: far over MAX_NESTING
        raise MalformedBody(f"the body nests more than {MAX_NESTING} levels deep") from None
    except ValueError as error:
        raise MalformedBody(f"the body is not valid JSON ({error}): {EXPECTED}") from None


def _text_field(body: dict[str, Any], name: str) -> str:
    """body[name], which must be a string with something besides blank space in it."""
    value = body.get(name)
    if value is None:
        raise MalformedBody(f'"{name}" is missing: {EXPECTED}')
    if not isinstance(value, str):
        raise MalformedBody(f'"{name}" must be a string, not {_kind(value)}')
    if not value.strip():  # what Rasa's UserMessage strips, so Rasa would see an empty text
        raise MalformedBody(f'"{name}" is empty or only blank space')
    return value


def read_webhook_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object with a usable sender and message; MalformedBody says what is wrong."""
    body = _parse(raw)
    if not isinstance(body, dict):
        raise MalformedBody(f"the body is {_kind(body)}: {EXPECTED}")
    if _nests_deeper_than(body, MAX_NESTING):
        raise MalformedBody(f"the body nests more than {MAX_NESTING} levels deep")
    if len(_text_field(body, "sender")) > MAX_SENDER_CHARS:
        raise MalformedBody(f'"sender" is longer than {MAX_SENDER_CHARS} characters')
    _text_field(body, "message")
    # Optional; Rasa stores them in the tracker as a dict and a channel name, so nothing else.
    for name, kind in (("metadata", dict), ("input_channel", str)):
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            raise MalformedBody(f'"{name}" must be {_kind(kind())}, not {_kind(value)}')
    return body


async def refuse_malformed_body(request: Request) -> HTTPResponse | None:
    """Request middleware for the webhook: a 400 for a malformed body, else the checked body for Rasa."""
    if request.method != "POST":  # the channel's health check
        return None
    try:
        request.parsed_json = read_webhook_body(request.body)
    except MalformedBody as error:
        return response.json({"error": str(error)}, status=400)
    return None
