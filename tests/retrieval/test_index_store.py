"""The index store: build, skip when unchanged, atomic writes, loading, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.index.encoder import SentenceEncoder
from retrieval.index.ingest import IngestError, load_passages
from retrieval.index.retrievers import Bm25Retriever, DenseRetriever, HybridRetriever, TfidfRetriever
from retrieval.index.store import RETRIEVER_NAMES, IndexSettings, IndexStoreError, build_index, load_index
from tests.retrieval.conftest import TINY_QUESTIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
# Not the default hybrid (linear BM25 + dense), to show saved settings are the ones served.
HYBRID_RRF_TFIDF = IndexSettings.from_dict(
    {"hybrid": {"members": ["tfidf", "dense"], "fusion": "rrf", "weights": [1.0, 1.0]}}
)


def _files(folder: Path) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()
    }


def test_saved_index_gives_the_same_results_as_the_retrievers_it_was_built_from(
    tiny_docs: Path, tmp_path: Path, encoder: SentenceEncoder
) -> None:
    build_index([tiny_docs], tmp_path / "index", HYBRID_RRF_TFIDF, encoder)
    index = load_index(tmp_path / "index", encoder=encoder)
    passages = load_passages([tiny_docs])
    dense = DenseRetriever.build(passages, encoder)
    tfidf = TfidfRetriever.build(passages)
    in_memory = {
        "tfidf": tfidf,
        "bm25": Bm25Retriever.build(passages),
        "dense": dense,
        "hybrid": HybridRetriever([tfidf, dense], HYBRID_RRF_TFIDF.hybrid),
    }

    assert index.passages == passages
    assert set(in_memory) == set(RETRIEVER_NAMES)
    for question in [*TINY_QUESTIONS, "tell me about ash and lava"]:
        for name, retriever in in_memory.items():
            expected = [(r.passage, round(r.score, 5)) for r in retriever.search(question, 4)]
            assert [(r.passage, round(r.score, 5)) for r in index.search(question, 4, name)] == expected


def test_rebuild_is_skipped_until_a_document_changes(
    tiny_docs: Path, tmp_path: Path, encoder: SentenceEncoder
) -> None:
    out = tmp_path / "index"
    first = build_index([tiny_docs], out, encoder=encoder)
    files_after_first_build = _files(out)

    second = build_index([tiny_docs], out, encoder=encoder)

    assert first.built and not second.built and second.input_hash == first.input_hash
    assert _files(out) == files_after_first_build
    (tiny_docs / "tea.md").write_text("# Tea\n\nOolong tea is partly oxidised.\n", encoding="utf-8")
    third = build_index([tiny_docs], out, encoder=encoder)
    assert third.built and third.input_hash != first.input_hash
    found = load_index(out, encoder=encoder).search("Which tea is partly oxidised?", k=1, retriever="tfidf")
    assert found[0].passage.passage_id == "tea#tea-1"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["docs", "index"]  # no staging folders left


def test_changed_settings_rebuild(tiny_docs: Path, tmp_path: Path, encoder: SentenceEncoder) -> None:
    build_index([tiny_docs], tmp_path / "index", encoder=encoder)
    assert build_index(
        [tiny_docs], tmp_path / "index", IndexSettings(max_passage_chars=80), encoder=encoder
    ).built


def test_a_malformed_file_leaves_no_index_and_keeps_an_existing_one(
    tiny_docs: Path, tmp_path: Path, encoder: SentenceEncoder
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"title": "x", "text": "fine"}\n{oops\n', encoding="utf-8")
    with pytest.raises(IngestError, match=r"broken\.jsonl"):
        build_index([tiny_docs, broken], tmp_path / "new", encoder=encoder)
    assert not (tmp_path / "new").exists()

    build_index([tiny_docs], tmp_path / "index", encoder=encoder)
    before = _files(tmp_path / "index")
    with pytest.raises(IngestError, match=r"broken\.jsonl"):
        build_index([tiny_docs, broken], tmp_path / "index", encoder=encoder)
    assert _files(tmp_path / "index") == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["broken.jsonl", "docs", "index"]


def test_loading_is_lazy_and_bad_requests_get_clear_errors(
    tiny_docs: Path, tmp_path: Path, encoder: SentenceEncoder
) -> None:
    build_index([tiny_docs], tmp_path / "index", encoder=encoder)
    index = load_index(tmp_path / "index")  # its own encoder: not loaded until a dense query

    assert (
        index.search("castling king rook", k=1, retriever="tfidf")[0].passage.passage_id == "chess#castling-1"
    )
    assert not index.encoder.is_loaded
    assert index.search("castling king rook", k=1)[0].passage.passage_id == "chess#castling-1"
    assert index.encoder.is_loaded
    with pytest.raises(ValueError, match="empty"):
        index.search("   ")
    with pytest.raises(ValueError, match="unknown retriever"):
        index.search("tea", retriever="magic")
    with pytest.raises(IndexStoreError, match="not a retrieval index"):
        load_index(tmp_path / "docs")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "retrieval", *args, "--threads", "1"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_command_line_builds_skips_and_searches(tiny_docs: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "index")

    built = _cli("index", "--docs", str(tiny_docs), "--out", out)
    skipped = _cli("index", "--docs", str(tiny_docs), "--out", out)
    found = _cli(
        "search", "--index", out, "--retriever", "hybrid", "-k", "2", "Why do green tea leaves stay green?"
    )
    missing = _cli("search", "--index", str(tmp_path / "nothing"), "tea")

    assert built.returncode == 0 and "built" in built.stdout and "7 passages" in built.stdout, built.stderr
    assert skipped.returncode == 0 and "skipped" in skipped.stdout, skipped.stderr
    assert found.returncode == 0, found.stderr
    assert (
        found.stdout.splitlines()[0].startswith("1. [") and "tea#green-tea-1" in found.stdout.splitlines()[0]
    )
    assert missing.returncode == 2 and "not a retrieval index" in missing.stderr
    assert "Traceback" not in missing.stderr
