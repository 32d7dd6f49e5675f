"""The reader shipped in models/reader answers the knowledge base's own questions.

Each question is read against its gold passage, so this measures the reader
alone, not retrieval, and it scores the best span whether or not the reader
abstains (the calibrated threshold decides abstention; this measures reading).
The floors sit a few points below the scores measured when the model was
committed (in the comment), so a broken export, a preprocessing change or a
wrong model file fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.documents import Passage
from retrieval.reader.metrics import ScoredQuestion, squad_scores
from retrieval.reader.model import Reader
from retrieval.squad import read_squad

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_READER = REPO_ROOT / "models" / "reader"
KNOWLEDGE_QA = REPO_ROOT / "tests" / "data" / "knowledge_qa.json"

# Measured on the 143 knowledge-base questions with models/reader as committed: exact 48.3, F1 61.0.
EXACT_FLOOR = 42.0
F1_FLOOR = 55.0


@pytest.fixture(scope="module")
def shipped_reader() -> Reader:
    return Reader.load(SHIPPED_READER)


def test_shipped_reader_fits_in_one_small_weights_file() -> None:
    weights = list(SHIPPED_READER.glob("*.safetensors"))
    assert len(weights) == 1
    assert weights[0].stat().st_size <= 50 * 1024 * 1024


def test_shipped_reader_answers_knowledge_base_questions(shipped_reader: Reader) -> None:
    paragraphs = read_squad(KNOWLEDGE_QA)
    queries, golds = [], []
    for number, paragraph in enumerate(paragraphs):
        passage = Passage(passage_id=f"kb-{number}", title=paragraph.title, text=paragraph.context)
        for question in paragraph.questions:
            queries.append((question.question, [passage]))
            golds.append(tuple(answer.text for answer in question.answers))

    answers = shipped_reader.answer_many(queries)
    scores = squad_scores(
        [
            ScoredQuestion(prediction=answer.candidates[0].text, golds=gold)
            for answer, gold in zip(answers, golds, strict=True)
        ]
    )
    print(f"shipped reader on {len(golds)} knowledge-base questions: {scores}")

    assert all(answer.candidates for answer in answers)
    assert all(
        candidate.passage.text[candidate.start : candidate.end] == candidate.text
        for answer in answers
        for candidate in answer.candidates
    )
    assert scores["exact"] >= EXACT_FLOOR
    assert scores["f1"] >= F1_FLOOR
