"""EM/F1 against values computed by hand with the official SQuAD rules."""

from __future__ import annotations

import pytest

from retrieval.reader.metrics import (
    ScoredQuestion,
    best_abstention_threshold,
    exact_match,
    f1_score,
    normalize_answer,
    squad_scores,
)


def test_normalisation_drops_case_punctuation_articles_and_extra_space():
    assert normalize_answer("The  Cat, an   Apple & a dog!") == "cat apple dog"
    assert normalize_answer("theory") == "theory"  # "the" only as a word


def test_exact_match_and_f1_on_hand_computed_cases():
    assert exact_match("the Eiffel Tower", "Eiffel tower.") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # pred {cat, sat}, gold {cat, sat, down}: P = 1, R = 2/3, F1 = 0.8
    assert f1_score("the cat sat", "cat sat down") == pytest.approx(0.8)
    # shared tokens counted with multiplicity: pred {a1 a1 b}, gold {a1 b b}: overlap 2, P = R = 2/3
    assert f1_score("a1 a1 b", "a1 b b") == pytest.approx(2 / 3)
    assert f1_score("nothing", "in common") == 0.0
    assert f1_score("", "") == 1.0 and f1_score("x", "") == 0.0


def test_scores_take_the_best_gold_answer_and_average_in_percent():
    questions = [
        ScoredQuestion(golds=("Denver Broncos", "Broncos"), prediction="the Broncos"),  # EM 1, F1 1
        ScoredQuestion(golds=("cat sat down",), prediction="cat sat"),  # EM 0, F1 0.8
    ]
    assert squad_scores(questions) == {"exact": 50.0, "f1": pytest.approx(90.0), "total": 2.0}


def test_squad2_scores_split_has_answer_and_no_answer():
    questions = [
        ScoredQuestion(golds=("Paris",), prediction="Paris"),
        ScoredQuestion(golds=("cat sat down",), prediction="cat sat"),
        ScoredQuestion(golds=(), prediction=""),  # correct abstention
        ScoredQuestion(golds=(), prediction="Lyon"),  # answered the unanswerable
    ]
    scores = squad_scores(questions)
    assert scores["exact"] == 50.0 and scores["f1"] == pytest.approx(100 * 2.8 / 4)
    assert (scores["HasAns_exact"], scores["HasAns_f1"], scores["HasAns_total"]) == (
        50.0,
        pytest.approx(90.0),
        2.0,
    )
    assert (scores["NoAns_exact"], scores["NoAns_f1"], scores["NoAns_total"]) == (50.0, 50.0, 2.0)


def test_no_questions_is_an_error():
    with pytest.raises(ValueError):
        squad_scores([])


def test_best_threshold_abstains_exactly_on_the_unsure_wrong_answers():
    questions = [
        ScoredQuestion(golds=("a1",), prediction="a1"),  # right, confident
        ScoredQuestion(golds=(), prediction="b2"),  # unanswerable, unsure -> should abstain
        ScoredQuestion(golds=("c3",), prediction="c3"),  # right, fairly sure
        ScoredQuestion(golds=(), prediction="d4"),  # unanswerable, unsure
    ]
    confidences = [0.9, 0.2, 0.6, 0.3]
    threshold, f1 = best_abstention_threshold(confidences, questions)
    assert threshold == 0.6 and f1 == 100.0
    assert best_abstention_threshold(
        [0.9, 0.8], [ScoredQuestion(("x",), "x"), ScoredQuestion(("y",), "y")]
    ) == (0.0, 100.0)
