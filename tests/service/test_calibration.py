"""The confidence calibration: fitted from labelled answers, monotone, saved with the reader, honest.

The data are drawn from a known model (right with probability sigmoid(2 * logit(agreement) +
3 * relevance - 1)), so a correct fit must recover calibrated probabilities;
the service test checks the served confidence is the saved calibration applied to the signals of
the served answer.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from service_process import ServiceProcess

from retrieval.service.calibration import (
    CALIBRATION_FILE,
    AnswerSignals,
    CalibrationError,
    ConfidenceCalibration,
    expected_calibration_error,
    hedge_threshold,
    reliability_bins,
)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


TRUE_WEIGHTS, TRUE_BIAS = (2.0, 3.0), -1.0


def _drawn(n: int, seed: int = 0) -> tuple[list[AnswerSignals], list[bool]]:
    rng = random.Random(seed)
    signals = []
    for _ in range(n):
        share = rng.uniform(0.02, 0.98)
        signals.append(AnswerSignals(share, min(share + rng.uniform(0, 0.5), 0.99), rng.uniform(0.2, 0.9)))
    right = [
        rng.random()
        < _sigmoid(sum(w * x for w, x in zip(TRUE_WEIGHTS, s.features(), strict=True)) + TRUE_BIAS)
        for s in signals
    ]
    return signals, right


def test_signals_add_up_the_candidates_that_overlap_the_best_answer() -> None:
    candidates = [
        ("Mars", 0.4),
        ("Mars, and in modern astrology Pluto", 0.3),
        ("Venus", 0.2),
        ("the Moon", 0.1),
    ]
    signals = AnswerSignals.of(candidates, relevance=0.7)
    assert signals == AnswerSignals(0.4, pytest.approx(0.7), 0.7)
    assert AnswerSignals.of([], relevance=0.2) == AnswerSignals(0.0, 0.0, 0.2)


def test_fit_recovers_the_model_the_answers_were_drawn_from() -> None:
    calibration = ConfidenceCalibration.fit(*_drawn(6000))
    for fitted, true in zip(calibration.weights, TRUE_WEIGHTS, strict=True):
        assert fitted == pytest.approx(true, abs=0.8)
    assert calibration.bias == pytest.approx(TRUE_BIAS, abs=0.8)


def test_calibrated_answers_are_right_as_often_as_they_claim() -> None:
    calibration = ConfidenceCalibration.fit(*_drawn(4000, seed=1))
    signals, right = _drawn(4000, seed=2)  # held out
    calibrated = [calibration.probability(s) for s in signals]
    assert expected_calibration_error(calibrated, right) < 0.03
    # the reader's share taken as a probability is not calibrated on the same answers
    assert expected_calibration_error([s.reader_confidence for s in signals], right) > 0.1


def test_calibrated_confidence_rises_with_each_signal() -> None:
    calibration = ConfidenceCalibration.fit(*_drawn(2000))
    grid = [i / 20 for i in range(1, 20)]
    for vary in (1, 2):  # agreement, relevance (the best span's share is not a feature)
        values = []
        for x in grid:
            base = [0.5, 0.6, 0.5]
            base[vary] = x
            values.append(calibration.probability(AnswerSignals(*base)))
        assert values == sorted(values) and len(set(values)) == len(values)
    assert all(0 < calibration.probability(AnswerSignals(c, c, 0.5)) < 1 for c in (0.0, 1.0))


def test_a_signal_that_runs_against_the_answers_gets_weight_zero_not_a_negative_one() -> None:
    """Drawn so that, agreement known, a higher relevance makes an answer slightly less often right:
    the fit keeps relevance at 0 (confidence never falls as it rises) and still reads agreement."""
    rng = random.Random(3)
    signals = [
        AnswerSignals(share, share, rng.uniform(0.2, 0.9))
        for share in (rng.uniform(0.02, 0.98) for _ in range(3000))
    ]
    right = [rng.random() < _sigmoid(2.0 * s.features()[0] - 1.5 * s.relevance) for s in signals]
    calibration = ConfidenceCalibration.fit(signals, right)
    agreement, relevance = calibration.weights
    assert relevance == 0.0 and agreement == pytest.approx(2.0, abs=0.5)
    assert calibration.probability(AnswerSignals(0.5, 0.5, 0.9)) == calibration.probability(
        AnswerSignals(0.5, 0.5, 0.2)
    )


def test_fit_refuses_labels_that_cannot_calibrate() -> None:
    signals, _ = _drawn(300)
    with pytest.raises(CalibrationError, match="both right and wrong"):
        ConfidenceCalibration.fit(signals, [True] * 300)
    # answers that are right less often the surer the reader is would make confidence fall with it
    inverted = [s.agreement < 0.6 for s in signals]
    with pytest.raises(CalibrationError, match="would not rise"):
        ConfidenceCalibration.fit(signals, inverted)


def test_saved_with_the_reader_and_loaded_back(tmp_path: Path) -> None:
    assert ConfidenceCalibration.load(tmp_path) is None
    calibration = ConfidenceCalibration.fit(*_drawn(500), fitted_on={"questions": 500})
    path = calibration.save(tmp_path)
    assert path.name == CALIBRATION_FILE
    assert ConfidenceCalibration.load(tmp_path) == calibration
    path.write_text(json.dumps({"features": ["reader_confidence"], "weights": [1.0], "bias": 0}))  # old shape
    with pytest.raises(CalibrationError, match=CALIBRATION_FILE):
        ConfidenceCalibration.load(tmp_path)


def test_reliability_bins_count_every_answer_once() -> None:
    bins = reliability_bins([0.05, 0.15, 0.15, 0.95, 1.0], [False, True, False, True, True], bins=10)
    assert [(b.low, b.count) for b in bins] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert bins[1].share_right == 0.5 and bins[2].mean_confidence == pytest.approx(0.975)
    assert expected_calibration_error([0.25, 0.25, 0.25, 0.25], [True, False, False, False]) == 0


def test_hedge_threshold_keeps_unhedged_answers_right_often_enough() -> None:
    confidences = [0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5]
    right = [True, True, True, False, True, False, True]
    # at >= 0.7: 4 of 5 right (0.8); at >= 0.85: 3 of 3
    assert hedge_threshold(confidences, right, precision=0.8) == 0.7
    assert hedge_threshold(confidences, right, precision=0.9) == 0.85
    assert hedge_threshold([0.9, 0.8], [False, False], precision=0.9) == 1.0
    # equal confidences are never split between hedged and unhedged
    assert hedge_threshold([0.9, 0.8, 0.8], [True, True, False], precision=0.9) == 0.9


def test_hedge_threshold_holds_for_each_group_not_only_their_mix() -> None:
    # A large group right at every confidence and a small one wrong at 0.8: pooled, the cut 0.8 keeps
    # 11 of 12 unhedged answers right (92%), but only half of the small group's.
    confidences = [0.95] * 8 + [0.8] * 2 + [0.95, 0.8]
    right = [True] * 10 + [True, False]
    groups = ["squad"] * 10 + ["knowledge_base"] * 2
    assert hedge_threshold(confidences, right, precision=0.9) == 0.8
    assert hedge_threshold(confidences, right, precision=0.9, groups=groups) == 0.95
    # a group alone is the plain threshold
    assert hedge_threshold(confidences[:10], right[:10], precision=0.9, groups=groups[:10]) == 0.8


# --- the served confidence ---------------------------------------------------------------------------


def test_the_shipped_reader_serves_calibrated_confidence(
    knowledge_service: ServiceProcess, reader_dir: Path
) -> None:
    """The real service over the knowledge base: the answer's confidence is the reader's calibration
    applied to the served answer's signals; candidates keep the reader's own shares."""
    calibration = ConfidenceCalibration.load(reader_dir)
    assert calibration is not None, (
        "models/reader has no confidence_calibration.json: make calibrate-confidence"
    )
    assert knowledge_service.call("GET", "/readyz").body["reader"]["confidence_calibrated"] is True
    for question in ("What is the ruling planet of Scorpio?", "Who wrote the Tetrabiblos?"):
        body = knowledge_service.call("POST", "/answer", payload={"question": question}).body
        candidates = [(c["text"], c["confidence"]) for c in body["candidates"]]
        assert body["reader_confidence"] == pytest.approx(candidates[0][1])
        expected = calibration.probability(AnswerSignals.of(candidates, body["relevance"]))
        assert body["confidence"] == pytest.approx(expected, abs=1e-6)
