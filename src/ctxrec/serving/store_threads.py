"""How the event store talks to its database: threads, connections, transactions and deadlines.

Split from :mod:`ctxrec.serving.store` (what is stored: events, items, keys), whose
:class:`~ctxrec.serving.store.EventStore` builds on :class:`StoreCore`.

* **No shared lock.** Reads run on a few reader threads, writes on one writer thread; each thread
  owns its connection, so nothing is ever locked across a call that can fail.
* **Group commit.** The writer takes every write queued while the previous commit ran and commits
  them in one transaction (one fsync), each inside its own savepoint: one bad write fails alone,
  and a reader never waits for a commit (SQLite WAL readers and PostgreSQL readers do not block).
  Queued writes of one kind that can share a statement (event inserts) run as one statement in
  one savepoint; if that statement fails, each of them is run again alone, so the bad one still
  fails alone.
* **Deadlines.** The caller waits at most ``deadline`` seconds (default 2) for any store call, then
  gets :class:`StoreUnavailable` (the service answers 503 with ``Retry-After``). A call still running
  past its deadline shows in :meth:`StoreCore.stalled_for`, which fails the liveness probe. An
  asyncio caller (:meth:`StoreCore._write_async`) awaits the same commit without holding a thread.
* **Reconnect with backoff.** A lost connection is dropped and reopened on the next call; while the
  server stays unreachable, attempts back off (50 ms doubling to 1 s) and calls fail fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxrec.serving.store_rows import StoreUnavailable, _first_line

Merge = Callable[["_Tx", list[Any]], list[Any]]
"""``merge(tx, [payload, ...])``: several queued writes of one kind as one statement; one result each."""


class _Link:
    """One thread's connection: opened on first use, dropped when it fails, reopened next time."""

    def __init__(self, store: StoreCore, *, writer: bool) -> None:
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
    merge: Merge | None = None
    """Set for a write that may share one statement with the queued writes of the same ``merge``
    (``fn`` is then the same write alone)."""
    payload: Any = None
    """What this job hands to ``merge``."""


class _Worker(threading.Thread):
    """A daemon thread running store jobs on its own connection (the writer commits in groups)."""

    def __init__(self, store: StoreCore, jobs: queue.Queue[_Job | None], *, writer: bool, name: str) -> None:
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


