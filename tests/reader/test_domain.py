"""The domain training file: the knowledge base's fit half (never its held-out half) and the questions
written from its documents beside SQuAD; the written questions stay apart from the test questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.index.ingest import load_passages
from retrieval.reader.metrics import normalize_answer
from retrieval.squad import read_squad, split_of
from retrieval.training.data import Example, labelled_pair
from retrieval.training.domain import main

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE = REPO_ROOT / "tests" / "data" / "knowledge_qa.json"
AUTHORED = REPO_ROOT / "tests" / "data" / "knowledge_authored_qa.json"  # stage 11's domain data
AUTHORED_SECOND = REPO_ROOT / "tests" / "data" / "knowledge_authored_qa_2.json"  # tried in stage 12


def write_domain_file(squad_file: Path, out: Path, *options: str) -> list[tuple]:
    """Run the command on the knowledge base and the tiny SQuAD file; (paragraph, question) written."""
    argv = ["--squad", str(squad_file), "--knowledge", str(KNOWLEDGE), "--out", str(out), *options]
    assert main(argv) == 0
    return [(p, q) for p in read_squad(out) for q in p.questions]


def test_only_the_fit_half_is_trained_on_each_question_repeated(tmp_path, squad_file):
    written = write_domain_file(
        squad_file, tmp_path / "domain" / "train.json", "--squad-questions", "5", "--repeat", "3"
    )

    knowledge = {q.question_id: q for p in read_squad(KNOWLEDGE) for q in p.questions}
    fit = {qid for qid in knowledge if split_of(qid) == "fit"}
    assert fit and len(fit) < len(knowledge)  # both halves exist, so leaving one out means something
    domain = [q for _, q in written if q.question_id.startswith("kb-")]
    originals = [q.question_id.rsplit("-r", 1)[0] for q in domain]
    assert sorted(set(originals)) == sorted(fit)  # every fit question, no held-out one
    assert all(originals.count(qid) == 3 for qid in fit)
    assert len({q.question_id for q in domain}) == len(domain)  # each copy has its own id
    held_out_texts = {knowledge[qid].question for qid in knowledge if qid not in fit}
    assert not held_out_texts & {q.question for q in domain}
    assert len(written) - len(domain) == 5
    # every question still points at its answer, so training labels all of them
    assert all(labelled_pair(Example(q, p)) is not None for p, q in written)


def test_paragraphs_without_a_kept_question_are_left_out(tmp_path, squad_file):
    written = write_domain_file(squad_file, tmp_path / "train.json", "--squad-questions", "2")

    replay = [(p, q) for p, q in written if not q.question_id.startswith("kb-")]
    assert len(replay) == 2
    squad_titles = {p.title for p in read_squad(squad_file)}
    squad_paragraphs = [p for p in read_squad(tmp_path / "train.json") if p.title in squad_titles]
    # one paragraph per kept question's paragraph, and none of the tiny file's others
    assert len(squad_paragraphs) == len({p.context for p, _ in replay}) < len(squad_titles)
    assert all(p.questions for p in read_squad(tmp_path / "train.json"))


def test_authored_questions_are_written_each_repeated_beside_the_fit_half(tmp_path, squad_file):
    written = write_domain_file(
        squad_file,
        tmp_path / "train.json",
        *("--squad-questions", "2", "--repeat", "1", "--authored-repeat", "2"),
        *("--authored", str(AUTHORED), str(AUTHORED_SECOND)),
    )

    authored = [
        q.question_id for path in (AUTHORED, AUTHORED_SECOND) for p in read_squad(path) for q in p.questions
    ]
    assert len(set(authored)) == len(authored)  # the two files' ids never collide
    copies = [q.question_id.rsplit("-r", 1)[0] for _, q in written if q.question_id.startswith("authored-")]
    assert sorted(set(copies)) == sorted(authored)
    assert all(copies.count(qid) == 2 for qid in authored)
    fit = [q for _, q in written if q.question_id.startswith("kb-")]
    assert fit and all(split_of(q.question_id.rsplit("-r", 1)[0]) == "fit" for q in fit)
    assert all(labelled_pair(Example(q, p)) is not None for p, q in written)


@pytest.mark.parametrize("authored_file", [AUTHORED, AUTHORED_SECOND], ids=["first", "second"])
def test_authored_questions_read_the_served_passages_and_repeat_no_test_question(authored_file):
    """Written from data/knowledge/'s passages as the service indexes them, and none word for word
    a question of knowledge_qa.json (whose held-out half measures the reader); edited documents
    make this fail until the authored questions are brought up to date."""
    passages = {(p.title.split(" - ")[0], p.text) for p in load_passages([REPO_ROOT / "data" / "knowledge"])}
    authored = [(p, q) for p in read_squad(authored_file) for q in p.questions]
    assert len(authored) > 300
    assert {(p.title, p.context) for p, _ in authored} <= passages
    assert all(p.context[a.start :].startswith(a.text) for p, q in authored for a in q.answers)
    test_questions = {normalize_answer(q.question) for p in read_squad(KNOWLEDGE) for q in p.questions}
    assert not {normalize_answer(q.question) for _, q in authored} & test_questions
