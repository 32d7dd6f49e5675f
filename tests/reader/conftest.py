"""Shared fixtures: a tiny hand-written SQuAD-format QA set and a tiny randomly initialised BERT.

The tiny model uses the packaged MiniLM tokenizer (real vocabulary, real
offsets) with a 2-layer, 64-wide encoder so that training runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

from retrieval.training.train import default_init_dir

PARAGRAPHS = [
    (
        "Lighthouses",
        "The Brightwater lighthouse was built in 1871 by the engineer Mara Okafor. "
        "Its lamp burns whale oil until 1923, "
        "when it was replaced by an electric light visible for 22 miles.",
        [
            ("Who built the Brightwater lighthouse?", "Mara Okafor"),
            ("When was the Brightwater lighthouse built?", "1871"),
            ("How far is the electric light visible?", "22 miles"),
        ],
    ),
    (
        "Cafés",
        "The Café Lumière in São Paulo serves crème brûlée every Friday. "
        "It was opened by Zoë Almeida, a baker from Porto.",
        [
            ("Where is the Café Lumière?", "São Paulo"),
            ("Who opened the Café Lumière?", "Zoë Almeida"),
            ("Where does the baker come from?", "Porto"),
        ],
    ),
    (
        "Rivers",
        "The river   Velna  flows north for 340 kilometres before it reaches the Grey Sea. "
        "Salmon swim up the Velna each autumn.",
        [
            ("How long is the Velna?", "340 kilometres"),
            ("Where does the Velna flow into?", "the Grey Sea"),
            ("What fish swim up the Velna?", "Salmon"),
        ],
    ),
    (
        "Orchards",
        "Farmers in the valley of Tesk grow pears and quinces. "
        "The harvest festival, called Ostra, is held in October.",
        [
            ("What is the harvest festival called?", "Ostra"),
            ("When is Ostra held?", "October"),
            ("What do farmers in Tesk grow?", "pears and quinces"),
        ],
    ),
]

UNANSWERABLE = [
    ("Lighthouses", "Who painted the Brightwater lighthouse red?"),
    ("Rivers", "How deep is the Grey Sea?"),
]


def squad_payload(with_unanswerable: bool) -> dict:
    """The tiny QA set in the official SQuAD JSON layout (v2.0 style with unanswerable questions)."""
    articles = []
    for title, context, questions in PARAGRAPHS:
        qas = [
            {
                "id": f"{title}-{n}",
                "question": question,
                "answers": [{"text": answer, "answer_start": context.index(answer)}],
            }
            for n, (question, answer) in enumerate(questions)
        ]
        if with_unanswerable:
            qas += [
                {"id": f"{title}-x{n}", "question": q, "answers": [], "is_impossible": True}
                for n, (t, q) in enumerate(UNANSWERABLE)
                if t == title
            ]
        articles.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "v2.0" if with_unanswerable else "1.1", "data": articles}


@pytest.fixture(scope="session")
def squad_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("squad") / "tiny-v1.1.json"
    path.write_text(json.dumps(squad_payload(with_unanswerable=False)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def squad_v2_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("squad2") / "tiny-v2.0.json"
    path.write_text(json.dumps(squad_payload(with_unanswerable=True)), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(default_init_dir())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A randomly initialised 2-layer BERT QA model saved like a pretrained encoder."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=256,
    )
    BertForQuestionAnswering(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
