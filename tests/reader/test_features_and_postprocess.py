"""Windows, labels and span post-processing with the real tokenizer and hand-set logits."""

from __future__ import annotations

import numpy as np
import pytest

from retrieval.reader.features import (
    NO_ANSWER_INDEX,
    FeatureConfig,
    QAPair,
    clip_question,
    collate,
    encode_pairs,
)
from retrieval.reader.postprocess import rank_spans

SMALL_WINDOWS = FeatureConfig(max_length=40, stride=8, max_query_tokens=8)
FILLER = " ".join(f"word{n}" for n in range(40))


def token_at(window, char_index: int) -> int:
    """The token of `window` whose character span covers char_index."""
    return next(
        i
        for i, span in enumerate(window.context_offsets)
        if span is not None and span[0] <= char_index < span[1]
    )


def logits_for(windows, picks: dict[int, tuple[int, int, float]]):
    """Flat logits, with (start token, end token, height) raised in the chosen windows."""
    starts, ends = [], []
    for index, window in enumerate(windows):
        start, end = np.zeros(len(window.input_ids)), np.zeros(len(window.input_ids))
        if index in picks:
            first, last, height = picks[index]
            start[first] += height
            end[last] += height
        starts.append(start)
        ends.append(end)
    return starts, ends


def test_long_passage_is_cut_into_overlapping_windows(tokenizer):
    windows = encode_pairs(tokenizer, [QAPair("what?", FILLER)], SMALL_WINDOWS)
    assert len(windows) > 2
    assert all(len(w.input_ids) <= SMALL_WINDOWS.max_length for w in windows)
    first_end = max(span[1] for span in windows[0].context_offsets if span)
    second_start = min(span[0] for span in windows[1].context_offsets if span)
    assert second_start < first_end  # the windows overlap


def test_answer_across_a_window_border_is_labelled_and_found_in_the_window_holding_it_whole(tokenizer):
    answer = "golden lighthouse keeper Mara Okafor"
    for filler_words in range(40):  # slide the answer until a window border falls inside it
        context = " ".join(FILLER.split()[:filler_words]) + " the " + answer + " lives here " + FILLER
        start = context.index(answer)
        windows = encode_pairs(
            tokenizer, [QAPair("who?", context, (start, start + len(answer)))], SMALL_WINDOWS
        )
        cut = [
            w
            for w in windows
            if any(s and s[0] <= start < s[1] for s in w.context_offsets)
            and not any(s and s[0] < start + len(answer) <= s[1] for s in w.context_offsets)
        ]
        whole = [w for w in windows if w.start_label != NO_ANSWER_INDEX]
        if cut and whole:
            break
    assert cut and whole, "no placement put the answer across a window border"
    assert all(w.start_label == w.end_label == NO_ANSWER_INDEX for w in cut)
    label = whole[0]
    assert (
        context[label.context_offsets[label.start_label][0] : label.context_offsets[label.end_label][1]]
        == answer
    )

    # The cut window is keen on the start but cannot hold the end; the whole window finds the full span.
    cut_index, whole_index = windows.index(cut[0]), windows.index(label)
    cut_start = token_at(cut[0], start)
    starts, ends = logits_for(
        windows,
        {cut_index: (cut_start, cut_start, 0.0), whole_index: (label.start_label, label.end_label, 4.0)},
    )
    starts[cut_index][cut_start] = 6.0
    best = rank_spans(windows, starts, ends, [context]).best(0.0)
    assert (best.text, best.start, best.end) == (answer, start, start + len(answer))


def test_answers_are_exact_characters_with_unicode_and_extra_whitespace(tokenizer):
    context = "Zoë  Almeida opened the Café   Lumière in São  Paulo."
    answer = "Café   Lumière in São  Paulo"
    start = context.index(answer)
    windows = encode_pairs(tokenizer, [QAPair("where?", context)], FeatureConfig())
    first, last = token_at(windows[0], start), token_at(windows[0], start + len(answer) - 1)
    starts, ends = logits_for(windows, {0: (first, last, 5.0)})
    best = rank_spans(windows, starts, ends, [context]).best(0.0)
    assert best.text == answer
    assert context[best.start : best.end] == answer


