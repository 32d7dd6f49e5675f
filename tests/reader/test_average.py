"""Checkpoint averaging: a run keeps its last checkpoints' weights, and their mean is a reader
that `make ship-reader` can score and ship like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retrieval.reader.model import Reader
from retrieval.training.average import average_readers, average_run, main
from retrieval.training.checkpoints import AVERAGED_FILE, SNAPSHOT_DIR, list_snapshots
from retrieval.training.data import load_examples
from retrieval.training.evaluation import evaluate
from retrieval.training.options import parse_args
from retrieval.training.ship import ship
from retrieval.training.train import train
from tests.reader.test_training_fast_path import argv


@pytest.fixture(scope="module")
def run(tmp_path_factory, squad_file, tiny_model_dir) -> Path:
    """Four epochs of 4 steps, a checkpoint at each epoch's end, the last 3 kept as snapshots."""
    out = tmp_path_factory.mktemp("run") / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, out, "--keep-snapshots", "3")))
    return out


def test_a_run_keeps_only_its_newest_snapshots(run):
    snapshots = list_snapshots(run / SNAPSHOT_DIR)
    assert [p.name for p in snapshots] == ["step-000008", "step-000012", "step-000016"]
    for snapshot in snapshots:
        state = json.loads((snapshot / "trainer_state.json").read_text())
        assert f"step-{state['global_step']:06d}" == snapshot.name  # the weights' own state


def test_the_averaged_reader_holds_the_mean_of_the_snapshots_weights(run, tmp_path, squad_file):
    out = tmp_path / "averaged"
    averaged = average_run(run, 2, out, save_dtype="fp32")

    assert averaged["steps"] == [12, 16]
    assert json.loads((out / AVERAGED_FILE).read_text())["steps"] == [12, 16]
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 16
    newest = [load_file(p / "model.safetensors") for p in list_snapshots(run / SNAPSHOT_DIR)[-2:]]
    mean = load_file(out / "model.safetensors")
    for name, tensor in mean.items():
        torch.testing.assert_close(tensor, (newest[0][name] + newest[1][name]) / 2, rtol=0, atol=1e-6)
    assert any(not torch.equal(newest[0][name], newest[1][name]) for name in mean)  # a real mean

    reader = Reader.load(out, threads=1)  # loads and reads like any reader
    assert evaluate(reader, load_examples(squad_file, 0, 0))["f1"] > 20.0


def test_readers_average_into_a_soup_that_keeps_the_first_ones_state(run, tmp_path, squad_file):
    """Two readers of the same model: the soup holds their mean and the first one's training state."""
    older, newer = tmp_path / "older", tmp_path / "newer"
    average_run(run, 2, older, save_dtype="fp32")  # steps 12 and 16
    average_run(run, 3, newer, save_dtype="fp32")  # steps 8, 12 and 16
    assert (
        main(["--readers", str(newer), str(older), "--out", str(tmp_path / "soup"), "--save-dtype", "fp32"])
        == 0
    )

    soup = tmp_path / "soup"
    parts = [load_file(folder / "model.safetensors") for folder in (newer, older)]
    for name, tensor in load_file(soup / "model.safetensors").items():
        torch.testing.assert_close(tensor, (parts[0][name] + parts[1][name]) / 2, rtol=0, atol=1e-6)
    assert json.loads((soup / AVERAGED_FILE).read_text())["readers"] == [str(newer), str(older)]
    assert json.loads((soup / "trainer_state.json").read_text())["global_step"] == 16
    assert (soup / "training_args.json").read_text() == (newer / "training_args.json").read_text()
    assert evaluate(Reader.load(soup, threads=1), load_examples(squad_file, 0, 0))["f1"] > 20.0
    with pytest.raises(FileNotFoundError, match="at least 2 readers"):
        average_readers([newer], tmp_path / "alone")


def test_ship_drops_the_averaging_record_when_plain_weights_replace_averaged_ones(
    run, tmp_path, squad_file, tiny_model_dir
):
    averaged = tmp_path / "averaged"
    average_run(run, 3, averaged)
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for path in averaged.iterdir():
        (shipped / path.name).write_bytes(path.read_bytes())
    (shipped / "metrics.json").unlink(missing_ok=True)
    # a worse shipped model carrying an averaging record: the tiny untrained encoder
    for name in ("model.safetensors", "config.json"):
        (shipped / name).write_bytes((tiny_model_dir / name).read_bytes())

    report = ship(run, shipped, squad_file, threads=1)

    assert report["replaced"]
    assert not (shipped / AVERAGED_FILE).exists()  # it described the weights that were replaced


def test_averaging_needs_two_snapshots(tmp_path, squad_file, tiny_model_dir, capsys):
    out = tmp_path / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, out, "--max-steps", "2", "--keep-snapshots", "5")))
    assert len(list_snapshots(out / SNAPSHOT_DIR)) == 1

    assert main(["--run", str(out), "--out", str(tmp_path / "averaged")]) == 2
    assert "1 snapshot(s); averaging needs at least 2" in capsys.readouterr().out
