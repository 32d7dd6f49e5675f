"""Confidence that means something: the probability that the QA service's answer is right.

The reader's confidence is the best span's share of a softmax over the candidate spans of the
passages it read. It ranks answers well but is no probability of being right: a share of 0.3 may
be right most of the time (the mass is split between overlapping spans of one answer), and a
reader trained on SQuAD 1.1 gives high shares to wrong spans of a passage that does not hold the
answer. The QA service therefore reports a calibrated confidence: a logistic model (Platt scaling
with one more feature) over two signals of the answer (AnswerSignals):
  - agreement: the reader's share for the best span plus the shares of the other listed
    candidates that overlap it (other spans of the same answer, e.g. "Mars" and "Mars, and in
    modern astrology Pluto"), as a logit;
  - retrieval's relevance, the cosine similarity of the question and its best passage.
On 1,129 SQuAD dev and knowledge-base questions answered by the stage-4 reader, agreement tells
right from wrong answers better than the best span's share alone (ROC AUC 0.78 against 0.74); the
share adds nothing once agreement is known (its fitted weight comes out negative), and answer
length and the margin to the best other answer add nothing either.
fitted by `python -m retrieval.service.calibrate` on held-out questions whose answers are known,
with "right" meaning F1 >= 0.5 against a gold answer. No weight may be negative, so the calibrated
confidence never falls as a signal rises: a signal that adds nothing once the others are known gets
weight 0 (retrieval's relevance did for the stage-13 reader, session 18). The file is saved next
to the reader it was fitted for (confidence_calibration.json).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.reader.metrics import f1_score

CALIBRATION_FILE = "confidence_calibration.json"
_EPSILON = 1e-4  # shares are clipped to [eps, 1 - eps] before the logit


class CalibrationError(ValueError):
    """A calibration that cannot be fitted or read; the message says why."""


def logit(probability: float) -> float:
    """log(p / (1 - p)), p clipped away from 0 and 1 so a share of exactly 0 or 1 stays finite."""
    clipped = min(max(probability, _EPSILON), 1 - _EPSILON)
    return math.log(clipped / (1 - clipped))


@dataclass(frozen=True)
class AnswerSignals:
    """What the calibration reads of one answer (see the module docstring)."""

    reader_confidence: float
    agreement: float
    relevance: float

    @classmethod
    def of(cls, candidates: Sequence[tuple[str, float]], relevance: float) -> AnswerSignals:
        """From the reader's candidates, best first, as (text, the reader's share)."""
        if not candidates:
            return cls(0.0, 0.0, relevance)
        best = candidates[0][0]
        agreement = sum(share for text, share in candidates if f1_score(text, best) > 0)
        return cls(candidates[0][1], agreement, relevance)

    def features(self) -> list[float]:
        return [logit(self.agreement), self.relevance]


FEATURES = ("agreement", "relevance")  # the reader's own signal first: it must carry weight
REGULARISATION_C = 10.0  # as scikit-learn's C: the log loss counts this much against |w|^2 / 2


@dataclass(frozen=True)
class ConfidenceCalibration:
    """P(right | signals) = sigmoid(sum of weight * feature + bias), features as AnswerSignals.features."""

    weights: tuple[float, ...]
    bias: float
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def probability(self, signals: AnswerSignals) -> float:
        score = sum(w * x for w, x in zip(self.weights, signals.features(), strict=True)) + self.bias
        return 1.0 / (1.0 + math.exp(-score))

    @classmethod
    def fit(
        cls, signals: Sequence[AnswerSignals], right: Sequence[bool], fitted_on: dict[str, Any] | None = None
    ) -> ConfidenceCalibration:
        """Maximum-likelihood logistic fit, lightly regularised, with every weight kept at 0 or above:
        a signal that tells nothing more once the others are known gets weight 0, never a negative
        one, so the confidence never falls as a signal rises. Refuses data that cannot calibrate."""
        from scipy.optimize import minimize  # only fitting needs SciPy

        labels = np.asarray(right, dtype=bool)
        if labels.all() or not labels.any():
            raise CalibrationError("calibration needs both right and wrong answers")
        features = np.array([s.features() for s in signals])
        sign = np.where(labels, 1.0, -1.0)

        def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
            """The log loss plus |w|^2 / (2 * REGULARISATION_C), and its gradient."""
            weights, bias = params[:-1], params[-1]
            margins = sign * (features @ weights + bias)
            pull = -sign / (1.0 + np.exp(margins))  # d log(1 + exp(-margin)) / d score
            gradient = np.append(features.T @ pull + weights / REGULARISATION_C, pull.sum())
            penalty = weights @ weights / (2 * REGULARISATION_C)
            return float(np.logaddexp(0.0, -margins).sum() + penalty), gradient

        bounds = [(0.0, None)] * len(FEATURES) + [(None, None)]
        fitted = minimize(loss, np.zeros(len(FEATURES) + 1), jac=True, method="L-BFGS-B", bounds=bounds)
        weights = tuple(float(w) for w in fitted.x[:-1])
        if not fitted.success or weights[0] <= 0:
            shown = ", ".join(f"{name} {w:.3f}" for name, w in zip(FEATURES, weights, strict=True))
            raise CalibrationError(
                f"fitted weights {shown}: the calibrated confidence would not rise with the reader's "
                "agreement"
            )
        return cls(weights, float(fitted.x[-1]), dict(fitted_on or {}))

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / CALIBRATION_FILE
        payload = {"features": FEATURES, **asdict(self)}
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> ConfidenceCalibration | None:
        """The reader's calibration, or None when it has none (the service then reports raw confidence)."""
        path = Path(model_dir) / CALIBRATION_FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if tuple(raw["features"]) != FEATURES or len(raw["weights"]) != len(FEATURES):
                raise ValueError(f"it calibrates {raw['features']}, not {list(FEATURES)}")
            return cls(
                tuple(float(w) for w in raw["weights"]), float(raw["bias"]), dict(raw.get("fitted_on", {}))
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise CalibrationError(f"{path} is not a confidence calibration: {error}") from error


@dataclass(frozen=True)
class ReliabilityBin:
    """Answers whose confidence fell in [low, high): how confident they were on average, how often right."""

    low: float
    high: float
    count: int
    mean_confidence: float
    share_right: float


def reliability_bins(
    confidences: Sequence[float], right: Sequence[bool], bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] (the last one closed), empty bins left out."""
    values, labels = np.asarray(confidences, dtype=float), np.asarray(right, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(values, edges[1:-1]), 0, bins - 1)
    return [
        ReliabilityBin(
            low=float(edges[b]),
            high=float(edges[b + 1]),
            count=int((which == b).sum()),
            mean_confidence=float(values[which == b].mean()),
            share_right=float(labels[which == b].mean()),
        )
        for b in range(bins)
        if (which == b).any()
    ]


def expected_calibration_error(confidences: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    """Mean |confidence - share right| over the bins, weighted by how many answers each holds."""
    table = reliability_bins(confidences, right, bins)
    total = sum(b.count for b in table)
    return sum(b.count * abs(b.mean_confidence - b.share_right) for b in table) / max(total, 1)


def hedge_threshold(
    confidences: Sequence[float], right: Sequence[bool], precision: float, groups: Sequence[str] | None = None
) -> float:
    """The lowest confidence at and above which at least `precision` of the answers are right (1.0 if
    none is): answers below it are the ones to hedge. With `groups` (SQuAD's and the knowledge base's
    questions) it must hold for each group: pooled, the larger group would carry the smaller below
    the target. Only the answers' own confidences are cuts, so equal ones land on the same side."""
    values = np.asarray(confidences, dtype=float)
    labels = np.asarray(right, dtype=bool)
    names = np.asarray(groups if groups is not None else [""] * len(values))
    for cut in np.unique(values):  # ascending: the first cut that holds is the lowest
        above = values >= cut
        if min(labels[above & (names == group)].mean() for group in np.unique(names[above])) >= precision:
            return float(cut)
    return 1.0
