"""Optuna search over two-process gloo training runs, stored in real SQLite, resumed, and pruned."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import optuna
import pytest

from retrieval.training.tune import main, parse_args, run_study

EPOCHS = 2


def tune_argv(squad_file: Path, init_dir: Path, out: Path, trials: int, epochs: int = EPOCHS) -> list[str]:
    """A search of the tiny model on the tiny QA set; the last options go to every training run."""
    return [
        *("--train", str(squad_file), "--dev", str(squad_file), "--out", str(out)),
        *("--trials", str(trials), "--nprocs", "2", "--storage", f"sqlite:///{out / 'study.db'}"),
        *("--lr", "1e-3", "5e-3", "--epochs", str(epochs), str(epochs), "--batch-sizes", "2", "4"),
        *("--init", str(init_dir), "--max-length", "96", "--stride", "16", "--threads", "1"),
        *("--save-dtype", "fp32", "--max-train-examples", "8"),
    ]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, squad_file, tiny_model_dir):
    """Two trials, then the same command with one more trial: the study as it was after each run."""
    out = tmp_path_factory.mktemp("tune")
    storage = f"sqlite:///{out / 'study.db'}"
    assert main(tune_argv(squad_file, tiny_model_dir, out, trials=2)) == 0
    first = optuna.load_study(study_name="reader", storage=storage).trials
    best = json.loads((out / "best_params.json").read_text())
    assert main(tune_argv(squad_file, tiny_model_dir, out, trials=1)) == 0
    second = optuna.load_study(study_name="reader", storage=storage).trials
    return out, first, best, second


def test_each_trial_reports_dev_f1_for_every_epoch(two_runs):
    _, first, _, _ = two_runs
    assert [t.state for t in first] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in first:
        assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1))
        assert all(0.0 <= f1 <= 100.0 for f1 in trial.intermediate_values.values())
        assert trial.value == max(trial.intermediate_values.values())  # the kept model is the best epoch
        assert set(trial.params) == {"lr", "epochs", "batch_size", "warmup_ratio", "weight_decay"}
        assert 1e-3 <= trial.params["lr"] <= 5e-3 and trial.params["batch_size"] in (2, 4)


def test_best_params_are_written_and_point_at_a_trained_model(two_runs):
    _, first, best, _ = two_runs
    winner = max(first, key=lambda t: t.value)
    assert best["trial"] == winner.number and best["params"] == winner.params
    assert best["dev_f1"] == winner.value
    model_dir = Path(best["model_dir"])
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "reader_config.json").is_file()
    assert not (model_dir / "checkpoint").exists()  # the resumable state is dropped after a trial
    assert "--max-train-examples" in best["training_options"]


def test_running_again_adds_trials_to_the_stored_study(two_runs):
    out, first, _, second = two_runs
    assert [t.number for t in second] == [0, 1, 2]
    assert [t.params for t in second[:2]] == [t.params for t in first]
    assert second[2].state == optuna.trial.TrialState.COMPLETE
    assert second[2].params["lr"] not in {t.params["lr"] for t in first}  # reseeded: not a repeat
    assert (out / "trial-002" / "model.safetensors").is_file()


class PruneAlways(optuna.pruners.BasePruner):
    """A real pruner with the simplest rule: stop every trial at its first report."""

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_a_pruned_trial_stops_its_workers(tmp_path, squad_file, tiny_model_dir):
    args = parse_args(tune_argv(squad_file, tiny_model_dir, tmp_path, trials=1, epochs=20))
    with pytest.raises(RuntimeError, match="no trial of study 'reader' has completed"):
        run_study(args, pruner=PruneAlways())
    (trial,) = optuna.load_study(study_name="reader", storage=args.storage).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]
    assert trial.user_attrs["epochs_run"] == 1
    assert multiprocessing.active_children() == []  # both ranks are gone, not left training 19 epochs
    assert not (tmp_path / "trial-000").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eval-every", "5"], "not allowed in a search: --eval-every"),
        (["--lr", "1e-3", "1e-4"], "need 0 <= LOW <= HIGH"),
        (["--max-length", "20"], "leaves no room for a passage"),  # a training option, checked up front
    ],
)
def test_bad_options_are_refused_before_any_trial(
    tmp_path, squad_file, tiny_model_dir, capsys, extra, message
):
    with pytest.raises(SystemExit):
        parse_args(tune_argv(squad_file, tiny_model_dir, tmp_path, trials=1) + extra)
    assert message in capsys.readouterr().err
    assert not (tmp_path / "study.db").exists()
