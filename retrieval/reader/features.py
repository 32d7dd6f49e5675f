"""Turning (question, passage) pairs into model windows: the one preprocessing path.

Training, evaluation and serving all call `encode_pairs` and `collate`, so the
model sees at serving time exactly the token layout it was trained on:
``[CLS] question [SEP] passage-window [SEP]``, with passages longer than one
window cut into overlapping windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

NO_ANSWER_INDEX = 0  # the [CLS] token: the label of a window that does not hold the whole answer


@dataclass(frozen=True)
class FeatureConfig:
    """Window geometry; stored with the model so serving cuts passages like training did."""

    max_length: int = 256  # tokens per window, question and special tokens included
    stride: int = 96  # tokens shared by two consecutive windows of one passage
    max_query_tokens: int = 64  # longer questions are clipped so a window keeps room for the passage

    def __post_init__(self) -> None:
        room_for_passage = self.max_length - self.max_query_tokens - 3
        if self.max_query_tokens < 1 or room_for_passage < 8:
            raise ValueError(
                f"max_length {self.max_length} leaves no room for a passage "
                f"after {self.max_query_tokens} question tokens"
            )
        if not 0 <= self.stride < room_for_passage:
            raise ValueError(
                f"stride must be in [0, {room_for_passage}) for max_length {self.max_length}, "
                f"got {self.stride}"
            )


@dataclass(frozen=True)
class QAPair:
    """One question asked of one passage; `answer` is a gold (start, end) character span for training."""

    question: str
    context: str
    answer: tuple[int, int] | None = None


@dataclass(frozen=True)
class Window:
    """One model input: a question with one slice of one passage.

    `context_offsets[i]` is the (start, end) character span in the passage of token i,
    or None for question and special tokens, so predictions map back to exact characters.
    """

    pair_index: int
    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    context_offsets: tuple[tuple[int, int] | None, ...]
    start_label: int = NO_ANSWER_INDEX
    end_label: int = NO_ANSWER_INDEX


def clip_question(tokenizer: PreTrainedTokenizerBase, question: str, max_tokens: int) -> str:
    """Cut a question to its first `max_tokens` tokens so that truncation can always fall on the passage."""
    encoded = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    if len(offsets) <= max_tokens:
        return question
    return question[: offsets[max_tokens - 1][1]]


def _token_labels(offsets: Sequence[tuple[int, int] | None], answer: tuple[int, int]) -> tuple[int, int]:
    """Token indices of the answer's first and last token, or [CLS] twice when the window cuts the answer."""
    context_tokens = [i for i, span in enumerate(offsets) if span is not None]
    first, last = context_tokens[0], context_tokens[-1]
    answer_start, answer_end = answer
    if offsets[first][0] > answer_start or offsets[last][1] < answer_end:
        return NO_ANSWER_INDEX, NO_ANSWER_INDEX
    start = max(i for i in context_tokens if offsets[i][0] <= answer_start)
    end = min(i for i in context_tokens if offsets[i][1] >= answer_end)
    return start, max(start, end)


def encode_pairs(
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[QAPair],
    config: FeatureConfig,
    chunk_size: int = 512,
) -> list[Window]:
    """Tokenise pairs into windows (several per long passage), in pair order, labelled if answers given."""
    windows: list[Window] = []
    for chunk_start in range(0, len(pairs), chunk_size):
        chunk = pairs[chunk_start : chunk_start + chunk_size]
        encoded = tokenizer(
            [clip_question(tokenizer, pair.question, config.max_query_tokens) for pair in chunk],
            [pair.context for pair in chunk],
            truncation="only_second",
            max_length=config.max_length,
            stride=config.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_token_type_ids=True,
        )
        for row, local_index in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence_ids = encoded.sequence_ids(row)
            offsets = tuple(
                tuple(span) if sequence_id == 1 else None
                for span, sequence_id in zip(encoded["offset_mapping"][row], sequence_ids, strict=True)
            )
            answer = chunk[local_index].answer
            start, end = (
                _token_labels(offsets, answer) if answer is not None else (NO_ANSWER_INDEX, NO_ANSWER_INDEX)
            )
            windows.append(
                Window(
                    pair_index=chunk_start + local_index,
                    input_ids=tuple(encoded["input_ids"][row]),
                    token_type_ids=tuple(encoded["token_type_ids"][row]),
                    context_offsets=offsets,
                    start_label=start,
                    end_label=end,
                )
            )
    return windows


def collate(windows: Sequence[Window], pad_token_id: int, with_labels: bool) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest window (not to max_length): short SQuAD windows stay cheap."""
    width = max(len(window.input_ids) for window in windows)
    input_ids = torch.full((len(windows), width), pad_token_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(windows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, window in enumerate(windows):
        length = len(window.input_ids)
        input_ids[row, :length] = torch.tensor(window.input_ids)
        token_type_ids[row, :length] = torch.tensor(window.token_type_ids)
        attention_mask[row, :length] = 1
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}
    if with_labels:
        batch["start_positions"] = torch.tensor([window.start_label for window in windows])
        batch["end_positions"] = torch.tensor([window.end_label for window in windows])
    return batch