def test_max_answer_length_limits_the_span(tokenizer):
    context = "The festival is held on the first Sunday of October every year."
    windows = encode_pairs(tokenizer, [QAPair("when?", context)], FeatureConfig())
    first, last = token_at(windows[0], context.index("first")), token_at(windows[0], context.index("October"))
    starts, ends = logits_for(windows, {0: (first, last, 5.0)})
    ends[0][token_at(windows[0], context.index("Sunday"))] = 3.0
    assert rank_spans(windows, starts, ends, [context]).best(0.0).text == "first Sunday of October"
    short = rank_spans(windows, starts, ends, [context], max_answer_tokens=2).best(0.0)
    assert short.text == "first Sunday"


def test_confidences_are_comparable_across_passages_and_abstention_follows_the_threshold(tokenizer):
    contexts = ["Pears grow in Tesk.", "Quinces grow in Velna."]
    windows = encode_pairs(tokenizer, [QAPair("what grows?", c) for c in contexts], FeatureConfig())
    starts, ends = logits_for(
        windows,
        {
            0: (token_at(windows[0], 0), token_at(windows[0], 4), 2.0),
            1: (token_at(windows[1], 0), token_at(windows[1], 6), 3.0),
        },
    )
    prediction = rank_spans(windows, starts, ends, contexts, top_n=3)
    assert [c.text for c in prediction.candidates[:2]] == ["Quinces", "Pears"]
    assert prediction.candidates[0].pair_index == 1
    assert all(0.0 <= c.confidence <= 1.0 for c in prediction.candidates)
    assert sum(c.confidence for c in prediction.candidates) + prediction.no_answer_confidence <= 1.0 + 1e-9
    best = prediction.candidates[0].confidence
    assert prediction.best(best - 1e-6).text == "Quinces"
    assert prediction.best(best + 1e-6) is None


def test_passage_priors_shift_the_choice_between_passages(tokenizer):
    """The reader's relevance priors: a span 0.5 logit higher loses to one 2 logits of prior ahead."""
    contexts = ["Pears grow in Tesk.", "Quinces grow in Velna."]
    windows = encode_pairs(tokenizer, [QAPair("what grows?", c) for c in contexts], FeatureConfig())
    starts, ends = logits_for(
        windows,
        {
            0: (token_at(windows[0], 0), token_at(windows[0], 4), 2.0),
            1: (token_at(windows[1], 0), token_at(windows[1], 6), 2.5),
        },
    )
    unranked = rank_spans(windows, starts, ends, contexts)
    ranked = rank_spans(windows, starts, ends, contexts, pair_priors=[0.0, -2.0])

    assert unranked.candidates[0].text == "Quinces"
    assert [c.text for c in ranked.candidates[:2]] == ["Pears", "Quinces"]
    assert ranked.candidates[1].score == pytest.approx(unranked.candidates[0].score - 2.0)


def test_no_windows_means_no_answer():
    prediction = rank_spans([], [], [], [])
    assert prediction.candidates == () and prediction.best(0.0) is None


def test_long_questions_are_clipped_so_the_passage_keeps_its_room(tokenizer):
    question = "why " * 200
    assert len(tokenizer(clip_question(tokenizer, question, 8), add_special_tokens=False)["input_ids"]) == 8
    windows = encode_pairs(tokenizer, [QAPair(question, "A short passage.")], SMALL_WINDOWS)
    assert any(span is not None for span in windows[0].context_offsets)


def test_collate_pads_to_the_longest_window_in_the_batch(tokenizer):
    windows = encode_pairs(
        tokenizer, [QAPair("q?", "short."), QAPair("q?", "a somewhat longer passage here.")], FeatureConfig()
    )
    batch = collate(windows, tokenizer.pad_token_id, with_labels=True)
    width = max(len(w.input_ids) for w in windows)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].sum().item() == sum(len(w.input_ids) for w in windows)
    assert batch["start_positions"].tolist() == [NO_ANSWER_INDEX, NO_ANSWER_INDEX]


@pytest.mark.parametrize(
    "config",
    [dict(max_length=40, stride=40, max_query_tokens=8), dict(max_length=16, stride=2, max_query_tokens=8)],
)
def test_impossible_window_geometry_is_a_clear_error(config):
    with pytest.raises(ValueError, match=r"stride|room"):
        FeatureConfig(**config)
