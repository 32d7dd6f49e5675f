"""Reading a question with passages that do not hold its answer: mining them, keeping a question's
windows in one batch, and the shared-normalisation loss, on hand-made data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import BertForQuestionAnswering

from retrieval.reader.features import FeatureConfig, encode_pairs
from retrieval.squad import SquadAnswer, SquadParagraph, SquadQuestion
from retrieval.training.data import Example, NegativeSettings, TrainingWindows, epoch_batches, grouped_pairs
from retrieval.training.negatives import holds_answer, mine_negatives
from retrieval.training.objective import LengthChunkedReader, length_chunks, question_terms, shared_norm_loss
from retrieval.training.options import parse_args
from retrieval.training.spawn import spawn_training
from retrieval.training.train import train

LIGHTHOUSE = "The Brightwater lighthouse was built in 1871 by the engineer Mara Okafor."
LAMP = "The lighthouse lamp burned whale oil until 1923, when an electric light replaced it."
KEEPERS = "Three keepers lived at Brightwater; the last of them left in 1961."
HARBOUR = "The harbour of Velna was dredged in 1871 to let steamers in, the engineer Okafor said."
ORCHARD = "Farmers in the valley of Tesk grow pears and quinces."


def example(title: str, context: str, question: str, answer: str) -> Example:
    gold = SquadAnswer(text=answer, start=context.index(answer))
    return Example(SquadQuestion(f"{title}-{answer}", question, (gold,)), SquadParagraph(title, context))


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return [
        example("Brightwater", LIGHTHOUSE, "Who built the Brightwater lighthouse?", "Mara Okafor"),
        example("Brightwater", LAMP, "What did the lighthouse lamp burn?", "whale oil"),
        example("Brightwater", KEEPERS, "When did the last keeper leave Brightwater?", "1961"),
        example("Velna", HARBOUR, "When was the harbour of Velna dredged?", "1871"),
        example("Tesk", ORCHARD, "What do farmers in Tesk grow?", "pears and quinces"),
    ]


def test_a_passage_holds_an_answer_as_squad_compares_them():
    assert holds_answer(LIGHTHOUSE, ["mara okafor"])
    assert holds_answer(HARBOUR, ["1871"])
    assert not holds_answer(LAMP, ["1871"]) and not holds_answer(KEEPERS, ["Okafor"])


def test_negatives_come_from_the_article_and_from_bm25_and_never_hold_the_answer(examples):
    negatives = mine_negatives(examples, NegativeSettings(same_article=1, retrieved=1, seed=3))
    lighthouse, harbour, orchard = negatives[0], negatives[3], negatives[4]
    assert len(lighthouse) == 2 and lighthouse[0] in (LAMP, KEEPERS)  # a sibling paragraph first
    assert len(harbour) == 1 and harbour[0] in (LAMP, KEEPERS)  # Velna has no sibling: a BM25 match
    assert LIGHTHOUSE not in harbour  # it holds "1871", the harbour question's answer
    assert orchard and ORCHARD not in orchard
    for ex, chosen in zip(examples, negatives, strict=True):
        assert ex.paragraph.context not in chosen
        assert not any(holds_answer(c, [a.text for a in ex.question.answers]) for c in chosen)


def test_negative_passages_are_labelled_no_answer_and_grouped_with_their_question(examples, tokenizer):
    negatives = [[LAMP], [], [], [], [LIGHTHOUSE, KEEPERS]]
    pairs, groups = grouped_pairs(examples, negatives)
    assert groups == [0, 0, 1, 2, 3, 4, 4, 4]
    windows = TrainingWindows.from_windows(encode_pairs(tokenizer, pairs, FeatureConfig()), groups)
    assert windows.groups.tolist() == groups  # short passages: one window each
    assert windows.start_labels[0] > 0 and windows.start_labels[1] == 0  # the lamp paragraph: [CLS]
    assert windows.start_labels[5] > 0 and (windows.start_labels[6:] == 0).all()


def test_batches_keep_a_questions_windows_together_and_use_each_once():
    sizes = np.random.default_rng(0).integers(1, 5, size=300)
    groups = np.repeat(np.arange(300), sizes)
    lengths = np.random.default_rng(1).integers(20, 256, size=len(groups))
    batches = epoch_batches(lengths, 16, seed=2, epoch=0, groups=groups)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(groups)))
    for batch in batches:
        assert len(batch) <= 16
        for group in np.unique(groups[batch]):
            assert (groups[batch] == group).sum() == (groups == group).sum()  # the whole question


def test_shared_normalisation_is_one_softmax_over_all_windows_of_a_question():
    logits = torch.tensor([[0.0, 1.0, 3.0, 0.5], [0.0, 2.0, 0.0, -50.0], [1.0, 0.0, 4.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]]).bool()  # window 1's last is padding
    labels = torch.tensor([2, 0, 2])  # question 0: answer in window 0; window 1 is a negative
    groups = torch.tensor([0, 0, 1])
    question_0 = math.log(sum(math.exp(x) for x in (0.0, 1.0, 3.0, 0.5, 0.0, 2.0, 0.0))) - 3.0
    question_1 = math.log(sum(math.exp(x) for x in (1.0, 0.0, 4.0, 0.0))) - 4.0
    assert question_terms(logits, labels, mask, groups).item() == pytest.approx((question_0 + question_1) / 2)

    louder_negative = logits.clone()
    louder_negative[1, 1] = 6.0  # a distractor passage outscoring the answer costs question 0 only
    assert question_terms(louder_negative, labels, mask, groups).item() > question_0 / 2 + question_1 / 2 + 1
    batch = {
        "attention_mask": mask.long(),
        "start_positions": labels,
        "end_positions": labels,
        "groups": groups,
    }
    per_window = torch.nn.functional.cross_entropy(logits, labels)
    assert shared_norm_loss(logits, logits, batch).item() == pytest.approx(
        per_window.item() + (question_0 + question_1) / 2
    )


def test_length_chunks_pad_least():
    # Two long windows and four short ones: one chunk pads the short ones to 100 (600 tokens).
    lengths = (100, 90, 30, 30, 20, 10)
    assert length_chunks(lengths, 1) == ((0, 6),)
    assert length_chunks(lengths, 2) == ((0, 2), (2, 6))  # 2 x 100 + 4 x 30 = 320 tokens
    assert length_chunks(lengths, 3) == ((0, 2), (2, 4), (4, 6))  # 200 + 60 + 40 = 300
    assert length_chunks((50, 50, 50), 3) == ((0, 3),)  # nothing to gain, one pass
    assert length_chunks((7,), 3) == ((0, 1),)


def test_chunked_forward_gives_the_logits_of_one_padded_forward(tiny_model_dir):
    """Rows of very different lengths, out of order: every real position's logits match the plain
    forward of the whole padded batch, and padding is -inf."""
    torch.manual_seed(0)
    model = BertForQuestionAnswering.from_pretrained(tiny_model_dir).eval()
    lengths = torch.tensor([12, 60, 9, 58, 30, 11])
    mask = (torch.arange(64) < lengths[:, None]).long()
    input_ids = torch.randint(1000, 2000, mask.shape) * mask
    token_type_ids = (torch.arange(64) >= 5).long() * mask
    with torch.no_grad():
        plain = model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask)
        start, end = LengthChunkedReader(model, max_chunks=3)(input_ids, token_type_ids, mask)
    real = mask.bool()
    torch.testing.assert_close(start[real], plain.start_logits[real], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(end[real], plain.end_logits[real], atol=1e-4, rtol=1e-4)
    assert torch.isneginf(start[~real]).all() and torch.isneginf(end[~real]).all()


def test_training_with_negatives_and_shared_norm_learns(squad_file, tiny_model_dir, tmp_path):
    out = tmp_path / "model"
    argv = [
        *("--train", str(squad_file), "--dev", str(squad_file), "--out", str(out)),
        *("--init", str(tiny_model_dir), "--epochs", "5", "--lr", "3e-3", "--batch-size", "6"),
        *("--max-length", "96", "--stride", "16", "--threads", "1", "--feature-cache", ""),
        *("--shared-norm", "--negatives-same-article", "1", "--negatives-retrieved", "1"),
    ]
    summary = train(parse_args(argv))
    losses = [m["train_loss"] for m in summary["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert summary["best_f1"] > 20.0


def test_shared_norm_trains_under_two_process_ddp(squad_file, tiny_model_dir, tmp_path):
    """The chunked forward runs inside one DistributedDataParallel forward: two gloo ranks train
    with negatives and shared normalisation and end with identical weights."""
    argv = [
        *("--train", str(squad_file), "--dev", str(squad_file), "--out", str(tmp_path / "model")),
        *("--init", str(tiny_model_dir), "--epochs", "2", "--batch-size", "6", "--max-steps", "3"),
        *("--max-length", "96", "--stride", "16", "--threads", "1", "--feature-cache", ""),
        *("--shared-norm", "--negatives-same-article", "1", "--negatives-retrieved", "1"),
    ]
    report = spawn_training(argv, nprocs=2)
    assert report.summary["global_step"] == 3
    assert report.replica_digests[0] == report.replica_digests[1]
