"""The CPU fast path of retrieval/training/train.py on tiny data: bf16 and fp32, length-grouped
batches, the window cache, exact resume in one process, and checkpoints that refuse to be half-read."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from retrieval.reader.features import FeatureConfig, collate, encode_pairs
from retrieval.training.checkpoints import MANIFEST, CheckpointError, verify_checkpoint
from retrieval.training.data import (
    TrainingWindows,
    epoch_batches,
    load_examples,
    load_training_windows,
    training_pairs,
)
from retrieval.training.options import parse_args
from retrieval.training.train import CHECKPOINT_DIR, main, train

FEATURES = FeatureConfig(max_length=96, stride=16)


def argv(squad_file: Path, init_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("--train", str(squad_file), "--dev", str(squad_file), "--out", str(out)),
        *("--init", str(init_dir), "--epochs", "4", "--lr", "3e-3", "--batch-size", "3"),
        *("--max-length", "96", "--stride", "16", "--threads", "1", "--seed", "5"),
        *("--save-dtype", "fp32", "--feature-cache", str(out.parent / "cache")),
        *extra,
    ]


@pytest.fixture(scope="module")
def windows(squad_file, tokenizer) -> TrainingWindows:
    pairs = training_pairs(load_examples(squad_file, 0, 0))
    return TrainingWindows.from_windows(encode_pairs(tokenizer, pairs, FEATURES), range(len(pairs)))


def test_flat_windows_batch_exactly_like_the_serving_collate(squad_file, tokenizer, windows):
    encoded = encode_pairs(tokenizer, training_pairs(load_examples(squad_file, 0, 0)), FEATURES)
    indices = [4, 0, 7]
    expected = collate([encoded[i] for i in indices], tokenizer.pad_token_id, with_labels=True)
    actual = windows.batch(indices, tokenizer.pad_token_id)
    assert actual.keys() == {*expected.keys(), "groups"}
    assert actual["groups"].tolist() == [encoded[i].pair_index for i in indices]
    for name, tensor in expected.items():
        assert torch.equal(actual[name], tensor), name


@pytest.mark.parametrize("group_by_length", [True, False])
def test_every_window_is_trained_exactly_once_per_epoch_in_a_new_order(group_by_length):
    lengths = np.random.default_rng(0).integers(20, 256, size=1000)
    first, second = (
        np.concatenate(epoch_batches(lengths, 8, seed=3, epoch=e, group_by_length=group_by_length))
        for e in (0, 1)
    )
    assert sorted(first.tolist()) == list(range(1000)) == sorted(second.tolist())
    assert first.tolist() != second.tolist()
    again = np.concatenate(epoch_batches(lengths, 8, seed=3, epoch=0, group_by_length=group_by_length))
    assert again.tolist() == first.tolist()  # the order is a function of (seed, epoch): resumable


def test_length_grouping_cuts_padding_and_keeps_the_batch_order_random():
    lengths = np.random.default_rng(1).integers(20, 256, size=4000)

    def padding(batches) -> int:
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    grouped = epoch_batches(lengths, 16, seed=2, epoch=0)
    plain = epoch_batches(lengths, 16, seed=2, epoch=0, group_by_length=False)
    assert padding(grouped) < 0.1 * padding(plain)
    widths = [int(lengths[b].max()) for b in grouped]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_ranks_split_an_epoch_into_equal_shares_that_cover_every_window():
    lengths = np.arange(101) + 10
    shares = [epoch_batches(lengths, 4, seed=1, epoch=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 13  # 26 batches: one repeated to even out 25
    seen = np.concatenate([np.concatenate(s) for s in shares])
    assert set(seen.tolist()) == set(range(101))


def test_windows_are_tokenised_once_and_read_back_from_the_cache(squad_file, tokenizer, tmp_path):
    first = load_training_windows(squad_file, tokenizer, FEATURES, 0, 0, tmp_path)
    cached = list(tmp_path.glob("windows-*.npz"))
    assert len(cached) == 1
    again = load_training_windows(squad_file, tokenizer, FEATURES, 0, 0, tmp_path)
    for name in ("input_ids", "token_type_ids", "offsets", "start_labels", "end_labels"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    other = FeatureConfig(max_length=128, stride=32)
    load_training_windows(squad_file, tokenizer, other, 0, 0, tmp_path)
    assert len(list(tmp_path.glob("windows-*.npz"))) == 2  # other window settings: another cache entry


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_both_precisions_train(precision, squad_file, tiny_model_dir, tmp_path):
    out = tmp_path / "model"
    summary = train(parse_args(argv(squad_file, tiny_model_dir, out, "--precision", precision)))
    losses = [m["train_loss"] for m in summary["history"]]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    weights = load_file(out / CHECKPOINT_DIR / "model.safetensors")
    assert all(t.dtype == torch.float32 for t in weights.values())  # master weights stay fp32


def test_resume_auto_ends_with_the_weights_of_an_uninterrupted_run(squad_file, tiny_model_dir, tmp_path):
    reference = tmp_path / "reference" / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, reference)))

    out = tmp_path / "interrupted" / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, out, "--max-steps", "3", "--resume", "auto")))
    state = json.loads((out / CHECKPOINT_DIR / "trainer_state.json").read_text())
    assert state["global_step"] == 3 and state["batches_done_in_epoch"] == 3  # mid-epoch
    summary = train(parse_args(argv(squad_file, tiny_model_dir, out, "--resume", "auto")))

    assert summary["global_step"] == 16  # 12 windows: 4 batches of 3 per epoch
    final = load_file(out / CHECKPOINT_DIR / "model.safetensors")
    for name, tensor in load_file(reference / CHECKPOINT_DIR / "model.safetensors").items():
        assert torch.equal(final[name], tensor), name


@pytest.fixture
def checkpoint(squad_file, tiny_model_dir, tmp_path) -> Path:
    out = tmp_path / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, out, "--max-steps", "2")))
    verify_checkpoint(out / CHECKPOINT_DIR)
    return out / CHECKPOINT_DIR


def test_a_corrupt_checkpoint_is_refused_with_a_clear_message(checkpoint, squad_file, tiny_model_dir, capsys):
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100] + bytes(100))
    with pytest.raises(CheckpointError, match=r"corrupt: model\.safetensors"):
        verify_checkpoint(checkpoint)
    code = main(argv(squad_file, tiny_model_dir, checkpoint.parent, "--resume", "auto"))
    assert code == 2
    assert "is corrupt" in capsys.readouterr().err


def test_a_partial_checkpoint_is_refused(checkpoint):
    (checkpoint / "trainer.pt").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: trainer\.pt is missing"):
        verify_checkpoint(checkpoint)
    (checkpoint / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="never finished"):
        verify_checkpoint(checkpoint)


def test_a_new_stage_continues_the_run_its_shipped_model_came_from(squad_file, tiny_model_dir, tmp_path):
    """Without its checkpoint (var/ lost between sessions), a run resumes from the shipped model's
    trainer_state.json: the batches not seen yet, at the schedule's step, to the same end."""
    first = tmp_path / "first" / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, first, "--max-steps", "6", "--eval-every", "6")))
    shipped = json.loads((first / "trainer_state.json").read_text())
    assert shipped["global_step"] in (4, 6)  # the best of the evaluations at steps 4 (epoch 1) and 6

    second = tmp_path / "second" / "model"
    summary = train(parse_args(argv(squad_file, first, second, "--resume", "auto")))
    assert summary["global_step"] == 16
    assert [m["step"] for m in summary["history"]] == [8, 12, 16]  # the ends of epochs 2-4 only

    other_seed = tmp_path / "other" / "model"
    fresh = train(parse_args(argv(squad_file, first, other_seed, "--resume", "auto", "--seed", "6")))
    assert [m["step"] for m in fresh["history"]] == [4, 8, 12, 16]  # another data order: from the start