class StoreCore:
    """Connections, worker threads, group commit, deadlines and reconnects for SQLite or PostgreSQL."""

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
        self.statements_merged = 0
        """Writes that shared one statement with other queued writes (event inserts under load)."""
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
        """One transaction for the group, a savepoint per write (or per run of merged writes); retried
        once on a fresh connection when the connection failed before COMMIT was sent (nothing of it
        was committed then). No caller is answered before the COMMIT returned."""
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
                    i = 0
                    while i < len(jobs):
                        run = self._mergeable_run(jobs, i)
                        if len(run) < 2 or not self._run_merged(tx, run, results):
                            for j in run:
                                self._run_one(tx, j, results)
                        i += len(run)
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

    @staticmethod
    def _mergeable_run(jobs: list[_Job], i: int) -> list[_Job]:
        """``jobs[i]`` and the jobs right after it that share its ``merge`` (just ``jobs[i]`` if none)."""
        m, n = jobs[i].merge, i + 1
        if m is not None:
            while n < len(jobs) and jobs[n].merge == m:  # == : a bound method is a new object on each access
                n += 1
        return jobs[i:n]

    def _run_one(self, tx: _Tx, job: _Job, results: list[tuple[bool, Any]]) -> None:
        tx.execute("SAVEPOINT w")
        try:
            results.append((True, job.fn(tx)))
            tx.execute("RELEASE SAVEPOINT w")
        except Exception as exc:
            if self._is_connection_error(exc):
                raise
            tx.execute("ROLLBACK TO SAVEPOINT w")
            tx.execute("RELEASE SAVEPOINT w")
            results.append((False, exc))

    def _run_merged(self, tx: _Tx, run: list[_Job], results: list[tuple[bool, Any]]) -> bool:
        """Run the jobs as one statement in one savepoint; False (and nothing of them kept) when the
        statement failed for a reason of its own: the caller then runs each job alone."""
        merge = run[0].merge
        assert merge is not None
        tx.execute("SAVEPOINT m")
        try:
            vals = merge(tx, [j.payload for j in run])
        except Exception as exc:
            if self._is_connection_error(exc):
                raise
            tx.execute("ROLLBACK TO SAVEPOINT m")
            tx.execute("RELEASE SAVEPOINT m")
            return False
        tx.execute("RELEASE SAVEPOINT m")
        if len(vals) != len(run):
            raise RuntimeError(f"a merged write returned {len(vals)} results for {len(run)} writes")
        results.extend((True, v) for v in vals)
        self.statements_merged += len(run)
        return True

    def _rollback_quietly(self, link: _Link) -> None:
        if link.conn is None:
            return
        with contextlib.suppress(Exception):  # no transaction open, or the connection is gone (dropped next)
            link.conn.rollback() if self.kind == "postgres" else link.conn.execute("ROLLBACK")

    def _enqueue(self, q: queue.Queue[_Job | None], fn: Callable[[Any], Any], write: bool, limit: float,
                 merge: Merge | None = None, payload: Any = None) -> _Job:
        if self._closed:
            raise StoreUnavailable("the store is closed (the service is shutting down)")
        job = _Job(fn, Future(), time.monotonic() + limit, write, merge, payload)
        q.put(job)
        return job

    def _submit(self, q: queue.Queue[_Job | None], fn: Callable[[Any], Any], write: bool, deadline: float | None,
                merge: Merge | None = None, payload: Any = None) -> Any:
        limit = self.deadline if deadline is None else deadline
        job = self._enqueue(q, fn, write, limit, merge, payload)
        try:
            return job.future.result(timeout=limit)
        except FutureTimeout:
            job.future.cancel()
            raise StoreUnavailable(f"the store did not answer within its {limit:g} s deadline", retry_after=1.0) from None

    async def _write_async(self, fn: Callable[[_Tx], Any], merge: Merge | None = None, payload: Any = None) -> Any:
        """:meth:`_write` for a coroutine: the same job and deadline, awaited on the event loop instead
        of blocking a thread of the pool while the writer commits."""
        job = self._enqueue(self._write_q, fn, True, self.deadline, merge, payload)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout=self.deadline)
        except TimeoutError:
            job.future.cancel()  # not started yet: never runs; started: it commits or not, the caller retries
            raise StoreUnavailable(f"the store did not answer within its {self.deadline:g} s deadline",
                                   retry_after=1.0) from None

    def _write(self, fn: Callable[[_Tx], Any], deadline: float | None = None, merge: Merge | None = None,
               payload: Any = None) -> Any:
        return self._submit(self._write_q, fn, True, deadline, merge, payload)

    def _query(self, q: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._queries([(q, params)])[0]

    def _queries(self, queries: Sequence[tuple[str, Sequence[Any]]]) -> list[list[tuple[Any, ...]]]:
        """Several reads as one job on one reader connection (one hand-off and one wait for all)."""
        sqls = [(self._sql(q), params) for q, params in queries]

        def run(conn: Any) -> list[list[tuple[Any, ...]]]:
            cur = conn.cursor()
            try:
                out = []
                for sql, params in sqls:
                    cur.execute(sql, params)
                    out.append(list(cur.fetchall()))
                return out
            finally:
                cur.close()

        return self._submit(self._read_q, run, False, None)

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.kind == "postgres" else q

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


class _Tx:
    """The writer's cursor, with ``?`` placeholders on either backend."""

    def __init__(self, store: StoreCore, cur: Any) -> None:
        self.s, self.cur = store, cur

    def execute(self, q: str, params: Sequence[Any] = ()) -> Any:
        self.cur.execute(self.s._sql(q), params)
        return self.cur

    def executemany(self, q: str, rows: Sequence[Sequence[Any]]) -> Any:
        self.cur.executemany(self.s._sql(q), rows)
        return self.cur
