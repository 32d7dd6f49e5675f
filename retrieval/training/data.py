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

CACHE_FORMAT = 2  # bump when the arrays' layout changes: older caches are then ignored
GROUP_BATCHES = 50
# Pairs tokenised at a time: a whole epoch of Window objects (Python tuples) would hold gigabytes,
# and the allocator keeps that memory after it is freed.
ENCODE_CHUNK = 4096  # length grouping sorts this many batches' worth of windows at a time


@dataclass(frozen=True)
class NegativeSettings:
    """How many passages without the answer each training question is read with (see negatives.py)."""

    same_article: int = 1  # random other paragraphs of the question's article
    retrieved: int = 1  # best BM25 matches that do not contain the answer
    seed: int = 13


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


def labelled_pair(example: Example) -> QAPair | None:
    """The question and its paragraph labelled with the first gold answer ([CLS] if unanswerable);
    None, logged, when the answer's offset does not point at its text."""
    answer = None
    if example.question.answers and not example.question.is_impossible:
        gold = example.question.answers[0]
        answer = (gold.start, gold.start + len(gold.text))
        if example.paragraph.context[answer[0] : answer[1]] != gold.text:
            log.warning(
                "skipping %s: answer_start does not point at the answer text", example.question.question_id
            )
            return None
    return QAPair(question=example.question.question, context=example.paragraph.context, answer=answer)


def training_pairs(examples: Sequence[Example]) -> list[QAPair]:
    """Each example's labelled pair, in order (examples with a broken answer offset are left out)."""
    return [pair for pair in map(labelled_pair, examples) if pair is not None]


def grouped_pairs(
    examples: Sequence[Example], negatives: Sequence[Sequence[str]] | None = None
) -> tuple[list[QAPair], list[int]]:
    """The labelled pairs followed by each question's negative passages (labelled [CLS]: no answer
    there), and for every pair the index of the question it belongs to."""
    pairs: list[QAPair] = []
    groups: list[int] = []
    for group, example in enumerate(examples):
        pair = labelled_pair(example)
        if pair is None:
            continue
        contexts = negatives[group] if negatives is not None else ()
        pairs += [pair, *(QAPair(question=pair.question, context=context) for context in contexts)]
        groups += [group] * (1 + len(contexts))
    return pairs, groups


