"""The QA service over real HTTP: answers, abstention, validation, readiness, ids, metrics, concurrency."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from service_process import HIGH_ABSTAIN_THRESHOLD, KNOWLEDGE_DIR, REPO_ROOT, HttpResult, ServiceProcess

from retrieval.index.ingest import normalise
from retrieval.service.settings import (
    DEFAULT_FIRST_READ_CONFIDENCE,
    DEFAULT_MIN_RELEVANCE,
    DEFAULT_READ_WORKERS,
    MAX_QUESTION_CHARS,
    MAX_TOP_K,
    ServiceConfig,
)
from retrieval.squad import read_squad
from retrieval.training.distributed import native_cpu_bf16

KNOWLEDGE_QA = REPO_ROOT / "tests" / "data" / "knowledge_qa.json"
UNANSWERABLE = json.loads((REPO_ROOT / "tests" / "data" / "knowledge_unanswerable.json").read_text())
# Share of the knowledge-base questions whose answer comes from the right document (top_k 3).
# Measured 0.916 (131/143) with models/reader (SQuAD dev F1 60.1) reading the passages with its
# relevance priors (2026-11-21); 0.587 before, when the reader chose between passages by its own
# span scores only. The floor sits a little below.
SOURCE_DOCUMENT_ACCURACY_FLOOR = 0.88


PASSAGES_READ = ("qa_passages_read_total", frozenset())


def ask(service: ServiceProcess, question: str, **fields: object) -> HttpResult:
    return service.call("POST", "/answer", payload={"question": question, **fields})


def document_of(passage_id: str) -> str:
    """Passage ids are <file-stem>#<section>-<n>: the stem names the source document."""
    return passage_id.split("#", 1)[0]


def metric_samples(service: ServiceProcess) -> dict[tuple[str, frozenset], float]:
    text = service.call("GET", "/metrics").body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# --- answers ---------------------------------------------------------------------------------------


def test_answers_from_the_document_about_the_sign(knowledge_service: ServiceProcess) -> None:
    # top_k=1: the answer must come from the one passage retrieval ranks first, the Scorpio one.
    result = ask(knowledge_service, "What is the ruling planet of Scorpio?", top_k=1)

    assert result.status == 200, result.body
    body = result.body
    assert not body["abstained"] and body["answer"]
    assert body["question"] == "What is the ruling planet of Scorpio?"  # echoed: what was answered
    assert document_of(body["source"]["passage_id"]) == "signs-scorpio"
    assert body["answer"] in body["source"]["text"]
    assert body["candidates"][0]["text"] == body["answer"]
    assert body["candidates"][0]["source"]["passage_id"] == body["source"]["passage_id"]
    assert body["reader_confidence"] == pytest.approx(body["candidates"][0]["confidence"])
    assert set(body["timings_ms"]) == {"retrieve", "read", "total"}
    assert body["timings_ms"]["total"] >= body["timings_ms"]["read"]


def test_the_default_backend_is_bf16_where_the_cpu_computes_it(knowledge_service: ServiceProcess) -> None:
    reader = knowledge_service.call("GET", "/readyz").body["reader"]

    assert reader["state"] == "loaded"
    assert reader["backend"] == ("torch-bf16" if native_cpu_bf16() else "onnx")
    assert reader["read_workers"] == min(DEFAULT_READ_WORKERS, os.cpu_count() or 1)
    assert reader["threads"] == 1  # as the fixture's --threads 1 asks


def test_reader_is_served_from_its_onnx_export_made_at_start(
    unfiltered_service: ServiceProcess, export_dir: Path
) -> None:
    reader = unfiltered_service.call("GET", "/readyz").body["reader"]

    assert reader["state"] == "loaded" and reader["backend"] == "onnx"
    assert (export_dir / "model.onnx").is_file() and (export_dir / "export.json").is_file()


def test_the_default_backend_answers_as_the_onnx_export(
    knowledge_service: ServiceProcess, unfiltered_service: ServiceProcess
) -> None:
    # bf16 autocast rounds the matmuls' inputs: the confidences move a little, and an answer may
    # only change where the reader hesitates between near-equal spans. Measured on the 143
    # knowledge-base questions with their served passages: stage 10 gave the same answers; stage 11
    # differs on 4, all at reader confidence 0.34 or less, F1 85.8 in bf16 against 85.7 in fp32.
    questions = [q.question for p in read_squad(KNOWLEDGE_QA) for q in p.questions][:40]
    differ = []
    for question in questions:
        default, onnx = ask(knowledge_service, question).body, ask(unfiltered_service, question).body
        if default["abstain_reason"] == "off_topic":  # below knowledge_service's relevance cut
            continue
        assert default["reader_confidence"] == pytest.approx(onnx["reader_confidence"], abs=0.06), question
        if (default["answer"], default["source"]) != (onnx["answer"], onnx["source"]):
            differ.append(question)
            assert max(default["reader_confidence"], onnx["reader_confidence"]) < 0.5, question
    assert len(differ) <= 0.1 * len(questions), differ


