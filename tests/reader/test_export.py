"""Export of the tiny reader to ONNX (fp32, int8) and TorchScript, and parity with PyTorch."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from retrieval.documents import Passage
from retrieval.reader.backends import EXPORTED_FILES
from retrieval.reader.features import QAPair, encode_pairs
from retrieval.reader.model import Reader, ReaderConfig
from retrieval.squad import read_squad
from retrieval.training.export import (
    ABSOLUTE_TOLERANCE,
    METADATA_FILE,
    ensure_export,
    export_reader,
    main,
    parse_args,
)

KNOWLEDGE_QA = Path(__file__).parents[1] / "data" / "knowledge_qa.json"


@pytest.fixture(scope="module")
def tiny_qa(squad_file) -> tuple[list[str], list[Passage]]:
    """The questions of the tiny QA set, each to be asked of all its paragraphs."""
    paragraphs = read_squad(squad_file)
    passages = [Passage(p.title, p.title, p.context) for p in paragraphs]
    return [q.question for p in paragraphs for q in p.questions], passages


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("export")
    export_reader(tiny_model_dir, out, threads=1)
    return out


@pytest.fixture(scope="module")
def torch_reader(tiny_model_dir) -> Reader:
    return Reader.load(tiny_model_dir, threads=1)


@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
def test_exported_logits_match_pytorch_on_padded_batches(export_dir, torch_reader, tiny_qa, backend):
    questions, passages = tiny_qa
    pairs = [QAPair(question, passage.text) for question in questions for passage in passages]
    windows = encode_pairs(torch_reader.tokenizer, pairs, torch_reader.config.features)
    assert len({len(w.input_ids) for w in windows}) > 5  # shapes unlike the export example, padded
    exported = Reader.load(export_dir, threads=1, backend=backend)
    for expected, actual in zip(
        torch_reader.window_logits(windows), exported.window_logits(windows), strict=True
    ):
        for expected_logits, actual_logits in zip(expected, actual, strict=True):
            assert actual_logits.shape == expected_logits.shape
            np.testing.assert_allclose(
                actual_logits, expected_logits, rtol=0, atol=ABSOLUTE_TOLERANCE[backend]
            )


def test_onnx_reader_gives_the_same_answers_as_torch(export_dir, torch_reader, tiny_qa):
    questions, passages = tiny_qa
    queries = [(question, passages) for question in questions]
    expected = torch_reader.answer_many(queries, top_n=3)
    onnx_reader = Reader.load(export_dir, threads=1, backend="onnx")
    answers = onnx_reader.answer_many(queries, top_n=3)
    options = onnx_reader.model.session.get_session_options()
    # one thread as asked, and none left spinning for the other models sharing the CPU
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    for answer, reference in zip(answers, expected, strict=True):
        assert (answer.text, answer.passage, answer.start, answer.end) == (
            reference.text,
            reference.passage,
            reference.start,
            reference.end,
        )
        assert [c.text for c in answer.candidates] == [c.text for c in reference.candidates]
        assert answer.confidence == pytest.approx(reference.confidence, abs=1e-4)


def test_int8_model_is_smaller_and_answers_with_exact_spans(export_dir, tiny_qa):
    questions, passages = tiny_qa
    assert (export_dir / EXPORTED_FILES["onnx-int8"]).stat().st_size < (
        export_dir / EXPORTED_FILES["onnx"]
    ).stat().st_size / 2
    reader = Reader.load(export_dir, threads=1, backend="onnx-int8")
    answers = reader.answer_many([(question, passages) for question in questions])
    assert len(answers) == len(questions)
    for answer in answers:
        assert not answer.abstained and answer.passage in passages
        assert answer.passage.text[answer.start : answer.end] == answer.text
        assert 0.0 < answer.confidence <= 1.0


def test_check_on_the_project_questions_writes_the_measured_differences(tmp_path, tiny_model_dir):
    out = tmp_path / "export"
    assert main(["--reader", str(tiny_model_dir), "--out", str(out), "--check", str(KNOWLEDGE_QA)]) == 0
    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata["opset"] == 17 and metadata["files"] == EXPORTED_FILES
    check = metadata["check"]
    assert set(check) == set(EXPORTED_FILES)
    for backend, result in check.items():
        assert result["questions"] == 143 and result["windows"] >= 143
        assert result["within_tolerance"] and result["max_abs_logit_diff"] <= result["tolerance"]
        assert 0 <= result["same_answers"] <= 143
        if backend in ABSOLUTE_TOLERANCE:
            assert result["tolerance"] == ABSOLUTE_TOLERANCE[backend]
    assert check["onnx"]["same_answers"] == 143 and check["torchscript"]["same_answers"] == 143
    assert Reader.load(out, backend="onnx").config == Reader.load(tiny_model_dir).config


def test_bad_input_gets_a_clear_error(export_dir, tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown reader backend 'tensorrt'"):
        Reader.load(export_dir, backend="tensorrt")
    with pytest.raises(FileNotFoundError, match=r"has no model\.onnx: run python -m retrieval\.training\."):
        Reader.load(tmp_path, backend="onnx")
    with pytest.raises(FileNotFoundError, match="not a reader model directory"):
        Reader.load(export_dir)  # an export directory holds no PyTorch weights
    onnx_reader = Reader.load(export_dir, backend="onnx")
    with pytest.raises(ValueError, match="autocast applies to the PyTorch model only"):
        Reader(onnx_reader.model, onnx_reader.tokenizer, onnx_reader.config, torch.bfloat16)
    with pytest.raises(SystemExit):
        parse_args(["--reader", str(tmp_path), "--out", str(tmp_path / "out")])
    assert "is not a reader model directory" in capsys.readouterr().err


def test_ensure_export_skips_an_export_of_the_same_files_and_redoes_a_stale_one(tmp_path, tiny_model_dir):
    """What the QA service calls at start: the first call exports, the next reuses, new weights re-export."""
    reader_dir = tmp_path / "reader"
    shutil.copytree(tiny_model_dir, reader_dir)
    out = tmp_path / "export"

    assert ensure_export(reader_dir, out, threads=1) is True
    onnx_file = out / EXPORTED_FILES["onnx"]
    first_export = onnx_file.stat().st_mtime_ns
    assert ensure_export(reader_dir, out, threads=1) is False
    assert onnx_file.stat().st_mtime_ns == first_export

    replace(ReaderConfig.load(reader_dir), abstain_threshold=0.25).save(reader_dir)
    assert ensure_export(reader_dir, out, threads=1) is True
    assert Reader.load(out, backend="onnx").config.abstain_threshold == 0.25
    assert not list(tmp_path.glob(".export*")), "no staging folder is left behind"
