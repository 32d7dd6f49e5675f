"""Real QA services for the tests: `python -m retrieval serve` subprocesses on loopback ports.

The knowledge-base index is built once, by the first service (from data/knowledge into a temporary
folder); the others serve that folder as it is. The reader is a snapshot copy of the project's
trained reader, so a training run rewriting it cannot change answers mid-session.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from service_process import HIGH_ABSTAIN_THRESHOLD, KNOWLEDGE_DIR, REPO_ROOT, ServiceProcess

# models/reader is the released reader; models/reader-cpu-run is where training writes until then.
READER_CANDIDATES = (REPO_ROOT / "models" / "reader", REPO_ROOT / "models" / "reader-cpu-run")


@pytest.fixture(scope="session")
def reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the trained reader's files (weights, tokenizer, reader_config.json)."""
    source = next((d for d in READER_CANDIDATES if (d / "config.json").is_file()), None)
    if source is None:
        pytest.fail(f"no trained reader in {' or '.join(map(str, READER_CANDIDATES))}: make train-reader")
    snapshot = tmp_path_factory.mktemp("reader")
    for file in source.iterdir():
        if file.is_file():
            shutil.copy2(file, snapshot / file.name)
    return snapshot


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the knowledge-base services keep the ONNX export of the reader: made once, then reused."""
    return tmp_path_factory.mktemp("reader-export") / "export"


@contextmanager
def _running(
    tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str], ready: bool = True
) -> Iterator[ServiceProcess]:
    """`python -m retrieval serve ARGS`, waited for until /readyz says 200 when `ready`; stopped after."""
    service = ServiceProcess(args, tmp_path_factory.mktemp(name) / "service.log")
    try:
        if ready:
            service.wait_for("/readyz", 200)
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where knowledge_service builds the index; the other services serve it once that one is ready."""
    return tmp_path_factory.mktemp("knowledge") / "index"


@pytest.fixture(scope="session")
def knowledge_service(
    tmp_path_factory: pytest.TempPathFactory, index_dir: Path, reader_dir: Path, export_dir: Path
) -> Iterator[ServiceProcess]:
    """The service over the knowledge base, ready, answering every question (threshold 0).

    The shipped CPU-trained reader's calibrated threshold abstains on nearly everything
    (see models/reader/README.md), so answers and sources are tested with abstention off.
    """
    with _running(
        tmp_path_factory,
        "knowledge-service",
        [
            *("--index", str(index_dir), "--docs", str(KNOWLEDGE_DIR)),
            *("--reader", str(reader_dir), "--abstain-threshold", "0", "--export-dir", str(export_dir)),
        ],
    ) as service:
        yield service


@dataclass(frozen=True)
class SharedModels:
    """knowledge_service's index (ready once it is), reader snapshot and reader export."""

    index_dir: Path
    reader_dir: Path
    export_dir: Path

    def serve(
        self, tmp_path_factory: pytest.TempPathFactory, name: str, *options: str
    ) -> Iterator[ServiceProcess]:
        """A service over these (the index served as it is, `--docs` empty) with `options` on top."""
        with _running(
            tmp_path_factory,
            name,
            [
                *("--index", str(self.index_dir), "--docs", "--reader", str(self.reader_dir)),
                *("--export-dir", str(self.export_dir), *options),
            ],
        ) as service:
            yield service


@pytest.fixture(scope="session")
def shared_models(
    knowledge_service: ServiceProcess, index_dir: Path, reader_dir: Path, export_dir: Path
) -> SharedModels:
    return SharedModels(index_dir, reader_dir, export_dir)


@pytest.fixture(scope="session")
def unfiltered_service(
    tmp_path_factory: pytest.TempPathFactory, shared_models: SharedModels
) -> Iterator[ServiceProcess]:
    """knowledge_service's index and reader with the relevance cut off: every question is read, by
    the reader's ONNX export (knowledge_service runs the default backend, bf16 on CPUs that have it)."""
    yield from shared_models.serve(
        tmp_path_factory, "unfiltered-service", "--min-relevance", "-1", "--reader-backend", "onnx"
    )


