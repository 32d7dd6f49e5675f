"""The reader's training loss when a question is read with several passages.

Per window, the usual span cross-entropy: the answer's first and last token, or [CLS] where the
window does not hold the answer (a negative passage, or the wrong slice of a long paragraph), so
each window learns to say "not here". Shared normalisation (Clark and Gardner 2018, "Simple and
Effective Multi-Paragraph Reading Comprehension") adds one softmax over the positions of ALL
windows of a question: the gold span must outscore every position of every other passage. That
makes the raw span scores comparable across passages, which is how serving ranks them
(retrieval.reader.postprocess compares start + end logits across all windows of a question).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from retrieval.reader.features import NO_ANSWER_INDEX


def shared_norm_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Mean per-window cross-entropy plus the mean over questions of the shared-normalisation term."""
    per_window = (
        F.cross_entropy(start_logits.float(), batch["start_positions"])
        + F.cross_entropy(end_logits.float(), batch["end_positions"])
    ) / 2
    mask = batch["attention_mask"].bool()
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
