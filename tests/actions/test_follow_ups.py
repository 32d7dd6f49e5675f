"""The follow-up rewriter on its own: each kind of follow-up, and the messages it must leave alone."""

from __future__ import annotations

import pytest

from actions.follow_ups import LastTurn, Rewrite, find_subject, person_in, rewrite

ELEMENT_OF_ARIES = LastTurn("What element is Aries?", "Fire")
RULER_OF_SCORPIO = LastTurn("What is the ruling planet of Scorpio?", "Mars")
TETRABIBLOS = LastTurn("Who wrote the Tetrabiblos?", "Claudius Ptolemy")
MARS_RULES = LastTurn("Which sign does Mars rule?", "Aries and Scorpio")


@pytest.mark.parametrize(
    ("last", "message", "expected"),
    [
        (ELEMENT_OF_ARIES, "And Leo?", "What element is Leo?"),
        (ELEMENT_OF_ARIES, "and leo", "What element is Leo?"),
        (RULER_OF_SCORPIO, "and of Leo?", "What is the ruling planet of Leo?"),
        (RULER_OF_SCORPIO, "what about Taurus?", "What is the ruling planet of Taurus?"),
        (RULER_OF_SCORPIO, "How about for pisces?", "What is the ruling planet of Pisces?"),
        (MARS_RULES, "and venus?", "Which sign does Venus rule?"),
        (TETRABIBLOS, "and the Almagest?", "Who wrote the Almagest?"),
    ],
)
def test_ellipsis_repeats_the_previous_question_about_the_new_subject(
    last: LastTurn, message: str, expected: str
) -> None:
    assert rewrite(last, message) == Rewrite(expected, "ellipsis")


def test_an_attribute_of_the_subject_just_discussed() -> None:
    assert rewrite(ELEMENT_OF_ARIES, "what about its symbol?") == Rewrite(
        "What is Aries's symbol?", "ellipsis"
    )


@pytest.mark.parametrize(
    ("last", "message", "expected"),
    [
        (ELEMENT_OF_ARIES, "what is its symbol?", "What is Aries's symbol?"),
        (ELEMENT_OF_ARIES, "is it a cardinal sign?", "Is Aries a cardinal sign?"),
        (TETRABIBLOS, "when did he live?", "When did Claudius Ptolemy live?"),
        (TETRABIBLOS, "what else did he write", "What else did Claudius Ptolemy write?"),
        (TETRABIBLOS, "where did his ideas come from?", "Where did Claudius Ptolemy's ideas come from?"),
        (TETRABIBLOS, "what does its title mean?", "What does Tetrabiblos's title mean?"),
    ],
)
def test_pronouns_stand_for_the_subject_or_the_person_answered(
    last: LastTurn, message: str, expected: str
) -> None:
    assert rewrite(last, message) == Rewrite(expected, "pronoun")


def test_a_follow_up_after_an_abstention_is_rewritten_from_the_unanswered_question() -> None:
    unanswered = LastTurn("What is the lucky colour of Virgo?", None)
    assert rewrite(unanswered, "and Libra?") == Rewrite("What is the lucky colour of Libra?", "ellipsis")


@pytest.mark.parametrize(
    ("last", "message"),
    [
        # a full question with its own subject
        (ELEMENT_OF_ARIES, "What is the ruling planet of Leo?"),
        (TETRABIBLOS, "When did Abu Ma'shar live?"),
        (RULER_OF_SCORPIO, "Is Mars a hot planet?"),
        # a topic change
        (ELEMENT_OF_ARIES, "who invented the newspaper horoscope?"),
        (TETRABIBLOS, "how many signs are there?"),
        # "it" that refers to nothing
        (ELEMENT_OF_ARIES, "what does it mean to be born on a cusp?"),
        # the new subject is not of the old one's kind: "what about love?" is no sign
        (ELEMENT_OF_ARIES, "what about love?"),
        # the person is unknown: the answer is no name
        (ELEMENT_OF_ARIES, "when did he live?"),
        # the previous question had no subject to swap
        (LastTurn("How many signs are there?", "twelve"), "and Leo?"),
    ],
)
def test_left_alone(last: LastTurn, message: str) -> None:
    assert rewrite(last, message) == Rewrite(message, "unchanged")


def test_without_a_previous_question_nothing_is_rewritten() -> None:
    assert rewrite(None, "and Leo?") == Rewrite("and Leo?", "unchanged")


def test_subjects_and_people() -> None:
    assert find_subject("What element is Aries?").kind == "sign"
    assert find_subject("Which sign does mars rule?").text == "mars"
    assert find_subject("Who wrote the Tetrabiblos?").text == "Tetrabiblos"
    assert find_subject("how many signs are there?") is None
    assert person_in("Claudius Ptolemy") == "Claudius Ptolemy"
    assert person_in("Mars") is None
    assert person_in("fire") is None
