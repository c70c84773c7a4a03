"""Cheap event writes (issue 16, "reads under writes"): queued event inserts share one statement,
the event route awaits its commit without a pool thread, and reads of long histories skip the
per-value quarantine walk only when nothing in the rows could fail it. Every guarantee stays:
idempotent event ids, one bad write fails alone, nothing acknowledged before COMMIT, 503 with
Retry-After when the store does not answer."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ctxrec.serving import ServingSettings, create_app
from ctxrec.serving.store import EventStore, StoreUnavailable
from ctxrec.serving.store_rows import _row_problem, _rows_clean


def _queued_while_writer_busy(store: EventStore, calls: list[Any]) -> list[Any]:
    """Run ``calls`` (each ``() -> result``) on threads while the writer is held busy, so they queue
    and reach the writer as one group; returns each call's result or exception, in order."""
    started = threading.Event()

    def hold(tx: Any) -> None:
        started.set()
        time.sleep(0.4)

    holder = threading.Thread(target=store._write, args=(hold,))
    holder.start()
    assert started.wait(5)
    out: list[Any] = [None] * len(calls)

    def run(k: int) -> None:
        try:
            out[k] = calls[k]()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            out[k] = exc

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
        time.sleep(0.01)  # queue order = thread order
    for t in [*threads, holder]:
        t.join(10)
    return out


def test_queued_event_writes_run_merged_and_keep_their_own_counts(store_url: str) -> None:
    store = EventStore(store_url)
    try:
        assert store.add_events([("u", "i01", "view", 1.0, {}, "e0")]) == 1
        batches = [
            [("u", "i01", "view", 2.0, {"device": "tv"}, "e1"), ("u", "i02", "view", 3.0, {}, "e2")],
            [("u", "i01", "view", 2.0, {}, "e0"), ("v", "i03", "view", 4.0, {"device": "mobile"})],  # e0: a retry
            [("w", "i04", "view", 5.0, {}, "e1"), ("w", "i05", "view", 6.0, {}, "e3")],  # e1: queued just before
            [("x", "i06", "view", 7.0, {}), ("x", "i06", "view", 7.0, {})],  # no ids: both stored
        ]
        before = store.statements_merged
        got = _queued_while_writer_busy(store, [lambda b=b: store.add_events(b) for b in batches])
        assert got == [2, 1, 1, 2]  # as if each had run alone, in queue order
        assert store.statements_merged - before == 4  # one merged write (PostgreSQL: one statement) for the four
        stored = list(store.events_after(0))
        assert len(stored) == 1 + 6 and len({e.id for e in stored}) == 7
        assert [e.item_id for e in store.user_events("u", 10)] == ["i01", "i01", "i02"]
        assert [e.context for e in store.user_events("v", 10)] == [{"device": "mobile"}]
        assert [e.item_id for e in store.user_events("w", 10)] == ["i05"]  # e1 kept its first row's event
        ids = [e.id for e in stored]
        assert ids == sorted(ids)  # arrival order: queue order
    finally:
        store.close()


def test_a_bad_write_in_a_merged_group_fails_alone(store_url: str) -> None:
    store = EventStore(store_url)
    try:
        calls = [lambda: store.add_events([("a", "i01", "view", 1.0, {}, "a1")]),
                 lambda: store.add_events([("b", None, "view", 1.0, {})]),  # NOT NULL: the statement fails
                 lambda: store.add_events([("c", "i02", "view", 2.0, {}, "c1"), ("c", "i03", "view", 3.0, {})])]
        before = store.statements_merged
        got = _queued_while_writer_busy(store, calls)
        assert got[0] == 1 and got[2] == 2
        assert isinstance(got[1], Exception) and not isinstance(got[1], StoreUnavailable)
        assert store.statements_merged == before  # the merged statement was rolled back, each ran alone
        assert sorted(e.user_id for e in store.events_after(0)) == ["a", "c", "c"]
    finally:
        store.close()