def test_top_k_bounds_the_passages_read(knowledge_service: ServiceProcess) -> None:
    body = ask(knowledge_service, "Which planet rules Scorpio and Aries?", top_k=1).body

    assert len({candidate["source"]["passage_id"] for candidate in body["candidates"]}) == 1


def test_source_document_is_right_for_most_knowledge_questions(
    knowledge_service: ServiceProcess, index_dir: Path
) -> None:
    passages = [json.loads(line) for line in (index_dir / "passages.jsonl").open(encoding="utf-8")]
    right = total = 0
    for paragraph in read_squad(KNOWLEDGE_QA):
        context = normalise(paragraph.context)
        gold = document_of(next(p["passage_id"] for p in passages if context in normalise(p["text"])))
        for question in paragraph.questions:
            source = ask(knowledge_service, question.question).body["source"]
            right += source is not None and document_of(source["passage_id"]) == gold
            total += 1
    accuracy = right / total
    print(f"source document accuracy: {right}/{total} = {accuracy:.3f}")
    assert total >= 90
    assert accuracy >= SOURCE_DOCUMENT_ACCURACY_FLOOR


def test_the_first_read_gives_the_answers_of_reading_every_passage_and_reads_less(
    knowledge_service: ServiceProcess, every_passage_service: ServiceProcess
) -> None:
    questions = [q.question for paragraph in read_squad(KNOWLEDGE_QA) for q in paragraph.questions][::3]
    services = {"first read": knowledge_service, "every passage": every_passage_service}
    settings = {
        name: s.call("GET", "/readyz").body["reader"]["first_read_confidence"] for name, s in services.items()
    }
    assert settings == {"first read": DEFAULT_FIRST_READ_CONFIDENCE, "every passage": 2.0}
    before = {name: metric_samples(service)[PASSAGES_READ] for name, service in services.items()}
    for question in questions:
        first_read, every_passage = (ask(service, question).body for service in services.values())
        assert (first_read["answer"], first_read["source"]) == (
            every_passage["answer"],
            every_passage["source"],
        )
    read = {name: metric_samples(service)[PASSAGES_READ] - before[name] for name, service in services.items()}
    print(f"passages read for {len(questions)} questions: {read}")
    assert len(questions) <= read["first read"] < read["every passage"] <= 3 * len(questions)


# --- abstention --------------------------------------------------------------------------------------


LOW_CONFIDENCE = ("qa_abstentions_total", frozenset({("reason", "low_confidence")}))
OFF_TOPIC = ("qa_abstentions_total", frozenset({("reason", "off_topic")}))


def test_abstains_below_the_overridden_threshold(abstaining_service: ServiceProcess) -> None:
    """A fixed threshold, so the test does not depend on the shipped reader's calibration."""
    readiness = abstaining_service.call("GET", "/readyz").body
    assert readiness["reader"]["abstain_threshold"] == HIGH_ABSTAIN_THRESHOLD
    before = metric_samples(abstaining_service).get(LOW_CONFIDENCE, 0.0)

    body = ask(abstaining_service, "Which element does Aries belong to?").body

    assert body["abstained"] is True and body["abstain_reason"] == "low_confidence"
    assert body["answer"] is None and body["source"] is None
    assert body["reader_confidence"] < HIGH_ABSTAIN_THRESHOLD  # the threshold is on the reader's share
    assert body["relevance"] >= DEFAULT_MIN_RELEVANCE, "on topic: the reader was asked"
    assert body["candidates"], "an abstention still lists the guesses it rejected"
    assert metric_samples(abstaining_service)[LOW_CONFIDENCE] == before + 1


# Share of tests/data/knowledge_unanswerable.json (off-topic questions) that the relevance cut
# stops before the reader: measured 13/15 (the Chinese zodiac and the moons of Mars pass, being
# close to astrology). And the share of knowledge-base questions it lets through: measured 0.986.
OFF_TOPIC_REJECTED_FLOOR = 0.8
ON_TOPIC_KEPT_FLOOR = 0.95


