"""Hyperparameter search for the reader: Optuna trials, each one a full DDP training run.

    python -m retrieval.training.tune --train ../shared/data/squad/train-v1.1.json.gz \
        --dev ../shared/data/squad/dev-v1.1.json.gz --trials 20 --nprocs 2 \
        --storage sqlite:///models/tune/study.db --out models/tune --max-train-examples 2000 --threads 1

Each trial trains through `retrieval.training.spawn.spawn_training`; rank 0 sends the dev F1 of every
epoch to this (parent) process while the run goes on, and the parent reports it to Optuna,
which may prune the trial: the ranks are then terminated. Optuna lives only in the parent.
The study is stored in SQLite, so running the same command again adds trials to it.
Options this script does not know are passed to every training run (see `retrieval.training.train --help`).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

from retrieval.training.options import parse_args as parse_training_args
from retrieval.training.spawn import spawn_training
from retrieval.training.train import CHECKPOINT_DIR

log = logging.getLogger("retrieval.training.tune")

# Training options that would break a trial's meaning: resuming mixes runs, mid-epoch evaluations or a
# step limit report something other than one dev F1 per epoch, calibration is done on the final model.
REFUSED_TRAINING_OPTIONS = ("--resume", "--calibrate", "--eval-every", "--max-steps")
SUMMARY_PARAMS = ("lr", "epochs", "batch_size", "warmup_ratio", "weight_decay")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.training.tune",
        description=__doc__.split("\n\n")[0],
        epilog="Any other option (e.g. --max-train-examples, --max-dev-examples, --init, --max-length, "
        "--threads, --seed) goes to every training run.",
        allow_abbrev=False,
    )
    parser.add_argument("--train", type=Path, required=True, help="SQuAD training file (.json or .json.gz)")
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD dev file scored after each epoch")
    parser.add_argument("--out", type=Path, required=True, help="one model directory per trial goes here")
    parser.add_argument("--trials", type=int, required=True, help="trials to run now (added to the study)")
    parser.add_argument("--nprocs", type=int, default=2, help="DDP processes per trial")
    parser.add_argument("--storage", help="Optuna storage URL (default: sqlite:///OUT/study.db)")
    parser.add_argument("--study-name", default="reader")
    parser.add_argument(
        "--best-out", type=Path, help="best parameters as JSON (default: OUT/best_params.json)"
    )
    parser.add_argument("--sampler-seed", type=int, default=13, help="TPE seed (--seed goes to training)")
    parser.add_argument(
        "--startup-trials", type=int, default=3, help="trials that run to the end before pruning starts"
    )
    parser.add_argument(
        "--warmup-epochs", type=int, default=1, help="epochs of each trial that are never pruned"
    )
    space = parser.add_argument_group("search space")
    space.add_argument("--lr", type=float, nargs=2, default=(1e-5, 3e-4), metavar=("LOW", "HIGH"))
    space.add_argument("--epochs", type=int, nargs=2, default=(1, 3), metavar=("LOW", "HIGH"))
    space.add_argument("--batch-sizes", type=int, nargs="+", default=(16, 32), help="per process")
    space.add_argument("--warmup-ratio", type=float, nargs=2, default=(0.0, 0.2), metavar=("LOW", "HIGH"))
    space.add_argument("--weight-decay", type=float, nargs=2, default=(0.0, 0.1), metavar=("LOW", "HIGH"))
    args, training_options = parser.parse_known_args(argv)
    refused = [option for option in training_options if option.split("=")[0] in REFUSED_TRAINING_OPTIONS]
    if refused:
        parser.error(f"not allowed in a search: {' '.join(refused)}")
    args.training_options = training_options
    for path in (args.train, args.dev):
        if not path.is_file():
            parser.error(f"no such file: {path}")
    if args.trials < 1 or args.nprocs < 1:
        parser.error("--trials and --nprocs must be positive")
    for name in ("lr", "epochs", "warmup_ratio", "weight_decay"):
        low, high = getattr(args, name)
        if not 0 <= low <= high:
            parser.error(f"--{name.replace('_', '-')}: need 0 <= LOW <= HIGH, got {low} {high}")
    if args.lr[0] <= 0 or args.epochs[0] < 1 or min(args.batch_sizes) < 1:
        parser.error("--lr, --epochs and --batch-sizes must be positive")
    smallest = {"lr": args.lr[0], "epochs": args.epochs[0], "batch_size": min(args.batch_sizes)}
    smallest |= {"warmup_ratio": args.warmup_ratio[0], "weight_decay": args.weight_decay[0]}
    parse_training_args(training_argv(args, smallest, args.out))  # bad training options fail here, once
    args.storage = args.storage or f"sqlite:///{args.out / 'study.db'}"
    args.best_out = args.best_out or args.out / "best_params.json"
    return args


def suggest(trial: optuna.Trial, args: argparse.Namespace) -> dict[str, Any]:
    """This trial's training hyperparameters, drawn from the search space."""
    return {
        "lr": trial.suggest_float("lr", *args.lr, log=True),
        "epochs": trial.suggest_int("epochs", *args.epochs),
        "batch_size": trial.suggest_categorical("batch_size", list(args.batch_sizes)),
        "warmup_ratio": trial.suggest_float("warmup_ratio", *args.warmup_ratio),
        "weight_decay": trial.suggest_float("weight_decay", *args.weight_decay),
    }


