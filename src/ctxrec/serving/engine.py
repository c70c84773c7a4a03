"""The scoring engine behind the routes: one loaded model version (:class:`ModelHandle`), request ->
dense query, filters, top-k, explanations; and a micro-batcher that scores concurrent requests in one
forward pass on a single model thread.

Everything that touches a model runs on that one thread (scoring, adding items), so a model is never
read while it is being changed; a model swap replaces the handle between two batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctxrec.ranking import ItemFilter, item_filter, top_k_row
from ctxrec.serving.index import HNSWIndex
from ctxrec.serving.store import user_tombstone

if TYPE_CHECKING:
    from ctxrec.models.base import QueryBatch, Recommender
    from ctxrec.serving.settings import ServingSettings
    from ctxrec.serving.store import EventStore


class RequestError(Exception):
    """A 4xx answer: ``status``, the offending ``field`` (a JSON path) and a message."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message = status, field, message


@dataclass
class RecRequest:
    """A validated recommend request (user id already pseudonymised)."""

    user_id: str | None
    history: list[str] | None
    history_timestamps: list[float] | None
    context: dict[str, Any]
    timestamp: float
    k: int
    exclude_seen: bool
    attributes: dict[str, list[str]]
    allow: list[str] | None
    deny: list[str]
    text: str | None
    explain: bool


@dataclass
class ModelHandle:
    """One loaded model version with its serving state."""

    model: Recommender
    version: str
    path: Path
    watermark: int = 0
    """Last store event id folded into this model (0: none); events after it are 'unfolded'."""
    retired: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    item_seq: int = 0
    """Last store item change applied."""
    attributes: dict[str, dict[str, set[int]]] = field(default_factory=dict)
    index: HNSWIndex | None = None
    item_unit: np.ndarray | None = None  # normalised item vectors for /similar (dot-product models)
    stateful: bool = False
    """The model splits scoring into a cacheable user state and a per-request part (``supports_state``)."""
    user_cache: OrderedDict[Any, Any] = field(default_factory=OrderedDict)
    """LRU of user states (``model.encode_state`` rows) keyed by (user, last stored event id, events read):
    a user's state is recomputed only when their events change. Emptied when the catalogue changes (an
    added or changed item may be in a cached history, and an event of an item unknown until now is
    skipped in histories encoded before it was added); a new model version starts empty."""
    state_runtime: str = "torch"
    """What computes user states: "onnx" or "torch" (``ServingSettings.state_runtime``, and why not onnx)."""
    cache_size: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    erased: set[str] = field(default_factory=set)
    """Tombstones of erased users (store.user_tombstone): their trained history is never used."""
    failed_items: dict[str, str] = field(default_factory=dict)
    """Item ids the model refused in the last item update (quarantined), with the reason."""
    context_values: dict[str, set[str] | None] = field(default_factory=dict)
    """The context fields the model reads, each with its known categorical values (None: numeric, or
    hashed: any value), for saying what of a stored event's context the model cannot use."""

    def context_report(self, contexts: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, list[str]]]:
        """(fields the model does not read, {field: values it never saw}) over ``contexts``."""
        from ctxrec.context import is_missing

        unused: set[str] = set()
        unseen: dict[str, set[str]] = {}
        for ctx in contexts:
            for key, value in ctx.items():
                if key not in self.context_values:
                    unused.add(key)
                elif (known := self.context_values[key]) is not None and not is_missing(value) and str(value) not in known:
                    unseen.setdefault(key, set()).add(str(value))
        return sorted(unused), {k: sorted(v) for k, v in sorted(unseen.items())}

    @property
    def n_items(self) -> int:
        return self.model.n_items

    def grow(self) -> None:
        n = self.model.n_items
        if len(self.retired) < n:
            self.retired = np.concatenate([self.retired, np.zeros(n - len(self.retired), bool)])

    def add_attributes(self, idx: int, fields: dict[str, Any]) -> None:
        for f, v in fields.items():
            vals = v if isinstance(v, (list, tuple)) else [v]
            for x in vals:
                self.attributes.setdefault(f, {}).setdefault(str(x), set()).add(idx)


