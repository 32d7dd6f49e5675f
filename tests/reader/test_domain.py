"""The domain training file: the knowledge base's fit half (never its held-out half) beside SQuAD."""

from __future__ import annotations

import json
from pathlib import Path

from retrieval.squad import read_squad, split_of
from retrieval.training.data import Example, labelled_pair
from retrieval.training.domain import main

KNOWLEDGE = Path(__file__).resolve().parents[1] / "data" / "knowledge_qa.json"


def squad_file(path: Path, questions_per_paragraph: int) -> Path:
    """A small SQuAD v1.1 file: three articles of two paragraphs, each with that many questions."""
    articles = []
    for a in range(3):
        paragraphs = []
        for p in range(2):
            context = f"Town {a}-{p} was founded in {1800 + 10 * a + p} by settlers from the coast."
            answer = str(1800 + 10 * a + p)
            qas = [
                {
                    "id": f"q{a}-{p}-{n}",
                    "question": f"When was town {a}-{p} founded ({n})?",
                    "answers": [{"text": answer, "answer_start": context.index(answer)}],
                }
                for n in range(questions_per_paragraph)
            ]
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": f"Article {a}", "paragraphs": paragraphs})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def test_only_the_fit_half_is_trained_on_each_question_repeated(tmp_path):
    squad = squad_file(tmp_path / "squad.json", questions_per_paragraph=2)
    out = tmp_path / "domain" / "train.json"
    args = ["--squad", str(squad), "--knowledge", str(KNOWLEDGE), "--out", str(out)]
    assert main([*args, "--squad-questions", "5", "--repeat", "3", "--seed", "1"]) == 0

    knowledge = {q.question_id: q for p in read_squad(KNOWLEDGE) for q in p.questions}
    fit = {qid for qid in knowledge if split_of(qid) == "fit"}
    assert fit and len(fit) < len(knowledge)  # both halves exist, so leaving one out means something
    written = [(p, q) for p in read_squad(out) for q in p.questions]
    domain = [q for _, q in written if not q.question_id.startswith("q")]
    originals = [q.question_id.rsplit("-r", 1)[0] for q in domain]
    assert sorted(set(originals)) == sorted(fit)  # every fit question, no held-out one
    assert all(originals.count(qid) == 3 for qid in fit)
    assert len({q.question_id for q in domain}) == len(domain)  # each copy has its own id
    held_out_texts = {knowledge[qid].question for qid in knowledge if qid not in fit}
    assert not held_out_texts & {q.question for q in domain}
    assert sum(q.question_id.startswith("q") for _, q in written) == 5
    # every question still points at its answer, so training labels all of them
    assert all(labelled_pair(Example(q, p)) is not None for p, q in written)


def test_paragraphs_without_a_kept_question_are_left_out(tmp_path):
    squad = squad_file(tmp_path / "squad.json", questions_per_paragraph=1)
    out = tmp_path / "train.json"
    args = ["--squad", str(squad), "--knowledge", str(KNOWLEDGE), "--out", str(out)]
    assert main([*args, "--squad-questions", "2"]) == 0
    replay = [p for p in read_squad(out) if p.title.startswith("Article")]
    assert len(replay) == 2 and all(len(p.questions) == 1 for p in replay)
    assert all(p.questions for p in read_squad(out))