def training_argv(args: argparse.Namespace, params: dict[str, Any], out: Path) -> list[str]:
    """The `retrieval.training.train` command line of one trial."""
    searched = [(f"--{name.replace('_', '-')}", str(value)) for name, value in params.items()]
    fixed = [("--train", str(args.train)), ("--dev", str(args.dev)), ("--out", str(out))]
    return [item for pair in fixed + searched for item in pair] + list(args.training_options)


def make_objective(args: argparse.Namespace):
    """The objective: train with the trial's parameters, report each epoch's dev F1 as it arrives."""

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, args)
        out = args.out / f"trial-{trial.number:03d}"
        trial.set_user_attr("model_dir", str(out))
        log.info("trial %d: %s", trial.number, json.dumps(params))

        def on_epoch(metrics: dict[str, Any]) -> bool:
            trial.report(metrics["f1"], step=metrics["epoch"])
            log.info("trial %d epoch %d: dev F1 %.2f", trial.number, metrics["epoch"], metrics["f1"])
            return not trial.should_prune()

        report = spawn_training(training_argv(args, params, out), args.nprocs, on_epoch=on_epoch)
        trial.set_user_attr("epochs_run", len(report.epochs))
        if report.stopped:
            shutil.rmtree(out, ignore_errors=True)  # a pruned trial's model is of no use
            raise optuna.TrialPruned(f"pruned after epoch {report.epochs[-1]['epoch']}")
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)  # keep the model, not the resumable state
        return report.summary["best_f1"]

    return objective


def existing_trials(storage: str, study_name: str) -> int:
    try:
        return len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:
        return 0


def run_study(args: argparse.Namespace, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Run `args.trials` more trials of the stored study (created on first use) and write the best params.

    The sampler seed is offset by the trials already stored, so a resumed study draws new random
    start-up points instead of repeating the first run's.
    """
    args.out.mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(
        seed=args.sampler_seed + existing_trials(args.storage, args.study_name)
    )
    study = optuna.create_study(
        storage=args.storage,
        study_name=args.study_name,
        direction="maximize",
        sampler=sampler,
        pruner=pruner
        or optuna.pruners.MedianPruner(
            n_startup_trials=args.startup_trials, n_warmup_steps=args.warmup_epochs
        ),
        load_if_exists=True,
    )
    study.optimize(
        make_objective(args),
        n_trials=args.trials,
        catch=(ProcessRaisedException, ProcessExitedException),  # a crashed run is one FAIL trial
    )
    write_best(study, args)
    return study


def write_best(study: optuna.Study, args: argparse.Namespace) -> None:
    """Best trial's parameters, value and model directory, plus the training options it ran with."""
    completed = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise RuntimeError(f"no trial of study {study.study_name!r} has completed; see the log for why")
    best = study.best_trial
    payload = {
        "study_name": study.study_name,
        "storage": args.storage,
        "trial": best.number,
        "dev_f1": best.value,
        "params": best.params,
        "model_dir": best.user_attrs.get("model_dir"),
        "training_options": list(args.training_options),
    }
    args.best_out.parent.mkdir(parents=True, exist_ok=True)
    args.best_out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    log.info("best trial %d (dev F1 %.2f) written to %s", best.number, best.value, args.best_out)


def summary_table(study: optuna.Study) -> str:
    """One line per trial of the study: state, best dev F1, epochs reported, parameters."""
    header = ["trial", "state", "dev F1", "epochs run", *SUMMARY_PARAMS]
    rows = [header]
    for trial in study.trials:
        rows.append(
            [
                str(trial.number),
                trial.state.name,
                "-" if trial.value is None else f"{trial.value:.2f}",
                str(len(trial.intermediate_values)),
                *(_format(trial.params.get(name)) for name in SUMMARY_PARAMS),
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(lines)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        study = run_study(args)
    except (RuntimeError, ValueError) as error:
        log.error("%s", error)
        return 1
    print(summary_table(study))
    return 0


if __name__ == "__main__":
    sys.exit(main())
