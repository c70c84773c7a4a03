"""Service settings: one frozen dataclass, filled by ``ctxrec serve`` flags (or by tests)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class ServingSettings:
    model: str
    """Run folder written by ``ctxrec train`` (its ``model/``) or a model folder."""
    store: str = "ctxrec-events.sqlite"
    """Event store: a SQLite file path (WAL mode) or a ``postgresql://`` URL."""
    keys_file: str | None = None
    """JSON file of hashed API keys (see security.py). None = no authentication (development only)."""
    pseudonym_secret: str | None = None
    """HMAC-SHA256 key for pseudonymising user ids at the edge; default $CTXREC_PSEUDONYM_SECRET."""
    items_file: str | None = None
    """Optional CSV/TSV/JSONL/Parquet with ``item_id`` + attribute columns, for attribute filters."""
    max_k: int = 100
    max_body_bytes: int = 1_000_000
    max_events_per_request: int = 1000
    max_items_per_request: int = 1000
    max_history: int = 200
    """Most recent stored events read per user and request."""
    cors_origins: tuple[str, ...] = ()
    """CORS is off unless origins are listed."""
    index: Literal["exact", "hnsw"] = "exact"
    """``hnsw``: faiss HNSW over item vectors for models with a dot-product form (else exact)."""
    hnsw_m: int = 32
    hnsw_ef_construction: int = 100
    hnsw_ef_search: int = 256
    user_cache: int = 100_000
    """Users whose state (``model.encode_state``: sasrec, fusion) is kept between requests (0 = off)."""
    max_batch: int = 64
    """Most concurrent recommend requests scored in one forward pass (micro-batching)."""
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    store_deadline: float = 2.0
    """Seconds any store call may take; past it the request gets 503 + Retry-After, and a call still
    running fails the liveness probe (/healthz)."""
    sync_interval: float = 0.2
    """Seconds between two polls of the store for changes made by other replicas (items, erased
    users, the promoted model); 0 = no polling (a single replica that is the store's only writer)."""
    torch_threads: int = 1
    state_runtime: Literal["onnx", "torch"] = "onnx"
    """What runs a fusion model's Transformer on a user-state cache miss: ``onnx`` (ONNX Runtime, exported
    at load and checked against PyTorch; ~5x less time for a served state) or ``torch``."""
    allowed_model_roots: tuple[str, ...] = ()
    """Folders that ``POST /v1/admin/model`` may load from; empty = the current model's parent folders' parent."""

    def secret(self) -> str | None:
        return self.pseudonym_secret or os.environ.get("CTXREC_PSEUDONYM_SECRET") or None


SETTINGS_ENV = "CTXREC_SERVE_SETTINGS"
"""How ``ctxrec serve --workers N`` hands its settings to the worker processes (JSON)."""


def settings_to_env(settings: ServingSettings) -> str:
    return json.dumps(asdict(settings))


def settings_from_env() -> ServingSettings:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"${SETTINGS_ENV} is not set: worker processes are started by `ctxrec serve --workers N`")
    d = json.loads(raw)
    known = {f.name for f in fields(ServingSettings)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"${SETTINGS_ENV} has unknown settings {unknown}; known: {sorted(known)}")
    for k in ("cors_origins", "allowed_model_roots"):
        if k in d:
            d[k] = tuple(d[k])
    return ServingSettings(**d)
