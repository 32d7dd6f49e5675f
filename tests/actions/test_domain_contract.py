"""The responses the actions send exist in domain.yml and use exactly the values the actions pass.

`rasa test` never runs the actions, so a missing response or a placeholder the
action does not fill would only show up in a live conversation.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOMAIN = yaml.safe_load((REPO_ROOT / "domain.yml").read_text())
ACTIONS_SOURCE = (REPO_ROOT / "actions" / "actions.py").read_text()

# response -> the keyword arguments the actions send with it
FILLED_BY_ACTIONS = {
    "utter_horoscope": {"horoscope_sign", "horoscope_text"},
    "utter_sign_from_birthdate": {"birthdate_text", "horoscope_sign"},
    "utter_invalid_birthdate": {"birthdate_text", "reason"},
    "utter_answer": {"answer", "source_title"},
    "utter_answer_unsure": {"answer", "source_title"},
}


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_every_response_the_actions_send_is_in_the_domain() -> None:
    sent = set(re.findall(r'"(utter_\w+)"', ACTIONS_SOURCE))
    assert "utter_subscription_unavailable" in sent
    assert sent <= set(DOMAIN["responses"])


@pytest.mark.parametrize(("response", "filled"), sorted(FILLED_BY_ACTIONS.items()))
def test_every_variation_uses_the_values_the_action_sends(response: str, filled: set[str]) -> None:
    variations = DOMAIN["responses"][response]
    assert len(variations) >= 2
    for variation in variations:
        assert placeholders(variation["text"]) == filled, variation["text"]


def test_responses_without_values_have_no_placeholders() -> None:
    for response, variations in DOMAIN["responses"].items():
        if response not in FILLED_BY_ACTIONS:
            for variation in variations:
                assert not placeholders(variation["text"]), (response, variation["text"])
