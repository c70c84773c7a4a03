"""Durable event and item store: SQLite (WAL, the embedded default) or PostgreSQL (psycopg 3).

Every write commits before it returns, so an acknowledged event survives a crash of the service
(SQLite ``synchronous=FULL`` also survives power loss; ``NORMAL`` in WAL mode survives a killed
process). Events keep the caller's timestamp and context; ``id`` is the store's arrival order.

How it stays up (docs/serving.md, "Faults"):

* **No shared lock.** Reads run on a few reader threads, writes on one writer thread; each thread
  owns its connection, so nothing is ever locked across a call that can fail.
* **Group commit.** The writer takes every write queued while the previous commit ran and commits
  them in one transaction (one fsync), each inside its own savepoint: one bad write fails alone,
  and a reader never waits for a commit (SQLite WAL readers and PostgreSQL readers do not block).
* **Deadlines.** The caller waits at most ``deadline`` seconds (default 2) for any store call, then
  gets :class:`StoreUnavailable` (the service answers 503 with ``Retry-After``). A call still running
  past its deadline shows in :meth:`EventStore.stalled_for`, which fails the liveness probe.
* **Reconnect with backoff.** A lost connection is dropped and reopened on the next call; while the
  server stays unreachable, attempts back off (50 ms doubling to 1 s) and calls fail fast.
* **Quarantine.** A stored row that could not have passed today's request checks (a lone surrogate,
  a NUL, broken JSON) is moved to the ``quarantine`` table with a warning instead of failing every
  read (or start-up) that meets it.
* **One service over one store.** Replicas share nothing but the store: events are read per
  request; item changes and the promoted model carry a ``seq`` that :meth:`EventStore.change_versions`
  reads in one query, which each replica polls (serving/app.py).
* **Idempotent events.** An event may carry an ``event_id``; a repeated one is acknowledged and not
  stored twice (a unique index, ``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxrec.serving.schemas import text_problem
from ctxrec.serving.store_rows import (
    _EVENT_COLS,
    _ITEMS_LOCK,
    _SCHEMA,
    _SERIAL,
    StoredEvent,
    StoreUnavailable,
    _first_line,
    _printable,
    _row_problem,
    _safe_key,
    user_tombstone,
)

__all__ = ["EventStore", "StoreUnavailable", "StoredEvent", "user_tombstone"]  # the row types live in store_rows

log = logging.getLogger("ctxrec.serving.store")


class _Link:
    """One thread's connection: opened on first use, dropped when it fails, reopened next time."""

    def __init__(self, store: EventStore, *, writer: bool) -> None:
        self.store, self.writer = store, writer
        self.conn: Any = None
        self.generation = -1

    def get(self) -> Any:
        s = self.store
        if self.conn is not None and self.generation != s._generation:
            self.drop()  # another thread saw the server go away: this connection is stale too
        if self.conn is None:
            self.conn = s._connect(writer=self.writer)
            self.generation = s._generation
        return self.conn

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is gone either way
                self.conn.close()
        self.conn = None


@dataclass
class _Job:
    fn: Callable[[Any], Any]
    future: Future[Any]
    deadline: float
    write: bool


class _Worker(threading.Thread):
    """A daemon thread running store jobs on its own connection (the writer commits in groups)."""

    def __init__(self, store: EventStore, jobs: queue.Queue[_Job | None], *, writer: bool, name: str) -> None:
        super().__init__(name=name, daemon=True)  # daemon: a stuck driver call never blocks process exit
        self.store, self.jobs, self.writer = store, jobs, writer
        self.link = _Link(store, writer=writer)
        self.busy_since: float | None = None

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                break
            batch = [job]
            while self.writer and len(batch) < 256:  # group commit: everything queued meanwhile
                try:
                    nxt = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self.jobs.put(None)
                    break
                batch.append(nxt)
            now = time.monotonic()
            live = []
            for j in batch:  # the caller has given up: do not start it (it was answered 503)
                if now > j.deadline or not j.future.set_running_or_notify_cancel():
                    if not j.future.done():
                        j.future.set_exception(StoreUnavailable("store call expired in the queue"))
                else:
                    live.append(j)
            if not live:
                continue
            self.busy_since = now
            try:
                if self.writer:
                    self.store._run_writes(self.link, live)
                else:
                    self.store._run_read(self.link, live[0])
            finally:
                self.busy_since = None
        self.link.drop()