def load_handle(path: str | Path, settings: ServingSettings, store: EventStore) -> ModelHandle:
    """Load a run/model folder, re-apply the store's added and retired items, build the index."""
    import json

    from ctxrec.models import load_model

    p = Path(path)
    model = load_model(p)
    model_dir = p / "model" if (p / "model" / "config.json").exists() else p
    meta_file = p / "serving.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    st = model_dir.stat()
    version = meta.get("version") or f"{model.kind}-{p.resolve().name}-{int(st.st_mtime)}"
    h = ModelHandle(model=model, version=str(version), path=p.resolve(), watermark=int(meta.get("event_watermark", 0)))
    h.context_values = {f: (set(map(str, spec["values"])) if spec["kind"] == "categorical" and spec["values"] is not None
                            else None) for f, spec in model.context_schema().items()}
    h.grow()
    if settings.items_file:
        _load_items_file(h, settings.items_file)
    else:
        _model_attributes(h)
    h.erased = store.erased_users()
    apply_store_items(h, store)
    h.cache_size = settings.user_cache
    _attach_state_runtime(h, settings)
    _warm_up(h)
    _reset_user_states(h)
    if settings.index == "hnsw":
        try:
            vecs = model.item_embeddings()
        except NotImplementedError:
            vecs = None
        if vecs is not None:
            h.index = HNSWIndex(vecs, m=settings.hnsw_m, ef_construction=settings.hnsw_ef_construction,
                                ef_search=settings.hnsw_ef_search, build_threads=2)
        else:  # said, not silent: /v1/admin/model reports "index": "exact" too
            logging.getLogger("ctxrec.serving").warning(
                "--index hnsw: the %r model has no dot-product form (item_embeddings), so every request is "
                "scored exactly over the whole catalogue", model.kind)
    return h


def _attach_state_runtime(h: ModelHandle, settings: ServingSettings) -> None:
    """``--state-runtime onnx``: user states of a fusion model on ONNX Runtime (ctxrec.deploy.state_runtime),
    built now rather than on the first request; where it cannot be built the model stays on PyTorch and
    ``h.state_runtime`` (reported by GET /v1/admin/model) says why."""
    model = h.model
    if settings.state_runtime != "onnx" or not hasattr(model, "state_runtime"):
        h.state_runtime = "torch"
        return
    device = getattr(model, "device", None)
    if device is not None and device.type != "cpu":
        h.state_runtime = f"torch (the model is on {device}; ONNX Runtime here runs on the CPU)"
        return
    from ctxrec.deploy.state_runtime import onnx_state_runtime
    from ctxrec.models.base import RecQuery

    failures: list[str] = []
    model.state_runtime = onnx_state_runtime(threads=settings.torch_threads, on_failure=failures.append)
    model.encode_state(model.encode_queries([RecQuery(history=[])]))  # builds the session
    h.state_runtime = f"torch ({failures[-1]})" if failures else "onnx"


def _warm_up(h: ModelHandle) -> None:
    """Load what the first item addition would (text encoder, imports) now, so that a new item is
    recommendable within a second of its POST rather than after a multi-second cold start."""
    import pandas as pd

    if h.model.supports_add_items:
        h.model.add_items(pd.DataFrame({"item_id": pd.Series([], dtype=str)}))


def _reset_user_states(h: ModelHandle) -> None:
    h.stateful, h.user_cache = h.model.supports_state, OrderedDict()


def _load_items_file(h: ModelHandle, path: str) -> None:
    import pandas as pd

    p = Path(path)
    if p.suffix == ".parquet":
        df = pd.read_parquet(p)
    elif p.suffix in (".jsonl", ".json"):
        df = pd.read_json(p, lines=p.suffix == ".jsonl")
    else:
        df = pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",")
    if "item_id" not in df.columns:
        raise ValueError(f"items file {path!r} needs an item_id column (columns: {list(df.columns)})")
    vocab = h.model.item_vocab
    assert vocab is not None
    for rec in df.to_dict("records"):
        i = vocab.get(str(rec.pop("item_id")))
        if i >= 0:
            h.add_attributes(i, {k: v for k, v in rec.items() if v is not None and not (isinstance(v, float) and math.isnan(v))})


