"""Durable event and item store: SQLite (WAL, the embedded default) or PostgreSQL (psycopg 3).

Every write commits before it returns, so an acknowledged event survives a crash of the service
(SQLite ``synchronous=FULL`` also survives power loss; ``NORMAL`` in WAL mode survives a killed
process). Events keep the caller's timestamp and context; ``id`` is the store's arrival order.

How it stays up (docs/serving.md, "Faults"): no shared lock, group commit (event inserts queued
together share one statement), deadlines, reconnect with backoff: see
:mod:`ctxrec.serving.store_threads`, which runs every call. Here:

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

import json
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ctxrec.serving.schemas import text_problem
from ctxrec.serving.store_rows import (
    _EVENT_COLS,
    _ITEMS_LOCK,
    _SCHEMA,
    _SERIAL,
    StoredEvent,
    StoreUnavailable,
    _printable,
    _row_problem,
    _rows_clean,
    _safe_key,
    user_tombstone,
)
from ctxrec.serving.store_threads import StoreCore, _Tx

__all__ = ["EventStore", "StoreUnavailable", "StoredEvent", "user_tombstone"]  # the row types live in store_rows

log = logging.getLogger("ctxrec.serving.store")


# ----------------------------------------------------------------------------------------- store
class EventStore(StoreCore):
    """Events, items, API keys, quarantined rows and erased-user tombstones, in SQLite or PostgreSQL
    (threads, connections and transactions: :class:`~ctxrec.serving.store_threads.StoreCore`)."""

    def __init__(self, url: str, *, synchronous: str = "FULL", deadline: float = 2.0, readers: int = 4) -> None:
        super().__init__(url, synchronous=synchronous, deadline=deadline, readers=readers)
        self._write(self._create_schema, deadline=max(self.deadline, 10.0))

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

    # ------------------------------------------------------------------------------ events
    def add_events(self, events: Sequence[tuple[Any, ...]]) -> int:
        """Append ``(user, item, type, timestamp, context[, event_id])`` rows in one transaction,
        committed when this returns. Returns how many were new: a row whose ``event_id`` is already
        stored (a client's retry) is acknowledged but not stored again."""
        rows = _event_rows(events)
        return int(self._write(lambda tx: self._insert_events(tx, [rows])[0], merge=self._insert_events, payload=rows))

    async def add_events_async(self, events: Sequence[tuple[Any, ...]]) -> int:
        """:meth:`add_events` for a coroutine (the service's event route): it awaits the same commit
        (and deadline) on the event loop instead of holding a thread while the writer commits."""
        rows = _event_rows(events)
        return int(await self._write_async(lambda tx: self._insert_events(tx, [rows])[0], merge=self._insert_events,
                                           payload=rows))

    def _insert_events(self, tx: _Tx, batches: list[list[tuple[Any, ...]]]) -> list[int]:
        """Insert the rows of several ``add_events`` calls at once; how many rows of each were new.

        PostgreSQL: one statement for all of them (arrays unnested in queue order), where one
        ``executemany`` would cost a round trip and a driver call per row. An ``event_id`` repeated
        within the statement is stored once and credited to its first row, as separate statements
        in queue order would."""
        if self.kind == "sqlite":  # in-process: executemany is a C loop, and rowcount says what was new
            return [int(tx.executemany(_INSERT_EVENT, rows).rowcount) for rows in batches]
        if not any(batches):
            return [0] * len(batches)
        cols = [list(c) for c in zip(*(r for rows in batches for r in rows), strict=True)]
        new_ids = {r[0] for r in tx.execute(_INSERT_EVENTS_PG, cols).fetchall()}
        counts = []
        for rows in batches:
            n = 0
            for r in rows:
                if r[6] is None:  # no event id: never a duplicate
                    n += 1
                elif r[6] in new_ids:
                    n += 1
                    new_ids.discard(r[6])  # a later row with this id was the duplicate
            counts.append(n)
        return counts

    def user_events(self, user_id: str, limit: int) -> list[StoredEvent]:
        """The user's most recent ``limit`` events, oldest first (by timestamp, then arrival)."""
        return self.users_events([user_id], limit)[user_id]

    def users_events(self, user_ids: Sequence[str], limit: int) -> dict[str, list[StoredEvent]]:
        """:meth:`user_events` of several users in one store call, so a served batch waits on the store once
        (on PostgreSQL one round trip: a ``LATERAL`` read per user; SQLite is in-process, one job). A key no
        write could have stored (a NUL would be an error on PostgreSQL) has no events."""
        users = list(dict.fromkeys(u for u in user_ids if not text_problem(u, None)))
        out: dict[str, list[StoredEvent]] = {u: [] for u in user_ids}
        if not users:
            return out
        if self.kind == "postgres":
            cols = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLS.split(","))
            rows = self._query(f"SELECT {cols} FROM unnest(?::text[]) AS u(uid) CROSS JOIN LATERAL (SELECT "
                               f"{_EVENT_COLS} FROM events WHERE user_id = u.uid ORDER BY ts DESC, id DESC LIMIT ?) e",
                               (users, int(limit)))
        else:
            one = f"SELECT {_EVENT_COLS} FROM events WHERE user_id = ? ORDER BY ts DESC, id DESC LIMIT ?"
            rows = [r for rs in self._queries([(one, (u, int(limit))) for u in users]) for r in rs]
        by_user: dict[str, list[tuple[Any, ...]]] = {u: [] for u in users}
        for r in rows:
            by_user[r[1]].append(r)
        for u, rs in by_user.items():
            out[u] = self._events(rs[::-1])  # newest first from the store, oldest first for the model
        return out

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
        # the usual case, rows this service wrote: one pass over all their text finds nothing to check
        clean = _rows_clean([r[1] for r in rows] + [r[2] for r in rows] + [r[3] for r in rows], [r[5] for r in rows])
        out, bad = [], []
        parsed: dict[Any, Any] = {}  # the same context text decoded once per read (copied per event)
        for r in rows:
            try:
                decoded = parsed.get(r[5])
                if decoded is None:
                    decoded = parsed[r[5]] = json.loads(r[5])
                ctx: Any = dict(decoded) if isinstance(decoded, dict) else decoded
                problem = ("" if clean else _row_problem([r[1], r[2], r[3], ctx])) or (
                    "" if isinstance(ctx, dict) else "context is not an object")
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


_INSERT_EVENT = ("INSERT INTO events (user_id, item_id, event_type, ts, context, received_at, event_id) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING")
_INSERT_EVENTS_PG = (
    "INSERT INTO events (user_id, item_id, event_type, ts, context, received_at, event_id) "
    "SELECT u, i, t, ts, c, r, e FROM unnest(%s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], "
    "%s::float8[], %s::text[]) WITH ORDINALITY AS x(u, i, t, ts, c, r, e, n) ORDER BY n "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id")


def _event_rows(events: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``add_events`` arguments -> the stored columns (context as compact JSON, arrival time now)."""
    now = time.time()
    return [(e[0], e[1], e[2], float(e[3]), json.dumps(e[4], separators=(",", ":"), ensure_ascii=False), now,
             e[5] if len(e) > 5 else None) for e in events]
