"""Reader training on the CPU: the project's loop (retrieval/training/train.py) against a plain Hugging
Face Trainer on the same model, data slice, batch size and learning-rate schedule, in one run.

Every contender trains the same number of windows (untimed warm-up steps, then timed steps) on the
one-epoch schedule of the same slice of SQuAD questions. Measured: windows/s and s/step over the timed
steps, projected hours per SQuAD epoch, peak memory (the process's peak RSS; allocated memory on CUDA),
the training loss of every step, and dev EM/F1 afterwards: every final model is scored by
`retrieval.training.evaluation.evaluate` on the same dev questions, so a speed-up that costs accuracy
shows. Goal: the project's training as make train-reader runs it (project-jemalloc) at 3x the Trainer's
windows/s or more, its dev F1 at most a point lower.

Contenders, one after another, each in its own child process (train.py's `train()` in-process, no DDP):
  hf-trainer    the baseline: transformers.Trainer on BertForQuestionAnswering from the packaged
                encoder, fp32 on CPU (bf16 on CUDA), DataCollatorWithPadding, random order, fed the
                project's windows, with the same batch size, lr, weight decay and linear warm-up schedule
  project-fp32  train.py with --precision fp32, otherwise its defaults
  project       train.py with its defaults: bf16 autocast where the CPU has it natively, length-grouped
                batches, eager attention on CPU
  project-keep  train.py with its defaults and --keep-freed-memory (glibc keeps freed memory for the
                next step instead of page-faulting it back; the process grows)
  project-jemalloc  train.py with its defaults under scripts/with-jemalloc.sh (jemalloc, never purging:
                what make train-reader runs under)
The fp32 and default project rows differ only in precision: their loss curves and dev F1 are the
fp32-vs-bf16 check; project-keep and project-jemalloc against project measure keeping freed memory.

    .venv/bin/python bench/train_throughput.py --train ../shared/data/squad/train-v1.1.json.gz \
        --dev ../shared/data/squad/dev-v1.1.json.gz      # make bench-train; ~15 min on 2 idle cores
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and would hide the `retrieval` package.
ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import RESULTS_DIR, require_files, save_plot, write_report  # noqa: E402
from retrieval.reader.features import FeatureConfig  # noqa: E402
from retrieval.reader.model import Reader, ReaderConfig  # noqa: E402
from retrieval.training.data import load_examples, load_training_windows  # noqa: E402
from retrieval.training.evaluation import evaluate  # noqa: E402
from retrieval.training.options import DEFAULT_FEATURE_CACHE  # noqa: E402
from retrieval.training.train import default_init_dir  # noqa: E402

BASELINE, PROJECT_FP32, PROJECT = "hf-trainer", "project-fp32", "project"
PROJECT_KEEP, PROJECT_JEMALLOC = "project-keep", "project-jemalloc"
CONTENDERS = (BASELINE, PROJECT_FP32, PROJECT, PROJECT_KEEP, PROJECT_JEMALLOC)  # the baseline runs first
# What each of the project's rows changes in train.py's defaults.
PROJECT_OPTIONS: dict[str, dict[str, str | None]] = {
    PROJECT_FP32: {"precision": "fp32"},
    PROJECT: {},
    PROJECT_KEEP: {"keep-freed-memory": None},
    PROJECT_JEMALLOC: {},
}
# Contenders whose child process starts under a wrapper command.
WRAPPERS = {PROJECT_JEMALLOC: [str(ROOT / "scripts" / "with-jemalloc.sh")]}
GOAL_SPEED, F1_BUDGET = 3.0, 1.0  # the goal: 3x the Trainer's windows/s, at most 1 F1 point lost
# Options passed on to train.py as they are.
PASSED_ON = ("batch_size", "lr", "weight_decay", "warmup_ratio", "max_length", "stride", "seed", "threads")
LAST_STEPS = 10  # the reported training loss is the mean over this many last steps
# train.py's per-step log line, and its set-up line (windows, steps, precision, attention, grouping).
STEP_LINE = re.compile(r"^step (\d+)/\d+ epoch \d+ loss (\S+) lr \S+ \S+ windows/s$")
SETUP_LINE = re.compile(r"^\d+ training windows")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True, help="SQuAD train-v1.1.json.gz")
    parser.add_argument("--dev", type=Path, required=True, help="SQuAD dev-v1.1.json.gz")
    parser.add_argument("--steps", type=int, default=60, help="timed optimiser steps (after the warm-up)")
    parser.add_argument("--warmup-steps", type=int, default=4, help="untimed optimiser steps first")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per optimiser step")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument(
        "--examples", type=int, default=0, help="training questions in the slice (0 = enough for all steps)"
    )
    parser.add_argument("--dev-examples", type=int, default=500, help="dev questions all are scored on")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup-ratio", type=float, default=0.1, help="of the slice's one-epoch schedule")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per contender")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "train_throughput.json")
    parser.add_argument("--plot", type=Path, default=RESULTS_DIR / "train_throughput.png")
    # Internal: the script re-runs itself as one contender's child process.
    parser.add_argument("--contender", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.steps, args.warmup_steps, args.batch_size, args.dev_examples) < 1:
        parser.error("--steps, --warmup-steps, --batch-size and --dev-examples must be positive")
    if args.examples < 0:
        parser.error("--examples must not be negative")
    try:
        FeatureConfig(max_length=args.max_length, stride=args.stride)
    except ValueError as error:
        parser.error(str(error))
    require_files([args.train, args.dev])
    if not args.examples:  # every question gives at least one window: 10% spare
        args.examples = math.ceil(1.1 * total_steps(args) * args.batch_size)
    return args


def total_steps(args: argparse.Namespace) -> int:
    return args.warmup_steps + args.steps


def features(args: argparse.Namespace) -> FeatureConfig:
    return FeatureConfig(max_length=args.max_length, stride=args.stride)


# ----------------------------------------------------------------------------- contenders (child processes)


def peak_memory(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        return {"peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20, "memory": "cuda allocated"}
    # This process's own peak since exec: ru_maxrss would carry the parent's peak over through exec.
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return {"peak_memory_mb": int(status["VmHWM"].split()[0]) / 1024, "memory": "peak RSS (VmHWM)"}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"CPU: {line.split(':', 1)[1].strip()}"
    return f"CPU: {platform.processor() or platform.machine()}"


def measure_project(args: argparse.Namespace, changed: dict[str, str | None]) -> dict[str, Any]:
    """train.py's `train()` in this process, timed by the record timestamps of its per-step log lines
    (logged after each optimiser step, so the interval from the warm-up's last line is the timed steps)."""
    from retrieval.training import train as project
    from retrieval.training.options import parse_args

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    stamps: dict[int, float] = {}
    losses: list[tuple[int, float]] = []
    seen: dict[str, Any] = {}

    class StepLines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if SETUP_LINE.match(message):
                seen["setup"] = message
            elif match := STEP_LINE.match(message):
                step = int(match[1])
                stamps[step] = record.created
                losses.append((step, float(match[2])))
                if step == total_steps(args):
                    seen.update(peak_memory(device))  # before train.py's evaluation and checkpoint

    project.log.addHandler(StepLines())  # train() resets the root logger's handlers, not this logger's
    with tempfile.TemporaryDirectory(prefix="throughput-project-") as out:
        options = {
            **{"train": args.train, "dev": args.dev, "out": out, "epochs": 1, **changed},
            **{"max-train-examples": args.examples, "max-dev-examples": args.dev_examples},
            **{name.replace("_", "-"): getattr(args, name) for name in PASSED_ON},
            **{"max-steps": total_steps(args), "log-every": 1},
            # Untimed either way, but kept out of the repository: the slice is tokenised afresh (like the
            # Trainer's), and no timed checkpoint may fall inside the timed steps (the Trainer saves none).
            **{"feature-cache": "", "checkpoint-minutes": 0},
        }
        argv = [f"--{name}" if value is None else f"--{name}={value}" for name, value in options.items()]
        summary = project.train(parse_args(argv))
    if summary["global_step"] != total_steps(args):
        raise SystemExit(f"train.py stopped after {summary['global_step']} steps: raise --examples")
    dev = summary["history"][-1]  # train.py's evaluate() after its last step, on load_examples(dev, n, seed)
    return {
        "setup": seen["setup"],
        "seconds": stamps[total_steps(args)] - stamps[args.warmup_steps],
        "losses": losses,
        "dev": {key: dev[key] for key in ("exact", "f1", "total")},
        "optimizer": "torch.optim.AdamW",
        **{key: seen[key] for key in ("peak_memory_mb", "memory")},
    }


def measure_trainer(args: argparse.Namespace) -> dict[str, Any]:
    """A plain transformers.Trainer over the same windows, timed by a callback at the end of every step,
    stopped after the same number of steps, on the schedule train.py derives from the same slice."""
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    init_dir = default_init_dir()
    tokenizer = transformers.AutoTokenizer.from_pretrained(init_dir)
    windows = load_training_windows(args.train, tokenizer, features(args), args.examples, args.seed, None)
    if len(windows) < total_steps(args) * args.batch_size:
        raise SystemExit(f"{len(windows)} windows from {args.examples} questions: raise --examples")
    dataset = [  # one window per example, laid out by the project's own batching (no padding in a batch of 1)
        {name: tensor[0].tolist() for name, tensor in windows.batch([i], tokenizer.pad_token_id).items()}
        for i in range(len(windows))
    ]
    dev_examples = load_examples(args.dev, args.dev_examples, args.seed)  # loaded up front, as train.py does
    schedule_steps = math.ceil(len(windows) / args.batch_size)  # train.py's one epoch of the slice
    stamps: dict[int, float] = {}
    losses: list[tuple[int, float]] = []
    memory: dict[str, Any] = {}

    class StepClock(transformers.TrainerCallback):
        def on_step_end(self, arguments, state, control, **kwargs) -> None:
            if cuda:
                torch.cuda.synchronize()
            stamps[state.global_step] = time.perf_counter()
            if state.global_step >= total_steps(args):
                memory.update(peak_memory(device))
                control.should_training_stop = True

        def on_log(self, arguments, state, control, logs=None, **kwargs) -> None:
            if logs and "loss" in logs:
                losses.append((state.global_step, float(logs["loss"])))

    torch.manual_seed(args.seed)
    model = transformers.BertForQuestionAnswering.from_pretrained(init_dir, dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="throughput-trainer-") as out:
        training_args = transformers.TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            learning_rate=args.lr,
            weight_decay=args.weight_decay,
            lr_scheduler_type="linear",
            warmup_steps=int(args.warmup_ratio * schedule_steps),  # train.py's rounding
            max_grad_norm=1.0,
            bf16=cuda,
            save_strategy="no",
            logging_steps=1,  # every step's loss, for the curves
            report_to="none",
            seed=args.seed,
        )
        trainer = transformers.Trainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=transformers.DataCollatorWithPadding(tokenizer),
            callbacks=[StepClock()],
        )
        trainer.train()
    reader = Reader(model, tokenizer, ReaderConfig(features=features(args)))
    dev = evaluate(reader, dev_examples)
    return {
        "setup": (
            f"{len(windows)} training windows, {schedule_steps} schedule steps, "
            f"{'bf16 autocast' if cuda else 'fp32'}, {model.config._attn_implementation} attention, "
            "random order (RandomSampler)"
        ),
        "seconds": stamps[total_steps(args)] - stamps[args.warmup_steps],
        "losses": losses,
        "dev": {key: dev[key] for key in ("exact", "f1", "total")},
        "optimizer": str(getattr(training_args.optim, "value", training_args.optim)),
        **memory,
    }


