"""Two-process gloo training through torch.multiprocessing.spawn, checkpoints, resume and calibration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retrieval.documents import Passage
from retrieval.reader.model import Reader
from retrieval.training.evaluation import MAX_WITHHELD_RIGHT, MIN_ANSWERED_SHARE, calibrate, usable_threshold
from retrieval.training.spawn import spawn_training

EPOCHS = 6


def training_argv(squad_file: Path, init_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--train",
        str(squad_file),
        "--dev",
        str(squad_file),
        "--out",
        str(out),
        "--init",
        str(init_dir),
        "--epochs",
        str(EPOCHS),
        "--lr",
        "3e-3",
        "--batch-size",
        "2",
        "--grad-accum",
        "2",
        "--warmup-ratio",
        "0.1",
        "--max-length",
        "96",
        "--stride",
        "16",
        "--threads",
        "1",
        "--seed",
        "7",
        "--save-dtype",
        "fp32",
        *extra,
    ]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, squad_file, tiny_model_dir):
    out = tmp_path_factory.mktemp("run") / "model"
    return out, spawn_training(training_argv(squad_file, tiny_model_dir, out), nprocs=2)


def test_parent_receives_metrics_per_epoch_and_at_the_end(full_run):
    _, report = full_run
    assert [m["epoch"] for m in report.epochs] == list(range(1, EPOCHS + 1))
    assert all(0.0 <= m["exact"] <= m["f1"] <= 100.0 and m["total"] == 12 for m in report.epochs)
    assert report.summary["epoch"] == EPOCHS
    assert report.summary["best_f1"] == max(m["f1"] for m in report.epochs)


def test_loss_goes_down(full_run):
    _, report = full_run
    losses = [m["train_loss"] for m in report.epochs]
    assert losses[-1] < 0.7 * losses[0], losses


def test_replicas_hold_identical_weights(full_run):
    _, report = full_run
    assert set(report.replica_digests) == {0, 1}
    assert report.replica_digests[0] == report.replica_digests[1]


def test_best_checkpoint_reloads_with_the_same_predictions(full_run, squad_file):
    out, report = full_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["best"]["f1"] == report.summary["best_f1"]
    assert json.loads((out / "training_args.json").read_text())["world_size"] == 2
    assert (out / "model.safetensors").is_file() and (out / "reader_config.json").is_file()

    # Evaluating the reloaded model reproduces the metrics computed during training.
    from retrieval.training.data import load_examples
    from retrieval.training.evaluation import evaluate

    reloaded = Reader.load(out, threads=1)
    assert evaluate(reloaded, load_examples(squad_file, 0, 7)) == {
        k: v for k, v in saved["best"].items() if k not in ("epoch", "step", "windows_seen", "train_loss")
    }
    passage = Passage(
        "p1", "Lighthouses", "The Brightwater lighthouse was built in 1871 by the engineer Mara Okafor."
    )
    first = Reader.load(out).answer("Who built the Brightwater lighthouse?", [passage])
    second = reloaded.answer("Who built the Brightwater lighthouse?", [passage])
    assert first == second
    assert passage.text[first.start : first.end] == first.text


def test_resume_continues_where_it_stopped_and_matches_an_uninterrupted_run(
    full_run, tmp_path, squad_file, tiny_model_dir
):
    full_out, full_report = full_run
    out = tmp_path / "model"
    interrupted = spawn_training(training_argv(squad_file, tiny_model_dir, out, "--max-steps", "5"), nprocs=2)
    assert interrupted.summary["global_step"] == 5
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["global_step"] == 5 and state["batches_done_in_epoch"] > 0  # stopped mid-epoch

    resumed = spawn_training(
        training_argv(squad_file, tiny_model_dir, out, "--resume", str(out / "checkpoint")), nprocs=2
    )
    assert resumed.summary["global_step"] == full_report.summary["global_step"]
    assert resumed.replica_digests[0] == resumed.replica_digests[1]
    final = load_file(out / "checkpoint" / "model.safetensors")
    reference = load_file(full_out / "checkpoint" / "model.safetensors")
    for name, tensor in reference.items():
        torch.testing.assert_close(final[name], tensor, rtol=1e-5, atol=1e-6)
    assert [m["f1"] for m in resumed.epochs] == [m["f1"] for m in full_report.epochs][-len(resumed.epochs) :]


def test_calibration_stores_a_threshold_that_maximises_squad2_f1(full_run, squad_v2_file, tmp_path):
    out, _ = full_run
    model_dir = tmp_path / "calibrated"
    model_dir.mkdir()
    for path in out.iterdir():
        if path.is_file():
            (model_dir / path.name).write_bytes(path.read_bytes())
    result = calibrate(model_dir, squad_v2_file)
    stored = json.loads((model_dir / "reader_config.json").read_text())["abstain_threshold"]
    assert stored == result["abstain_threshold"]
    scores = result["scores"]
    assert scores["HasAns_total"] == 12 and scores["NoAns_total"] == 2
    assert result["f1_at_best_f1_threshold"] >= result["scores_never_abstaining"]["f1"]
    kept = (
        result["answerable_share_answered_at_best_f1_threshold"] >= MIN_ANSWERED_SHARE
        and result["withheld_answerable_right_at_best_f1_threshold"] < MAX_WITHHELD_RIGHT
    )
    if kept:
        assert stored == result["best_f1_threshold"]
        assert scores["f1"] == pytest.approx(result["f1_at_best_f1_threshold"])
    else:  # the tiny model cannot tell unanswerable questions apart: it answers everything
        assert stored == 0.0 and scores == result["scores_never_abstaining"]
    assert Reader.load(model_dir).config.abstain_threshold == stored


def test_a_threshold_that_answers_too_few_answerable_questions_is_not_kept():
    answerable = [(0.95, True), (0.2, False), (0.3, True)]

    assert usable_threshold(0.25, answerable) == (0.25, pytest.approx(2 / 3), 0.0)
    assert usable_threshold(0.9, answerable) == (0.0, pytest.approx(1 / 3), 0.5)


def test_a_threshold_that_withholds_mostly_right_answers_is_not_kept():
    """Both answer 3 of 5; an answer withheld that is right as often as not is better given with a hedge."""
    withholds_wrong = [(0.9, True), (0.8, True), (0.7, False), (0.2, False), (0.1, False)]
    withholds_half_right = [(0.9, True), (0.8, True), (0.7, False), (0.2, True), (0.1, False)]

    assert usable_threshold(0.5, withholds_wrong) == (0.5, pytest.approx(0.6), 0.0)
    assert usable_threshold(0.5, withholds_half_right) == (0.0, pytest.approx(0.6), 0.5)


def test_calibration_rejects_a_file_without_unanswerable_questions(full_run, squad_file):
    out, _ = full_run
    with pytest.raises(ValueError, match="no unanswerable questions"):
        calibrate(out, squad_file)
