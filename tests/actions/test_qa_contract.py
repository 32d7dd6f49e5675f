"""The loopback QA service answers as the real one does, so the action tests test the real contract.

Its replies are checked against tests/contracts/qa_service.json, which tests/service/test_contract.py
keeps equal to the service's own schemas. The garbage and malformed faces stand for replies from
outside the contract and must stay outside it, or their tests would test nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from qa_service_server import QaServiceServer, contract_errors

from actions.qa import QaClient

TETRABIBLOS = "Who wrote the Tetrabiblos?"
OFF_TOPIC = "How do I bake bread?"

# face, request body, the status the service answers with, the schema of that reply
REPLIES = [
    ("", {"question": TETRABIBLOS}, 200, "answer"),
    ("", {"question": OFF_TOPIC, "top_k": 5}, 200, "answer"),
    ("unsure", {"question": TETRABIBLOS}, 200, "answer"),
    ("abstain", {"question": TETRABIBLOS}, 200, "answer"),
    ("", {"question": "   "}, 422, "error"),
    ("", {"question": TETRABIBLOS, "top_k": 0}, 422, "error"),
    ("", {"question": TETRABIBLOS, "language": "en"}, 422, "error"),
    ("", "not json", 422, "error"),
    ("broken", {"question": TETRABIBLOS}, 500, "error"),
    ("starting", {"question": TETRABIBLOS}, 503, "error"),
    ("nowhere", {"question": TETRABIBLOS}, 404, "error"),
]


def post(service: QaServiceServer, face: str, body: Any) -> requests.Response:
    url = f"{service.url}/{face}/answer" if face else f"{service.url}/answer"
    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=5)


@pytest.mark.parametrize(("face", "body", "status", "schema"), REPLIES)
def test_every_reply_fits_the_contract(
    qa_service: QaServiceServer, face: str, body: Any, status: int, schema: str
) -> None:
    reply = post(qa_service, face, body)
    assert reply.status_code == status, reply.text
    assert contract_errors(schema, reply.json()) == []


def test_abstentions_say_why(qa_service: QaServiceServer) -> None:
    off_topic = post(qa_service, "", {"question": OFF_TOPIC}).json()
    unsure = post(qa_service, "abstain", {"question": TETRABIBLOS}).json()
    assert (off_topic["abstain_reason"], off_topic["source"]) == ("off_topic", None)
    assert unsure["abstain_reason"] == "low_confidence" and unsure["answer"] is None


@pytest.mark.parametrize("face", ["garbage", "malformed"])
def test_the_broken_faces_stay_outside_the_contract(qa_service: QaServiceServer, face: str) -> None:
    reply = post(qa_service, face, {"question": TETRABIBLOS})
    try:
        body = reply.json()
    except ValueError:
        return  # not even JSON
    assert contract_errors("answer", body) != []


def test_the_client_sends_a_request_the_service_accepts(qa_service: QaServiceServer) -> None:
    QaClient(qa_service.url, timeout_s=5).ask(TETRABIBLOS)
    assert contract_errors("request", json.loads(qa_service.requests_seen[-1])) == []
