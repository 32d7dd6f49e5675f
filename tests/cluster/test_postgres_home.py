"""PostgreSQL starts wherever the checkout lies, even in a folder its `postgres` user cannot enter.

pytest's own temporary folders are such folders (mode 700, owned by root), like a CI clone made
with `mktemp -d`: as root, scripts/cluster.py then keeps the data in the system's temporary folder
and records where in the data directory it was given.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from scripts.cluster import Postgres, free_ports


def test_a_cluster_in_a_private_folder_starts_answers_and_stops(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    postgres = Postgres(tmp_path / "postgres", port)
    postgres.init()
    try:
        postgres.start()
        postgres.query("CREATE TABLE visits (n integer)")
        postgres.query("INSERT INTO visits VALUES (1)")
        assert postgres.query("SELECT n FROM visits") == [["1"]]
        postgres.stop()
        postgres.start()  # the data outlives a restart
        assert postgres.query("SELECT n FROM visits") == [["1"]]
    finally:
        postgres.stop()
    if postgres.home != postgres.data_dir:
        assert (postgres.data_dir / "RELOCATED_TO").read_text().strip() == str(postgres.home)
        shutil.rmtree(postgres.home)