def test_a_new_stage_continues_only_on_the_same_training_data(squad_file, tiny_model_dir, tmp_path):
    """The training file is known by its bytes: moved, the run continues; another file of the same
    name (two domain stages each write a `train.json`) starts from the beginning."""
    first = tmp_path / "first" / "model"
    train(parse_args(argv(squad_file, tiny_model_dir, first, "--max-steps", "4")))
    saved = json.loads((first / "training_args.json").read_text())
    assert saved["train_sha256"] == hashlib.sha256(squad_file.read_bytes()).hexdigest()

    moved = tmp_path / "moved" / squad_file.name
    moved.parent.mkdir()
    moved.write_bytes(squad_file.read_bytes())
    continued = train(parse_args(argv(moved, first, tmp_path / "continued" / "model", "--resume", "auto")))
    assert [m["step"] for m in continued["history"]] == [8, 12, 16]

    other = tmp_path / "other" / squad_file.name
    other.parent.mkdir()
    payload = json.loads(squad_file.read_text())
    payload["data"][0]["paragraphs"][0]["qas"][0]["question"] += " Answer briefly."
    other.write_text(json.dumps(payload), encoding="utf-8")
    fresh = train(parse_args(argv(other, first, tmp_path / "fresh" / "model", "--resume", "auto")))
    assert [m["step"] for m in fresh["history"]] == [4, 8, 12, 16]


