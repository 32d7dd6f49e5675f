"""Where the reader's weights run: the Hugging Face model (fp32 or under bf16 autocast), or a
file exported by retrieval.training.export (ONNX Runtime fp32/int8, TorchScript).

Every backend takes the same padded batch and gives start/end logits, so `Reader` cuts windows,
batches and ranks spans alike whichever one holds the weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import BertForQuestionAnswering

from retrieval.onnx_session import cpu_session

# Files written by retrieval.training.export into an export directory, per backend ("torch" reads the
# Hugging Face weights). All of them take and give plain tensors in these orders.
EXPORTED_FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
# "torch-bf16": the Hugging Face weights computed under bf16 autocast (weights stay fp32).
TORCH_BACKENDS = {"torch": None, "torch-bf16": torch.bfloat16}
BACKENDS = (*TORCH_BACKENDS, *EXPORTED_FILES)
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")
OUTPUT_NAMES = ("start_logits", "end_logits")


class OnnxSpanModel:
    """An exported reader run by ONNX Runtime on CPU (fp32, or int8 after dynamic quantisation)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        self.session = cpu_session(path, threads)

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = self.session.run(
            list(OUTPUT_NAMES), {name: batch[name].numpy() for name in INPUT_NAMES}
        )
        return starts, ends


class TorchScriptSpanModel:
    """A reader traced by retrieval.training.export: runs without the transformers model code."""

    def __init__(self, path: Path) -> None:
        self.module = torch.jit.load(str(path), map_location="cpu").eval()

    def logits(self, batch: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        starts, ends = self.module(*(batch[name] for name in INPUT_NAMES))
        return starts.numpy(), ends.numpy()


SpanModel = BertForQuestionAnswering | OnnxSpanModel | TorchScriptSpanModel


def load_span_model(model_dir: Path, backend: str, threads: int | None, device: str) -> SpanModel:
    """The network of the reader saved in `model_dir`, run by `backend`; weights stored in fp16 (to
    ship small) are computed in fp32. The exported backends read what retrieval.training.export
    wrote and run on the CPU only."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown reader backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in TORCH_BACKENDS:
        if not (model_dir / "config.json").exists():
            raise FileNotFoundError(f"{model_dir} is not a reader model directory (no config.json)")
        return BertForQuestionAnswering.from_pretrained(model_dir, dtype=torch.float32).to(device)
    path = model_dir / EXPORTED_FILES[backend]
    if not path.exists():
        raise FileNotFoundError(f"{model_dir} has no {path.name}: run python -m retrieval.training.export")
    if device != "cpu":
        raise ValueError(f"the {backend} backend runs on CPU only, not {device}")
    return OnnxSpanModel(path, threads) if backend.startswith("onnx") else TorchScriptSpanModel(path)
