"""Shared user states (``ctxrec serve --shared-states``, serving/states.py): the replica that stores a
user's events computes their state once; another replica's cache miss reads it from the store and scores
exactly as if it had computed it; a row for another key is never used; erasure leaves no state behind;
a store fault costs only the sharing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ctxrec.serving import ServingSettings, create_app
from ctxrec.serving.store import EventStore

CTX = {"device": "tv", "daypart": "evening", "weather": "sunny"}


def _events(user: str, items: list[str], tag: str) -> dict[str, Any]:
    return {"events": [{"user_id": user, "item_id": i, "timestamp": 1.9e9 + n, "context": {"device": "tv"},
                        "event_id": f"{tag}-{n}"} for n, i in enumerate(items)]}


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _state(c: TestClient) -> Any:
    return c.app.state.ctxrec  # type: ignore[attr-defined]


def test_a_state_stored_by_one_replica_is_read_by_another_and_scores_the_same(fusion_run: Path, store_url: str) -> None:
    ingest = ServingSettings(model=str(fusion_run), store=store_url, shared_states=True)
    with TestClient(create_app(ingest)) as a, TestClient(create_app(ingest)) as b, \
            TestClient(create_app(ServingSettings(model=str(fusion_run), store=store_url))) as plain:
        sa, sb = _state(a), _state(b)
        assert b.post("/v1/recommend", json={"user_id": "u03", "context": CTX}).status_code == 200  # b learns the shape
        assert a.post("/v1/events", json=_events("u07", ["i01", "i02", "i03"], "x")).status_code == 200
        _wait(lambda: sa.sharer.counts["written"] >= 1)
        row = sa.store.user_states(["u07"])["u07"]
        assert row[0] == sb.handle.version and row[2] == sa.store.user_events("u07", 200)[-1].id and row[3] >= 3
        misses, reads = sb.handle.cache_misses, sb.handle.shared_counts["read"]
        body = {"user_id": "u07", "context": CTX, "k": 10}
        got = b.post("/v1/recommend", json=body).json()["items"]
        assert sb.handle.shared_counts["read"] == reads + 1 and sb.handle.cache_misses == misses  # read, not computed
        want = plain.post("/v1/recommend", json=body).json()["items"]  # a replica without sharing computes it
        assert [x["item_id"] for x in got] == [x["item_id"] for x in want]
        np.testing.assert_allclose([x["score"] for x in got], [x["score"] for x in want], rtol=1e-5, atol=1e-6)
        b.post("/v1/recommend", json=body)
        assert sb.handle.shared_counts["read"] == reads + 1  # now in b's own cache
        metrics = a.get("/metrics").text
        assert 'ctxrec_shared_states{result="written"}' in metrics


def test_a_row_for_another_key_is_not_used(fusion_run: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "s.sqlite")
    settings = ServingSettings(model=str(fusion_run), store=store, shared_states=True)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        sa, sb = _state(a), _state(b)
        b.post("/v1/recommend", json={"user_id": "u03", "context": CTX})
        a.post("/v1/events", json=_events("u07", ["i01", "i02"], "y"))
        _wait(lambda: sa.sharer.counts["written"] >= 1)
        good = sa.store.user_states(["u07"])["u07"]
        last = sa.store.user_events("u07", 200)[-1].id
        db = sqlite3.connect(store, isolation_level=None)
        bad_rows = [("another-model", good[1], good[2], good[3], good[4]),  # another model version
                    (good[0], good[1] + 1, good[2], good[3], good[4]),  # another catalogue
                    (good[0], good[1], good[2], good[3] - 1, good[4]),  # another number of events read
                    (good[0], good[1], good[2], good[3], good[4][:-4])]  # another shape
        for i, (version, seq, last_id, n, blob) in enumerate(bad_rows):
            db.execute("UPDATE user_states SET model_version = ?, item_seq = ?, last_event_id = ?, n_events = ?, "
                       "state = ? WHERE user_id = 'u07'", (version, seq, last_id, n, blob))
            sb.handle.user_cache.clear()
            misses, reads = sb.handle.cache_misses, sb.handle.shared_counts["read"]
            assert b.post("/v1/recommend", json={"user_id": "u07", "context": CTX}).status_code == 200
            assert (sb.handle.cache_misses, sb.handle.shared_counts["read"]) == (misses + 1, reads), (i, last)
        db.close()


def test_erasing_a_user_deletes_their_state_and_none_is_written_after(fusion_run: Path, store_url: str) -> None:
    settings = ServingSettings(model=str(fusion_run), store=store_url, shared_states=True)
    with TestClient(create_app(settings)) as a:
        sa = _state(a)
        a.post("/v1/events", json=_events("u09", ["i04", "i05"], "z"))
        _wait(lambda: "u09" in sa.store.user_states(["u09"]))
        row = sa.store.user_states(["u09"])["u09"]
        assert a.delete("/v1/users/u09").status_code == 200
        assert sa.store.user_states(["u09"]) == {}
        # a state computed before the erasure and written after it (a refresh in flight) is refused
        assert sa.store.put_user_states([("u09", *row)]) == 0
        assert sa.store.user_states(["u09"]) == {}
        sa.sharer.note(["u09"])  # and a refresh asked for after it writes nothing
        time.sleep(0.3)
        assert sa.store.user_states(["u09"]) == {}


def test_a_store_that_refuses_the_write_costs_only_the_sharing(fusion_run: Path, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's write lock held by another process: the sharer's write meets its deadline, is counted and
    said once; events and recommendations go on (reads do not wait for the lock), and the next batch
    after the lock is released is written."""
    store = str(tmp_path / "s.sqlite")
    settings = ServingSettings(model=str(fusion_run), store=store, shared_states=True, store_deadline=0.5)
    with TestClient(create_app(settings)) as a:
        sa = _state(a)
        a.post("/v1/events", json=_events("u11", ["i01", "i02"], "w"))
        _wait(lambda: sa.sharer.counts["written"] >= 1)
        other = sqlite3.connect(store, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            sa.sharer.note(["u11", "u12"])
            _wait(lambda: sa.sharer.counts["write_failed"] >= 2)
            assert a.post("/v1/recommend", json={"user_id": "u11", "context": CTX}).status_code == 200
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert "the store is unavailable" in caplog.text
        written = sa.sharer.counts["written"]
        a.post("/v1/events", json=_events("u11", ["i03"], "v"))
        _wait(lambda: sa.sharer.counts["written"] > written)
        assert "the store answers again" in caplog.text


def test_the_pending_users_are_bounded(fusion_run: Path, tmp_path: Path) -> None:
    settings = ServingSettings(model=str(fusion_run), store=str(tmp_path / "s.sqlite"), shared_states=True)
    with TestClient(create_app(settings)) as a:
        sharer = _state(a).sharer
        sharer.max_pending = 3
        sharer._wake = None  # not woken: the set is only filled here
        sharer.note(["a", "b", "a", "c", "d", "e"])
        assert list(sharer.pending) == ["c", "d", "e"] and sharer.counts["dropped"] == 2


def test_shared_states_on_a_model_without_a_state_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models.ease import EASERecommender

    data = simulate(SimulatorConfig(n_users=30, n_items=20, n_genres=2, events_per_user=6, seed=3))
    EASERecommender().fit(data).save(tmp_path / "ease")
    with TestClient(create_app(ServingSettings(model=str(tmp_path / "ease"), store=str(tmp_path / "s.sqlite"),
                                               shared_states=True))):
        pass
    assert "has no user state to share" in caplog.text


def test_the_store_keeps_one_row_per_user(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "s.sqlite"))
    try:
        store.add_events([("u", "i01", "view", 1.7e9, {}), ("u", "i02", "view", 1.7e9 + 1, {})])
        ids = [e.id for e in store.user_events("u", 10)]
        assert store.put_user_states([("u", "m1", 0, ids[0], 1, b"\0" * 8)]) == 1
        assert store.put_user_states([("u", "m1", 0, ids[1], 2, b"\1" * 8)]) == 1
        assert store.user_states(["u", "nobody", "u"]) == {"u": ("m1", 0, ids[1], 2, b"\1" * 8)}
        assert store.put_user_states([("u", "m1", 0, ids[1] + 100, 3, b"\2" * 8)]) == 0  # no such event of u
        assert store.user_states(["u\x00"]) == {}  # a key no write could have stored
    finally:
        store.close()
