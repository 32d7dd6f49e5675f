"""What `read_webhook_body` takes and refuses; tests/addons/test_message_limit.py checks it over HTTP."""

from __future__ import annotations

import json

import pytest

from addons.webhook_body import MAX_NESTING, MAX_SENDER_CHARS, MalformedBody, read_webhook_body


def nested_metadata(depth: int) -> bytes:
    """A good body whose metadata makes the whole nest `depth` levels deep (the body is level 1)."""
    metadata = '{"a": ' * (depth - 2) + "{}" + "}" * (depth - 2)
    return b'{"sender": "ana", "message": "hi", "metadata": ' + metadata.encode() + b"}"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"sender": "ana", "message": "horoscope for leo"}',
        b'{"sender": " ana ", "message": "  hi  ", "metadata": {"page": "/"}, "input_channel": "rest"}',
        b'{"sender": "ana", "message": "hi", "metadata": null, "input_channel": null, "other": [1]}',
        json.dumps({"sender": "🙏🏽" * 50, "message": "مرحبا \u0000 <b>"}).encode(),
        json.dumps({"sender": "a" * MAX_SENDER_CHARS, "message": "a" * 1_000_000}).encode(),
        nested_metadata(MAX_NESTING),
    ],
    ids=["plain", "spaces-metadata-channel", "nulls-and-extra-keys", "unicode", "longest-sender", "deepest"],
)
def test_a_good_body_is_returned_as_parsed(raw: bytes) -> None:
    assert read_webhook_body(raw) == json.loads(raw)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "the body is empty"),
        (b" \r\n", "the body is empty"),
        (b"\xff\xfe{}", "the body is not UTF-8 text"),
        (
            b"{'sender': 'ana'}",
            "the body is not valid JSON (Expecting property name enclosed in double quotes: line 1",
        ),
        (b'{"sender": "ana", "message": "hi"} x', "the body is not valid JSON (Extra data: line 1 column 36"),
        (b'{"sender": "ana", "message": "hi", "metadata": {"x": NaN}}', "the body is not valid JSON (NaN is"),
        (b"[]", "the body is an array"),
        (b'"hi"', "the body is a string"),
        (b"7", "the body is a number"),
        (b"null", "the body is null"),
        (b"true", "the body is true or false"),
        (nested_metadata(MAX_NESTING + 1), f"the body nests more than {MAX_NESTING} levels deep"),
        (b'{"sender": "a", "message": ' + b"[" * 500 + b"]" * 500 + b"}", "the body nests more"),
        (b'{"sender": "a", "message": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "the body nests more"),
        (b'{"message": "hi"}', '"sender" is missing'),
        (b'{"sender": null, "message": "hi"}', '"sender" is missing'),
        (b'{"sender": "", "message": "hi"}', '"sender" is empty or only blank space'),
        (b'{"sender": " \\t", "message": "hi"}', '"sender" is empty or only blank space'),
        (b'{"sender": ["a"], "message": "hi"}', '"sender" must be a string, not an array'),
        (b'{"sender": 7, "message": "hi"}', '"sender" must be a string, not a number'),
        (
            json.dumps({"sender": "a" * 256, "message": "hi"}).encode(),
            '"sender" is longer than 255 characters',
        ),
        (b'{"sender": "ana"}', '"message" is missing'),
        (b'{"sender": "ana", "message": null}', '"message" is missing'),
        (b'{"sender": "ana", "message": 7}', '"message" must be a string, not a number'),
        (b'{"sender": "ana", "message": {"text": "hi"}}', '"message" must be a string, not an object'),
        (b'{"sender": "ana", "message": false}', '"message" must be a string, not true or false'),
        (b'{"sender": "ana", "message": ""}', '"message" is empty or only blank space'),
        (b'{"sender": "ana", "message": " \\n\\t\\u00a0\\u3000"}', '"message" is empty or only blank space'),
        (
            b'{"sender": "ana", "message": "hi", "metadata": [1]}',
            '"metadata" must be an object, not an array',
        ),
        (
            b'{"sender": "ana", "message": "hi", "input_channel": 1}',
            '"input_channel" must be a string, not a',
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",  # a body can be 200 KB long
)
def test_a_malformed_body_is_refused_with_one_clear_line(raw: bytes, error: str) -> None:
    with pytest.raises(MalformedBody) as refused:
        read_webhook_body(raw)

    assert str(refused.value).startswith(error)
    assert "\n" not in str(refused.value)