def _model_attributes(h: ModelHandle) -> None:
    """Attribute filters without an items file: the attribute values the model itself was trained
    with (``attr_vocab`` "field=value" -> id, and each item's ids in ``net.attr_ids``)."""
    vocab, net = getattr(h.model, "attr_vocab", None), getattr(h.model, "net", None)
    ids = getattr(net, "attr_ids", None)
    if not vocab or ids is None:
        return
    names = {v: k.split("=", 1) for k, v in vocab.items()}
    rows = ids.detach().cpu().numpy()[1:]  # (n_items, A); row 0 of the buffer is padding
    for i, j in zip(*np.nonzero(rows), strict=True):
        f, value = names.get(int(rows[i, j]), (None, None))
        if f is not None:
            h.attributes.setdefault(f, {}).setdefault(str(value), set()).add(int(i))


def vocab_has(h: ModelHandle, item_id: str) -> bool:
    vocab = h.model.item_vocab
    return vocab is not None and vocab.get(item_id) >= 0


def forget_user(h: ModelHandle, user_id: str) -> None:
    """After an erasure: drop the user's cached state; their trained history is not used again."""
    h.erased.add(user_tombstone(user_id))
    for key in [k for k in h.user_cache if k[0] == user_id]:
        del h.user_cache[key]


def apply_store_items(h: ModelHandle, store: EventStore) -> list[str]:
    """Apply item changes made after ``h.item_seq`` (adds through ``model.add_items``, retirements).
    An item the model refuses is quarantined in the store (and listed in ``h.failed_items``) so one
    bad row never blocks the items after it, a restart or a model swap."""
    h.failed_items = {}
    changes = store.items(after_seq=h.item_seq)
    if not changes:
        return []
    added = [(i, p) for i, p, retired, _ in changes if not retired and p]
    if added:
        try:
            add_items(h, added)
        except Exception:  # noqa: BLE001 - find the culprit(s): one at a time
            ok = []
            for one in added:
                was_known = vocab_has(h, one[0])
                try:
                    add_items(h, [one])
                    ok.append(one)
                except Exception as exc:  # noqa: BLE001 - the model's reason goes back to the caller
                    h.failed_items[one[0]] = f"{type(exc).__name__}: {exc}"[:500]
                    store.quarantine_item(one[0], h.failed_items[one[0]])
                    if not was_known and vocab_has(h, one[0]):  # half-added by the model: never recommend it
                        h.grow()
                        h.retired[h.model.item_vocab.get(one[0])] = True  # type: ignore[union-attr] # vocab_has checked it
            added = ok
    vocab = h.model.item_vocab
    assert vocab is not None
    for i, _, retired, _ in changes:
        j = vocab.get(i)
        if j >= 0:
            h.retired[j] = retired
    h.item_seq = changes[-1][3]
    return [i for i, _ in added]


