"""The committed contract the actions are tested against is the one the service serves.

tests/actions validates its stand-in of the service against tests/contracts/qa_service.json;
this keeps that file equal to retrieval/service/schemas.py, so the two cannot drift apart.
"""

from __future__ import annotations

import json

from scripts.qa_contract import CONTRACT, contract


def test_the_committed_contract_is_the_services() -> None:
    assert CONTRACT.is_file(), "no contract file: run .venv/bin/python -m scripts.qa_contract"
    assert json.loads(CONTRACT.read_text()) == contract(), (
        f"{CONTRACT} is stale: run .venv/bin/python -m scripts.qa_contract and commit it"
    )
