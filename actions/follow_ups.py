"""Follow-up questions made standalone before they reach the QA service.

The QA service reads one question at a time, so "and Leo?" after "What element
is Aries?" would be read alone and answered about nothing. This module turns a
follow-up into the question the user meant, with a few rules a person can
check (no model, nothing learned):

- Ellipsis: "and Leo?", "and of Leo?", "what about Taurus?", "how about the
  Moon?" repeat the previous question with its subject swapped, when the new
  subject is of the same kind (a sign for a sign, a planet for a planet, a
  name for a name). "what about its symbol?" asks for that attribute of the
  subject just discussed.
- Pronouns: "it"/"its" stand for the subject of the previous question ("what
  is its symbol?" -> "What is Leo's symbol?"); "he", "she", "they" and their
  other forms stand for the person the previous answer named ("when did he
  live?" after "Who wrote the Tetrabiblos?" -> "When did Claudius Ptolemy
  live?"), when the previous question asked "who".
- Everything else is left alone: a message with a subject of its own, a topic
  change, a message without a previous question, a follow-up whose referent is
  unknown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from actions.zodiac import SIGNS, display_name

PLANETS: tuple[str, ...] = (
    "sun",
    "moon",
    "mercury",
    "venus",
    "mars",
    "jupiter",
    "saturn",
    "uranus",
    "neptune",
    "pluto",
)
_SIGN_WORD = re.compile(r"\b(" + "|".join(SIGNS) + r")\b", re.IGNORECASE)
_PLANET_WORD = re.compile(r"\b(" + "|".join(PLANETS) + r")\b", re.IGNORECASE)
# A run of capitalised words ("Claudius Ptolemy", "Tetrabiblos"), apostrophes and hyphens allowed.
_NAME = re.compile(r"\b[A-Z][\w'’-]*(?:\s+(?:al-|de\s+|of\s+)?[A-Z][\w'’-]*)*")
_ELLIPSIS = re.compile(
    r"^(?:(?:and|but|ok|okay|so)[,\s]+)?(?:(?:what|how)\s+about|what\s+of|and|same\s+for)\s+"
    r"(?:for\s+|of\s+|with\s+|in\s+)?(?P<rest>.+?)\s*[?.!]*$",
    re.IGNORECASE,
)
_THING_PRONOUN = re.compile(r"\b(its|it)\b", re.IGNORECASE)
_PERSON_PRONOUN = re.compile(r"\b(his|her|their|he|she|him|they|them)\b", re.IGNORECASE)
_WHO = re.compile(r"\bwho(?:m|se)?\b", re.IGNORECASE)
_POSSESSIVES = {"its", "his", "her", "their"}
# "it" that refers to nothing ("what does it mean to be on the cusp?", "is it true that ...").
_DUMMY_IT = re.compile(r"\b(?:does it mean|is it true|it's true|it is true|it depends)\b", re.IGNORECASE)
_MAX_SUBJECT_WORDS = 4
_MAX_FOLLOW_UP_WORDS = 12


@dataclass(frozen=True)
class LastTurn:
    """The previous question as the QA service was asked it, and what it answered (None: abstained)."""

    question: str
    answer: str | None = None


@dataclass(frozen=True)
class Rewrite:
    """The question to ask and why: "ellipsis", "pronoun" or "unchanged"."""

    question: str
    kind: str

    @property
    def rewritten(self) -> bool:
        return self.kind != "unchanged"


@dataclass(frozen=True)
class Subject:
    """What a question is about, as written in it, and its kind: "sign", "planet" or "name"."""

    text: str
    kind: str


def find_subject(text: str) -> Subject | None:
    """The sign, planet or capitalised name a question is about (first found, in that order)."""
    for pattern, kind in ((_SIGN_WORD, "sign"), (_PLANET_WORD, "planet")):
        match = pattern.search(text)
        if match:
            return Subject(match.group(1), kind)
    for match in _NAME.finditer(text):
        name = match.group(0)
        first_word = match.start() == len(text) - len(text.lstrip())
        if first_word:  # "What", "Who": drop the sentence's capital, keep any name after it
            name = name.partition(" ")[2]
        if name and name != "I" and len(name.split()) <= _MAX_SUBJECT_WORDS:
            return Subject(name, "name")
    return None


def person_in(answer: str | None) -> str | None:
    """The answer when it is a person's name (a few capitalised words, no sign or planet)."""
    if not answer:
        return None
    words = answer.strip().rstrip(".").split()
    if not 1 <= len(words) <= _MAX_SUBJECT_WORDS or not all(word[:1].isupper() for word in words):
        return None
    name = " ".join(words)
    if _SIGN_WORD.search(name) or _PLANET_WORD.search(name):
        return None
    return name


