"""Shipping a trained reader: it replaces the shipped one only when it scores better on the dev set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrieval.reader.model import ReaderConfig
from retrieval.training.options import parse_args
from retrieval.training.ship import REPORT_FILE, ship
from retrieval.training.train import train


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, squad_file, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("run") / "model"
    argv = [
        *("--train", str(squad_file), "--dev", str(squad_file), "--out", str(out)),
        *("--init", str(tiny_model_dir), "--epochs", "6", "--lr", "3e-3", "--batch-size", "3"),
        *("--max-length", "96", "--stride", "16", "--threads", "1", "--feature-cache", ""),
    ]
    assert train(parse_args(argv))["best_f1"] > 20.0
    return out


@pytest.fixture
def untrained_reader(tmp_path, tiny_model_dir) -> Path:
    """The tiny model with its random QA head, saved as a reader: F1 near 0."""
    folder = tmp_path / "untrained"
    shutil.copytree(tiny_model_dir, folder)
    ReaderConfig().save(folder)
    return folder


def test_a_better_reader_replaces_the_shipped_one(trained_run, untrained_reader, squad_file):
    shipped = untrained_reader
    ReaderConfig(relevance_weight=60.0, max_relevance_gap=0.3).save(shipped)  # tuned for the service
    (shipped / "README.md").write_text("model card\n")
    (shipped / "calibration.json").write_text("{}\n")
    (shipped / "confidence_calibration.json").write_text("{}\n")

    report = ship(trained_run, shipped, squad_file, threads=1)

    assert report["replaced"] and report["candidate"]["f1"] > report["shipped"]["f1"]
    assert (shipped / "model.safetensors").read_bytes() == (trained_run / "model.safetensors").read_bytes()
    assert (shipped / "README.md").read_text() == "model card\n"  # the card is the shipped one's
    served = ReaderConfig.load(shipped)
    assert (served.relevance_weight, served.max_relevance_gap) == (
        60.0,
        0.3,
    )  # serving settings, not the run's
    assert not (shipped / "calibration.json").exists()  # it described the old weights
    assert not (shipped / "confidence_calibration.json").exists()
    assert json.loads((shipped / REPORT_FILE).read_text())["candidate"] == report["candidate"]


def test_a_worse_reader_leaves_the_shipped_one_alone(trained_run, untrained_reader, squad_file):
    before = {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()}

    report = ship(untrained_reader, trained_run, squad_file, threads=1)

    assert not report["replaced"] and report["candidate"]["f1"] < report["shipped"]["f1"]
    assert {p.name: p.read_bytes() for p in trained_run.iterdir() if p.is_file()} == before


def test_a_folder_without_a_model_is_refused(tmp_path, tiny_model_dir, squad_file):
    with pytest.raises(FileNotFoundError, match="not a trained reader"):
        ship(tmp_path, tiny_model_dir, squad_file)


def test_a_worse_reader_ships_only_within_the_tolerance(trained_run, untrained_reader, squad_file, tmp_path):
    shipped = tmp_path / "shipped"
    shutil.copytree(trained_run, shipped, ignore=shutil.ignore_patterns("checkpoint", "snapshots"))

    refused = ship(untrained_reader, shipped, squad_file, threads=1, tolerance=0.5)
    gap = refused["shipped"]["f1"] - refused["candidate"]["f1"]
    assert not refused["replaced"] and gap > 0.5
    accepted = ship(untrained_reader, shipped, squad_file, threads=1, tolerance=gap + 0.5)

    assert accepted["replaced"] and accepted["tolerance"] == gap + 0.5
    weights = (untrained_reader / "model.safetensors").read_bytes()
    assert (shipped / "model.safetensors").read_bytes() == weights
