"""Training throughput of the reader: the project's loop (retrieval/train.py) against a plain Hugging Face
Trainer, same model, same windows in the same order, same batch size and max length, in the same run.

Each contender runs in its own child process (clean peak memory): the project's `train()` under
`torchrun --standalone --nproc_per_node 1`, exactly as documented, and `transformers.Trainer` on
BertForQuestionAnswering from the same packaged encoder. Throughput is timed over the optimiser steps
after a warm-up, never including model loading, featurisation or train.py's evaluation/checkpoint.
On CUDA both use bf16 autocast; on CPU both run fp32 (smoke numbers: GPU numbers need a GPU host).

    .venv/bin/python bench/train_throughput.py --train ../shared/data/squad/train-v1.1.json.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and would hide the `retrieval` package.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.common import CACHE_DIR, RESULTS_DIR, require_files, save_plot, write_report  # noqa: E402
from retrieval.qa_features import FeatureConfig, Window, collate, encode_pairs  # noqa: E402
from retrieval.train import default_init_dir, load_examples, training_pairs  # noqa: E402

BASELINE = "hf-trainer"
PROJECT = "project-train.py"
CONTENDERS = (BASELINE, PROJECT)  # the baseline runs first
# train.py's progress line: "step 12/345 loss 1.2345 lr 1.00e-04 56.7 samples/s"
STEP_LINE = re.compile(r"^step (\d+)/\d+ loss \S+ lr \S+ ([\d.]+) samples/s$")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="SQuAD train-v1.1.json.gz")
    parser.add_argument("--steps", type=int, default=6, help="timed optimiser steps (after the warm-up)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed optimiser steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per optimiser step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument(
        "--examples", type=int, default=0, help="questions in the subset (0 = enough windows for all steps)"
    )
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument(
        "--epoch-windows",
        type=int,
        default=0,
        help="windows in one epoch of --train for the projection (0 = count them once, cached in /tmp)",
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per contender")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_throughput.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "train_throughput.png")
    # Internal: the script re-runs itself as one contender's child process.
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup_steps < 1 or args.batch_size < 1:
        parser.error("--steps, --warmup-steps and --batch-size must be positive")
    if args.examples < 0 or args.epoch_windows < 0:
        parser.error("--examples and --epoch-windows must not be negative")
    try:
        FeatureConfig(max_length=args.max_length, stride=args.stride)
    except ValueError as error:
        parser.error(str(error))
    require_files([args.train])
    if not args.examples:
        args.examples = math.ceil(1.1 * total_steps(args) * args.batch_size)
    return args


def total_steps(args: argparse.Namespace) -> int:
    return args.warmup_steps + args.steps


def sync_every(args: argparse.Namespace) -> int:
    """Steps between timing points: train.py's log lines (its only host syncs) must fall exactly on the
    end of the warm-up and on the last step, so they come every gcd(warm-up, steps) steps."""
    return math.gcd(args.warmup_steps, args.steps)


# ----------------------------------------------------------------------------- data


def subset_windows(args: argparse.Namespace, tokenizer) -> list[Window]:
    """The training windows train.py builds from the same subset, with the project's preprocessing."""
    config = FeatureConfig(max_length=args.max_length, stride=args.stride)
    pairs = training_pairs(load_examples(args.train, args.examples, args.seed))
    windows = encode_pairs(tokenizer, pairs, config)
    needed = total_steps(args) * args.batch_size
    if len(windows) < needed:
        raise SystemExit(
            f"{len(windows)} windows from {args.examples} questions, {needed} needed: raise --examples"
        )
    return windows


def epoch_windows(args: argparse.Namespace) -> int:
    """Windows in one epoch of the whole --train file, counted once with the project's preprocessing and
    cached under /tmp (keyed by file, tokenizer and window geometry)."""
    from transformers import AutoTokenizer

    init_dir = default_init_dir()
    source = args.train.resolve()
    stat = source.stat()
    key = "|".join(map(str, (source, stat.st_size, stat.st_mtime_ns, init_dir, args.max_length, args.stride)))
    cache = CACHE_DIR / f"epoch-windows-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["windows"]
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    config = FeatureConfig(max_length=args.max_length, stride=args.stride)
    pairs = training_pairs(load_examples(args.train, 0, args.seed))
    chunk = 4096  # windows are counted and dropped chunk by chunk: all of them at once take gigabytes
    count = sum(
        len(encode_pairs(tokenizer, pairs[start : start + chunk], config))
        for start in tqdm(range(0, len(pairs), chunk), desc="counting epoch windows")
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"windows": count, "questions": len(pairs), "key": key}))
    return count


# ----------------------------------------------------------------------------- measurement (child processes)


def peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak_memory_mb": peak / 2**20, "memory": "cuda max allocated"}
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return {"peak_memory_mb": kilobytes / 1024, "memory": "process max RSS"}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"CPU: {line.split(':', 1)[1].strip()}"
    return f"CPU: {platform.processor() or platform.machine()}"


