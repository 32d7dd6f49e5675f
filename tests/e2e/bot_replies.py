"""Recognises the bot's replies by the responses in domain.yml, the oracle of the end-to-end tests.

Every variation of a response becomes a regex whose {slot} placeholders are named
groups, so a test can tell which response was said and with which values, whichever
variation Rasa picked. Shared by tests/e2e and tests/browser.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


@cache
def _response_patterns(name: str) -> list[re.Pattern[str]]:
    """One regex per variation of a domain response; {slot} placeholders become named groups."""
    domain = yaml.safe_load((REPO_ROOT / "domain.yml").read_text(encoding="utf-8"))
    patterns = []
    for variation in domain["responses"][name]:
        # Splitting on a captured group alternates literal text and placeholder names.
        pieces = re.split(r"\{(\w+)\}", variation["text"])
        regex = "".join(
            re.escape(piece) if i % 2 == 0 else f"(?P<{piece}>.+?)" for i, piece in enumerate(pieces)
        )
        patterns.append(re.compile(regex, re.DOTALL))
    return patterns


def said(replies: list[str], response: str) -> dict[str, str] | None:
    """The placeholder values of the first reply that is a variation of `response`, else None."""
    for reply in replies:
        for pattern in _response_patterns(response):
            if match := pattern.fullmatch(reply):
                return match.groupdict()
    return None


def shown(screen: str, response: str) -> bool:
    """True when some variation of `response` appears anywhere in `screen` (a terminal's text)."""
    return any(pattern.search(screen) for pattern in _response_patterns(response))


def answered(replies: list[str]) -> dict[str, str] | None:
    """The answer and source title of a reply from the QA service, sure or unsure, else None."""
    # Unsure first: "{answer} (source: {source_title})" also matches an unsure reply, preamble and all.
    return said(replies, "utter_answer_unsure") or said(replies, "utter_answer")