def rewrite(last: LastTurn | None, message: str) -> Rewrite:
    """`message` as a standalone question, given the previous turn (see the module docstring)."""
    text = " ".join(message.split())
    unchanged = Rewrite(text, "unchanged")
    if last is None or not text or len(text.split()) > _MAX_FOLLOW_UP_WORDS:
        return unchanged
    previous = find_subject(last.question)
    ellipsis = _ELLIPSIS.match(text)
    if ellipsis:
        return _from_ellipsis(last, previous, ellipsis.group("rest")) or unchanged
    if _has_own_subject(text):
        return unchanged
    return _from_pronouns(last, previous, text) or unchanged


def _has_own_subject(text: str) -> bool:
    """True when the message names its own sign, planet or name (then it is read as it stands)."""
    return find_subject(text) is not None


def _from_ellipsis(last: LastTurn, previous: Subject | None, rest: str) -> Rewrite | None:
    """ "and Leo?" -> the previous question about Leo; "what about its symbol?" -> "What is Leo's symbol?"."""
    if previous is None or len(rest.split()) > _MAX_SUBJECT_WORDS:
        return None
    first_word = rest.split()[0].lower()
    if first_word in _POSSESSIVES:
        attribute = _from_pronouns(last, previous, rest)
        return Rewrite(_sentence(f"What is {attribute.question}?"), "ellipsis") if attribute else None
    new = find_subject(rest if rest[:1].isupper() else rest[:1].upper() + rest[1:])
    if new is None or new.kind != previous.kind:
        return None
    replacement = display_name(new.text.lower()) if new.kind in ("sign", "planet") else new.text
    swapped = re.sub(
        r"\b" + re.escape(previous.text) + r"\b", replacement, last.question, count=1, flags=re.IGNORECASE
    )
    return Rewrite(_sentence(swapped), "ellipsis")


def _from_pronouns(last: LastTurn, previous: Subject | None, text: str) -> Rewrite | None:
    """Pronouns replaced by their referent; None when there is none or it is unknown."""
    answered_person = person_in(last.answer) if _WHO.search(last.question) else None
    person = answered_person or (previous.text if previous and previous.kind == "name" else None)
    thing = previous.text if previous else None
    replaced = text
    if person and _PERSON_PRONOUN.search(replaced):
        replaced = _PERSON_PRONOUN.sub(lambda match: _referent(match.group(1), person), replaced)
    if thing and _THING_PRONOUN.search(replaced) and not _DUMMY_IT.search(replaced):
        shown = display_name(thing.lower()) if previous and previous.kind in ("sign", "planet") else thing
        replaced = _THING_PRONOUN.sub(lambda match: _referent(match.group(1), shown), replaced)
    if replaced == text:
        return None
    return Rewrite(_sentence(replaced), "pronoun")


def _referent(pronoun: str, name: str) -> str:
    return f"{name}'s" if pronoun.lower() in _POSSESSIVES else name


def _sentence(text: str) -> str:
    """Capitalised first letter and a question mark, as a question typed in full would have."""
    text = text.strip().rstrip("?.! ")
    return f"{text[:1].upper()}{text[1:]}?"
