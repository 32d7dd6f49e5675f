"""Which replies count in bench/turn_latency.py: per turn kind, the texts one of its replies must
match, built from domain.yml's responses so the benchmark follows the bot's wording."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from bench.turn_report import BASELINE
from scripts.stack import REPO_ROOT


def response_patterns(domain: Mapping[str, Any], response: str, values: Mapping[str, str]) -> list[str]:
    """Regexes that fully match the texts of `response`'s variations with these slot `values` filled in.

    Placeholders not in `values` match any text.
    """
    patterns = []
    for variation in domain["responses"][response]:
        pieces = re.split(r"\{(\w+)\}", variation["text"])  # odd pieces are placeholder names
        patterns.append(
            "".join(
                re.escape(piece) if index % 2 == 0 else re.escape(values[piece]) if piece in values else ".+"
                for index, piece in enumerate(pieces)
            )
        )
    return patterns


def expected_replies() -> dict[str, list[str]]:
    """Per kind, the patterns one of its reply texts must match.

    A question turn must pass on an answer from the QA service: an answer (sure or not) with its
    source, or "I don't know" where the service abstains; never "the service is unavailable", a
    fallback or another skill's reply. Which answer is the QA service's business, checked by the
    sanity probe before the load starts; here the questions vary.
    """
    domain = yaml.safe_load((REPO_ROOT / "domain.yml").read_text(encoding="utf-8"))
    return {
        BASELINE: response_patterns(domain, "utter_iamabot", {}),
        "greet": response_patterns(domain, "utter_greet", {}),
        "horoscope": response_patterns(domain, "utter_horoscope", {"horoscope_sign": "Virgo"}),
        "question": [
            *response_patterns(domain, "utter_answer", {}),
            *response_patterns(domain, "utter_answer_unsure", {}),
            *response_patterns(domain, "utter_cannot_answer", {}),
        ],
        # The load generator reads an abstention as the empty answer.
        "qa-service": [".*"],
    }
