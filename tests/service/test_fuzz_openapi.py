"""The QA service fuzzed from its own OpenAPI document (schemathesis), over real HTTP on loopback.

Every operation in the served /openapi.json gets generated requests, valid ones and invalid ones
(schemathesis' positive and negative modes: wrong types, missing and unknown fields, numbers out
of range, odd strings and bodies). Each response goes through schemathesis' default checks: no
5xx, only documented status codes, content types and headers, bodies that match the documented
schemas, invalid input rejected and valid input accepted. Each request must be answered within
REQUEST_TIMEOUT_S, and afterwards the service process still answers a plain question.

Random text is off-topic, so the deployed service abstains on it before reading; a second
service with the relevance cut off (-1) sends every generated question through the reader.

schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) fails on pytest 9.2
(it sets `Function._nodeid`, which pytest no longer has), so the operations are parametrized
here and each runs as a plain hypothesis test over schemathesis' strategies for it.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies
from schemathesis import GenerationMode
from service_process import ServiceProcess

# Every operation the service documents; a new route fails the inventory test until listed here.
OPERATIONS = ("POST /answer", "GET /healthz", "GET /readyz", "GET /metrics")
# Generous for one /answer on two busy cores (a 1,000-character question, 20 passages read);
# a hang shows as requests' timeout error rather than a stuck test run.
REQUEST_TIMEOUT_S = 30.0
EXAMPLES_PER_OPERATION = 100
EXAMPLES_READ = 100  # each one a reader pass over up to 20 passages


def served_schema(service: ServiceProcess) -> schemathesis.BaseSchema:
    """The OpenAPI document a running service serves, so the fuzzing follows what is deployed."""
    return schemathesis.openapi.from_url(f"{service.url}/openapi.json", timeout=REQUEST_TIMEOUT_S)


def fuzz(schema: schemathesis.BaseSchema, label: str, max_examples: int) -> Counter[int]:
    """Sends up to `max_examples` generated requests to operation `label`, checking each response
    with schemathesis' default checks; the statuses seen. A failure raises, shrunk by hypothesis."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    modes = [GenerationMode.POSITIVE]
    if operation.body or operation.query or operation.path_parameters or operation.headers:
        modes.append(GenerationMode.NEGATIVE)  # an operation without inputs has nothing to get wrong
    statuses: Counter[int] = Counter()
    slowest = 0.0

    @given(case=strategies.one_of(*(operation.as_strategy(mode) for mode in modes)))
    @settings(
        max_examples=max_examples,
        deadline=None,  # the request timeout bounds each example; a deadline would flake under load
        database=None,  # nothing written into the work tree; a failure prints its reproduction blob
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def holds(case: schemathesis.Case) -> None:
        nonlocal slowest
        started = time.monotonic()
        response = case.call_and_validate(timeout=REQUEST_TIMEOUT_S)
        slowest = max(slowest, time.monotonic() - started)
        statuses[response.status_code] += 1

    holds()
    # Shown with -s: what the fuzzing tried, for the record.
    print(f"{label}: {statuses.total()} requests, statuses {dict(statuses)}, slowest {slowest:.2f}s")
    return statuses


def test_the_fuzzed_operations_are_all_the_documented_ones(knowledge_service: ServiceProcess) -> None:
    documented = {result.ok().label for result in served_schema(knowledge_service).get_all_operations()}

    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_every_operation_holds_against_generated_requests(
    knowledge_service: ServiceProcess, label: str
) -> None:
    fuzz(served_schema(knowledge_service), label, EXAMPLES_PER_OPERATION)


def test_generated_questions_hold_when_every_one_is_read(unfiltered_service: ServiceProcess) -> None:
    statuses = fuzz(served_schema(unfiltered_service), "POST /answer", EXAMPLES_READ)

    assert statuses[200] > 0  # some questions were valid, so the reader ran on generated text


@pytest.mark.parametrize("service_name", ["knowledge_service", "unfiltered_service"])
def test_the_service_still_answers_after_the_fuzzing(
    service_name: str, request: pytest.FixtureRequest
) -> None:
    """Runs after the fuzzing (file order): the same process, alive, answers a plain question."""
    service: ServiceProcess = request.getfixturevalue(service_name)
    result = service.call(
        "POST", "/answer", payload={"question": "What is the ruling planet of Scorpio?", "top_k": 1}
    )

    assert service.process.poll() is None
    assert result.status == 200, result.body
    assert result.body["source"]["passage_id"].startswith("signs-scorpio#")
