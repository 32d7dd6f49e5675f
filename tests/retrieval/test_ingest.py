"""Ingestion: every input format, duplicate removal, Markdown splitting, and clear errors."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from retrieval.index.ingest import IngestError, load_passages, read_markdown, split_long

SQUAD = {
    "version": "1.1",
    "data": [
        {
            "title": "Lunar_calendar",
            "paragraphs": [
                {"context": "A lunar calendar follows the phases of the Moon.", "qas": []},
                {"context": "The Islamic calendar is a purely lunar calendar of 354 days.", "qas": []},
            ],
        }
    ],
}


def test_squad_plain_and_gzipped_give_the_same_passages(tmp_path: Path) -> None:
    plain = tmp_path / "sample.json"
    plain.write_text(json.dumps(SQUAD), encoding="utf-8")
    zipped = tmp_path / "sample.json.gz"
    with gzip.open(zipped, "wt", encoding="utf-8") as handle:
        json.dump(SQUAD, handle)

    passages = load_passages([plain])

    assert [p.text for p in passages] == [p["context"] for p in SQUAD["data"][0]["paragraphs"]]
    assert {p.title for p in passages} == {"Lunar calendar"}
    assert all(p.passage_id.startswith("lunar-calendar#") for p in passages)
    assert load_passages([zipped]) == passages


def test_jsonl_uses_given_ids_and_makes_stable_ones_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text(
        json.dumps({"id": "n1", "title": "Saturn", "text": "Saturn rules Capricorn."})
        + "\n\n"
        + json.dumps({"title": "Mars", "text": "Mars rules Aries."})
        + "\n",
        encoding="utf-8",
    )

    first, second = load_passages([path])

    assert (first.passage_id, first.title, first.text) == ("n1", "Saturn", "Saturn rules Capricorn.")
    assert second.title == "Mars" and second.passage_id.startswith("mars#")
    assert load_passages([path])[1].passage_id == second.passage_id


def test_duplicates_across_files_are_dropped_by_normalised_text(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"title": "A", "text": "Venus rules  Taurus."}) + "\n")
    (tmp_path / "b.md").write_text("# B\n\nvenus RULES taurus.\n\nJupiter rules Sagittarius.\n")

    passages = load_passages([tmp_path / "a.jsonl", tmp_path / "b.md"], max_chars=30)

    assert [p.text for p in passages] == ["Venus rules  Taurus.", "Jupiter rules Sagittarius."]


def test_markdown_titles_sections_and_ids(tmp_path: Path) -> None:
    doc = tmp_path / "moon-phases.md"
    doc.write_text(
        "Intro before any heading.\n\n# The Moon\n\nFirst paragraph\nwrapped on two lines.\n\n"
        "## New moon\n\nThe Moon is between Earth and Sun.\n\n### Waxing\n\nIt grows.\n",
        encoding="utf-8",
    )
    untitled = tmp_path / "notes.txt"
    untitled.write_text("Just one paragraph.\n", encoding="utf-8")

    passages = read_markdown(doc)

    assert [(p.passage_id, p.title) for p in passages] == [
        ("moon-phases#intro-1", "The Moon"),
        ("moon-phases#the-moon-1", "The Moon"),
        ("moon-phases#new-moon-1", "The Moon - New moon"),
        ("moon-phases#waxing-1", "The Moon - Waxing"),
    ]
    assert passages[1].text == "First paragraph wrapped on two lines."
    assert read_markdown(untitled)[0].title == "notes"

    # A title heading directly followed by a section (no paragraph of its own) still titles the document.
    (tmp_path / "sun.md").write_text("# The Sun\n\n## Light\n\nThe Sun shines.\n", encoding="utf-8")
    assert read_markdown(tmp_path / "sun.md")[0].title == "The Sun - Light"
    assert read_markdown(doc) == passages  # same file, same ids and texts on every run


def test_markdown_respects_the_size_limit_and_splits_at_sentence_ends(tmp_path: Path) -> None:
    sentences = [
        f"Sentence number {n} talks about the planet Mercury and its retrograde motion." for n in range(12)
    ]
    short = "A short paragraph."
    doc = tmp_path / "long.md"
    doc.write_text(f"# Long\n\n{' '.join(sentences)}\n\n{short}\n\nAnother short one.\n", encoding="utf-8")

    passages = read_markdown(doc, max_chars=200)

    assert all(len(p.text) <= 200 for p in passages)
    assert all(p.text.endswith(".") for p in passages)
    assert " ".join(sentences) in " ".join(p.text for p in passages)
    assert passages[-1].text.endswith(
        f"\n\n{short}\n\nAnother short one."
    )  # paragraphs packed up to the limit
    assert len({p.passage_id for p in passages}) == len(passages)


def test_a_sentence_longer_than_the_limit_is_split_at_spaces() -> None:
    pieces = split_long("word " * 100, max_chars=42)
    assert all(len(piece) <= 42 for piece in pieces)
    assert " ".join(pieces).split() == ["word"] * 100


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.json", b'{"data": [ {"title": "x", '),
        ("not_squad.json", b'{"articles": []}'),
        ("bad.jsonl", b'{"title": "ok", "text": "fine"}\n{"title": "no text"}\n'),
        ("garbage.jsonl", b"not json at all\n"),
        ("latin1.md", "# Caf\xe9\n\nna\xefve".encode("latin-1")),
        ("table.csv", b"a,b\n"),
    ],
)
def test_malformed_files_give_an_error_naming_the_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError, match=re.escape(name)):
        load_passages([path])


def test_a_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nowhere"):
        load_passages([tmp_path / "nowhere"])