def measure_project(args: argparse.Namespace) -> dict[str, Any]:
    """retrieval.train's own `train()` (this process is a torchrun worker), timed by its own log lines:
    --log-every is gcd(warm-up, steps), so lines fall on the end of the warm-up and on the last step.
    Their record timestamps give the seconds (train.py prints samples/s rounded to 0.1, kept as a check)."""
    from retrieval import train as project

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lines: list[tuple[int, float, float]] = []  # (step, samples/s as printed, when it was logged)
    memory: dict[str, Any] = {}

    class StepLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            match = STEP_LINE.match(record.getMessage())
            if match:
                lines.append((int(match[1]), float(match[2]), record.created))
                if int(match[1]) == total_steps(args):
                    memory.update(peak_memory(device))  # before train.py's evaluation and checkpoint

    project.log.addHandler(StepLines())  # train() resets the root handlers, not this logger's
    with tempfile.TemporaryDirectory(prefix="throughput-project-") as out:
        argv = [
            *("--train", str(args.train), "--dev", str(args.train), "--max-dev-examples", "1"),
            *("--out", out, "--epochs", "1", "--batch-size", str(args.batch_size), "--lr", str(args.lr)),
            *("--max-length", str(args.max_length), "--stride", str(args.stride), "--seed", str(args.seed)),
            *("--max-train-examples", str(args.examples), "--max-steps", str(total_steps(args))),
            *("--log-every", str(sync_every(args)), "--threads", str(args.threads)),
        ]
        project.train(project.parse_args(argv))
    backend = "nccl" if device.type == "cuda" else "gloo"
    logged_at = {step: created for step, _, created in lines}
    if args.warmup_steps not in logged_at or total_steps(args) not in logged_at:
        raise SystemExit(
            f"train.py logged steps {list(logged_at)}, not {args.warmup_steps} and {total_steps(args)}"
        )
    return {
        "steps": args.steps,
        "windows": args.steps * args.batch_size,
        "seconds": logged_at[total_steps(args)] - logged_at[args.warmup_steps],
        "logged_samples_per_s": [rate for step, rate, _ in lines if step > args.warmup_steps],
        "how": "timestamps of train.py's own step log lines at the end of the warm-up and the last step",
        "optimizer": "adamw (torch.optim.AdamW defaults)",
        "distributed": f"torchrun --standalone --nproc_per_node 1 (DDP over {backend})",
        **memory,
    }


def measure_trainer(args: argparse.Namespace) -> dict[str, Any]:
    """A plain transformers.Trainer on the same windows in train.py's order, timed by a callback at the
    same step boundaries where train.py syncs (its log lines), data loading included as in train.py."""
    from torch.utils.data import DistributedSampler
    from transformers import (
        AutoTokenizer,
        BertForQuestionAnswering,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    init_dir = default_init_dir()
    tokenizer = AutoTokenizer.from_pretrained(init_dir)
    windows = subset_windows(args, tokenizer)
    order = list(DistributedSampler(windows, num_replicas=1, rank=0, shuffle=True, seed=args.seed))
    dataset = [
        {
            "input_ids": list(windows[i].input_ids),
            "token_type_ids": list(windows[i].token_type_ids),
            "attention_mask": [1] * len(windows[i].input_ids),
            "start_positions": windows[i].start_label,
            "end_positions": windows[i].end_label,
        }
        for i in order
    ]
    collator = DataCollatorWithPadding(tokenizer)
    ours = collate([windows[i] for i in order[: args.batch_size]], tokenizer.pad_token_id, with_labels=True)
    theirs = collator(dataset[: args.batch_size])
    if any(not torch.equal(ours[name], theirs[name]) for name in ours):
        raise SystemExit("the Trainer's first batch differs from train.py's: the comparison would be unfair")

    boundaries = set(range(args.warmup_steps, total_steps(args) + 1, sync_every(args)))
    clock: dict[int, float] = {}
    memory: dict[str, Any] = {}

    class StepClock(TrainerCallback):
        def on_step_end(self, arguments, state, control, **kwargs) -> None:
            if state.global_step in boundaries:
                if cuda:
                    torch.cuda.synchronize()
                clock[state.global_step] = time.perf_counter()
                if state.global_step == total_steps(args):
                    memory.update(peak_memory(device))

    torch.manual_seed(args.seed)
    model = BertForQuestionAnswering.from_pretrained(init_dir, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="throughput-trainer-") as out:
        training_args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            max_steps=total_steps(args),
            learning_rate=args.lr,
            weight_decay=0.01,
            max_grad_norm=1.0,
            bf16=cuda,
            train_sampling_strategy="sequential",  # the dataset is already in train.py's shuffled order
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            seed=args.seed,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=collator,
            callbacks=[StepClock()],
        )
        trainer.train()
        optimiser = training_args.optim.value
    return {
        "steps": args.steps,
        "windows": args.steps * args.batch_size,
        "seconds": clock[total_steps(args)] - clock[args.warmup_steps],
        "how": "TrainerCallback.on_step_end timestamps after the warm-up",
        "optimizer": optimiser,
        **memory,
    }


