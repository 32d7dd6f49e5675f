"""Average the weights of a training run's last checkpoints, or of several readers, into one reader.

    python -m retrieval.training.average --run var/reader-full --last 4 --out var/reader-averaged
    python -m retrieval.training.average --readers var/reader-averaged var/reader-negatives --out var/soup
    make ship-reader READER_RUN=var/reader-averaged

A stage of the reader's run ends wherever the session had to stop, half-way down the learning
rate schedule, where each step still moves the weights around the region the loss is low in.
The mean of the last few checkpoints lies nearer the middle of that region than any one of them
(checkpoint averaging: Vaswani et al. 2017; stochastic weight averaging: Izmailov et al. 2018):
for stage 7 of the shipped reader, the mean of four checkpoints read 0.5 F1 more on the dev half
than the best of them (models/reader/README.md).
The run keeps its checkpoints with `--keep-snapshots N`. The result is a reader folder like the
run's own best model, which `make ship-reader` scores on every dev question and ships only if
it is better; nothing here trusts the average without that.

Readers fine-tuned from the same weights can be averaged too (a "model soup": Wortsman et al.
2022). Stage 8 of the shipped reader is the mean of the main run's average in epoch 2 and a
fine-tuning of stage 7 with negative passages: 81.1 F1 on the dev half where they read 80.6 and
80.3. The soup keeps the first reader's training state, so the run it names continues from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoTokenizer, BertForQuestionAnswering

from retrieval.reader.model import ReaderConfig
from retrieval.training.checkpoints import (
    ARGS_FILE,
    AVERAGED_FILE,
    SNAPSHOT_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    TrainerState,
    list_snapshots,
    save_best,
)
from retrieval.training.train import CHECKPOINT_DIR

log = logging.getLogger(__name__)


def average_weights(snapshots: Sequence[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the snapshots' fp32 weights (one snapshot in memory at a time)."""
    total: dict[str, torch.Tensor] = {}
    for snapshot in snapshots:
        weights = load_file(snapshot / WEIGHTS_FILE)
        if total and weights.keys() != total.keys():
            raise ValueError(f"{snapshot} holds other weights than {snapshots[0]}: not the same model")
        for name, tensor in weights.items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    return {name: (tensor / len(snapshots)).float() for name, tensor in total.items()}


def save_mean(
    folders: Sequence[Path], template: Path, out: Path, save_dtype: str, metadata: dict[str, dict]
) -> None:
    """Save the mean of `folders`' weights to `out` as a reader with `template`'s config, tokenizer
    and reader config, and the metadata files."""
    model = BertForQuestionAnswering(AutoConfig.from_pretrained(template))  # weights come next
    model.load_state_dict(average_weights(folders))
    out.mkdir(parents=True, exist_ok=True)
    save_best(
        out, model, AutoTokenizer.from_pretrained(template), ReaderConfig.load(template), save_dtype, metadata
    )


def average_run(run: Path, last: int, out: Path, save_dtype: str = "fp16") -> dict:
    """Write the mean of `run`'s last `last` snapshots to `out` as a reader; return what was averaged."""
    snapshots = list_snapshots(run / SNAPSHOT_DIR)[-last:]
    if len(snapshots) < 2:
        raise FileNotFoundError(
            f"{run / SNAPSHOT_DIR} holds {len(snapshots)} snapshot(s); averaging needs at least 2 "
            "(train with --keep-snapshots N)"
        )
    states = [TrainerState.load(snapshot) for snapshot in snapshots]
    newest = {key: value for key, value in states[-1].__dict__.items() if key != "history"}
    averaged = {"run": str(run), "steps": [state.global_step for state in states]}
    # The checkpoint holds the model's config and tokenizer, the same for every snapshot.
    save_mean(snapshots, run / CHECKPOINT_DIR, out, save_dtype, {STATE_FILE: newest, AVERAGED_FILE: averaged})
    shutil.copy2(run / ARGS_FILE, out / ARGS_FILE)
    log.info("averaged the weights of steps %s into %s", averaged["steps"], out)
    return averaged


def average_readers(readers: Sequence[Path], out: Path, save_dtype: str = "fp16") -> dict:
    """Write the mean of `readers`' weights to `out` as a reader, with the first one's config, tokenizer
    and training state (the run that continues from it); return what was averaged."""
    if len(readers) < 2:
        raise FileNotFoundError(f"averaging needs at least 2 readers, got {len(readers)}")
    first = readers[0]
    averaged = {"readers": [str(reader) for reader in readers]}
    metadata = {AVERAGED_FILE: averaged}
    if (first / STATE_FILE).is_file():
        metadata[STATE_FILE] = json.loads((first / STATE_FILE).read_text(encoding="utf-8"))
    save_mean(readers, first, out, save_dtype, metadata)
    if (first / ARGS_FILE).is_file():
        shutil.copy2(first / ARGS_FILE, out / ARGS_FILE)
    log.info("averaged the weights of %s into %s", averaged["readers"], out)
    return averaged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.training.average", description=__doc__.split("\n\n")[0]
    )
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--run", type=Path, help="the training run's --out folder")
    sources.add_argument("--readers", type=Path, nargs="+", help="reader folders of the same model")
    parser.add_argument("--last", type=int, default=4, help="how many of the newest snapshots to average")
    parser.add_argument("--out", type=Path, required=True, help="folder for the averaged reader")
    parser.add_argument("--save-dtype", choices=("fp32", "fp16"), default="fp16")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.readers:
            averaged = average_readers(args.readers, args.out, args.save_dtype)
        else:
            averaged = average_run(args.run, args.last, args.out, args.save_dtype)
    except FileNotFoundError as error:
        print(f"error: {error}")
        return 2
    print(json.dumps(averaged))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
