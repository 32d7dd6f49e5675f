"""Training from Python: `spawn_training(argv, nprocs)` runs the training script in local processes
(gloo on CPU), as torchrun would, and returns what they reported. Tests and the Optuna search use it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.multiprocessing as mp

from retrieval.training.options import parse_args
from retrieval.training.train import train


@dataclass
class TrainingReport:
    """What the spawned ranks sent back: per-epoch metrics, final summary, each replica's weights digest."""

    epochs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    replica_digests: dict[int, str] = field(default_factory=dict)
    stopped: bool = False  # `on_epoch` asked to stop: the workers were terminated, `summary` is empty


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _spawned_rank(local_rank: int, argv: list[str], nprocs: int, port: int, report) -> None:
    os.environ.update(
        {
            "RANK": str(local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(nprocs),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    train(parse_args(argv), report)


def _terminate(context: mp.ProcessContext) -> None:
    """End every still-running rank: SIGTERM, then SIGKILL for one stuck in a collective."""
    for process in context.processes:
        if process.is_alive():
            process.terminate()
    for process in context.processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join()


def spawn_training(
    argv: Sequence[str], nprocs: int, on_epoch: Callable[[dict[str, Any]], bool] | None = None
) -> TrainingReport:
    """Train with `nprocs` local processes (gloo on CPU); returns what rank 0 (and every replica) reported.

    `on_epoch` sees each evaluation while training goes on (a hyperparameter search prunes with it);
    when it returns False the ranks are terminated and the report comes back with `stopped` set.
    """
    args = parse_args(argv)  # fail fast, in the parent, on bad arguments
    if args.train is None:
        raise ValueError("spawn_training needs --train")
    queue = mp.get_context("spawn").Queue()
    context = mp.spawn(
        _spawned_rank, args=(list(argv), nprocs, _free_port(), queue), nprocs=nprocs, join=False
    )
    report = TrainingReport()

    def drain() -> bool:
        """Take what the ranks sent so far; False as soon as `on_epoch` wants the run stopped."""
        while not queue.empty():
            kind, payload = queue.get()
            if kind == "epoch":
                report.epochs.append(payload)
                if on_epoch is not None and not on_epoch(payload):
                    return False
            elif kind == "replica":
                report.replica_digests[payload["rank"]] = payload["digest"]
            else:
                report.summary = payload
        return True

    try:
        while not context.join(timeout=1):
            if not drain():
                report.stopped = True
                return report
        time.sleep(0.1)  # let the children's queue feeder threads flush their last messages
        report.stopped = not drain()
        return report
    finally:
        _terminate(context)  # on a stop or an error in the parent; a no-op after a finished run
