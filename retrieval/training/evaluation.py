"""Scoring a reader on SQuAD through the serving code path, and picking its abstention threshold.

    python -m retrieval.training.evaluation --model models/reader --dev ../shared/data/squad/dev-v1.1.json.gz

prints the official EM/F1 of a saved reader (or of a training checkpoint) on every dev question.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from retrieval.documents import Passage
from retrieval.reader.metrics import RIGHT_F1, ScoredQuestion, best_abstention_threshold, squad_scores
from retrieval.reader.model import Reader
from retrieval.training.data import Example, load_examples

log = logging.getLogger(__name__)

# Calibration keeps a threshold only if it still answers at least this share of answerable questions,
# and if fewer than MAX_WITHHELD_RIGHT of the answerable questions it would not answer were answered
# right (F1 >= RIGHT_F1). SQuAD 2.0 dev is half unanswerable, so the F1-best threshold may withhold
# answers that are mostly right; the QA service reads only questions retrieval finds relevant, and
# gives its unsure answers with a hedge, so such answers are better given than withheld.
MIN_ANSWERED_SHARE = 0.5
MAX_WITHHELD_RIGHT = 0.5


def gold_passage_queries(examples: Sequence[Example]) -> list[tuple[str, list[Passage]]]:
    """Each question with its own paragraph as the one passage to read."""
    return [
        (e.question.question, [Passage(e.question.question_id, e.paragraph.title, e.paragraph.context)])
        for e in examples
    ]


def evaluate(reader: Reader, examples: Sequence[Example]) -> dict[str, float]:
    """Official EM/F1 (HasAns/NoAns on SQuAD 2.0) through the serving code path, one passage per question."""
    answers = reader.answer_many(gold_passage_queries(examples), top_n=1)
    scored = [
        ScoredQuestion(golds=tuple(a.text for a in e.question.answers), prediction=answer.text)
        for e, answer in zip(examples, answers, strict=True)
    ]
    return squad_scores(scored)


def usable_threshold(
    threshold: float, answerable: Sequence[tuple[float, bool]]
) -> tuple[float, float, float]:
    """`threshold`, or 0 when it fails the rules above; with the share of (confidence, right) answerable
    questions it answers and the share right of those it withholds (0 when it withholds none)."""
    if not answerable:
        return threshold, 1.0, 0.0
    withheld = [right for confidence, right in answerable if confidence < threshold]
    answered_share = 1 - len(withheld) / len(answerable)
    withheld_right = sum(withheld) / len(withheld) if withheld else 0.0
    if answered_share < MIN_ANSWERED_SHARE:
        why = f"answers only {100 * answered_share:.1f}% of the answerable questions"
    elif withheld_right >= MAX_WITHHELD_RIGHT:
        why = f"withholds answers that are right {100 * withheld_right:.1f}% of the time"
    else:
        return threshold, answered_share, withheld_right
    log.warning("the best SQuAD 2.0 threshold %.4f %s: storing 0", threshold, why)
    return 0.0, answered_share, withheld_right


def calibrate(model_dir: Path, dev_file: Path, max_examples: int = 0, seed: int = 13) -> dict[str, Any]:
    """Store in the model the abstention threshold maximising SQuAD 2.0 F1 on `dev_file`; return scores.

    A reader fine-tuned on SQuAD 1.1 only has never seen an unanswerable question; when the best
    threshold would leave fewer than MIN_ANSWERED_SHARE of the answerable questions answered, its
    confidence cannot tell them apart, and the threshold stored is 0: the service's relevance cut
    then does the abstaining. So it is too when the answers it withholds are mostly right
    (MAX_WITHHELD_RIGHT): the service hedges them instead. calibration.json records both.
    """
    reader = Reader.load(model_dir)
    examples = load_examples(dev_file, max_examples, seed)
    if not any(e.question.is_impossible or not e.question.answers for e in examples):
        raise ValueError(f"{dev_file} has no unanswerable questions: calibration needs a SQuAD 2.0 dev file")
    answers = reader.answer_many(gold_passage_queries(examples), top_n=1)
    golds = [tuple(a.text for a in e.question.answers) for e in examples]
    guesses = [
        ScoredQuestion(g, a.candidates[0].text if a.candidates else "")
        for g, a in zip(golds, answers, strict=True)
    ]
    best_threshold, best_f1 = best_abstention_threshold([a.confidence for a in answers], guesses)
    answerable = [
        (a.confidence, g.f1 >= RIGHT_F1) for g, a in zip(guesses, answers, strict=True) if g.has_answer
    ]
    threshold, answered_share, withheld_right = usable_threshold(best_threshold, answerable)
    abstaining = [
        ScoredQuestion(g.golds, g.prediction if a.confidence >= threshold else "")
        for g, a in zip(guesses, answers, strict=True)
    ]
    result = {
        "dev_file": str(dev_file),
        "abstain_threshold": threshold,
        "best_f1_threshold": best_threshold,
        "f1_at_best_f1_threshold": best_f1,
        "answerable_share_answered_at_best_f1_threshold": answered_share,
        "withheld_answerable_right_at_best_f1_threshold": withheld_right,
        "scores": squad_scores(abstaining),
        "scores_never_abstaining": squad_scores(guesses),
    }
    replace(reader.config, abstain_threshold=threshold).save(model_dir)
    (model_dir / "calibration.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("abstention threshold %.4f: %s", threshold, json.dumps(result["scores"]))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.training.evaluation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", type=Path, required=True, help="a reader folder or a training checkpoint")
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD dev file (.json or .json.gz)")
    parser.add_argument("--max-examples", type=int, default=0, help="random subset of questions (0 = all)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, help="also write the scores to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    reader = Reader.load(args.model, threads=args.threads)
    scores = evaluate(reader, load_examples(args.dev, args.max_examples, args.seed))
    print(json.dumps(scores, indent=2))
    if args.out is not None:
        args.out.write_text(
            json.dumps({"model": str(args.model), "dev": str(args.dev), **scores}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