def test_off_topic_questions_are_not_read(knowledge_service: ServiceProcess) -> None:
    before = metric_samples(knowledge_service).get(OFF_TOPIC, 0.0)
    bodies = [ask(knowledge_service, question).body for question in UNANSWERABLE]
    off_topic = [body for body in bodies if body["abstain_reason"] == "off_topic"]

    assert len(off_topic) / len(bodies) >= OFF_TOPIC_REJECTED_FLOOR
    for body in off_topic:
        assert body["abstained"] is True and body["answer"] is None and body["source"] is None
        assert body["relevance"] < DEFAULT_MIN_RELEVANCE
        assert body["candidates"] == [] and body["timings_ms"]["read"] == 0.0
    assert metric_samples(knowledge_service)[OFF_TOPIC] == before + len(off_topic)


def test_knowledge_questions_pass_the_relevance_cut(knowledge_service: ServiceProcess) -> None:
    questions = [q.question for paragraph in read_squad(KNOWLEDGE_QA) for q in paragraph.questions]
    kept = sum(ask(knowledge_service, q, top_k=1).body["abstain_reason"] != "off_topic" for q in questions)

    assert kept / len(questions) >= ON_TOPIC_KEPT_FLOOR


# --- validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b'{"question": ""}', "question", "at least 1 character"),
        (b'{"question": "  \\n\\t "}', "question", "blank"),
        (b'{"question": "\\u001d\\u3000\\u2028"}', "question", "blank"),
        (json.dumps({"question": "a" * (MAX_QUESTION_CHARS + 1)}).encode(), "question", "at most 1000"),
        (b'{"question": 7}', "question", "valid string"),
        (b'{"question": ["Who rules Leo?"]}', "question", "valid string"),
        (b'{"question": "Who rules Leo?", "top_k": 0}', "top_k", "greater than or equal to 1"),
        (b'{"question": "Who rules Leo?", "top_k": %d}' % (MAX_TOP_K + 1), "top_k", "less than or equal"),
        (b'{"question": "Who rules Leo?", "top_k": "5"}', "top_k", "valid integer"),
        (b'{"question": "Who rules Leo?", "top_k": 2.5}', "top_k", "valid integer"),
        (b'{"question": "Who rules Leo?", "top_k": true}', "top_k", "valid integer"),
        (b'{"question": "Who rules Leo?", "k": 5}', "k", "Extra inputs are not permitted"),
        (b'{"top_k": 5}', "question", "Field required"),
        (b'{"question": "Who rules Leo?"', "body", "not valid JSON"),
        (b"Who rules Leo?", "body", "not valid JSON"),
        (b'{"question": "\xff\xfe Leo?"}', "body", "not UTF-8"),
        (b'["Who rules Leo?"]', "body", "must be a JSON object"),
    ],
    ids=[
        "empty",
        "whitespace",
        "unicode-whitespace",
        "too-long",
        "number",
        "list",
        "top_k-0",
        "top_k-too-big",
        "top_k-string",
        "top_k-fraction",
        "top_k-boolean",
        "unknown-field",
        "missing-question",
        "truncated-json",
        "not-json",
        "not-utf8",
        "json-array",
    ],
)
def test_invalid_requests_get_a_clear_422(
    knowledge_service: ServiceProcess, raw: bytes, field: str, message: str
) -> None:
    result = knowledge_service.call("POST", "/answer", raw=raw)

    assert result.status == 422
    assert message in result.body["error"]
    assert result.body["details"][0]["field"] == field
    assert result.body["request_id"] == result.header("X-Request-ID")
    assert "Traceback" not in json.dumps(result.body)


def test_top_k_may_be_an_integral_json_number(knowledge_service: ServiceProcess) -> None:
    """JSON Schema's "integer" includes 1.0; the schemathesis fuzzing found it rejected (422)."""
    result = knowledge_service.call(
        "POST", "/answer", raw=b'{"question": "Who rules Scorpio?", "top_k": 1.0}'
    )

    assert result.status == 200, result.body
    assert len({candidate["source"]["passage_id"] for candidate in result.body["candidates"]}) == 1


def test_a_wrong_method_is_a_405_that_names_the_allowed_one(knowledge_service: ServiceProcess) -> None:
    result = knowledge_service.call("GET", "/answer")

    assert result.status == 405
    assert result.header("Allow") == "POST"
    assert result.body["request_id"] == result.header("X-Request-ID")


