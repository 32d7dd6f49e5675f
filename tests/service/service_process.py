"""A QA service run as `python -m retrieval serve` in a subprocess on a free loopback port, and a
small HTTP client for it (urllib, so the tests need nothing the service does not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.stack import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWLEDGE_DIR = REPO_ROOT / "data" / "knowledge"
# A confidence is a share of a softmax that always keeps some mass for "no answer" and the other
# spans, so no reader reaches this: a service started with it abstains on every question it reads.
HIGH_ABSTAIN_THRESHOLD = 0.999
HTTP_TIMEOUT_S = 60.0  # one request; generous because the machine is shared
START_TIMEOUT_S = 120.0  # the port opening
LOAD_TIMEOUT_S = 300.0  # index build + both models on a loaded 2-core machine


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the text when it is not JSON

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def http(
    method: str,
    url: str,
    payload: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> HttpResult:
    """One request; `payload` goes as JSON, `raw` as it is. Error statuses are returned, not raised."""
    data = raw if raw is not None else None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "content-type" not in {name.lower() for name in request.headers}:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, response_headers, text = response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        status, response_headers, text = error.code, error.headers, error.read().decode()
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        body = text
    return HttpResult(status, {name.lower(): value for name, value in response_headers.items()}, body)


class ServiceProcess:
    """`python -m retrieval serve ARGS` on loopback; its output goes to `log_path`."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {name: value for name, value in os.environ.items() if not name.startswith("QA_")}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        command = [sys.executable, "-m", "retrieval", "serve", "--port", str(self.port), "--threads", "1"]
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, *args], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_for("/healthz", 200, START_TIMEOUT_S)

    def call(self, method: str, path: str, **kwargs: Any) -> HttpResult:
        return http(method, self.url + path, **kwargs)

    def wait_for(self, path: str, status: int, timeout: float = LOAD_TIMEOUT_S) -> HttpResult:
        return self.wait_until(path, lambda result: result.status == status, timeout)

    def wait_until(
        self, path: str, condition: Callable[[HttpResult], bool], timeout: float = LOAD_TIMEOUT_S
    ) -> HttpResult:
        """Poll GET `path` until `condition(result)` holds; fail with the service's log if it never does."""
        deadline = time.monotonic() + timeout
        last: HttpResult | str = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited ({self.process.returncode}):\n{self.log()}")
            try:
                last = self.call("GET", path, timeout=10)
            except OSError as error:  # not listening yet
                last = str(error)
            else:
                if condition(last):
                    return last
            time.sleep(0.3)
        raise AssertionError(f"GET {path} never met the condition (last: {last}):\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)
