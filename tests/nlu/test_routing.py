"""Open questions reach the QA service; requests the bot has an intent for stay with that intent.

The trained model (models/horoscope.tar.gz) reads each message in-process, as `rasa shell` would.
A question counts as routed to the QA service when its intent is ask_question or nlu_fallback:
data/rules/chitchat.yml answers both with action_answer_question. The messages are the knowledge
base's own questions (tests/data/knowledge_qa.json) and tests/data/routing.json, written apart
from the training data. The floors sit just under what the shipped data measured (2026-12-02):
139/143 knowledge-base questions, 23/24 held-out open questions and 19/19 requests with `make
train`'s model; 139-140 and 20-23 with NLU-only models at DIET seeds 42 and 7. Before the star and
myth examples in data/nlu/questions.yml the NLU-only models routed 133-134/143 and 15-18/24.
2026-12-03: 141/143, 22/24 and 19/19, after examples of a myth's parents and "when are Libras
born?" were added because two knowledge-base questions ("Who was the father of the mortal twin
Castor?", "When are Geminis born?") went to out_of_scope and bot_challenge: for those two forms
the knowledge-base count is no longer held out. Since session 16 the knowledge base's questions
are checked exactly: each one reaches the QA service but the four that routing.json's
knowledge_base_elsewhere lets a request intent answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rasa.core.agent import Agent

from retrieval.squad import read_squad

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = REPO_ROOT / "models" / "horoscope.tar.gz"
ROUTING = json.loads((REPO_ROOT / "tests" / "data" / "routing.json").read_text(encoding="utf-8"))
TO_QA = frozenset({"ask_question", "nlu_fallback"})

OPEN_QUESTIONS_FLOOR = 19  # of 24
REQUESTS_FLOOR = 18  # of 19


def knowledge_base_questions() -> list[str]:
    """Read as every SQuAD-format file of the project is (stdlib only, so the Rasa venv can too)."""
    paragraphs = read_squad(REPO_ROOT / "tests" / "data" / "knowledge_qa.json")
    return [question.question for paragraph in paragraphs for question in paragraph.questions]


@pytest.fixture(scope="module")
def intent_of() -> Iterator[Callable[[str], str]]:
    """The model's intent for a message."""
    agent = Agent.load(str(MODEL))
    loop = asyncio.new_event_loop()
    yield lambda text: loop.run_until_complete(agent.parse_message(text))["intent"]["name"]
    loop.close()


def misrouted(intent_of: Callable[[str], str], questions: list[str]) -> list[tuple[str, str]]:
    return [(q, intent) for q in questions if (intent := intent_of(q)) not in TO_QA]


def test_knowledge_base_questions_reach_the_qa_service(intent_of: Callable[[str], str]) -> None:
    questions = knowledge_base_questions()
    missed = misrouted(intent_of, questions)
    # Exactly, not against a floor: make bench-turns asks every question but these and fails a cell
    # on one wrong reply. Session 15 lost "What asterism do the main stars of Sagittarius make?" to
    # get_horoscope while the count stayed above the floor.
    elsewhere = set(ROUTING["knowledge_base_elsewhere"])
    assert elsewhere <= set(questions)
    assert [(q, intent) for q, intent in missed if q not in elsewhere] == []


def test_held_out_open_questions_reach_the_qa_service(intent_of: Callable[[str], str]) -> None:
    questions = ROUTING["open_questions"]
    missed = misrouted(intent_of, questions)
    assert len(questions) - len(missed) >= OPEN_QUESTIONS_FLOOR, missed


def test_requests_keep_their_intent(intent_of: Callable[[str], str]) -> None:
    wrong = [(r["text"], got) for r in ROUTING["requests"] if (got := intent_of(r["text"])) != r["intent"]]
    assert len(ROUTING["requests"]) - len(wrong) >= REQUESTS_FLOOR, wrong