def test_windows_tokenised_in_chunks_equal_windows_tokenised_at_once(
    squad_file, tokenizer, windows, monkeypatch
):
    import retrieval.training.data as data

    monkeypatch.setattr(data, "ENCODE_CHUNK", 5)  # 12 questions: chunks of 5, 5 and 2
    chunked = load_training_windows(squad_file, tokenizer, FEATURES, 0, 0, None)
    for name in ("input_ids", "token_type_ids", "offsets", "start_labels", "end_labels", "groups"):
        assert np.array_equal(getattr(chunked, name), getattr(windows, name)), name


FAULTS_PROBE = """
import resource, sys, torch
from retrieval.training.distributed import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
for round in range(6):  # a step's big tensors, allocated, written and freed; the last round is measured
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


ROOT = Path(__file__).resolve().parents[2]  # where `retrieval` imports from
WITH_JEMALLOC = ROOT / "scripts" / "with-jemalloc.sh"
PROBE_PAGES = 4 * 64 * 2**20 // resource.getpagesize()  # a round's pages


def probe_faults(mode: str, *wrapper: str) -> int:
    """Page faults in FAULTS_PROBE's sixth round, run in a fresh process (through `wrapper` if given)."""
    command = [*wrapper, sys.executable, "-c", FAULTS_PROBE, mode]
    return int(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout)


def test_freed_memory_is_reused_instead_of_page_faulted_back_from_the_kernel():
    """Four 64 MiB tensors, one after another, six times: with glibc's defaults every one is
    mapped afresh and each of its 4 KiB pages faults (65,536 in a round); kept, the heap's pages
    are reused once it has grown. The heap takes two or three rounds to grow (it varies from run
    to run, and a third round with one tensor's faults failed CI): in 8 probes of 10 rounds it
    never took more than three, so the sixth is measured."""
    assert probe_faults("default") >= 0.9 * PROBE_PAGES
    assert probe_faults("keep") < 0.05 * PROBE_PAGES


def test_with_jemalloc_reuses_freed_memory_too():
    """scripts/with-jemalloc.sh (what make train-reader runs under) preloads jemalloc told never to
    purge: glibc's defaults in the process, and still no round of page faults once it has grown."""
    if subprocess.run([str(WITH_JEMALLOC), "--library"], capture_output=True).returncode != 0:
        pytest.skip("no libjemalloc.so.2 on this machine (apt-get install libjemalloc2)")
    assert probe_faults("default", str(WITH_JEMALLOC)) < 0.05 * PROBE_PAGES
