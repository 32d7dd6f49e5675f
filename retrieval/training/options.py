"""The training script's command line: every option with its default, checked before any work starts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from retrieval.reader.features import FeatureConfig

DEFAULT_FEATURE_CACHE = Path("var/cache/train-windows")
DESCRIPTION = "Fine-tune the reader (BERT span extraction) on SQuAD with DistributedDataParallel."


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m retrieval.training.train", description=DESCRIPTION)
    parser.add_argument("--train", type=Path, help="SQuAD training file (.json or .json.gz)")
    parser.add_argument(
        "--dev", type=Path, help="SQuAD dev file evaluated after each epoch (v2.0 adds HasAns/NoAns)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="model directory: best model + checkpoint/ for --resume"
    )
    parser.add_argument(
        "--init", default=None, help="model to start from (default: packaged all-MiniLM-L6-v2)"
    )
    parser.add_argument(
        "--resume",
        help="a checkpoint directory to continue from, or 'auto': OUT/checkpoint if there is one, else "
        "the data position and schedule --init was saved at by the same run settings (see continued_run)",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32, help="windows per process per micro-batch")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--stride", type=int, default=96, help="tokens shared by consecutive windows of a long passage"
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="autocast dtype; auto: bf16 where the GPU or CPU computes it natively (weights stay fp32)",
    )
    parser.add_argument(
        "--attention",
        choices=("auto", "eager", "sdpa"),
        default="auto",
        help="attention kernels; auto: eager on CPU (PyTorch's CPU flash-attention backward is slower "
        "for MiniLM's 32-wide heads), sdpa on GPU",
    )
    parser.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="on CPU, have glibc reuse freed memory instead of returning it to the kernel after every "
        "step: ~1.45x windows/s, but the process keeps growing (see distributed.keep_freed_memory)",
    )
    parser.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch windows of similar length together (shuffled groups)",
    )
    parser.add_argument(
        "--shared-norm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="normalise span scores across all windows of a question (batches keep them together)",
    )
    parser.add_argument(
        "--negatives-same-article", type=int, default=0, help="passages without the answer from its article"
    )
    parser.add_argument(
        "--negatives-retrieved", type=int, default=0, help="best BM25 passages without the answer"
    )
    parser.add_argument(
        "--feature-cache",
        type=Path,
        default=DEFAULT_FEATURE_CACHE,
        help="folder for tokenised training windows ('' disables)",
    )
    parser.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        help="also checkpoint this often (0 = only at evals)",
    )
    parser.add_argument(
        "--keep-snapshots",
        type=int,
        default=0,
        help="keep the weights of the last N checkpoints in OUT/snapshots (retrieval.training.average)",
    )
    parser.add_argument(
        "--max-train-examples", type=int, default=0, help="random subset of training questions (0 = all)"
    )
    parser.add_argument(
        "--max-dev-examples", type=int, default=0, help="random subset of dev questions (0 = all)"
    )
    parser.add_argument(
        "--max-steps", type=int, default=0, help="stop (with a checkpoint) after this many optimiser steps"
    )
    parser.add_argument(
        "--eval-every", type=int, default=0, help="also evaluate + checkpoint every N steps (0 = per epoch)"
    )
    parser.add_argument("--log-every", type=int, default=10, help="optimiser steps between log lines")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads per process (0 = torch default)"
    )
    parser.add_argument(
        "--save-dtype", choices=("fp32", "fp16"), default="fp16", help="dtype of the shipped best model"
    )
    parser.add_argument(
        "--calibrate", type=Path, help="SQuAD 2.0 dev file: pick the abstention threshold for --out"
    )
    args = parser.parse_args(argv)
    if args.train is None and args.calibrate is None:
        parser.error("--train (with --dev) or --calibrate is required")
    if args.train is not None and args.dev is None:
        parser.error("--dev is required with --train")
    for path in (args.train, args.dev, args.calibrate):
        if path is not None and not path.is_file():
            parser.error(f"no such file: {path}")
    if args.batch_size < 1 or args.grad_accum < 1 or args.epochs < 1:
        parser.error("--batch-size, --grad-accum and --epochs must be positive")
    if args.keep_snapshots < 0:
        parser.error("--keep-snapshots must be 0 or more")
    try:
        FeatureConfig(max_length=args.max_length, stride=args.stride)
    except ValueError as error:
        parser.error(str(error))
    if args.feature_cache == Path(""):
        args.feature_cache = None
    return args
