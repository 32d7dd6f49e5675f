"""Export the reader to ONNX (fp32 and int8) and TorchScript, and check that they answer like PyTorch.

    python -m retrieval.training.export --reader models/reader --out models/reader-export \
        --check tests/data/knowledge_qa.json

The export directory holds the exported models with the tokenizer and reader_config.json, so
`Reader.load(OUT, backend="onnx" | "onnx-int8" | "torchscript")` serves from it with the same
preprocessing and postprocessing as the PyTorch reader. `--check` runs every backend and PyTorch
on the questions of a SQuAD-format file (each with its own paragraph as the passage), compares
logits and answers, records the numbers in OUT/export.json, and fails when a backend's logits
are further from PyTorch's than its stated tolerance.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from transformers import BertForQuestionAnswering

from retrieval.digest import folder_digest
from retrieval.documents import Passage
from retrieval.index.store import replace_dir
from retrieval.reader.backends import EXPORTED_FILES, INPUT_NAMES, OUTPUT_NAMES
from retrieval.reader.features import QAPair, Window, collate, encode_pairs
from retrieval.reader.model import Answer, Reader
from retrieval.squad import read_squad

log = logging.getLogger("retrieval.training.export")

METADATA_FILE = "export.json"
OPSET = 17  # the newest opset the TorchScript-based exporter of torch 2.13 fully covers for BERT
# Largest |logit difference| from PyTorch allowed per backend. fp32 paths differ only by kernel
# rounding (measured: 0 for TorchScript, 1.2e-5 for ONNX on a fine-tuned MiniLM). int8 weights and
# activations move logits in proportion to their size, so its bound is relative to the largest
# |logit| PyTorch produced on the same windows; measured 0.31 of it (mean difference 0.016 of it,
# 95% same answers) on that MiniLM. It catches a broken export, not a small accuracy loss: judge
# that by the same-answer rate and the dev F1.
ABSOLUTE_TOLERANCE = {"torchscript": 1e-3, "onnx": 1e-3}
INT8_RELATIVE_TOLERANCE = 0.5


class SpanLogits(torch.nn.Module):
    """The QA model with positional tensor inputs and a (start, end) tuple out: what tracing needs."""

    def __init__(self, model: BertForQuestionAnswering) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            attention_mask=attention_mask,
            return_dict=False,
        )
        return output[0], output[1]


def example_inputs(reader: Reader) -> tuple[torch.Tensor, ...]:
    """A padded two-window batch made by the serving preprocessing, so the trace sees a real mask."""
    pairs = [
        QAPair("Who built it?", "The lighthouse was built in 1871 by Mara Okafor."),
        QAPair("When?", "It opened in 1871."),
    ]
    windows = encode_pairs(reader.tokenizer, pairs, reader.config.features)
    batch = collate(windows, reader.tokenizer.pad_token_id, with_labels=False)
    return tuple(batch[name] for name in INPUT_NAMES)


def export_reader(reader_dir: Path, out: Path, threads: int | None = None) -> dict[str, str]:
    """Write ONNX fp32, ONNX int8 and TorchScript models plus tokenizer and reader config into `out`."""
    reader = Reader.load(reader_dir, threads=threads)
    module = SpanLogits(reader.model).eval()
    inputs = example_inputs(reader)
    out.mkdir(parents=True, exist_ok=True)
    files = {backend: out / name for backend, name in EXPORTED_FILES.items()}
    dynamic = {name: {0: "batch", 1: "sequence"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # Tracing warns about shape checks in transformers' mask code; those take the same branch
        # for every input here (the mask is always applied while tracing), which the checks confirm.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            torch.onnx.export(
                module,
                inputs,
                str(files["onnx"]),
                dynamo=False,  # the torch.export-based exporter would need the onnxscript package
                opset_version=OPSET,
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
            )
            torch.jit.save(torch.jit.trace(module, inputs), str(files["torchscript"]))
    # Per-channel weight scales halve the int8 logit error of one scale per tensor (measured on MiniLM).
    quantize_dynamic(files["onnx"], files["onnx-int8"], weight_type=QuantType.QInt8, per_channel=True)
    reader.tokenizer.save_pretrained(out)
    reader.config.save(out)
    log.info("exported %s to %s", reader_dir, ", ".join(str(path) for path in files.values()))
    return {backend: path.name for backend, path in files.items()}


def load_queries(qa_file: Path) -> list[tuple[str, list[Passage]]]:
    """Every question of a SQuAD-format file, asked of its own paragraph."""
    return [
        (question.question, [Passage(question.question_id, paragraph.title, paragraph.context)])
        for paragraph in read_squad(qa_file)
        for question in paragraph.questions
    ]


def _span(answer: Answer) -> tuple[Any, ...]:
    """What makes two answers the same answer: the span given (or the abstention)."""
    return (answer.abstained, answer.passage, answer.start, answer.end)


def _flat_logits(reader: Reader, windows: Sequence[Window]) -> np.ndarray:
    return np.concatenate([np.concatenate(pair) for pair in reader.window_logits(windows)])


def tolerance(backend: str, max_abs_logit: float) -> float:
    return ABSOLUTE_TOLERANCE.get(backend, INT8_RELATIVE_TOLERANCE * max_abs_logit)


def check_parity(
    reader_dir: Path, export_dir: Path, qa_file: Path, threads: int | None = None
) -> dict[str, dict[str, Any]]:
    """Each exported backend against PyTorch on the questions of `qa_file`: logit differences over all
    windows, identical answers, and whether the differences are within the backend's tolerance."""
    queries = load_queries(qa_file)
    if not queries:
        raise ValueError(f"{qa_file} has no questions to check with")
    reference = Reader.load(reader_dir, threads=threads)
    pairs = [QAPair(question, passage.text) for question, passages in queries for passage in passages]
    windows = encode_pairs(reference.tokenizer, pairs, reference.config.features)
    expected = _flat_logits(reference, windows)
    expected_spans = [_span(answer) for answer in reference.answer_many(queries)]
    max_abs_logit = float(np.abs(expected).max())
    results = {}
    for backend in EXPORTED_FILES:
        exported = Reader.load(export_dir, threads=threads, backend=backend)
        difference = np.abs(_flat_logits(exported, windows) - expected)
        same = sum(
            _span(answer) == span
            for answer, span in zip(exported.answer_many(queries), expected_spans, strict=True)
        )
        bound = tolerance(backend, max_abs_logit)
        results[backend] = {
            "questions": len(queries),
            "windows": len(windows),
            "max_abs_logit": max_abs_logit,
            "max_abs_logit_diff": float(difference.max()),
            "mean_abs_logit_diff": float(difference.mean()),
            "tolerance": bound,
            "within_tolerance": bool(difference.max() <= bound),
            "same_answers": same,
            "same_answer_rate": same / len(queries),
        }
        log.info(
            "%-11s %d/%d same answers, max |logit diff| %.2e (tolerance %.2e)",
            backend,
            same,
            len(queries),
            difference.max(),
            bound,
        )
    return results


