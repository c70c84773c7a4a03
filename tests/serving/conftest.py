"""Fixtures for the service tests: a tiny fusion model trained on the simulator, saved as a run folder,
and app clients over SQLite (and PostgreSQL where its binaries exist: see pg.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = str(Path(__file__).parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from pg import PostgresCluster, find_pg_bin  # noqa: E402
from serving_helpers import tiny_fusion_run  # noqa: E402


@pytest.fixture(scope="session")
def fusion_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_fusion_run(tmp_path_factory.mktemp("runs") / "fusion-v1")


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql (.ci/run does)")
    cluster = PostgresCluster(bin_dir, tmp_path_factory.mktemp("pg"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "events.sqlite")
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.fresh_database()
