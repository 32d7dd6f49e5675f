"""Checkpoints that resume exactly and are never half-written, and the shipped best model.

A checkpoint is a folder: the fp32 model and tokenizer, the optimiser and scheduler, every rank's
RNG, where training stands (`trainer_state.json`) and, written last, `manifest.json` with each
file's size and SHA-256. It is built beside the old one and swapped in by renames, so a run
killed at any moment leaves the previous checkpoint or the new one, and loading checks the
manifest, so a partial or corrupt folder is refused with a message instead of resumed.
"""

from __future__ import annotations

import copy
import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from retrieval.digest import file_digest
from retrieval.reader.model import ReaderConfig

MANIFEST = "manifest.json"
ARGS_FILE = "training_args.json"
TRAINER_FILE = "trainer.pt"
STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "model.safetensors"
SNAPSHOT_DIR = "snapshots"  # inside a run's --out: the last --keep-snapshots checkpoints' weights
SNAPSHOT_PREFIX = "step-"
AVERAGED_FILE = "averaged.json"  # in a reader averaged from snapshots: which steps it is the mean of


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be resumed from; the message says why and what to do."""


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint so a resumed run continues exactly there."""

    global_step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0
    windows_seen: int = 0
    train_seconds: float = 0.0
    best_f1: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(json.dumps(self.__dict__, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TrainerState:
        return cls(**json.loads((folder / STATE_FILE).read_text(encoding="utf-8")))


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(
    folder: Path,
    model,
    tokenizer,
    reader_config: ReaderConfig,
    optimizer,
    scheduler,
    state: TrainerState,
    rng_states: list,
) -> None:
    """Write a complete checkpoint at `folder`, replacing the one there only once it is whole.

    With its reader config, a checkpoint also loads as a (fp32) reader, to evaluate it mid-run."""
    staging, retired = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    reader_config.save(staging)
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_states},
        staging / TRAINER_FILE,
    )
    state.save(staging)
    files = sorted(p for p in staging.iterdir() if p.is_file())
    manifest = {p.name: {"bytes": p.stat().st_size, "sha256": file_digest(p)} for p in files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(retired, ignore_errors=True)
    if folder.exists():
        folder.rename(retired)
    staging.rename(folder)
    shutil.rmtree(retired, ignore_errors=True)


def keep_snapshot(checkpoint: Path, snapshots: Path, keep: int) -> Path:
    """Copy a whole checkpoint's weights and state to `snapshots/step-N` and delete all but the
    newest `keep` snapshots: what retrieval.training.average averages."""
    state = TrainerState.load(checkpoint)
    snapshot = snapshots / f"{SNAPSHOT_PREFIX}{state.global_step:06d}"
    staging = snapshot.with_name(snapshot.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in (WEIGHTS_FILE, STATE_FILE):
        shutil.copy2(checkpoint / name, staging / name)
    shutil.rmtree(snapshot, ignore_errors=True)
    staging.rename(snapshot)
    for old in list_snapshots(snapshots)[:-keep]:
        shutil.rmtree(old)
    return snapshot


def list_snapshots(snapshots: Path) -> list[Path]:
    """A run's whole snapshots, oldest first (the zero-padded step sorts them)."""
    if not snapshots.is_dir():
        return []
    return sorted(
        p for p in snapshots.iterdir() if p.name.startswith(SNAPSHOT_PREFIX) and not p.name.endswith(".tmp")
    )


def verify_checkpoint(folder: Path) -> None:
    """Raise CheckpointError unless every file the manifest lists is there with its size and hash."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(
            f"{folder} has no {MANIFEST}: it is not a checkpoint or was never finished; "
            "delete it to start afresh, or resume from another checkpoint"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder} is incomplete: {name} is missing; delete it to start afresh")
        if path.stat().st_size != expected["bytes"] or file_digest(path) != expected["sha256"]:
            raise CheckpointError(f"{folder} is corrupt: {name} does not match its manifest; delete it")


def read_trainer_file(folder: Path) -> dict[str, Any]:
    """The optimiser, scheduler and RNG states of a verified checkpoint."""
    verify_checkpoint(folder)
    return torch.load(folder / TRAINER_FILE, weights_only=False)


# Settings that decide the data order and the schedule: a run continues another only if they match
# and it trained on the same data (TRAIN_DIGEST, the SHA-256 of the training file).
TRAIN_DIGEST = "train_sha256"
SAME_RUN_SETTINGS = (
    "seed",
    "epochs",
    "lr",
    "warmup_ratio",
    "batch_size",
    "grad_accum",
    "max_length",
    "stride",
    "max_train_examples",
    "group_by_length",
    "shared_norm",
    "negatives_same_article",
    "negatives_retrieved",
    "world_size",
)


# Options added after the first runs: a run saved without them trained as with these values.
SETTINGS_BEFORE_THEY_EXISTED = {"shared_norm": False, "negatives_same_article": 0, "negatives_retrieved": 0}


def continued_run(init: Path, settings: dict[str, Any]) -> TrainerState | None:
    """Where the run that saved the model in `init` stopped, if it had these data order and schedule
    settings (the training arguments); None otherwise.

    A training stage outlives no session and var/ may not survive one, but a shipped model carries
    its trainer_state.json: the next stage then continues on the batches not seen yet, at the
    learning rate the schedule had reached (only the optimiser's moments start afresh)."""
    if not (init / STATE_FILE).is_file() or not (init / ARGS_FILE).is_file():
        return None
    saved = {**SETTINGS_BEFORE_THEY_EXISTED, **json.loads((init / ARGS_FILE).read_text(encoding="utf-8"))}

    # The same training data: the same bytes wherever the file now lies (runs may start elsewhere).
    # Models saved before the digest was recorded compare the path as given: two domain stages
    # both train on a `train.json`, so the file's name alone is not enough.
    if TRAIN_DIGEST in saved:
        same_data = saved[TRAIN_DIGEST] == settings.get(TRAIN_DIGEST)
    else:
        same_data = str(saved["train"]) == str(settings["train"])
    same_run = all(saved.get(key) == settings.get(key) for key in SAME_RUN_SETTINGS)
    return TrainerState.load(init) if same_data and same_run else None


def save_best(
    out: Path, model, tokenizer, reader_config: ReaderConfig, save_dtype: str, metadata: dict[str, Any]
) -> None:
    """The shipped model: weights in `save_dtype` (fp16 keeps MiniLM under 50 MB), tokenizer, reader
    config, and the metadata files (training_args.json, metrics.json, trainer_state.json ...)."""
    shipped = copy.deepcopy(model).to(torch.float16 if save_dtype == "fp16" else torch.float32)
    shipped.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reader_config.save(out)
    for name, payload in metadata.items():
        (out / name).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
