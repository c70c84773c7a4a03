"""Fixtures for the tuning tests: the seeded simulator split once, tiny fast settings, PostgreSQL."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_SERVING = str(Path(__file__).parent.parent / "serving")
if _SERVING not in sys.path:
    sys.path.insert(0, _SERVING)

from pg import PostgresCluster, find_pg_bin  # noqa: E402  (after the sys.path insert above)


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install PostgreSQL (initdb, pg_ctl): the shared-study test needs it")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql (.ci/run does)")
    cluster = PostgresCluster(bin_dir, tmp_path_factory.mktemp("pg"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