@dataclass(frozen=True)
class TrainingWindows:
    """Labelled windows as flat arrays: window i is input_ids[offsets[i]:offsets[i + 1]]."""

    input_ids: np.ndarray  # int32, every window's tokens one after the other
    token_type_ids: np.ndarray  # int8, aligned with input_ids
    offsets: np.ndarray  # int64, len(windows) + 1 boundaries
    start_labels: np.ndarray  # int64 token index of the answer's first token ([CLS] = 0: none)
    end_labels: np.ndarray
    groups: np.ndarray  # int64, the question each window belongs to; a question's windows are adjacent

    @classmethod
    def from_windows(cls, windows: Sequence[Window], pair_groups: Sequence[int]) -> TrainingWindows:
        """`pair_groups[p]`: the question of pair p (windows come in pair order from encode_pairs)."""
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
            groups=np.array([pair_groups[w.pair_index] for w in windows], dtype=np.int64),
        )

    @classmethod
    def concatenate(cls, parts: Sequence[TrainingWindows]) -> TrainingWindows:
        """The windows of `parts`, one after the other."""
        lengths = np.concatenate([part.lengths for part in parts])
        return cls(
            input_ids=np.concatenate([part.input_ids for part in parts]),
            token_type_ids=np.concatenate([part.token_type_ids for part in parts]),
            offsets=np.concatenate([[0], np.cumsum(lengths)]),
            start_labels=np.concatenate([part.start_labels for part in parts]),
            end_labels=np.concatenate([part.end_labels for part in parts]),
            groups=np.concatenate([part.groups for part in parts]),
        )

    def __len__(self) -> int:
        return len(self.start_labels)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def batch(self, indices: Sequence[int], pad_token_id: int) -> dict[str, torch.Tensor]:
        """Windows `indices`, padded to the longest of them, with their labels (as `collate` lays them)
        and the question each belongs to (`groups`, for the shared normalisation)."""
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
            "groups": torch.from_numpy(self.groups[list(indices)]),
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
    train_file: Path,
    tokenizer: PreTrainedTokenizerBase,
    config: FeatureConfig,
    max_examples: int,
    seed: int,
    negatives: NegativeSettings | None = None,
) -> str:
    """What decides the windows: the data, the tokenizer's vocabulary and rules, the window geometry,
    the negative passages."""
    fingerprint = {
        "negatives": asdict(negatives) if negatives else None,
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
    negatives: NegativeSettings | None = None,
) -> TrainingWindows:
    """The labelled windows of `train_file` (with each question's negative passages, if asked for),
    from `cache_dir` when tokenised before with the same inputs."""
    cached = None
    if cache_dir is not None:
        key = cache_key(train_file, tokenizer, config, max_examples, seed, negatives)
        cached = cache_dir / f"windows-{key}.npz"
        if cached.is_file():
            log.info("training windows from the cache %s", cached)
            return TrainingWindows.load(cached)
    examples = load_examples(train_file, max_examples, seed)
    contexts = None
    if negatives is not None:
        from retrieval.training.negatives import mine_negatives  # it imports this module's Example

        contexts = mine_negatives(examples, negatives)
    pairs, pair_groups = grouped_pairs(examples, contexts)
    windows = TrainingWindows.concatenate(
        [
            TrainingWindows.from_windows(
                encode_pairs(tokenizer, pairs[start : start + ENCODE_CHUNK], config),
                pair_groups[start : start + ENCODE_CHUNK],
            )
            for start in range(0, len(pairs), ENCODE_CHUNK)
        ]
    )
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
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """This rank's batches of window indices for one epoch: the same on every run with the same seed.

    Grouped by length, the windows are shuffled, cut into groups of GROUP_BATCHES batches, sorted by
    length inside each group and batched, and the batches shuffled again: batches hold windows of
    similar length (little padding) while the order stays random. Every window is in exactly one
    batch; with several ranks, the first batches are repeated so that every rank gets as many.
    With `groups` (the question of each window), a question's windows stay together: batches are
    whole questions, up to `batch_size` windows (at least one question), so their span scores can
    be normalised together.
    """
    if groups is None:
        starts, sizes, unit_lengths = np.arange(len(lengths)), np.ones(len(lengths), dtype=int), lengths
    else:
        starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        sizes = np.diff(np.r_[starts, len(groups)])
        unit_lengths = np.maximum.reduceat(lengths, starts)
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(unit_lengths))
    if group_by_length:
        chunk = batch_size * GROUP_BATCHES
        order = np.concatenate(
            [
                part[np.argsort(-unit_lengths[part], kind="stable")]
                for part in (order[start : start + chunk] for start in range(0, len(order), chunk))
            ]
        )
    batches = pack(order, sizes, batch_size)
    if group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    per_rank = math.ceil(len(batches) / world_size)
    batches += batches[: per_rank * world_size - len(batches)]
    mine = batches[rank::world_size]
    if groups is None:
        return mine
    return [np.concatenate([np.arange(starts[u], starts[u] + sizes[u]) for u in batch]) for batch in mine]


def pack(order: np.ndarray, sizes: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive units of `order` into batches of at most `batch_size` windows (one unit at least)."""
    if (sizes == 1).all():
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches, current, count = [], [], 0
    for unit in order:
        if current and count + sizes[unit] > batch_size:
            batches.append(np.array(current))
            current, count = [], 0
        current.append(unit)
        count += sizes[unit]
    if current:
        batches.append(np.array(current))
    return batches
