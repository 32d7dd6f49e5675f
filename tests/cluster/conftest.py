"""The scaled-out assistant, really running: scripts/serve-cluster.sh with two Rasa instances.

PostgreSQL, Redis and nginx are Debian's packages; without them the tests fail, saying which
one to install (`.ci/run` installs them). The cluster is started once for the whole folder
(it takes a few minutes: each Rasa instance loads its model): the scale-out tests run
first, then the fault tests, whose last one kills a Rasa instance. Horoscopes come from the
built-in writer (no horoscope API); the cluster's data and logs are in var/cluster/tests-*/.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.cluster import MissingBinary, find_binary
from scripts.cluster_stack import Cluster, ClusterDidNotStart, running_cluster

CLUSTER_TESTS_DIR = Path(__file__).resolve().parents[2] / "var" / "cluster"
# Short, so that a frozen QA service is given up on quickly (tests/cluster/test_cluster_with_faults.py).
QA_SERVICE_TIMEOUT_S = 3


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    try:
        for binary in ("initdb", "pg_ctl", "psql", "redis-server", "nginx"):
            find_binary(binary)
    except MissingBinary as error:
        pytest.fail(str(error))
    # Under var/cluster/, not pytest's private temporary folder: PostgreSQL runs as its own user
    # (scripts/cluster.py), which has to reach its data directory.
    CLUSTER_TESTS_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="tests-", dir=CLUSTER_TESTS_DIR))
    run_dir.chmod(0o755)
    try:
        with running_cluster(
            run_dir, instances=2, env={"QA_SERVICE_TIMEOUT": str(QA_SERVICE_TIMEOUT_S)}
        ) as started:
            yield started
    except ClusterDidNotStart as error:
        pytest.fail(str(error))
    finally:
        # The logs stay for a look after a failure; the databases go.
        for data in ("postgres", "redis"):
            shutil.rmtree(run_dir / data, ignore_errors=True)
