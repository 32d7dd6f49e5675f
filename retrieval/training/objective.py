"""The reader's training loss when a question is read with several passages.

Per window, the usual span cross-entropy: the answer's first and last token, or [CLS] where the
window does not hold the answer (a negative passage, or the wrong slice of a long paragraph), so
each window learns to say "not here". Shared normalisation (Clark and Gardner 2018, "Simple and
Effective Multi-Paragraph Reading Comprehension") adds one softmax over the positions of ALL
windows of a question: the gold span must outscore every position of every other passage. That
makes the raw span scores comparable across passages, which is how serving ranks them
(retrieval.reader.postprocess compares start + end logits across all windows of a question).

A question's passages differ in length, so batches that keep its windows together pad more than
batches of windows sorted by length; LengthChunkedReader runs such a batch in a few forward passes
of rows of similar length instead.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from retrieval.reader.features import NO_ANSWER_INDEX


def shared_norm_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean per-window cross-entropy plus the mean over questions of the shared-normalisation term;
    padding positions take part in neither."""
    mask = batch["attention_mask"].bool()
    per_window = (
        F.cross_entropy(start_logits.float().masked_fill(~mask, float("-inf")), batch["start_positions"])
        + F.cross_entropy(end_logits.float().masked_fill(~mask, float("-inf")), batch["end_positions"])
    ) / 2
    shared = (
        question_terms(start_logits, batch["start_positions"], mask, batch["groups"])
        + question_terms(end_logits, batch["end_positions"], mask, batch["groups"])
    ) / 2
    return per_window + shared


def question_terms(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """-log P(gold position) under one softmax over every real token of a question's windows, averaged
    over the questions whose answer is in one of their windows (a copy in each window that holds it)."""
    logits = logits.float().masked_fill(~mask, float("-inf"))
    terms = []
    for group in groups.unique():
        rows = groups == group
        answered = labels[rows] != NO_ANSWER_INDEX
        if not answered.any():
            continue
        gold = logits[rows].gather(1, labels[rows].unsqueeze(1)).squeeze(1)[answered]
        terms.append(torch.logsumexp(logits[rows].flatten(), 0) - torch.logsumexp(gold, 0))
    if not terms:
        return logits.new_zeros(())
    return torch.stack(terms).mean()


class LengthChunkedReader(torch.nn.Module):
    """A span model whose forward runs a batch's rows in up to `max_chunks` passes of rows of similar
    length, each padded only to its own longest row; returns (start, end) logits as one padded batch,
    -inf at padding. Measured on the 7,000-question negatives run's batches (a question's windows
    kept together): padded together they hold 1.28x the real tokens and 1.56x the attention work;
    in three chunks, 1.07x and 1.11x. The chunks run inside one forward, so DistributedDataParallel
    wrapping this module still sees one forward and one backward per batch."""

    def __init__(self, model: torch.nn.Module, max_chunks: int = 3) -> None:
        super().__init__()
        self.model = model
        self.max_chunks = max_chunks

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = attention_mask.sum(1)
        order = torch.argsort(lengths, descending=True, stable=True)
        width = attention_mask.shape[1]
        starts, ends = [], []
        for first, last in length_chunks(tuple(lengths[order].tolist()), self.max_chunks):
            rows = order[first:last]
            chunk_width = int(lengths[rows[0]])
            output = self.model(
                input_ids=input_ids[rows, :chunk_width],
                token_type_ids=token_type_ids[rows, :chunk_width],
                attention_mask=attention_mask[rows, :chunk_width],
            )
            starts.append(F.pad(output.start_logits.float(), (0, width - chunk_width), value=float("-inf")))
            ends.append(F.pad(output.end_logits.float(), (0, width - chunk_width), value=float("-inf")))
        back = torch.argsort(order)
        padding = ~attention_mask.bool()
        return (
            torch.cat(starts)[back].masked_fill(padding, float("-inf")),
            torch.cat(ends)[back].masked_fill(padding, float("-inf")),
        )


def length_chunks(sorted_lengths: Sequence[int], max_chunks: int) -> tuple[tuple[int, int], ...]:
    """Split lengths sorted longest first into at most `max_chunks` runs [first, last) with the fewest
    padded tokens (each run padded to its first, longest, length): exact, by dynamic programming."""
    count = len(sorted_lengths)

    @functools.cache
    def best(first: int, chunks_left: int) -> tuple[int, tuple[tuple[int, int], ...]]:
        if chunks_left == 1:
            return (count - first) * sorted_lengths[first], ((first, count),)
        options = [((count - first) * sorted_lengths[first], ((first, count),))]
        for last in range(first + 1, count):
            tokens, rest = best(last, chunks_left - 1)
            options.append(((last - first) * sorted_lengths[first] + tokens, ((first, last), *rest)))
        return min(options, key=lambda option: (option[0], len(option[1])))  # ties: fewer passes

    return best(0, max_chunks)[1]