def test_async_add_events_awaits_the_commit_and_meets_its_deadline(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = EventStore(str(db), deadline=0.5)
    try:
        rows = [("u", "i01", "view", 1.0, {}, "e1"), ("u", "i02", "view", 2.0, {}, "e1")]
        assert asyncio.run(store.add_events_async(rows)) == 1
        assert [e.item_id for e in store.user_events("u", 10)] == ["i01"]  # committed when it returned
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable):
                asyncio.run(store.add_events_async([("u", "i03", "view", 3.0, {}, "e3")]))
            assert time.monotonic() - t0 < 1.5
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert asyncio.run(store.add_events_async([("u", "i03", "view", 3.0, {}, "e3")])) in (0, 1)  # maybe landed late
        assert [e.item_id for e in store.user_events("u", 10)] == ["i01", "i03"]
    finally:
        store.close()


def test_event_route_answers_503_with_retry_after_when_the_store_does_not_commit(fusion_run: Path,
                                                                                   tmp_path: Path) -> None:
    db = tmp_path / "events.sqlite"
    with TestClient(create_app(ServingSettings(model=str(fusion_run), store=str(db), store_deadline=0.5))) as c:
        assert c.post("/v1/events", json={"user_id": "u01", "item_id": "i01", "event_id": "a"}).json() == \
            {"stored": 1, "duplicates": 0, "event_types_unknown": [],
                                  "context_unused_fields": [], "context_unknown_values": {}}
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            r = c.post("/v1/events", json={"events": [{"user_id": "u01", "item_id": "i02", "event_id": "b"}]})
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) >= 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        r = c.post("/v1/events", json={"events": [{"user_id": "u01", "item_id": "i02", "event_id": "b"},
                                                  {"user_id": "u01", "item_id": "i01", "event_id": "a"}]})
        assert r.status_code == 200 and r.json()["stored"] + r.json()["duplicates"] == 2 and r.json()["duplicates"] >= 1


@pytest.mark.parametrize(("texts", "contexts", "clean"), [
    (["u", "i01", "view"], ['{"device":"tv"}', "{}"], True),
    (["u", "i01", "view"], ['{"device":"\\u00e9t\\u00e9"}', '{"d":"été 😀"}'], True),  # escaped or raw: fine
    (["u\x00", "i01", "view"], ["{}"], False),
    (["u", "i\ud800", "view"], ["{}"], False),
    (["u", "i01", "view"], ['{"d":"\\u0000"}'], False),
    (["u", "i01", "view"], ['{"d":"\\uD800"}'], False),
    (["u", "i01", "view"], ['{"d":"\\ud83d\\ude00"}'], False),  # a valid pair: the exact check tells
    (["u", 5, "view"], ["{}"], False),  # not text at all
])
def test_rows_clean_is_false_whenever_the_exact_check_could_object(texts: list[Any], contexts: list[str],
                                                                    clean: bool) -> None:
    assert _rows_clean(texts, contexts) is clean
    if clean:  # the fast answer never hides a problem the exact walk would find
        import json

        assert not _row_problem([*texts, *(json.loads(c) for c in contexts)])


def test_a_bad_row_among_many_good_ones_is_still_quarantined(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    store = EventStore(str(db))
    store.add_events([("u", f"i{n:02d}", "view", float(n), {"device": "tv"}) for n in range(50)])
    with contextlib.closing(sqlite3.connect(db)) as c:  # rows written by an older, unchecked version
        c.execute("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at) "
                  "VALUES ('u', 'i99', 'view', 60, '{\"device\": \"a\\u0000b\"}', 1)")
        c.execute("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at) "
                  "VALUES ('u', 'i98', 'view', 61, '{\"device\": \"\\ud83d\\ude00\"}', 1)")  # a valid pair: kept
        c.commit()
    try:
        got = store.user_events("u", 100)
        assert len(got) == 51 and got[-1].item_id == "i98" and got[-1].context == {"device": "😀"}
        assert "i99" not in {e.item_id for e in got}
        assert [s for s, _, _ in store.quarantined()] == ["events"]
        got[0].context["device"] = "changed"  # each event owns its context (decoded once, copied per event)
        assert got[1].context == {"device": "tv"}
    finally:
        store.close()