# ----------------------------------------------------------------------------------------- store
class EventStore:
    """Events, items, API keys, quarantined rows and erased-user tombstones, in SQLite or PostgreSQL."""

    def __init__(self, url: str, *, synchronous: str = "FULL", deadline: float = 2.0, readers: int = 4) -> None:
        self.url, self.deadline = url, float(deadline)
        if self.deadline <= 0:
            raise ValueError(f"store deadline must be > 0 seconds, got {deadline!r}")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"sqlite synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.synchronous = synchronous
        self._generation = 0
        self._retry_at, self._backoff = 0.0, 0.0
        self._state_lock = threading.Lock()  # guards the backoff numbers only; never held across a call
        self.commits = 0
        """Transactions committed by the writer (several writes share one under load: group commit)."""
        if url.startswith(("postgresql://", "postgres://")):
            self.kind, self.path = "postgres", None
        else:
            self.kind = "sqlite"
            path = url.removeprefix("sqlite:///")
            if path == ":memory:" or path.startswith("file:"):
                raise ValueError(f"store {url!r}: the service store needs a file path (several threads open it); "
                                 "use a temporary file instead of an in-memory database")
            self.path = Path(path)
            self._private_file(self.path)
        self._write_q: queue.Queue[_Job | None] = queue.Queue()
        self._read_q: queue.Queue[_Job | None] = queue.Queue()
        self._workers = [_Worker(self, self._write_q, writer=True, name="ctxrec-store-writer")]
        self._workers += [_Worker(self, self._read_q, writer=False, name=f"ctxrec-store-reader-{n}")
                          for n in range(max(1, readers))]
        for w in self._workers:
            w.start()
        self._closed = False
        self._write(self._create_schema, deadline=max(self.deadline, 10.0))

    @staticmethod
    def _private_file(path: Path) -> None:
        """Create the database file 0600 (SQLite gives its -wal/-shm files the same mode); tighten an
        existing one: the store holds user ids and their behaviour."""
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists() and p.stat().st_mode & 0o077:
                p.chmod(0o600)

    def _connect(self, *, writer: bool) -> Any:
        """Open a connection, or fail fast while the server is known to be unreachable (backoff)."""
        now = time.monotonic()
        with self._state_lock:
            wait = self._retry_at - now
        if wait > 0:
            raise StoreUnavailable(f"store unreachable; next reconnect attempt in {wait:.2f} s", retry_after=max(wait, 0.1))
        try:
            if self.kind == "postgres":
                import psycopg

                ms = int(self.deadline * 1000)
                conn: Any = psycopg.connect(self.url, autocommit=not writer, connect_timeout=max(1, round(self.deadline)),
                                            options=f"-c statement_timeout={ms} -c lock_timeout={ms}",
                                            tcp_user_timeout=ms, keepalives=1, keepalives_idle=5, keepalives_interval=1,
                                            keepalives_count=3)
            else:
                conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=self.deadline)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except Exception as exc:
            with self._state_lock:
                self._backoff = min(max(self._backoff * 2, 0.05), 1.0)
                self._retry_at = time.monotonic() + self._backoff
            raise StoreUnavailable(f"cannot connect to the store: {_first_line(exc)}", retry_after=self._backoff) from exc
        with self._state_lock:
            self._backoff, self._retry_at = 0.0, 0.0
        return conn

    def _is_connection_error(self, exc: BaseException) -> bool:
        if self.kind == "postgres":
            import psycopg

            return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
        # "no such table", a syntax error ... are OperationalErrors too, but the caller's bug: fail alone
        msg = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and any(
            w in msg for w in ("locked", "busy", "disk i/o", "unable to open", "closed", "disk is full", "malformed"))

    def _lost(self, link: _Link, exc: BaseException) -> StoreUnavailable:
        """A connection-level failure: drop this connection (and mark every other one stale)."""
        busy = self.kind == "sqlite" and "locked" in str(exc)
        if not busy:
            link.drop()
            with self._state_lock:
                self._generation += 1
        return StoreUnavailable(f"store call failed: {_first_line(exc)}", retry_after=1.0)

    # ------------------------------------------------------------------------------ job runners
    def _run_read(self, link: _Link, job: _Job) -> None:
        for attempt in (0, 1):  # a read on a stale connection is retried once on a fresh one
            fresh = link.conn is None
            try:
                conn = link.get()
                job.future.set_result(job.fn(conn))
                return
            except StoreUnavailable as exc:
                job.future.set_exception(exc)
                return
            except Exception as exc:  # noqa: BLE001 - classified: outage -> 503, else the caller's bug
                if not self._is_connection_error(exc):
                    job.future.set_exception(exc)
                    return
                err = self._lost(link, exc)
                if attempt or fresh or time.monotonic() > job.deadline:
                    job.future.set_exception(err)
                    return

    def _run_writes(self, link: _Link, jobs: list[_Job]) -> None:
        """One transaction for the group, a savepoint per write; retried once on a fresh connection
        when the connection failed before COMMIT was sent (nothing of it was committed then)."""
        for attempt in (0, 1):
            fresh, committing = link.conn is None, False
            results: list[tuple[bool, Any]] = []
            try:
                conn = link.get()
                cur = conn.cursor()
                try:
                    if self.kind == "sqlite":
                        cur.execute("BEGIN IMMEDIATE")
                    tx = _Tx(self, cur)
                    for j in jobs:
                        cur.execute("SAVEPOINT w")
                        try:
                            results.append((True, j.fn(tx)))
                            cur.execute("RELEASE SAVEPOINT w")
                        except Exception as exc:
                            if self._is_connection_error(exc):
                                raise
                            cur.execute("ROLLBACK TO SAVEPOINT w")
                            cur.execute("RELEASE SAVEPOINT w")
                            results.append((False, exc))
                    committing = True
                    conn.commit() if self.kind == "postgres" else cur.execute("COMMIT")
                    self.commits += 1
                finally:
                    cur.close()
            except StoreUnavailable as exc:
                for j in jobs:
                    j.future.set_exception(exc)
                return
            except Exception as exc:  # noqa: BLE001 - classified below
                self._rollback_quietly(link)
                if not self._is_connection_error(exc):
                    for j in jobs:
                        j.future.set_exception(exc)
                    return
                err = self._lost(link, exc)
                if committing or attempt or fresh or time.monotonic() > min(j.deadline for j in jobs):
                    for j in jobs:
                        j.future.set_exception(err)
                    return
                continue
            for j, (ok, val) in zip(jobs, results, strict=True):
                j.future.set_result(val) if ok else j.future.set_exception(val)
            return

    def _rollback_quietly(self, link: _Link) -> None:
        if link.conn is None:
            return
        with contextlib.suppress(Exception):  # no transaction open, or the connection is gone (dropped next)
            link.conn.rollback() if self.kind == "postgres" else link.conn.execute("ROLLBACK")

    def _submit(self, q: queue.Queue[_Job | None], fn: Callable[[Any], Any], write: bool, deadline: float | None) -> Any:
        if self._closed:
            raise StoreUnavailable("the store is closed (the service is shutting down)")
        limit = self.deadline if deadline is None else deadline
        job = _Job(fn, Future(), time.monotonic() + limit, write)
        q.put(job)
        try:
            return job.future.result(timeout=limit)
        except FutureTimeout:
            job.future.cancel()
            raise StoreUnavailable(f"the store did not answer within its {limit:g} s deadline", retry_after=1.0) from None

    def _write(self, fn: Callable[[_Tx], Any], deadline: float | None = None) -> Any:
        return self._submit(self._write_q, fn, True, deadline)

    def _query(self, q: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        sql = self._sql(q)

        def run(conn: Any) -> list[tuple[Any, ...]]:
            cur = conn.cursor()
            try:
                cur.execute(sql, params)
                return list(cur.fetchall())
            finally:
                cur.close()

        return self._submit(self._read_q, run, False, None)

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.kind == "postgres" else q

    def _create_schema(self, tx: _Tx) -> None:
        # replicas starting together: concurrent CREATE TABLE IF NOT EXISTS can still collide in PostgreSQL's
        # catalogue (a unique violation on pg_type), so schema creation takes the same transaction lock
        self._serialise(tx)
        for stmt in _SCHEMA:
            tx.execute(stmt.format(serial=_SERIAL[self.kind]))
        if self.kind == "postgres":
            tx.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS event_id TEXT")
        elif "event_id" not in {r[1] for r in tx.execute("PRAGMA table_info(events)").fetchall()}:
            tx.execute("ALTER TABLE events ADD COLUMN event_id TEXT")  # a store made before event ids
        tx.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (event_id)")

    # ------------------------------------------------------------------------------ health
    def close(self) -> None:
        """Stop the worker threads (without waiting on one stuck in a driver call) and close."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            (self._write_q if w.writer else self._read_q).put(None)
        end = time.monotonic() + min(self.deadline, 2.0)
        for w in self._workers:
            w.join(max(0.0, end - time.monotonic()))

    def ping(self) -> bool:
        try:
            self._query("SELECT 1")
            return True
        except StoreUnavailable:
            return False

    def stalled_for(self) -> float:
        """Seconds the oldest running store call has run past its deadline (0 when none has)."""
        now = time.monotonic()
        ages = [now - w.busy_since for w in self._workers if w.busy_since is not None]
        return max(0.0, max(ages, default=0.0) - self.deadline)

    # ------------------------------------------------------------------------------ events
    def add_events(self, events: Sequence[tuple[Any, ...]]) -> int:
        """Append ``(user, item, type, timestamp, context[, event_id])`` rows in one transaction,
        committed when this returns. Returns how many were new: a row whose ``event_id`` is already
        stored (a client's retry) is acknowledged but not stored again."""
        now = time.time()
        rows = [(e[0], e[1], e[2], float(e[3]), json.dumps(e[4], separators=(",", ":")), now,
                 e[5] if len(e) > 5 else None) for e in events]

        def write(tx: _Tx) -> int:
            cur = tx.executemany("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at, event_id) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING", rows)
            return int(cur.rowcount)

        return int(self._write(write))

    def user_events(self, user_id: str, limit: int) -> list[StoredEvent]:
        """The user's most recent ``limit`` events, oldest first (by timestamp, then arrival)."""
        if text_problem(user_id, None):
            return []  # a key no write could have stored (a NUL would be an error on PostgreSQL)
        rows = self._query(f"SELECT {_EVENT_COLS} FROM events WHERE user_id = ? ORDER BY ts DESC, id DESC LIMIT ?",
                           (user_id, int(limit)))
        return self._events(list(reversed(rows)))

    def events_after(self, after_id: int = 0, batch: int = 50_000) -> Iterator[StoredEvent]:
        """All events with ``id > after_id`` in arrival order (for retraining)."""
        last = after_id
        while True:
            rows = self._query(f"SELECT {_EVENT_COLS} FROM events WHERE id > ? ORDER BY id LIMIT ?", (last, batch))
            if not rows:
                return
            yield from self._events(rows)
            last = rows[-1][0]

    def _events(self, rows: Sequence[tuple[Any, ...]]) -> list[StoredEvent]:
        out, bad = [], []
        for r in rows:
            try:
                ctx = json.loads(r[5])
                problem = _row_problem([r[1], r[2], r[3], ctx]) or ("" if isinstance(ctx, dict) else "context is not an object")
            except ValueError as exc:
                problem = f"context is not JSON: {exc}"
            if problem:
                bad.append((r, problem))
            else:
                out.append(StoredEvent(r[0], r[1], r[2], r[3], float(r[4]), ctx, r[6]))
        for r, problem in bad:
            self._quarantine("events", "id", r[0], _safe_key(r[1]), {"row": [_printable(x) for x in r]}, problem)
        return out

    def event_stats(self, after_id: int = 0) -> tuple[int, int, float | None]:
        """(events stored, events with id > after_id, received_at of the oldest of those)."""
        total = self._query("SELECT COUNT(*) FROM events")[0][0]
        pend = self._query("SELECT COUNT(*), MIN(received_at) FROM events WHERE id > ?", (after_id,))[0]
        return int(total), int(pend[0]), (None if pend[1] is None else float(pend[1]))

    def max_event_id(self) -> int:
        v = self._query("SELECT MAX(id) FROM events")[0][0]
        return int(v or 0)

    # ------------------------------------------------------------------------------ users
    def erase_user(self, user_id: str) -> int:
        """Delete every event (and quarantined row) of the user and leave a tombstone (a hash, not the
        id) so the model's trained history of them is not served; one transaction. Returns the
        number of events deleted."""
        if text_problem(user_id, None):
            return 0

        def write(tx: _Tx) -> int:
            n = int(tx.execute("DELETE FROM events WHERE user_id = ?", (user_id,)).rowcount)
            tx.execute("DELETE FROM quarantine WHERE source = 'events' AND key = ?", (_safe_key(user_id),))
            tx.execute("INSERT INTO erased_users (tombstone, at) VALUES (?, ?) ON CONFLICT (tombstone) DO NOTHING",
                       (user_tombstone(user_id), time.time()))
            return n

        return int(self._write(write))

    def erased_users(self) -> set[str]:
        """Tombstones (:func:`user_tombstone`) of erased users."""
        return {r[0] for r in self._query("SELECT tombstone FROM erased_users")}

    # ------------------------------------------------------------------------------ items
    def put_items(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Insert or replace items (un-retiring them) in one transaction; returns the last change seq."""
        payloads = [(i, json.dumps(p, separators=(",", ":"))) for i, p in items]

        def write(tx: _Tx) -> int:
            self._serialise(tx)
            seq = int(tx.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0])
            rows = [(i, p, seq + n + 1) for n, (i, p) in enumerate(payloads)]
            tx.executemany("INSERT INTO items (item_id, payload, retired, seq) VALUES (?, ?, 0, ?) ON CONFLICT (item_id) "
                           "DO UPDATE SET payload = excluded.payload, retired = 0, seq = excluded.seq", rows)
            return seq + len(rows)

        return int(self._write(write))

    def retire_item(self, item_id: str) -> None:
        def write(tx: _Tx) -> None:
            self._serialise(tx)
            seq = tx.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]
            tx.execute("INSERT INTO items (item_id, payload, retired, seq) VALUES (?, '{}', 1, ?) "
                       "ON CONFLICT (item_id) DO UPDATE SET retired = 1, seq = excluded.seq", (item_id, seq + 1))

        self._write(write)

    def items(self, after_seq: int = 0) -> list[tuple[str, dict[str, Any], bool, int]]:
        """(item_id, payload, retired, seq) of items changed after ``after_seq``, in change order; a
        row that fails the request checks is quarantined (with a warning) and left out."""
        rows = self._query("SELECT item_id, payload, retired, seq FROM items WHERE seq > ? ORDER BY seq", (after_seq,))
        out = []
        for r in rows:
            try:
                payload = json.loads(r[1])
                problem = _row_problem([r[0], payload]) or ("" if isinstance(payload, dict) else "payload is not an object")
            except ValueError as exc:
                problem = f"payload is not JSON: {exc}"
            if problem:
                self._quarantine("items", "item_id", r[0], _safe_key(r[0]), {"row": [_printable(x) for x in r]}, problem)
                continue
            out.append((r[0], payload, bool(r[2]), int(r[3])))
        return out

    def _serialise(self, tx: _Tx) -> None:
        """Order item changes across processes (SQLite's BEGIN IMMEDIATE already does)."""
        if self.kind == "postgres":
            tx.execute("SELECT pg_advisory_xact_lock(?)", (_ITEMS_LOCK,))

    def change_versions(self) -> tuple[int, int, int]:
        """(last item change seq, erased users, promoted-model seq): one cheap query a replica polls to
        learn that another replica changed the catalogue, erased a user or promoted a model."""
        r = self._query("SELECT (SELECT COALESCE(MAX(seq), 0) FROM items), (SELECT COUNT(*) FROM erased_users), "
                        "(SELECT COALESCE(MAX(seq), 0) FROM service_state WHERE name = 'promoted')")[0]
        return int(r[0]), int(r[1]), int(r[2])

    def set_promoted(self, run_dir: str, version: str) -> int:
        """Record the model every replica should serve; returns its seq (one more than the last)."""
        value = json.dumps({"run_dir": run_dir, "version": version})

        def write(tx: _Tx) -> int:
            self._serialise(tx)
            seq = int(tx.execute("SELECT COALESCE(MAX(seq), 0) FROM service_state WHERE name = 'promoted'").fetchone()[0]) + 1
            tx.execute("INSERT INTO service_state (name, value, seq, at) VALUES ('promoted', ?, ?, ?) ON CONFLICT (name) "
                       "DO UPDATE SET value = excluded.value, seq = excluded.seq, at = excluded.at", (value, seq, time.time()))
            return seq

        return int(self._write(write))

    def promoted(self) -> tuple[int, str, str] | None:
        """(seq, run_dir, version) of the promoted model, or None when no model was ever promoted."""
        rows = self._query("SELECT seq, value FROM service_state WHERE name = 'promoted'")
        if not rows:
            return None
        try:
            v = json.loads(rows[0][1])
            return int(rows[0][0]), str(v["run_dir"]), str(v["version"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("store: ignoring an unreadable promoted-model record: %s", exc)
            return None

    def quarantine_item(self, item_id: str, reason: str) -> None:
        """Move an item row the model could not take to the quarantine (the caller was told why)."""
        rows = self._query("SELECT item_id, payload, retired, seq FROM items WHERE item_id = ?", (item_id,))
        if rows:
            self._quarantine("items", "item_id", item_id, _safe_key(item_id), {"row": [_printable(x) for x in rows[0]]},
                             reason)

    def _quarantine(self, table: str, key_col: str, key: Any, owner: str, payload: dict[str, Any], reason: str) -> None:
        log.warning("store: quarantined a bad %s row (%s=%r): %s", table, key_col, _printable(key), reason)

        def write(tx: _Tx) -> None:
            tx.execute(f"DELETE FROM {table} WHERE {key_col} = ?", (key,))
            tx.execute("INSERT INTO quarantine (source, key, payload, reason, at) VALUES (?, ?, ?, ?, ?)",
                       (table, owner, json.dumps(payload), reason[:1000], time.time()))

        self._write(write)

    def quarantined(self) -> list[tuple[str, str, str]]:
        """(source table, key, reason) of quarantined rows."""
        return [(r[0], r[1], r[2]) for r in self._query("SELECT source, key, reason FROM quarantine ORDER BY id")]

    # ------------------------------------------------------------------------------ keys
    def put_key(self, sha256: str, name: str, scopes: Sequence[str]) -> None:
        self._write(lambda tx: tx.execute(
            "INSERT INTO api_keys (sha256, name, scopes) VALUES (?, ?, ?) ON CONFLICT (sha256) DO UPDATE "
            "SET name = excluded.name, scopes = excluded.scopes", (sha256, name, ",".join(scopes))))

    def keys(self) -> dict[str, tuple[str, frozenset[str]]]:
        return {r[0]: (r[1], frozenset(s for s in r[2].split(",") if s))
                for r in self._query("SELECT sha256, name, scopes FROM api_keys")}


class _Tx:
    """The writer's cursor, with ``?`` placeholders on either backend."""

    def __init__(self, store: EventStore, cur: Any) -> None:
        self.s, self.cur = store, cur

    def execute(self, q: str, params: Sequence[Any] = ()) -> Any:
        self.cur.execute(self.s._sql(q), params)
        return self.cur

    def executemany(self, q: str, rows: Sequence[Sequence[Any]]) -> Any:
        self.cur.executemany(self.s._sql(q), rows)
        return self.cur
