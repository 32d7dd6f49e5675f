"""Replace the shipped reader with a newly trained one only when it answers the whole dev set better.

    python -m retrieval.training.ship --candidate var/reader-full --shipped models/reader \
        --dev ../shared/data/squad/dev-v1.1.json.gz

Both are scored by the same function on every dev question (not a sample), so a training stage
that made the reader worse can never reach users. `--tolerance` lets a stage trained for what
the dev set does not measure (the knowledge base's domain: `make train-reader-domain`) give up at
most that many dev F1 points; what it gained is then measured on the held-out knowledge-base
questions (`make calibrate-confidence`). The comparison is written to the shipped
folder as `dev_eval.json`; the shipped serving settings (SERVING_SETTINGS) stay; the old
`calibration.json` and `confidence_calibration.json` are dropped with the old weights (run
`make calibrate-reader` and `make calibrate-confidence` again).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from retrieval.reader.model import Reader, ReaderConfig
from retrieval.training.checkpoints import AVERAGED_FILE
from retrieval.training.data import load_examples
from retrieval.training.evaluation import evaluate

log = logging.getLogger(__name__)

# What a trained reader folder holds besides its model card (README.md stays the shipped one's).
MODEL_FILES = (
    "model.safetensors",
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "reader_config.json",
    "training_args.json",
    "metrics.json",
    "trainer_state.json",
    AVERAGED_FILE,
)
STALE_WITH_NEW_WEIGHTS = ("calibration.json", "confidence_calibration.json")
# reader_config.json settings chosen for the QA service on the shipped reader, not by training
# (the relevance weight: bench/qa_pipeline.py --sweep-relevance-weights); they stay as they were.
SERVING_SETTINGS = ("relevance_weight", "max_relevance_gap")
REPORT_FILE = "dev_eval.json"


def ship(
    candidate: Path, shipped: Path, dev_file: Path, threads: int | None = None, tolerance: float = 0.0
) -> dict[str, Any]:
    """Score both readers on every question of `dev_file`; copy the candidate over if its F1 is
    higher, or lower by less than `tolerance` points."""
    missing = [name for name in MODEL_FILES[:5] if not (candidate / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{candidate} is not a trained reader: {', '.join(missing)} missing")
    examples = load_examples(dev_file, 0, 0)
    scores = {
        name: evaluate(Reader.load(folder, threads=threads), examples)
        for name, folder in (("candidate", candidate), ("shipped", shipped))
    }
    replaced = scores["candidate"]["f1"] > scores["shipped"]["f1"] - tolerance
    report = {
        "dev": str(dev_file),
        "questions": len(examples),
        **scores,
        "tolerance": tolerance,
        "replaced": replaced,
    }
    log.info("dev F1: candidate %.2f, shipped %.2f", scores["candidate"]["f1"], scores["shipped"]["f1"])
    if replaced:
        serving = {name: getattr(ReaderConfig.load(shipped), name) for name in SERVING_SETTINGS}
        for name in MODEL_FILES:  # a file the candidate lacks described the old weights
            if (candidate / name).is_file():
                shutil.copy2(candidate / name, shipped / name)
            else:
                (shipped / name).unlink(missing_ok=True)
        replace(ReaderConfig.load(shipped), **serving).save(shipped)
        log.info("kept the shipped serving settings: %s", serving)
        for name in STALE_WITH_NEW_WEIGHTS:
            (shipped / name).unlink(missing_ok=True)
        (shipped / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.training.ship", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--candidate", type=Path, required=True, help="the training run's --out folder")
    parser.add_argument("--shipped", type=Path, default=Path("models/reader"))
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD v1.1 dev file")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--tolerance", type=float, default=0.0, help="dev F1 points the candidate may lose and still ship"
    )
    args = parser.parse_args(argv)
    if args.tolerance < 0:
        parser.error("--tolerance must be 0 or more")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    report = ship(args.candidate, args.shipped, args.dev, args.threads, args.tolerance)
    print(json.dumps(report, indent=2))
    print("replaced" if report["replaced"] else f"kept {args.shipped}: the candidate is not better")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
