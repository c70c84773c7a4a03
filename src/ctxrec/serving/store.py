"""Durable event and item store: SQLite (WAL, the embedded default) or PostgreSQL (psycopg 3).

Every write commits before it returns, so an acknowledged event survives a crash of the service
(SQLite ``synchronous=FULL`` also survives power loss; ``NORMAL`` in WAL mode survives a killed
process). Events keep the caller's timestamp and context; ``id`` is the store's arrival order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class StoredEvent:
    id: int
    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    context: dict[str, Any]
    received_at: float


_SCHEMA = {
    "sqlite": [
        "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL, "
        "item_id TEXT NOT NULL, event_type TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, context TEXT NOT NULL, "
        "received_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts, id)",
        "CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, payload TEXT NOT NULL, retired INTEGER NOT NULL, "
        "seq INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS api_keys (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL)",
    ],
    "postgres": [
        "CREATE TABLE IF NOT EXISTS events (id BIGSERIAL PRIMARY KEY, user_id TEXT NOT NULL, "
        "item_id TEXT NOT NULL, event_type TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, context TEXT NOT NULL, "
        "received_at DOUBLE PRECISION NOT NULL)",
        "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts, id)",
        "CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, payload TEXT NOT NULL, retired INTEGER NOT NULL, "
        "seq BIGINT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS api_keys (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL)",
    ],
}


class EventStore:
    """One connection guarded by a lock (the service's writes are short; SQLite has one writer anyway)."""

    def __init__(self, url: str, *, synchronous: str = "FULL") -> None:
        self.url = url
        self._lock = threading.Lock()
        if url.startswith(("postgresql://", "postgres://")):
            import psycopg

            self.kind = "postgres"
            self._conn: Any = psycopg.connect(url, autocommit=False)
        else:
            self.kind = "sqlite"
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            if synchronous not in ("FULL", "NORMAL"):
                raise ValueError(f"sqlite synchronous must be FULL or NORMAL, got {synchronous!r}")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
        with self._tx() as cur:
            for stmt in _SCHEMA[self.kind]:
                cur.execute(stmt)

    # ---------------------------------------------------------------------------- plumbing
    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.kind == "postgres" else q

    class _Tx:
        def __init__(self, store: EventStore) -> None:
            self.s = store

        def __enter__(self) -> Any:
            self.s._lock.acquire()
            self.cur = self.s._conn.cursor()
            if self.s.kind == "sqlite":
                self.cur.execute("BEGIN IMMEDIATE")
            return self

        def execute(self, q: str, params: Sequence[Any] = ()) -> Any:
            return self.cur.execute(self.s._sql(q), params)

        def executemany(self, q: str, rows: Sequence[Sequence[Any]]) -> Any:
            return self.cur.executemany(self.s._sql(q), rows)

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            try:
                if exc_type is None:
                    self.s._conn.commit() if self.s.kind == "postgres" else self.cur.execute("COMMIT")
                else:
                    self.s._conn.rollback() if self.s.kind == "postgres" else self.cur.execute("ROLLBACK")
            finally:
                self.cur.close()
                self.s._lock.release()

    def _tx(self) -> EventStore._Tx:
        return EventStore._Tx(self)

    def _query(self, q: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute(self._sql(q), params)
                rows = cur.fetchall()
                if self.kind == "postgres":
                    self._conn.rollback()  # end the read transaction (psycopg opens one per statement)
                return rows
            finally:
                cur.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def ping(self) -> bool:
        try:
            self._query("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    # ---------------------------------------------------------------------------- events
    def add_events(self, events: Sequence[tuple[str, str, str, float, dict[str, Any]]]) -> int:
        """Append ``(user, item, type, timestamp, context)`` rows; committed when this returns.
        Returns the number of rows written."""
        now = time.time()
        rows = [(u, i, t, float(ts), json.dumps(c, separators=(",", ":")), now) for u, i, t, ts, c in events]
        with self._tx() as tx:
            tx.executemany("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def user_events(self, user_id: str, limit: int) -> list[StoredEvent]:
        """The user's most recent ``limit`` events, oldest first (by timestamp, then arrival)."""
        rows = self._query("SELECT id, user_id, item_id, event_type, ts, context, received_at FROM events "
                           "WHERE user_id = ? ORDER BY ts DESC, id DESC LIMIT ?", (user_id, int(limit)))
        return [StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in reversed(rows)]

    def events_after(self, after_id: int = 0, batch: int = 50_000) -> Iterator[StoredEvent]:
        """All events with ``id > after_id`` in arrival order (for retraining)."""
        last = after_id
        while True:
            rows = self._query("SELECT id, user_id, item_id, event_type, ts, context, received_at FROM events "
                               "WHERE id > ? ORDER BY id LIMIT ?", (last, batch))
            if not rows:
                return
            for r in rows:
                yield StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])
            last = rows[-1][0]

    def event_stats(self, after_id: int = 0) -> tuple[int, int, float | None]:
        """(events stored, events with id > after_id, received_at of the oldest of those)."""
        total = self._query("SELECT COUNT(*) FROM events")[0][0]
        pend = self._query("SELECT COUNT(*), MIN(received_at) FROM events WHERE id > ?", (after_id,))[0]
        return int(total), int(pend[0]), (None if pend[1] is None else float(pend[1]))

    def max_event_id(self) -> int:
        v = self._query("SELECT MAX(id) FROM events")[0][0]
        return int(v or 0)

    # ---------------------------------------------------------------------------- items
    def put_items(self, items: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Insert or replace items (un-retiring them); committed when this returns."""
        with self._tx() as tx:
            seq = tx.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]
            rows = [(i, json.dumps(p, separators=(",", ":")), seq + n + 1) for n, (i, p) in enumerate(items)]
            tx.executemany("INSERT INTO items (item_id, payload, retired, seq) VALUES (?, ?, 0, ?) "
                           "ON CONFLICT (item_id) DO UPDATE SET payload = excluded.payload, retired = 0, seq = excluded.seq",
                           rows)

    def retire_item(self, item_id: str) -> None:
        with self._tx() as tx:
            seq = tx.execute("SELECT COALESCE(MAX(seq), 0) FROM items").fetchone()[0]
            tx.execute("INSERT INTO items (item_id, payload, retired, seq) VALUES (?, '{}', 1, ?) "
                       "ON CONFLICT (item_id) DO UPDATE SET retired = 1, seq = excluded.seq", (item_id, seq + 1))

    def items(self, after_seq: int = 0) -> list[tuple[str, dict[str, Any], bool, int]]:
        """(item_id, payload, retired, seq) of items changed after ``after_seq``, in change order."""
        rows = self._query("SELECT item_id, payload, retired, seq FROM items WHERE seq > ? ORDER BY seq", (after_seq,))
        return [(r[0], json.loads(r[1]), bool(r[2]), int(r[3])) for r in rows]

    # ---------------------------------------------------------------------------- keys
    def put_key(self, sha256: str, name: str, scopes: Sequence[str]) -> None:
        with self._tx() as tx:
            tx.execute("INSERT INTO api_keys (sha256, name, scopes) VALUES (?, ?, ?) ON CONFLICT (sha256) DO UPDATE "
                       "SET name = excluded.name, scopes = excluded.scopes", (sha256, name, ",".join(scopes)))

    def keys(self) -> dict[str, tuple[str, frozenset[str]]]:
        return {r[0]: (r[1], frozenset(s for s in r[2].split(",") if s))
                for r in self._query("SELECT sha256, name, scopes FROM api_keys")}