# --- request ids, metrics, OpenAPI ------------------------------------------------------------------


def test_request_id_is_echoed_and_logged_with_failures(knowledge_service: ServiceProcess) -> None:
    given = knowledge_service.call(
        "POST", "/answer", payload={"question": ""}, headers={"X-Request-ID": "t-42"}
    )
    generated = knowledge_service.call("GET", "/healthz")
    unsafe = knowledge_service.call("GET", "/healthz", headers={"X-Request-ID": "a b\tc"})
    missing_route = knowledge_service.call("GET", "/no-such-endpoint")

    assert given.header("X-Request-ID") == given.body["request_id"] == "t-42"
    assert "request_id=t-42 POST /answer -> 422" in knowledge_service.log()
    assert len(generated.header("X-Request-ID")) == 32
    assert unsafe.header("X-Request-ID") not in ("a b\tc", generated.header("X-Request-ID"))
    assert missing_route.status == 404
    assert missing_route.body == {"error": "Not Found", "request_id": missing_route.header("X-Request-ID")}


def test_metrics_count_requests_latencies_and_abstentions(knowledge_service: ServiceProcess) -> None:
    ok = ("qa_requests_total", frozenset({("endpoint", "/answer"), ("status", "200")}))
    invalid = ("qa_requests_total", frozenset({("endpoint", "/answer"), ("status", "422")}))
    latency = [
        ("qa_latency_seconds_count", frozenset({("stage", stage)})) for stage in ("retrieve", "read", "total")
    ]
    before = metric_samples(knowledge_service)

    ask(knowledge_service, "Which element does Aries belong to?")
    ask(knowledge_service, "")
    after = metric_samples(knowledge_service)

    assert after[ok] == before.get(ok, 0) + 1
    assert after[invalid] == before.get(invalid, 0) + 1
    for key in latency:
        assert after[key] == before.get(key, 0) + 1


def test_openapi_document_describes_the_api(knowledge_service: ServiceProcess) -> None:
    document = knowledge_service.call("GET", "/openapi.json").body

    assert document["info"]["title"] and document["info"]["version"] and document["info"]["description"]
    assert "post" in document["paths"]["/answer"]
    assert {"/healthz", "/readyz", "/metrics"} <= set(document["paths"])
    assert "AnswerRequest" in document["components"]["schemas"]


# --- concurrency ---------------------------------------------------------------------------------------


def test_concurrent_requests_all_succeed_with_the_answers_given_one_at_a_time(
    knowledge_service: ServiceProcess,
) -> None:
    questions = [
        "What is the ruling planet of Scorpio?",
        "Which element does Aries belong to?",
        "What is the symbol of Leo?",
        "When is Aries season?",
    ]
    alone = {q: ask(knowledge_service, q).body for q in questions}

    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda q: (q, ask(knowledge_service, q)), questions * 2))

    assert all(result.status == 200 for _, result in together)
    for question, result in together:
        assert result.body["answer"] == alone[question]["answer"]
        assert result.body["source"] == alone[question]["source"]
        assert result.body["confidence"] == pytest.approx(alone[question]["confidence"], rel=1e-4)


# --- readiness and load failures -------------------------------------------------------------------


def test_not_ready_until_the_reader_is_loaded(
    loading_service: ServiceProcess, slow_reader_dir: Path, reader_dir: Path
) -> None:
    assert loading_service.call("GET", "/healthz").status == 200
    loading = loading_service.wait_until("/readyz", lambda r: r.body["index"]["state"] == "loaded")
    assert loading.status == 503
    assert loading.body["ready"] is False and loading.body["reader"]["state"] == "loading"
    early = ask(loading_service, "What is the ruling planet of Scorpio?")
    assert early.status == 503
    assert early.body["error"] == "the service is not ready: reader loading"
    assert early.body["request_id"] == early.header("X-Request-ID")
    assert early.header("Retry-After") == "5"

    # Writing the pipe lets the blocked load finish (opening it waits for the service to read it).
    config = (reader_dir / "reader_config.json").read_text(encoding="utf-8")
    writer = threading.Thread(target=(slow_reader_dir / "reader_config.json").write_text, args=(config,))
    writer.start()
    loading_service.wait_for("/readyz", 200)
    writer.join(timeout=30)

    assert ask(loading_service, "What is the ruling planet of Scorpio?").status == 200


