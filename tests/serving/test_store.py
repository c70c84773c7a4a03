"""The event store on its own: deadlines, reconnects, group commit, idempotent events, quarantine,
erasure and file modes, on SQLite and (where its binaries exist) a real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from ctxrec.serving.store import EventStore, StoreUnavailable


def test_repeated_event_ids_are_acknowledged_and_stored_once(store_url: str) -> None:
    store = EventStore(store_url)
    try:
        rows = [("u", "i01", "view", 1.7e9 + n, {"device": "tv"}, f"e{n}") for n in range(5)]
        assert store.add_events(rows) == 5
        assert store.add_events([*rows[:3], ("u", "i02", "view", 1800000000.0, {}, "e9")]) == 1  # three retries, one new
        assert store.add_events([rows[0], rows[0]]) == 0
        assert store.add_events([("u", "i03", "view", 1.9e9, {})] * 2) == 2  # no event id: no deduplication
        assert [e.timestamp for e in store.user_events("u", 100)] == [1.7e9 + n for n in range(5)] + [1.8e9, 1.9e9, 1.9e9]
    finally:
        store.close()


def test_users_events_reads_each_users_last_events_as_user_events_does(store_url: str) -> None:
    """A served batch reads all its users in one call: per user the same events, in the same order (time,
    then arrival; equal timestamps included), as one user_events call each, for any limit."""
    store = EventStore(store_url)
    try:
        rows = [(f"u{n % 3}", f"i{n:02d}", "view", 1.7e9 + (n * 7) % 5, {"n": n}, f"e{n}") for n in range(40)]
        rows.append(("other", "i99", "buy", 1.6e9, {}, "e-other"))
        store.add_events(rows)
        users = ["u0", "u2", "nobody", "u0", "nul\x00user", "u1"]  # a repeat, one with no events, one unstorable
        for limit in (1, 5, 100):
            got = store.users_events(users, limit)
            assert set(got) == set(users)
            for u in users:
                assert got[u] == store.user_events(u, limit), (u, limit)
            assert [len(got[u]) for u in ("u0", "u1", "u2")] == [min(limit, 14), min(limit, 13), min(limit, 13)]
        assert store.users_events([], 10) == {}
    finally:
        store.close()


def test_reads_do_not_wait_for_a_blocked_write_and_the_write_meets_its_deadline(tmp_path: Path) -> None:
    """The old store held one lock across every call: a write waiting 30 s for SQLite's write lock
    blocked every read (and /readyz) behind it."""
    db = tmp_path / "s.sqlite"
    store = EventStore(str(db), deadline=0.5)
    store.add_events([("u", "i01", "view", 1.7e9, {})])
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        got: dict[str, float] = {}

        def write() -> None:
            t0 = time.monotonic()
            with pytest.raises(StoreUnavailable):
                store.add_events([("u", "i02", "view", 1.7e9, {})])
            got["write"] = time.monotonic() - t0

        t = threading.Thread(target=write)
        t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        assert [e.item_id for e in store.user_events("u", 10)] == ["i01"]
        assert store.ping()
        got["read"] = time.monotonic() - t0
        t.join(5)
        assert not t.is_alive()
        assert got["read"] < 0.3, got
        assert 0.3 < got["write"] < 1.5, got
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.add_events([("u", "i02", "view", 1.7e9, {})]) == 1  # and it works again at once
    store.close()


def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "s.sqlite"))
    n_threads, per = 8, 40

    def writer(k: int) -> None:
        for j in range(per):
            store.add_events([(f"u{k}", "i01", "view", 1.7e9 + j, {}, f"{k}-{j}")])

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    before = store.commits
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.event_stats()[0] == n_threads * per
    assert store.commits - before < n_threads * per  # group commit: several writes per transaction
    store.close()


def test_a_failing_write_in_a_group_fails_alone(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "s.sqlite"))
    store.add_events([("u", "i01", "view", 1.0, {})])

    def bad(tx):  # type: ignore[no-untyped-def]
        tx.execute("INSERT INTO no_such_table VALUES (1)")

    errors: list[BaseException] = []

    def run_bad() -> None:
        try:
            store._write(bad)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run_bad)] + [
        threading.Thread(target=store.add_events, args=([("u", f"i{k:02d}", "view", 2.0 + k, {})],)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    assert store.event_stats()[0] == 7
    store.close()


def test_store_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "s.sqlite"
    store = EventStore(str(db))
    store.add_events([("alice", "i01", "view", 1.0, {})])
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert p.exists() and (p.stat().st_mode & 0o777) == 0o600, (p, oct(p.stat().st_mode))
    store.close()
    os.chmod(db, 0o644)  # a store made by an older version is tightened on open
    EventStore(str(db)).close()
    assert db.stat().st_mode & 0o777 == 0o600


def test_bad_stored_rows_are_quarantined_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "s.sqlite"
    EventStore(str(db)).close()
    with contextlib.closing(sqlite3.connect(db)) as c:  # rows written by an older, unchecked version
        c.execute("INSERT INTO items VALUES ('bad', '{\"title\": \"\\ud800\"}', 0, 1)")
        c.execute("INSERT INTO items VALUES ('good', '{\"title\": \"fine\"}', 0, 2)")
        c.execute("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at) "
                  "VALUES ('u', 'i01', 'view', 1, '{\"device\": \"\\ud800\"}', 1)")
        c.execute("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at) "
                  "VALUES ('u', 'i02', 'view', 2, '{}', 1)")
        c.commit()
    store = EventStore(str(db))
    with caplog.at_level("WARNING", logger="ctxrec.serving.store"):
        assert [i for i, *_ in store.items()] == ["good"]
        assert [e.item_id for e in store.user_events("u", 10)] == ["i02"]
    assert "quarantined" in caplog.text
    assert sorted(s for s, _, _ in store.quarantined()) == ["events", "items"]
    assert [i for i, *_ in store.items()] == ["good"] and len(store.quarantined()) == 2  # moved once
    store.close()


def test_erasure_leaves_only_a_tombstone(store_url: str) -> None:
    store = EventStore(store_url)
    store.add_events([("alice", "i01", "view", 1.0, {"device": "tv"}, "a1"), ("bob", "i02", "view", 1.0, {})])
    assert store.erase_user("alice") == 1
    assert store.user_events("alice", 10) == [] and len(store.user_events("bob", 10)) == 1
    assert len(store.erased_users()) == 1 and "alice" not in next(iter(store.erased_users()))
    assert store.user_events("nul\x00user", 10) == []  # a key no write can store is simply absent
    store.close()


def test_lost_postgres_connections_never_hang_and_reconnect(pg_cluster) -> None:  # type: ignore[no-untyped-def]
    """The old store took its lock, then ``conn.cursor()`` raised on the closed connection and the lock
    was never released: every later call hung. Here every backend of the store is killed."""
    import psycopg

    url = pg_cluster.fresh_database()
    store = EventStore(url, deadline=1.0)
    store.add_events([("u", "i01", "view", 1.0, {})])
    assert store.user_events("u", 10)
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.url(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
    outcomes: list[str] = []
    for _ in range(6):
        t0 = time.monotonic()
        try:
            store.add_events([("u", "i02", "view", 2.0, {})])
            store.user_events("u", 10)
            outcomes.append("ok")
        except StoreUnavailable:
            outcomes.append("503")
        assert time.monotonic() - t0 < 2.5  # never past the deadline (two calls of 1 s)
    assert outcomes[-1] == "ok", outcomes
    store.close()


def test_a_full_disk_is_an_outage_that_ends_when_space_returns(small_disk: Path, fill_disk) -> None:
    """SQLite on a real filesystem that fills: each write fails whole with StoreUnavailable (the service
    answers 503 with Retry-After), nothing is half-stored, reads go on, and once space is freed writes work
    again without a restart."""
    store = EventStore(str(small_disk / "events.sqlite"), deadline=2.0)
    try:
        assert store.add_events([("u", "i01", "view", 1.7e9, {}, "e0")]) == 1
        filler = fill_disk(small_disk)
        big = [("u", f"i{n:05d}", "view", 1.7e9 + n, {"note": "x" * 200}, f"b{n}") for n in range(1, 2001)]
        with pytest.raises(StoreUnavailable, match=r"disk is full|disk i/o"):
            store.add_events(big)
        assert [e.item_id for e in store.user_events("u", 10)] == ["i01"]  # all or nothing; reads still answer
        filler.unlink()
        deadline = time.monotonic() + 10
        while True:  # the store's reconnect backoff may ask for a short wait first
            try:
                assert store.add_events(big) == len(big)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline, "the store did not recover after space was freed"
                time.sleep(0.2)
        assert len(store.user_events("u", 5000)) == 1 + len(big)
        assert store.add_events(big[:3]) == 0  # the failed attempt left no ids behind: retries stay idempotent
    finally:
        store.close()