def run_contender(args: argparse.Namespace) -> None:
    """Child process: measure one contender and write its result as JSON to --result."""
    measured = measure_project(args) if args.contender == PROJECT else measure_trainer(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    measured |= {
        "device": device_name(device),
        "dtype": "bf16 autocast" if device.type == "cuda" else "fp32",
        "torch_threads": torch.get_num_threads(),
    }
    if int(os.environ.get("RANK", "0")) == 0:
        args.result.write_text(json.dumps(measured))


# ----------------------------------------------------------------------------- orchestration (parent)


def child_command(name: str, argv: Sequence[str], result: Path) -> list[str]:
    own = [str(Path(__file__).resolve()), *argv, "--contender", name, "--result", str(result)]
    if name == PROJECT:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", *own]
    return [sys.executable, *own]


def measure(name: str, argv: Sequence[str], timeout: int) -> dict[str, Any]:
    """Run one contender in its own process group (so a timeout ends torchrun's worker too)."""
    with tempfile.TemporaryDirectory(prefix="throughput-") as folder:
        result = Path(folder) / "result.json"
        print(f"--- {name}", flush=True)
        child = subprocess.Popen(child_command(name, argv, result), start_new_session=True)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise SystemExit(f"{name} ran past --timeout {timeout} s") from None
        if code != 0 or not result.is_file():
            raise SystemExit(f"{name} failed (exit {code}); its output is above")
        return json.loads(result.read_text())


def summarise(measured: dict[str, dict[str, Any]], windows: int) -> None:
    """Derived columns: samples/s, s/step, projected epoch hours, ratios against the baseline."""
    for row in measured.values():
        row["samples_per_s"] = row["windows"] / row["seconds"]
        row["seconds_per_step"] = row["seconds"] / row["steps"]
        row["epoch_hours"] = windows / row["samples_per_s"] / 3600
    base = measured[BASELINE]
    for row in measured.values():
        row["speed_vs_baseline"] = row["samples_per_s"] / base["samples_per_s"]
        row["memory_vs_baseline"] = row["peak_memory_mb"] / base["peak_memory_mb"]


def print_table(measured: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{'contender':<18} {'samples/s':>10} {'s/step':>8} {'epoch h':>8} {'peak MB':>9} "
        f"{'x speed':>8} {'x memory':>9}"
    )
    for name, row in measured.items():
        print(
            f"{name:<18} {row['samples_per_s']:>10.2f} {row['seconds_per_step']:>8.3f} "
            f"{row['epoch_hours']:>8.2f} {row['peak_memory_mb']:>9.0f} {row['speed_vs_baseline']:>8.2f} "
            f"{row['memory_vs_baseline']:>9.2f}"
        )
    print(f"(ratios against {BASELINE}, measured in the same run)\n")


def plot(measured: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(measured)
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
    for axis, key, label in (
        (speed, "samples_per_s", "samples/s (higher is better)"),
        (memory, "peak_memory_mb", f"peak memory, MB ({measured[names[0]]['memory']})"),
    ):
        bars = axis.bar(names, [measured[name][key] for name in names], color=["#999999", "#1f77b4"])
        axis.bar_label(bars, fmt="%.3g")
        axis.margins(y=0.15)
        axis.set_title(label)
    figure.suptitle(title, fontsize=9)
    save_plot(figure, path)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.contender:
        run_contender(args)
        return
    started = time.perf_counter()
    windows = args.epoch_windows or epoch_windows(args)
    child_argv = [*argv, "--examples", str(args.examples)]
    measured = {name: measure(name, child_argv, args.timeout) for name in CONTENDERS}
    summarise(measured, windows)
    print_table(measured)
    first = measured[BASELINE]
    on_gpu = not first["device"].startswith("CPU")
    title = (
        f"{first['device']}, {first['dtype']}, batch {args.batch_size}, max length {args.max_length}, "
        f"{args.steps} timed steps"
    )
    write_report(
        args.out,
        {
            "benchmark": "reader training throughput: retrieval/train.py vs transformers.Trainer",
            "baseline": BASELINE,
            "device": first["device"],
            "dtype": first["dtype"],
            "note": (
                "GPU numbers (bf16)"
                if on_gpu
                else "CPU smoke numbers (fp32, few steps): GPU numbers need a GPU host (bf16 there)"
            ),
            "versions": {name: version(name) for name in ("torch", "transformers", "accelerate")},
            "settings": {
                "batch_size": args.batch_size,
                "max_length": args.max_length,
                "stride": args.stride,
                "warmup_steps": args.warmup_steps,
                "timed_steps": args.steps,
                "subset_questions": args.examples,
                "seed": args.seed,
                "threads": args.threads,
            },
            "epoch_windows": windows,
            "epoch_windows_source": "given (--epoch-windows)" if args.epoch_windows else "counted",
            "contenders": measured,
            "wall_seconds": time.perf_counter() - started,
        },
    )
    plot(measured, args.plot, title)


if __name__ == "__main__":
    main()