def test_a_reader_that_fails_to_load_is_reported_and_the_service_stays_up(
    failing_service: ServiceProcess,
) -> None:
    failed = failing_service.wait_until("/readyz", lambda r: r.body["reader"]["state"] == "failed")

    assert failed.status == 503
    assert "no-such-reader" in failed.body["reader"]["error"]
    answer = ask(failing_service, "What is the ruling planet of Scorpio?")
    assert answer.status == 503
    assert "reader failed" in answer.body["error"] and "no-such-reader" in answer.body["error"]
    assert answer.header("Retry-After") is None, "a failed load does not fix itself"
    assert "Traceback" not in json.dumps(answer.body) + json.dumps(failed.body)
    assert failing_service.call("GET", "/healthz").status == 200
    assert failing_service.process.poll() is None


def test_an_inference_crash_is_a_json_500_with_the_request_id_logged(
    misconfigured_service: ServiceProcess,
) -> None:
    question = "Why?" * (MAX_QUESTION_CHARS // 4)  # 500 tokens, plus a passage: over 512 positions
    result = misconfigured_service.call(
        "POST", "/answer", payload={"question": question}, headers={"X-Request-ID": "crash-1"}
    )

    assert result.status == 500
    assert result.body == {
        "error": "internal error; quote the request id when reporting it",
        "request_id": "crash-1",
    }
    log = misconfigured_service.log()
    assert "request_id=crash-1 POST /answer failed" in log and "Traceback" in log
    # more crashes than read workers: each crashed read gives its worker back
    workers = misconfigured_service.call("GET", "/readyz").body["reader"]["read_workers"]
    for _ in range(workers + 1):
        assert misconfigured_service.call("POST", "/answer", payload={"question": question}).status == 500
    assert ask(misconfigured_service, "What is the ruling planet of Scorpio?").status == 200


# --- configuration -----------------------------------------------------------------------------------


def test_config_reads_the_environment_and_options_override_it(tmp_path: Path) -> None:
    environ = {
        "QA_INDEX_DIR": str(tmp_path / "index"),
        "QA_READER_DIR": str(tmp_path / "reader"),
        "QA_DOCS": "",
        "QA_PORT": "9001",
        "QA_THREADS": "2",
        "QA_ABSTAIN_THRESHOLD": "0.3",
        "QA_MIN_RELEVANCE": "0.25",
        "QA_READ_WORKERS": "3",
        "QA_FIRST_READ_CONFIDENCE": "1.5",
    }
    config = ServiceConfig.from_env(environ).with_overrides(port=9002, host=None)
    assert config.served_read_workers == 3 and ServiceConfig(read_workers=1).served_read_workers == 1
    # Unset, the threads are the cores shared out among the read workers; set, they are as given.
    cores = os.cpu_count() or 1
    assert ServiceConfig(read_workers=1).served_threads == cores and config.served_threads == 2
    assert ServiceConfig(read_workers=cores + 1).served_threads == 1

    assert config.index_dir == tmp_path / "index" and config.reader_dir == tmp_path / "reader"
    assert config.docs == () and config.threads == 2 and config.abstain_threshold == 0.3
    assert config.min_relevance == 0.25 and ServiceConfig().min_relevance == DEFAULT_MIN_RELEVANCE
    assert config.first_read_confidence == 1.5
    assert ServiceConfig().first_read_confidence == DEFAULT_FIRST_READ_CONFIDENCE
    assert (config.host, config.port) == ("127.0.0.1", 9002)
    assert ServiceConfig.from_env({}).docs == (KNOWLEDGE_DIR,)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"QA_PORT": "eighty"}, "QA_PORT='eighty'"),
        ({"QA_PORT": "70000"}, "port 70000"),
        ({"QA_THREADS": "0"}, "threads"),
        ({"QA_READ_WORKERS": "0"}, "read_workers must be at least 1"),
        ({"QA_MIN_RELEVANCE": "high"}, "QA_MIN_RELEVANCE='high'"),
        ({"QA_MIN_RELEVANCE": "1.5"}, "min_relevance"),
        ({"QA_READER_BACKEND": "tensorflow"}, "reader_backend 'tensorflow' is not one of"),
        ({"QA_ENCODER_BACKEND": "openvino"}, "encoder_backend 'openvino' is not one of"),
        ({"QA_FIRST_READ_CONFIDENCE": "-0.5"}, "first_read_confidence is a probability"),
        ({"QA_FIRST_READ_CONFIDENCE": "nan"}, "first_read_confidence is a probability"),
    ],
)
def test_bad_config_values_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceConfig.from_env(environ)