def ensure_export(reader_dir: Path, out: Path, threads: int | None = None) -> bool:
    """Export `reader_dir` into `out` unless `out` already holds an export of these exact files.

    What the QA service calls at start for an exported backend. The export is written next to
    `out` and swapped in whole, so a crash never leaves a half-written one. True if it exported.
    """
    digest = folder_digest(reader_dir)
    metadata_file = out / METADATA_FILE
    if metadata_file.is_file():
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        if metadata.get("source_digest") == digest and all(
            (out / f).is_file() for f in metadata["files"].values()
        ):
            return False
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        files = export_reader(reader_dir, staging, threads)
        write_metadata(staging, reader_dir, digest, files, check=None)
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return True


def write_metadata(
    out: Path, reader_dir: Path, digest: str, files: dict[str, str], check: dict[str, Any] | None
) -> None:
    """OUT/export.json: what was exported from where (`digest`: folder_digest of `reader_dir`)."""
    metadata: dict[str, Any] = {
        "source": str(reader_dir),
        "source_digest": digest,
        "files": files,
        "opset": OPSET,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "tolerances": {
            **{backend: {"max_abs_logit_diff": bound} for backend, bound in ABSOLUTE_TOLERANCE.items()},
            "onnx-int8": {"max_abs_logit_diff_relative_to_max_abs_logit": INT8_RELATIVE_TOLERANCE},
        },
    }
    if check is not None:
        metadata["check"] = check
    (out / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m retrieval.training.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--reader", type=Path, required=True, help="a trained reader model directory")
    parser.add_argument("--out", type=Path, required=True, help="export directory")
    parser.add_argument("--check", type=Path, help="SQuAD-format questions to compare the backends on")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = parser.parse_args(argv)
    if not (args.reader / "config.json").is_file():
        parser.error(f"{args.reader} is not a reader model directory (no config.json)")
    if args.check is not None and not args.check.is_file():
        parser.error(f"no such file: {args.check}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    # INFO for this project only: the quantiser logs a line per tensor on the root logger.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("retrieval").setLevel(logging.INFO)
    args = parse_args(argv)
    files = export_reader(args.reader, args.out, args.threads)
    check = None
    if args.check is not None:
        try:
            check = check_parity(args.reader, args.out, args.check, args.threads)
        except ValueError as error:  # a malformed or empty question file
            log.error("%s", error)
            return 1
    write_metadata(args.out, args.reader, folder_digest(args.reader), files, check)
    failed = [backend for backend, result in (check or {}).items() if not result["within_tolerance"]]
    if failed:
        log.error("logits beyond tolerance for %s: see %s", ", ".join(failed), args.out / METADATA_FILE)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
