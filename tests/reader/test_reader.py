"""The Reader with real models: the packaged MiniLM shipped in fp16, and the tiny model for policy checks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import BertForQuestionAnswering

from retrieval.documents import Passage
from retrieval.reader.model import Reader, ReaderConfig
from retrieval.training.checkpoints import save_best
from retrieval.training.train import default_init_dir

PASSAGES = [
    Passage("p1", "Lighthouses", "The Brightwater lighthouse was built in 1871 by the engineer Mara Okafor."),
    Passage("p2", "Cafés", "The Café Lumière in São Paulo serves crème brûlée every Friday."),
]


@pytest.fixture(scope="module")
def shipped_minilm(tmp_path_factory, tokenizer):
    """The packaged MiniLM with a new QA head, saved the way training ships the best model (fp16)."""
    out = tmp_path_factory.mktemp("minilm-reader")
    model = BertForQuestionAnswering.from_pretrained(default_init_dir())
    save_best(
        out,
        model,
        tokenizer,
        ReaderConfig(),
        "fp16",
        {"metrics.json": {"f1": 0.0}},
    )
    return out, model


def test_packaged_minilm_ships_under_50_mb_and_loads_back_in_fp32(shipped_minilm):
    out, original = shipped_minilm
    weights = list(out.glob("*.safetensors"))
    assert len(weights) == 1 and weights[0].stat().st_size < 50 * 1024 * 1024
    reader = Reader.load(out, threads=1)
    assert all(p.dtype == torch.float32 for p in reader.model.parameters())
    assert reader.model.config.num_hidden_layers == 6 and reader.model.config.hidden_size == 384
    for name, tensor in original.state_dict().items():
        torch.testing.assert_close(reader.model.state_dict()[name], tensor.half().float())


def test_answer_is_an_exact_span_of_one_of_the_passages(shipped_minilm):
    reader = Reader.load(shipped_minilm[0])
    answer = reader.answer("Where is the Café Lumière?", PASSAGES, top_n=3)
    assert not answer.abstained and answer.passage in PASSAGES
    assert answer.passage.text[answer.start : answer.end] == answer.text
    assert 0.0 <= answer.confidence <= 1.0 and 1 <= len(answer.candidates) <= 3
    assert answer.candidates[0].text == answer.text
    assert all(c.passage.text[c.start : c.end] == c.text for c in answer.candidates)


@pytest.fixture()
def tiny_reader(tiny_model_dir):
    return Reader.load(tiny_model_dir, threads=1)


def test_reader_abstains_below_its_threshold(tiny_reader):
    sure = Reader(tiny_reader.model, tiny_reader.tokenizer, ReaderConfig(abstain_threshold=0.0)).answer(
        "Who built it?", PASSAGES
    )
    assert not sure.abstained and sure.text
    unsure = Reader(tiny_reader.model, tiny_reader.tokenizer, ReaderConfig(abstain_threshold=1.01)).answer(
        "Who built it?", PASSAGES
    )
    assert unsure.abstained and unsure.text == "" and unsure.passage is None and unsure.start is None
    assert unsure.candidates == sure.candidates  # the guesses are still there to inspect
    assert unsure.confidence == sure.confidence


def test_batched_answers_equal_one_by_one_answers(tiny_reader):
    questions = ["Who built the lighthouse?", "What does the café serve?"]
    batched = tiny_reader.answer_many([(q, PASSAGES) for q in questions])
    assert batched == [tiny_reader.answer(q, PASSAGES) for q in questions]


def test_relevances_lean_the_answer_towards_the_most_relevant_passage(tiny_reader):
    question = "Who built the lighthouse?"
    reader = Reader(tiny_reader.model, tiny_reader.tokenizer, ReaderConfig(relevance_weight=1000.0))

    towards_cafe = reader.answer(question, PASSAGES, relevances=[0.1, 0.9])
    towards_lighthouse = reader.answer(question, PASSAGES, relevances=[0.9, 0.1])

    assert towards_cafe.passage.passage_id == "p2" and towards_lighthouse.passage.passage_id == "p1"
    assert reader.passage_priors(2, [0.1, 0.9]) == pytest.approx([-800.0, 0.0])
    assert reader.passage_priors(2, None) == [0.0, 0.0]
    with pytest.raises(ValueError, match="1 relevances for 2 passages"):
        reader.answer(question, PASSAGES, relevances=[0.5])


def test_passages_far_below_the_most_relevant_are_not_read(tiny_reader):
    question = "Who built the lighthouse?"
    as_equals = ReaderConfig(relevance_weight=0.0)  # no prior: only skipping can keep a passage out
    reader = Reader(tiny_reader.model, tiny_reader.tokenizer, as_equals)
    reads_all = Reader(tiny_reader.model, tiny_reader.tokenizer, replace(as_equals, max_relevance_gap=None))

    every_span = 1000  # candidates beyond any count of spans, so each passage read lists some

    def sources(answering: Reader, relevances: list[float]) -> set[str]:
        answer = answering.answer(question, PASSAGES, top_n=every_span, relevances=relevances)
        return {c.passage.passage_id for c in answer.candidates}

    assert sources(reader, [0.5, 0.9]) == {"p2"}  # p1 0.4 below the best: unread
    assert sources(reads_all, [0.5, 0.9]) == {"p1", "p2"}
    assert sources(reader, [0.8, 0.9]) == {"p1", "p2"}  # within the 0.2 gap: read
    near = reader.answer(question, PASSAGES, relevances=[0.8, 0.9])
    assert near == reads_all.answer(question, PASSAGES, relevances=[0.8, 0.9])
    assert reader.passages_to_read(3, [0.5, 0.9, 0.75]) == [1, 2]
    assert reader.passages_to_read(2, None) == [0, 1]  # without relevances every passage is read


def test_the_most_relevant_passage_alone_answers_when_its_answer_is_enough(tiny_reader):
    question = "Who built the lighthouse?"
    reader = Reader(tiny_reader.model, tiny_reader.tokenizer, ReaderConfig(relevance_weight=1.0))
    relevances = [0.8, 0.9]  # p2 first; p1 within the gap, so reading everything reads both
    every_span = 1000
    seen: list[str] = []

    def enough_when(verdict: bool):
        def enough(answer):
            seen.append(answer.passage.passage_id)
            return verdict

        return enough

    alone = reader.answer(question, PASSAGES, every_span, relevances, enough=enough_when(True))
    assert seen == ["p2"] and {c.passage.passage_id for c in alone.candidates} == {"p2"}
    assert alone.passages_read == 1
    read_on = reader.answer(question, PASSAGES, every_span, relevances, enough=enough_when(False))
    assert seen == ["p2", "p2"]  # asked once, about the first passage's answer
    assert {c.passage.passage_id for c in read_on.candidates} == {"p1", "p2"} and read_on.passages_read == 2
    assert read_on == reader.answer(question, PASSAGES, every_span, relevances)  # as if read at once
    # a lone passage worth reading is not asked about; without relevances there is no first passage
    reader.answer(question, PASSAGES, every_span, [0.5, 0.9], enough=enough_when(False))
    reader.answer(question, PASSAGES, every_span, None, enough=enough_when(False))
    assert seen == ["p2", "p2"]
    assert reader.answer(question, [], relevances=[], enough=enough_when(True)).passages_read == 0
    with pytest.raises(ValueError, match="empty"):
        reader.answer(" ", PASSAGES, relevances=relevances, enough=enough_when(True))


def test_no_passages_gives_an_abstention_and_bad_input_a_clear_error(tiny_reader, tmp_path):
    empty = tiny_reader.answer("Who built it?", [])
    assert empty.abstained and empty.candidates == () and empty.confidence == 0.0 and empty.passages_read == 0
    with pytest.raises(ValueError, match="empty"):
        tiny_reader.answer("   ", PASSAGES)
    with pytest.raises(FileNotFoundError, match="not a reader model directory"):
        Reader.load(tmp_path)
