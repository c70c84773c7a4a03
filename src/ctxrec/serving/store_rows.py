"""What the event store keeps and how it talks about it: the SQL schema, the row types, the
checks that quarantine a stored row no request could carry today, and the store's errors.

Split from :mod:`ctxrec.serving.store` (the connections, threads and transactions), which re-exports
:class:`StoreUnavailable`, :class:`StoredEvent` and :func:`user_tombstone`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, NamedTuple

from ctxrec.serving.schemas import text_problem

__all__ = ["StoreUnavailable", "StoredEvent", "user_tombstone"]


class StoreUnavailable(Exception):
    """The store did not answer within its deadline or cannot be reached (HTTP 503, retry later)."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.message, self.retry_after = message, retry_after


class StoredEvent(NamedTuple):
    """One stored event (a named tuple: a read builds up to ``max_history`` of them per request)."""

    id: int
    user_id: str
    item_id: str
    event_type: str
    timestamp: float
    context: dict[str, Any]
    received_at: float


def user_tombstone(user_id: str) -> str:
    """What the store keeps of an erased user: a SHA-256 of the (pseudonymised) id, so that the
    model's trained history of that user is never served again, without keeping the id itself."""
    return hashlib.sha256(("ctxrec-erased:" + user_id).encode()).hexdigest()


_EVENTS = ("CREATE TABLE IF NOT EXISTS events (id {serial}, user_id TEXT NOT NULL, item_id TEXT NOT NULL, "
           "event_type TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, context TEXT NOT NULL, "
           "received_at DOUBLE PRECISION NOT NULL, event_id TEXT)")
_SCHEMA = [
    _EVENTS,
    "CREATE INDEX IF NOT EXISTS events_user ON events (user_id, ts, id)",
    ("CREATE TABLE IF NOT EXISTS items (item_id TEXT PRIMARY KEY, payload TEXT NOT NULL, retired INTEGER NOT NULL, "
     "seq BIGINT NOT NULL)"),
    "CREATE TABLE IF NOT EXISTS api_keys (sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, scopes TEXT NOT NULL)",
    ("CREATE TABLE IF NOT EXISTS quarantine (id {serial}, source TEXT NOT NULL, key TEXT NOT NULL, "
     "payload TEXT NOT NULL, reason TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)"),
    "CREATE TABLE IF NOT EXISTS erased_users (tombstone TEXT PRIMARY KEY, at DOUBLE PRECISION NOT NULL)",
    # the model version every replica serves (one row, name 'promoted'): written by a model swap
    ("CREATE TABLE IF NOT EXISTS service_state (name TEXT PRIMARY KEY, value TEXT NOT NULL, seq BIGINT NOT NULL, "
     "at DOUBLE PRECISION NOT NULL)"),
]
# PostgreSQL: item changes (and the promoted-model record) take this transaction lock, so their seqs
# commit in order and a replica that has seen seq N never misses a later commit with a smaller seq
_ITEMS_LOCK = 0x63747872  # "ctxr"
# AUTOINCREMENT: ids are never reused after deletions (erasure), so "last event id" stays a version
_SERIAL = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgres": "BIGSERIAL PRIMARY KEY"}
_EVENT_COLS = "id, user_id, item_id, event_type, ts, context, received_at"


# ----------------------------------------------------------------------------------- connections


def _row_problem(values: list[Any]) -> str:
    """The first string anywhere in ``values`` that a request could not carry today ('' if none)."""
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            p = text_problem(v, max_len=None)
            if p:
                return p
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return ""


# in JSON text, the escapes that decode to a NUL or to a surrogate (lone, or half of a valid pair:
# those are told apart by the exact check); a stored string can hold neither as a raw character
# without failing the raw-text check of _rows_clean first
_RISKY_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def _rows_clean(texts: list[Any], json_texts: list[Any]) -> bool:
    """True when no string in these stored texts, nor any string their JSON decodes to, can fail
    the request checks (:func:`_row_problem` would find nothing in any row); False means: check each
    row. One C-speed pass over all of them, where the exact check walks every decoded value."""
    try:
        js = "".join(json_texts)
        raw = "".join(texts) + js
    except TypeError:  # a non-text value in a text column (SQLite keeps what an older writer gave it)
        return False
    if "\x00" in raw:
        return False
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return _RISKY_ESCAPE.search(js) is None


def _printable(v: Any) -> Any:
    """A value safe to store and log: strings with surrogates/NULs escaped."""
    if isinstance(v, str):
        return v.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return v


def _safe_key(v: Any) -> str:
    return str(_printable(v))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
