"""Training data: SQuAD questions into windows, cached on disk, served in length-grouped batches.

Windows come from `retrieval.reader.features.encode_pairs`, the path serving uses; this module
only stores them compactly (flat arrays: a full SQuAD epoch loads in a second instead of being
tokenised again) and decides the order they are trained in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from retrieval.digest import file_digest
from retrieval.reader.features import FeatureConfig, QAPair, Window, encode_pairs
from retrieval.squad import SquadParagraph, SquadQuestion, read_squad

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the arrays' layout changes: older caches are then ignored
GROUP_BATCHES = 50  # length grouping sorts this many batches' worth of windows at a time


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


@dataclass(frozen=True)
class TrainingWindows:
    """Labelled windows as flat arrays: window i is input_ids[offsets[i]:offsets[i + 1]]."""

    input_ids: np.ndarray  # int32, every window's tokens one after the other
    token_type_ids: np.ndarray  # int8, aligned with input_ids
    offsets: np.ndarray  # int64, len(windows) + 1 boundaries
    start_labels: np.ndarray  # int64 token index of the answer's first token ([CLS] = 0: none)
    end_labels: np.ndarray

    @classmethod
    def from_windows(cls, windows: Sequence[Window]) -> TrainingWindows:
        lengths = np.fromiter((len(w.input_ids) for w in windows), dtype=np.int64, count=len(windows))
        return cls(
            input_ids=np.fromiter(
                (t for w in windows for t in w.input_ids), dtype=np.int32, count=int(lengths.sum())
            ),
            token_type_ids=np.fromiter(
                (t for w in windows for t in w.token_type_ids), dtype=np.int8, count=int(lengths.sum())
            ),
            offsets=np.concatenate([[0], np.cumsum(lengths)]),
            start_labels=np.array([w.start_label for w in windows], dtype=np.int64),
            end_labels=np.array([w.end_label for w in windows], dtype=np.int64),
        )

    def __len__(self) -> int:
        return len(self.start_labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: Sequence[int], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Windows `indices`, padded to the longest of them, with their labels (as `collate` lays them)."""
        width = int(max(self.offsets[i + 1] - self.offsets[i] for i in indices))
        input_ids = torch.full((len(indices), width), pad_token_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(indices), width), dtype=torch.long)
        attention_mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, index in enumerate(indices):
            start, end = self.offsets[index], self.offsets[index + 1]
            input_ids[row, : end - start] = torch.from_numpy(self.input_ids[start:end].astype(np.int64))
            token_type_ids[row, : end - start] = torch.from_numpy(
                self.token_type_ids[start:end].astype(np.int64)
            )
            attention_mask[row, : end - start] = 1
        return {
            "input_ids": input_ids,
            "token_type_ids": token_type_ids,
            "attention_mask": attention_mask,
            "start_positions": torch.from_numpy(self.start_labels[list(indices)]),
            "end_positions": torch.from_numpy(self.end_labels[list(indices)]),
        }

    def save(self, path: Path) -> None:
        """Written under a temporary name and renamed: a crash never leaves half a cache behind."""
        staging = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with staging.open("wb") as handle:
            np.savez(handle, **asdict(self))
        staging.replace(path)

    @classmethod
    def load(cls, path: Path) -> TrainingWindows:
        with np.load(path) as arrays:
            return cls(**{name: arrays[name] for name in arrays.files})


def tokenizer_digest(tokenizer: PreTrainedTokenizerBase) -> str:
    """A hash of how the tokenizer splits text (vocabulary, normaliser, rules), not of the truncation
    and padding state a saved copy happens to carry: the same tokenizer gives the same key."""
    rules = json.loads(tokenizer.backend_tokenizer.to_str())
    for transient in ("truncation", "padding"):
        rules.pop(transient, None)
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()


def cache_key(
    train_file: Path, tokenizer: PreTrainedTokenizerBase, config: FeatureConfig, max_examples: int, seed: int
) -> str:
    """What decides the windows: the data, the tokenizer's vocabulary and rules, the window geometry."""
    fingerprint = {
        "format": CACHE_FORMAT,
        "data": file_digest(train_file),
        "tokenizer": tokenizer_digest(tokenizer),
        "features": asdict(config),
        "max_examples": max_examples,
        "seed": seed if max_examples else None,  # the seed only picks a subset
    }
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:20]


def load_training_windows(
    train_file: Path,
    tokenizer: PreTrainedTokenizerBase,
    config: FeatureConfig,
    max_examples: int,
    seed: int,
    cache_dir: Path | None,
) -> TrainingWindows:
    """The labelled windows of `train_file`, from `cache_dir` when tokenised before with the same inputs."""
    cached = None
    if cache_dir is not None:
        cached = cache_dir / f"windows-{cache_key(train_file, tokenizer, config, max_examples, seed)}.npz"
        if cached.is_file():
            log.info("training windows from the cache %s", cached)
            return TrainingWindows.load(cached)
    examples = load_examples(train_file, max_examples, seed)
    windows = TrainingWindows.from_windows(encode_pairs(tokenizer, training_pairs(examples), config))
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        windows.save(cached)
        log.info("cached %d training windows in %s", len(windows), cached)
    return windows


def epoch_batches(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    group_by_length: bool = True,
) -> list[np.ndarray]:
    """This rank's batches of window indices for one epoch: the same on every run with the same seed.

    Grouped by length, the windows are shuffled, cut into groups of GROUP_BATCHES batches, sorted by
    length inside each group and batched, and the batches shuffled again: batches hold windows of
    similar length (little padding) while the order stays random. Every window is in exactly one
    batch; with several ranks, the first batches are repeated so that every rank gets as many.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if group_by_length:
        group = batch_size * GROUP_BATCHES
        order = np.concatenate(
            [
                chunk[np.argsort(-lengths[chunk], kind="stable")]
                for chunk in (order[start : start + group] for start in range(0, len(order), group))
            ]
        )
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
    else:
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    per_rank = math.ceil(len(batches) / world_size)
    batches += batches[: per_rank * world_size - len(batches)]
    return batches[rank::world_size]