@pytest.fixture(scope="session")
def every_passage_service(
    tmp_path_factory: pytest.TempPathFactory, shared_models: SharedModels
) -> Iterator[ServiceProcess]:
    """knowledge_service, except that it reads every passage of a question at once (no first read)."""
    yield from shared_models.serve(
        tmp_path_factory, "every-passage-service", "--abstain-threshold", "0", "--first-read-confidence", "2"
    )


@pytest.fixture(scope="session")
def abstaining_service(
    tmp_path_factory: pytest.TempPathFactory, shared_models: SharedModels
) -> Iterator[ServiceProcess]:
    """The same index and reader, with the abstention threshold overridden to HIGH_ABSTAIN_THRESHOLD."""
    yield from shared_models.serve(
        tmp_path_factory, "abstaining-service", "--abstain-threshold", str(HIGH_ABSTAIN_THRESHOLD)
    )


def _linked_reader(reader_dir: Path, directory: Path) -> Path:
    """A folder linking to `reader_dir`'s files except reader_config.json, which the caller supplies."""
    directory.mkdir()
    for file in reader_dir.iterdir():
        if file.name != "reader_config.json":
            (directory / file.name).symlink_to(file)
    return directory


@pytest.fixture
def slow_reader_dir(tmp_path: Path, reader_dir: Path) -> Path:
    """The reader with reader_config.json as a named pipe: loading it blocks until a test writes it."""
    directory = _linked_reader(reader_dir, tmp_path / "slow-reader")
    os.mkfifo(directory / "reader_config.json")
    return directory


@pytest.fixture
def loading_service(
    tmp_path_factory: pytest.TempPathFactory,
    knowledge_service: ServiceProcess,
    index_dir: Path,
    slow_reader_dir: Path,
) -> Iterator[ServiceProcess]:
    """A service whose reader is still loading (blocked on the pipe) when the test starts."""
    with _running(
        tmp_path_factory,
        "loading-service",
        ["--index", str(index_dir), "--docs", "--reader", str(slow_reader_dir), "--reader-backend", "torch"],
        ready=False,
    ) as service:
        yield service


@pytest.fixture
def failing_service(
    tmp_path_factory: pytest.TempPathFactory, knowledge_service: ServiceProcess, index_dir: Path
) -> Iterator[ServiceProcess]:
    """A service pointed at a reader folder that does not exist."""
    missing = tmp_path_factory.mktemp("nothing") / "no-such-reader"
    with _running(
        tmp_path_factory,
        "failing-service",
        ["--index", str(index_dir), "--docs", "--reader", str(missing), "--reader-backend", "torch"],
        ready=False,
    ) as service:
        yield service


@pytest.fixture
def misconfigured_service(
    tmp_path_factory: pytest.TempPathFactory,
    knowledge_service: ServiceProcess,
    index_dir: Path,
    reader_dir: Path,
) -> Iterator[ServiceProcess]:
    """A reader whose reader_config.json allows windows longer than the model's 512 positions: it
    loads, but a long question makes inference raise, the way a mismatched config fails in production.
    The relevance cut is off (-1) so every question reaches the reader."""
    directory = _linked_reader(reader_dir, tmp_path_factory.mktemp("misconfigured") / "reader")
    config = json.loads((reader_dir / "reader_config.json").read_text(encoding="utf-8"))
    config["features"] = {**config["features"], "max_length": 2048, "max_query_tokens": 1000}
    (directory / "reader_config.json").write_text(json.dumps(config), encoding="utf-8")
    with _running(
        tmp_path_factory,
        "misconfigured-service",
        [
            *("--index", str(index_dir), "--docs", "--reader", str(directory)),
            *("--min-relevance", "-1", "--reader-backend", "torch"),
        ],
    ) as service:
        yield service
