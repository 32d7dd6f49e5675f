"""Fitting the weights of linear fusion on questions whose right passage is known.

The fused score of a passage is the weighted sum of its members' raw scores. The
weights are fitted listwise: for each question, a softmax over its candidates
(every passage any member found) should put its mass on the right passage. That
is the cross-entropy the ranking is judged by, and with a handful of weights
and thousands of questions it does not overfit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.optimize
from tqdm.auto import tqdm

from retrieval.index.retrievers import ScoringRetriever, linear_candidates


def candidate_features(
    members: Sequence[ScoringRetriever], questions: Sequence[tuple[str, str]], depth: int
) -> list[tuple[np.ndarray, int]]:
    """For each question whose right passage is among the candidates: (member scores, its column).

    Questions whose passage no member finds in its top `depth` cannot teach the weights anything.
    """
    rows = []
    for question, gold_id in tqdm(questions, desc="scoring candidates", unit="question"):
        candidates, scores = linear_candidates(members, question, depth)
        ids = [passage.passage_id for passage in candidates]
        if gold_id in ids:
            rows.append((scores, ids.index(gold_id)))
    return rows


def fit_linear_weights(
    members: Sequence[ScoringRetriever], questions: Sequence[tuple[str, str]], depth: int = 50
) -> tuple[float, ...]:
    """Weights for `members` that rank each question's passage (id given) first as often as possible."""
    rows = candidate_features(members, questions, depth)
    if not rows:
        raise ValueError("no question's passage is among the candidates; nothing to fit")

    def loss_and_gradient(weights: np.ndarray) -> tuple[float, np.ndarray]:
        loss, gradient = 0.0, np.zeros_like(weights)
        for scores, gold in rows:
            logits = weights @ scores
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            loss -= np.log(probabilities[gold] + 1e-12)
            gradient -= scores[:, gold] - scores @ probabilities
        return loss / len(rows), gradient / len(rows)

    fitted = scipy.optimize.minimize(loss_and_gradient, np.ones(len(members)), jac=True, method="L-BFGS-B")
    return tuple(round(float(weight), 4) for weight in fitted.x)
