"""Training with negatives and shared normalisation: one padded forward per batch against length chunks.

Shared normalisation needs all of a question's windows in one batch, and a question's passages
(its own paragraph, one of its article, a BM25 match) differ in length, so padding the batch to its
longest window wastes work. retrieval.training.objective.LengthChunkedReader runs the batch's rows
in up to N forward passes of rows of similar length. This script times both on the same batches of
the reader's negatives training set (the batches train.py would form: `epoch_batches` with the
questions' groups), one forward + backward of the shared-normalisation loss each, alternating the
order on every batch so that a busy machine slows both alike.

Baseline: one forward of the whole padded batch (train.py before the chunks). Reported per
contender: windows/s, its ratio to the baseline, and the tokens it computes per real token.

    .venv/bin/python bench/shared_norm_chunks.py --train ../shared/data/squad/train-v1.1.json.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # this folder first on sys.path would hide the `retrieval` package

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402
from transformers import AutoTokenizer, BertForQuestionAnswering  # noqa: E402

from bench.common import RESULTS_DIR, require_files, write_report  # noqa: E402
from retrieval.reader.features import FeatureConfig  # noqa: E402
from retrieval.training.data import NegativeSettings, epoch_batches, load_training_windows  # noqa: E402
from retrieval.training.distributed import autocast_dtype  # noqa: E402
from retrieval.training.objective import LengthChunkedReader, length_chunks, shared_norm_loss  # noqa: E402
from retrieval.training.options import DEFAULT_FEATURE_CACHE  # noqa: E402

BASELINE = "one padded forward"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=Path, required=True, help="SQuAD v1.1 training file")
    parser.add_argument("--reader", type=Path, default=ROOT / "models" / "reader", help="weights to train")
    parser.add_argument(
        "--max-train-examples", type=int, default=7000, help="questions (as the session-9 run)"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--batches", type=int, default=30, help="timed batches (after 2 untimed)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunks", default="2,3,4", help="max chunks per batch to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "shared_norm_chunks.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    require_files([args.train])
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(args.reader)
    windows = load_training_windows(
        args.train,
        tokenizer,
        FeatureConfig(),
        args.max_train_examples,
        args.seed,
        DEFAULT_FEATURE_CACHE,
        NegativeSettings(1, 1, args.seed),
    )
    batches = epoch_batches(windows.lengths, args.batch_size, args.seed, 0, groups=windows.groups)
    batches = batches[: args.batches + 2]
    model = BertForQuestionAnswering.from_pretrained(args.reader, torch_dtype=torch.float32).train()
    dtype = autocast_dtype("auto", torch.device("cpu"))
    autocast = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
    contenders = {BASELINE: None} | {f"{n} length chunks": int(n) for n in args.chunks.split(",")}

    def step(max_chunks: int | None, batch: dict[str, torch.Tensor]) -> float:
        inputs = {name: batch[name] for name in ("input_ids", "token_type_ids", "attention_mask")}
        started = time.perf_counter()
        with autocast:
            if max_chunks is None:
                output = model(**inputs)
                logits = (output.start_logits, output.end_logits)
            else:
                logits = LengthChunkedReader(model, max_chunks)(**inputs)
            loss = shared_norm_loss(*logits, batch)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    seconds = {name: 0.0 for name in contenders}
    tokens = {name: 0 for name in contenders}
    real_tokens = timed_windows = 0
    for index, rows in enumerate(tqdm(batches, desc="batches")):
        batch = windows.batch(rows, tokenizer.pad_token_id)
        lengths = sorted((int(windows.lengths[i]) for i in rows), reverse=True)
        names = list(contenders) if index % 2 == 0 else list(reversed(contenders))
        for name in names:
            spent = step(contenders[name], batch)
            if index < 2:  # warm-up: first allocations, autocast caches
                continue
            seconds[name] += spent
            chunks = length_chunks(tuple(lengths), contenders[name] or 1)
            tokens[name] += sum((last - first) * lengths[first] for first, last in chunks)
        if index >= 2:
            real_tokens += sum(lengths)
            timed_windows += len(rows)

    rows_out = {
        name: {
            "windows_per_second": timed_windows / seconds[name],
            "speedup": seconds[BASELINE] / seconds[name],
            "tokens_per_real_token": tokens[name] / real_tokens,
        }
        for name in contenders
    }
    print(
        f"\n{len(batches) - 2} batches, {timed_windows} windows, {args.threads} thread(s), {dtype or 'fp32'}"
    )
    print(f"{'contender':<20} {'windows/s':>9} {'x baseline':>10} {'tokens/real':>11}")
    for name, row in rows_out.items():
        print(
            f"{name:<20} {row['windows_per_second']:>9.2f} {row['speedup']:>10.2f} "
            f"{row['tokens_per_real_token']:>11.3f}"
        )
    settings = {  # paths as seen from the repository root, whoever ran it
        key: str(
            value.resolve().relative_to(ROOT)
            if isinstance(value, Path) and value.resolve().is_relative_to(ROOT)
            else value
        )
        for key, value in vars(args).items()
    }
    write_report(args.out, {"baseline": BASELINE, "settings": settings, "contenders": rows_out})


if __name__ == "__main__":
    main()
