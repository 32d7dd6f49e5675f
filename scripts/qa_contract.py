"""Writes the QA service's HTTP contract as JSON Schema to tests/contracts/qa_service.json.

The contract lives in retrieval/service/schemas.py (pydantic v2, the QA venv). The actions and
their loopback stand-in of the service run in the Rasa venv, which cannot import those models,
so they validate against this exported copy; tests/service/test_contract.py fails when the copy
is stale. After changing the schemas, run from the repository root:

    .venv/bin/python -m scripts.qa_contract
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONTRACT = Path(__file__).resolve().parents[1] / "tests" / "contracts" / "qa_service.json"


def contract() -> dict[str, Any]:
    """One self-contained JSON Schema per body: the request, a 200 answer, and every error."""
    from retrieval.service.schemas import AnswerRequest, AnswerResponse, ErrorBody

    return {
        "request": AnswerRequest.model_json_schema(),
        "answer": AnswerResponse.model_json_schema(),
        "error": ErrorBody.model_json_schema(),
    }


def render() -> str:
    return json.dumps(contract(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    CONTRACT.parent.mkdir(parents=True, exist_ok=True)
    CONTRACT.write_text(render())
    print(f"wrote {CONTRACT}")
