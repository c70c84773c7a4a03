"""benchmarks/faults.py writes faults.json in the documented shape (issue 16), and refuses a result
that lacks a documented key instead of writing a file that silently misses a scenario."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DOCUMENTED = {
    "pg_restart": {"acknowledged", "lost", "requests_during_outage", "hung_requests", "recovery_s"},
    "kill9_retry": {"acknowledged", "lost", "duplicates"},
    "poison": {"requests", "5xx", "store_ok_after"},
    "replicas": {"replicas", "propagation_p99_ms", "lost", "deleted_item_served"},
    "fuzz": {"requests", "5xx"},
    "writes": {"rps_without", "rps_with", "p99_without", "p99_with"},
    "writes_paced": {"rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s"},
    "writes_ingest": {"rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s"},
    "writes_ingest_paced": {"rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s"},
    "writes_ingest_nice": {"rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s",
                           "writer_ack_p99_ms"},
}


def _full() -> dict:
    res: dict = {s: dict.fromkeys(keys, 0) for s, keys in DOCUMENTED.items()}
    res["replicas"]["note"] = "extra keys are allowed"
    return {**res, "machine": {"cpus": 2}, "command": "benchmarks/faults.py"}


def test_writes_every_documented_key(tmp_path: Path, load_bench) -> None:
    faults = load_bench("faults")
    assert {s: set(k) for s, k in faults.KEYS.items()} == DOCUMENTED
    assert set(faults.SCENARIOS) == set(DOCUMENTED)
    out = tmp_path / "faults.json"
    faults.write_result(_full(), out)
    got = json.loads(out.read_text())
    for scenario, keys in DOCUMENTED.items():
        assert keys <= set(got[scenario]), scenario
    assert got["machine"] and got["command"]


@pytest.mark.parametrize("drop", [("fuzz", "5xx"), ("replicas", "deleted_item_served"), ("machine", None)])
def test_refuses_a_result_missing_a_key(tmp_path: Path, drop: tuple[str, str | None], load_bench) -> None:
    faults = load_bench("faults")
    res = _full()
    if drop[1] is None:
        del res[drop[0]]
    else:
        del res[drop[0]][drop[1]]
    with pytest.raises(ValueError, match=drop[0]):
        faults.write_result(res, tmp_path / "faults.json")
    assert not (tmp_path / "faults.json").exists()
    faults.write_result(res, tmp_path / "partial.json", strict=False)  # an --only run into a new file