def run_contender(args: argparse.Namespace) -> None:
    """Child process: measure one contender and write its result as JSON to --result."""
    if args.contender == BASELINE:
        measured = measure_trainer(args)
    else:
        measured = measure_project(args, PROJECT_OPTIONS[args.contender])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    measured |= {"device": device_name(device), "torch_threads": torch.get_num_threads()}
    args.result.write_text(json.dumps(measured))


# ----------------------------------------------------------------------------- orchestration (parent)


def measure(name: str, argv: Sequence[str], timeout: int) -> dict[str, Any]:
    """Run one contender in its own process group, so that a timeout ends all of it."""
    with tempfile.TemporaryDirectory(prefix="throughput-") as folder:
        result = Path(folder) / "result.json"
        print(f"--- {name}", flush=True)
        own = [str(Path(__file__).resolve()), *argv, "--contender", name, "--result", str(result)]
        child = subprocess.Popen([*WRAPPERS.get(name, []), sys.executable, *own], start_new_session=True)
        try:
            code = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            raise SystemExit(f"{name} ran past --timeout {timeout} s") from None
        if code != 0 or not result.is_file():
            raise SystemExit(f"{name} failed (exit {code}); its output is above")
        return json.loads(result.read_text())


def epoch_windows(args: argparse.Namespace) -> int:
    """Windows in one epoch of --train, from the project's window cache (a few minutes the first time)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_init_dir())
    cache = ROOT / DEFAULT_FEATURE_CACHE
    return len(load_training_windows(args.train, tokenizer, features(args), 0, args.seed, cache))


def summarise(measured: dict[str, dict[str, Any]], args: argparse.Namespace, windows_per_epoch: int) -> None:
    """Derived columns: windows/s, s/step, epoch hours, final loss, ratios against the baseline."""
    for row in measured.values():
        row["timed_steps"] = args.steps
        row["timed_windows"] = args.steps * args.batch_size
        row["windows_per_s"] = row["timed_windows"] / row["seconds"]
        row["seconds_per_step"] = row["seconds"] / args.steps
        row["epoch_hours"] = windows_per_epoch / row["windows_per_s"] / 3600
        row["final_train_loss"] = float(np.mean([loss for _, loss in row["losses"][-LAST_STEPS:]]))
    base = measured[BASELINE]
    for row in measured.values():
        row["speed_vs_baseline"] = row["windows_per_s"] / base["windows_per_s"]
        row["memory_vs_baseline"] = row["peak_memory_mb"] / base["peak_memory_mb"]


def precision_check(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """fp32 against the default precision in the project's loop (same batches, same dropout seeds)."""
    fp32, auto = dict(measured[PROJECT_FP32]["losses"]), dict(measured[PROJECT]["losses"])
    gaps = np.abs([auto[step] - fp32[step] for step in sorted(fp32.keys() & auto.keys())])
    return {
        "default_is_bf16": "bf16" in measured[PROJECT]["setup"],
        "steps_compared": len(gaps),
        "mean_abs_loss_gap": float(gaps.mean()),
        "max_abs_loss_gap": float(gaps.max()),
        "dev_f1_fp32": measured[PROJECT_FP32]["dev"]["f1"],
        "dev_f1_default": measured[PROJECT]["dev"]["f1"],
    }


