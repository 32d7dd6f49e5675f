"""The scaled-out assistant, really running: scripts/serve-cluster.sh with two Rasa instances.

PostgreSQL, Redis and nginx are Debian's packages; without them the tests fail, saying which
one to install (`.ci/run` installs them). The cluster is started once for the whole folder
(it takes a few minutes: each Rasa instance loads its model): the scale-out tests run
first, then the fault tests, whose last one kills a Rasa instance. Horoscopes come from the
built-in writer (no horoscope API), the cluster's data and logs from a temporary folder.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.cluster import MissingBinary, find_binary
from scripts.cluster_stack import Cluster, ClusterDidNotStart, running_cluster

# Short, so that a frozen QA service is given up on quickly (tests/cluster/test_cluster_faults.py).
QA_SERVICE_TIMEOUT_S = 3


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        for binary in ("initdb", "pg_ctl", "psql", "redis-server", "nginx"):
            find_binary(binary)
    except MissingBinary as error:
        pytest.fail(str(error))
    try:
        with running_cluster(
            tmp_path_factory.mktemp("cluster"),
            instances=2,
            env={"QA_SERVICE_TIMEOUT": str(QA_SERVICE_TIMEOUT_S)},
        ) as started:
            yield started
    except ClusterDidNotStart as error:
        pytest.fail(str(error))