def add_items(h: ModelHandle, items: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
    """Add/refresh items in the live model (raises NotImplementedError for ID-only models)."""
    import pandas as pd

    frame = pd.DataFrame([{**p, "item_id": i} for i, p in items])
    idx = h.model.add_items(frame)
    h.grow()
    for (_, p), j in zip(items, idx, strict=True):
        h.retired[j] = False
        h.add_attributes(int(j), p)
    if h.index is not None:  # dot-product models that can add items append their vectors
        h.index = None  # rebuilt lazily would be costly; fall back to exact until the next model load
    h.item_unit = None
    _reset_user_states(h)
    return idx


# ------------------------------------------------------------------------------------- scoring
def build_queries(h: ModelHandle, reqs: Sequence[RecRequest], store: EventStore, max_history: int
                  ) -> tuple[QueryBatch, list[Any]]:
    """Requests -> QueryBatch through the model's own ``encode_queries`` (the library's query path):
    a named user without a ``history`` is scored with the model's stored history of them followed by
    their last ``max_history`` events in the store. Also returns each request's user-state cache key
    (``None`` for an explicit history). An invalid request is a 422 naming its field."""
    from ctxrec.errors import QueryError
    from ctxrec.models.base import RecQuery

    queries, events, keys = [], [], []
    # every named user's stored events in one store call (one wait for the batch, not one per request)
    stored = store.users_events([r.user_id for r in reqs if r.history is None and r.user_id is not None], max_history)
    for r in reqs:
        evs = stored[r.user_id] if r.history is None and r.user_id is not None else []
        erased = r.user_id is not None and bool(h.erased) and user_tombstone(r.user_id) in h.erased
        # an erased user is scored as a new one: the model's trained history of them is not used
        queries.append(RecQuery(user_id=None if erased else r.user_id, history=r.history,
                                history_timestamps=r.history_timestamps, context=r.context,
                                timestamp=r.timestamp, text=r.text))
        events.append(evs)
        keys.append(None if r.history is not None else (r.user_id, evs[-1].id if evs else 0, len(evs)))
    try:
        qb = h.model.encode_queries(queries, new_events=events)
    except QueryError as exc:  # the micro-batcher retries each request alone, so only this one fails
        raise RequestError(422, f"body.{exc.field}", str(exc)) from exc
    return qb, keys


def user_states(h: ModelHandle, qb: QueryBatch, rows: Sequence[int], keys: Sequence[Any]) -> np.ndarray:
    """(len(rows), ...) the model's user states (``encode_state``), from the LRU where the key is cached."""
    out: list[Any] = [None] * len(rows)
    missing = []
    for j, b in enumerate(rows):
        key = keys[b]
        if key is not None and h.cache_size and key in h.user_cache:
            h.user_cache.move_to_end(key)
            out[j] = h.user_cache[key]
            h.cache_hits += 1
        else:
            missing.append(j)
    if missing:
        states = h.model.encode_state(qb.subset([rows[j] for j in missing]))
        h.cache_misses += len(missing)
        for j, v in zip(missing, states, strict=True):
            out[j] = v
            key = keys[rows[j]]
            if key is not None and h.cache_size:
                h.user_cache[key] = v.copy()  # its own row: a view would keep the whole batch's array alive
                if len(h.user_cache) > h.cache_size:
                    h.user_cache.popitem(last=False)
    return np.stack(out).astype(np.float32, copy=False)


def score_rows(h: ModelHandle, qb: QueryBatch, rows: Sequence[int], keys: Sequence[Any]) -> np.ndarray:
    """(len(rows), n_items) scores: the model's ``score_from_state`` on cached user states where the model
    has them (the request's context, profile and text are applied per request), its ``score`` otherwise."""
    from ctxrec.errors import QueryError

    sub = qb.subset(rows)
    try:
        if not h.stateful:
            return np.asarray(h.model.score(sub), dtype=np.float32)
        return np.asarray(h.model.score_from_state(user_states(h, qb, rows, keys), sub), dtype=np.float32)
    except QueryError as exc:  # e.g. a text query to a model without item text
        raise RequestError(422, f"body.{exc.field}", str(exc)) from exc


def request_filter(h: ModelHandle, r: RecRequest, history: np.ndarray) -> ItemFilter:
    """What request ``r`` may get (:mod:`ctxrec.ranking`): not retired, not seen (when asked), not
    denied, in the allow list and matching the attribute filters. Unknown ids in allow/deny name no
    item and are ignored."""
    vocab = h.model.item_vocab
    assert vocab is not None
    return item_filter(
        h.n_items,
        seen=history if r.exclude_seen else None,
        deny=vocab.lookup(r.deny, strict=False) if r.deny else None,
        allow=vocab.lookup(r.allow, strict=False) if r.allow is not None else None,
        attributes=r.attributes,
        attribute_index=h.attributes,
        blocked=h.retired,
    )


def recommend_batch(h: ModelHandle, reqs: Sequence[RecRequest], store: EventStore, max_history: int
                    ) -> list[dict[str, Any]]:
    """Score a batch in one forward pass; per request: items, scores, explanation."""
    import torch

    model = h.model
    vocab = model.item_vocab
    assert vocab is not None
    with torch.inference_mode():
        qb, keys = build_queries(h, reqs, store, max_history)
        ann_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        exact_rows = list(range(len(reqs)))
        if h.index is not None:
            usable = [b for b, r in enumerate(reqs) if len(qb.histories[b]) and r.allow is None and not r.text]
            if usable:
                uv = model.embed_from_state(user_states(h, qb, usable, keys), qb.subset(usable))
                over = max(reqs[b].k for b in usable) * 4 + 50
                idx, sc = h.index.search(uv, over)
                for j, b in enumerate(usable):
                    ann_rows[b] = (idx[j], sc[j])
                exact_rows = [b for b in range(len(reqs)) if b not in ann_rows]
        scores = None
        if exact_rows:
            if len(exact_rows) == len(reqs):
                scores = score_rows(h, qb, exact_rows, keys)
            else:
                part = score_rows(h, qb, exact_rows, keys)
                scores = np.full((len(reqs), part.shape[1]), -np.inf, np.float32)
                scores[exact_rows] = part
        out: list[dict[str, Any]] = []
        tops: list[np.ndarray] = []
        for b, r in enumerate(reqs):
            filt = request_filter(h, r, qb.histories[b])
            if b in ann_rows:
                idx, sc = ann_rows[b]
                ok = idx >= 0
                idx, sc = idx[ok], sc[ok]
                keep = filt.admits(idx)
                idx, sc = idx[keep][: r.k], sc[keep][: r.k]
                if len(idx) < r.k:  # filters ate the approximate candidates: score this one exactly
                    idx, sc = top_k_row(filt.apply(score_rows(h, qb, [b], keys)[0]), r.k)
            else:
                assert scores is not None
                # this request's own row of a fresh score matrix: filtered in place (no copy at 1M items)
                idx, sc = top_k_row(filt.apply(scores[b]), r.k)
            tops.append(idx)
            out.append({"idx": idx, "scores": sc})
        want = [b for b, r in enumerate(reqs) if r.explain]
        if want:
            k = max(len(tops[b]) for b in want) or 1
            top = np.full((len(want), k), -1, np.int64)
            for j, b in enumerate(want):
                top[j, : len(tops[b])] = tops[b]
            expl = model.explain(qb.subset(want), top)
            for j, b in enumerate(want):
                out[b]["explanation"] = expl[j]
    titles = model.item_titles
    for o in out:
        ids = vocab.external(o.pop("idx"))
        o["items"] = [{"item_id": i, "score": float(s), "title": titles.get(i)} for i, s in zip(ids, o.pop("scores"), strict=True)]
        o.setdefault("explanation", None)
    return out


def similar_items(h: ModelHandle, item: int, k: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Nearest items by cosine of item vectors (context-blind dot-product models), else the model's
    next-item prediction after a one-item history (also for fusion: its items meet requests' views)."""
    import torch

    from ctxrec.models.base import RecQuery

    model = h.model
    vocab = model.item_vocab
    assert vocab is not None
    if h.item_unit is None and model.context_blind:
        try:
            v = model.item_embeddings()
            h.item_unit = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        except NotImplementedError:  # a context-blind model without item vectors (EASE, popularity)
            pass
    if h.item_unit is not None:
        sims = h.item_unit @ h.item_unit[item]
        method = "item-vector cosine"
    else:  # no item vectors, or a context-aware model (fusion): ask the model for the next item
        with torch.inference_mode():
            qb = model.encode_queries([RecQuery(history=vocab.external([item]))])
            sims = np.asarray(model.score(qb), np.float32)[0]
        method = "next-item after a one-item history"
    sims = np.asarray(sims, np.float32).copy()
    filt = item_filter(len(sims), seen=np.array([item]), blocked=h.retired)
    return (*top_k_row(filt.apply(sims), k), method)


# ------------------------------------------------------------------------------------- batching
class MicroBatcher:
    """Collects concurrent requests while the model thread is busy and scores them together.

    No artificial wait: a lone request is scored at once (lowest latency for one client); under load,
    everything that queued during the previous forward pass forms the next batch."""

    def __init__(self, fn: Callable[[list[Any]], list[Any]], executor: ThreadPoolExecutor, max_batch: int,
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        self.fn, self.executor, self.max_batch, self.on_batch = fn, executor, max_batch, on_batch
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, item: Any) -> Any:
        if self._queue is None:  # an ASGI host that skipped the lifespan: start on first use
            self.start()
        assert self._queue is not None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            items = [b[0] for b in batch]
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self.executor, self._safe, items)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # noqa: BLE001 - delivered to each waiting request
                results = [exc] * len(batch)
            if self.on_batch:
                self.on_batch(len(batch), time.perf_counter() - t0)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def _safe(self, items: list[Any]) -> list[Any]:
        """Whole batch at once; if that fails, each request alone so one bad request fails alone."""
        try:
            return self.fn(items)
        except Exception:
            if len(items) == 1:
                raise
        out: list[Any] = []
        for it in items:
            try:
                out.append(self.fn([it])[0])
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out