def goal(measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Judged on how the project trains: `make train-reader` runs train.py under
    scripts/with-jemalloc.sh (plain train.py where no jemalloc is installed)."""
    judged = PROJECT_JEMALLOC
    speed = measured[judged]["speed_vs_baseline"]
    f1_gap = measured[judged]["dev"]["f1"] - measured[BASELINE]["dev"]["f1"]
    return {
        "contender": judged,
        "speed_vs_baseline": speed,
        "dev_f1_vs_baseline": f1_gap,
        "met": speed >= GOAL_SPEED and f1_gap >= -F1_BUDGET,
        "train_py_alone_speed_vs_baseline": measured[PROJECT]["speed_vs_baseline"],
    }


def print_table(measured: dict[str, dict[str, Any]], check: dict[str, Any], target: dict[str, Any]) -> None:
    print(
        f"\n{'contender':<16} {'windows/s':>9} {'s/step':>7} {'epoch h':>8} {'peak MB':>8} {'loss':>6} "
        f"{'dev EM':>7} {'dev F1':>7} {'x speed':>8} {'x memory':>9}"
    )
    for name, row in measured.items():
        print(
            f"{name:<16} {row['windows_per_s']:>9.2f} {row['seconds_per_step']:>7.2f} "
            f"{row['epoch_hours']:>8.2f} {row['peak_memory_mb']:>8.0f} {row['final_train_loss']:>6.3f} "
            f"{row['dev']['exact']:>7.1f} {row['dev']['f1']:>7.1f} {row['speed_vs_baseline']:>8.2f} "
            f"{row['memory_vs_baseline']:>9.2f}"
        )
    print(f"(loss: mean of the last {LAST_STEPS} steps; ratios against {BASELINE}, measured in the same run)")
    precision = "bf16" if check["default_is_bf16"] else "fp32 too (no native bf16 here)"
    gaps = f"mean {check['mean_abs_loss_gap']:.4f}, max {check['max_abs_loss_gap']:.4f}"
    print(
        f"precision: project {precision} against project-fp32, same batches: loss gap {gaps} over "
        f"{check['steps_compared']} steps; dev F1 {check['dev_f1_default']:.1f} against "
        f"{check['dev_f1_fp32']:.1f}"
    )
    plain = measured[PROJECT]
    for name in (PROJECT_KEEP, PROJECT_JEMALLOC):
        kept = measured[name]
        print(
            f"freed memory kept: {name} at {kept['windows_per_s'] / plain['windows_per_s']:.2f}x project's "
            f"windows/s, {kept['peak_memory_mb'] / plain['peak_memory_mb']:.2f}x its peak memory"
        )
    print(
        f"goal {'MET' if target['met'] else 'NOT met'}: {target['contender']} (how make train-reader trains) "
        f"at {target['speed_vs_baseline']:.2f}x the Trainer's windows/s (goal >= {GOAL_SPEED:g}x), dev F1 "
        f"{target['dev_f1_vs_baseline']:+.1f} points (allowed >= -{F1_BUDGET:g}); train.py under glibc's "
        f"malloc: {target['train_py_alone_speed_vs_baseline']:.2f}x\n"
    )


def plot(measured: dict[str, dict[str, Any]], args: argparse.Namespace, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        BASELINE: "#888888",
        PROJECT_FP32: "#ff7f0e",
        PROJECT_KEEP: "#2ca02c",
        PROJECT_JEMALLOC: "#9467bd",
        PROJECT: "#1f77b4",
    }
    figure, (curves, speed) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    for name, row in measured.items():
        steps, losses = np.array(row["losses"]).T
        seen = steps * args.batch_size
        curves.plot(seen, losses, color=colours[name], alpha=0.3, linewidth=0.8)
        # A trailing mean over up to LAST_STEPS steps, so that three noisy curves stay readable.
        smooth = [losses[max(0, i + 1 - LAST_STEPS) : i + 1].mean() for i in range(len(losses))]
        label = f"{name} (dev F1 {row['dev']['f1']:.1f})"
        # fp32 dashed and on top: where the precisions agree it lies on the project's curve.
        style = {"linestyle": "--", "zorder": 3} if name == PROJECT_FP32 else {}
        curves.plot(seen, smooth, color=colours[name], label=label, **style)
    warmup = args.warmup_steps * args.batch_size
    curves.axvline(warmup, color="black", linestyle=":", linewidth=0.8, label="end of the untimed warm-up")
    curves.set(
        xlabel="training windows seen", ylabel=f"training loss (thick: trailing {LAST_STEPS}-step mean)"
    )
    curves.legend(fontsize=8)
    names = list(measured)
    rows = [measured[name] for name in names]
    bars = speed.bar(names, [row["windows_per_s"] for row in rows], color=[colours[name] for name in names])
    speed.bar_label(
        bars, labels=[f"{row['windows_per_s']:.2f} ({row['speed_vs_baseline']:.1f}x)" for row in rows]
    )
    speed.margins(y=0.15)
    speed.set_title("windows/s (higher is better)")
    figure.suptitle(title, fontsize=9)
    save_plot(figure, path)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.contender:
        run_contender(args)
        return
    started = time.perf_counter()
    child_argv = [*argv, "--examples", str(args.examples)]
    measured = {name: measure(name, child_argv, args.timeout) for name in CONTENDERS}
    windows_per_epoch = epoch_windows(args)  # after the contenders: a first count takes gigabytes
    summarise(measured, args, windows_per_epoch)
    check, target = precision_check(measured), goal(measured)
    print_table(measured, check, target)
    device = measured[BASELINE]["device"]
    settings = [(key, value) for key, value in vars(args).items() if key not in ("contender", "result")]
    write_report(
        args.out,
        {
            "benchmark": "reader training: retrieval/training/train.py against transformers.Trainer",
            "baseline": BASELINE,
            "device": device,
            "versions": {name: version(name) for name in ("torch", "transformers", "accelerate")},
            "settings": {key: str(value) if isinstance(value, Path) else value for key, value in settings},
            "epoch_windows": windows_per_epoch,
            "contenders": measured,
            "precision_check": check,
            "goal": {"speed": GOAL_SPEED, "f1_budget": F1_BUDGET, **target},
            "wall_seconds": time.perf_counter() - started,
        },
    )
    title = (
        f"{device}; batch {args.batch_size}, {args.warmup_steps} + {args.steps} timed steps, "
        f"{args.examples} train / {args.dev_examples} dev questions"
    )
    plot(measured, args, args.plot, title)


if __name__ == "__main__":
    main()
