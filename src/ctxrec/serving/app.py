"""The FastAPI application: ``create_app(settings)`` builds one (nothing happens at import time).

Routes (all JSON; see docs/serving.md): ``POST /v1/recommend``, ``POST /v1/events``,
``POST /v1/items``, ``DELETE /v1/items/{item_id}``, ``GET /v1/items/{item_id}/similar``,
``GET|POST /v1/admin/model``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from ctxrec import __version__ as ctxrec_version
from ctxrec.errors import QueryError
from ctxrec.serving import engine
from ctxrec.serving.deps import Admin, Read, Write
from ctxrec.serving.engine import ModelHandle, RecRequest, RequestError
from ctxrec.serving.schemas import (
    UNION_TAGS,
    EventBatch,
    EventsBody,
    EventsResponse,
    ItemBatch,
    ItemsBody,
    ItemsResponse,
    ModelInfo,
    ModelSwapRequest,
    RecommendRequest,
    RecommendResponse,
    SimilarResponse,
)
from ctxrec.serving.security import AuthError, KeyRing, pseudonymise
from ctxrec.serving.settings import ServingSettings
from ctxrec.serving.store import EventStore, StoreUnavailable
from ctxrec.serving.sync import ReplicaSync
from ctxrec.serving.web import add_web_routes

log = logging.getLogger("ctxrec.serving")


class ServiceState:
    """Everything a request needs: store, keys, the current model handle, the model thread."""

    def __init__(self, settings: ServingSettings) -> None:
        import torch

        self.settings = settings
        torch.set_num_threads(max(1, settings.torch_threads))
        self.store = EventStore(settings.store, synchronous=settings.sqlite_synchronous, deadline=settings.store_deadline)
        self.keys = KeyRing.from_file(settings.keys_file, self.store.keys())
        self.secret = settings.secret()
        self.model_exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctxrec-model")
        self.model_seq = 0
        """Seq of the store's promoted-model record this replica serves (0: none; see sync.py)."""
        self.handle: ModelHandle = self._initial_handle()
        self.swap_lock = asyncio.Lock()
        self.metrics = _Metrics()
        self.batcher = engine.MicroBatcher(self._score_batch, self.model_exec, settings.max_batch,
                                           on_batch=self.metrics.observe_batch)
        self.started = time.time()
        self.sync = ReplicaSync(self)

    def _initial_handle(self) -> ModelHandle:
        """The promoted model recorded in the store, if any (so that a restarted or added replica
        serves what the others serve), else ``settings.model``."""
        rec = self.store.promoted()
        if rec is not None:
            seq, run_dir, version = rec
            try:
                h = engine.load_handle(run_dir, self.settings, self.store)
                self.model_seq = seq
                log.warning("serving the promoted model %s from %s (recorded in the store) instead of --model %s",
                            h.version, run_dir, self.settings.model)
                return h
            except Exception as exc:  # noqa: BLE001 - fall back to --model, loudly
                log.error("the store's promoted model %r (version %s) cannot be loaded (%s); serving --model %s",
                          run_dir, version, exc, self.settings.model)
        return engine.load_handle(self.settings.model, self.settings, self.store)

    def _score_batch(self, reqs: list[RecRequest]) -> list[Any]:
        h = self.handle  # one version for the whole batch, even if a swap lands meanwhile
        res = engine.recommend_batch(h, reqs, self.store, self.settings.max_history)
        for r in res:
            r["model_version"] = h.version
        return res

    def info(self) -> ModelInfo:
        h = self.handle
        return ModelInfo(version=h.version, kind=h.model.kind, path=str(h.path), catalogue_size=h.n_items,
                         active_items=int(h.n_items - h.retired[: h.n_items].sum()),
                         index="hnsw" if h.index is not None else "exact", state_runtime=h.state_runtime)

    def close(self) -> None:
        self.model_exec.shutdown(wait=False, cancel_futures=True)  # never wait on a call stuck in the store
        self.store.close()


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("ctxrec_requests", "HTTP requests", ["route", "method", "status"], registry=r)
        self.errors = Counter("ctxrec_errors", "HTTP 5xx answers", ["route"], registry=r)
        self.context_unknown = Counter("ctxrec_context_unknown_values", "Request context values never seen in "
                                       "training (scored as unknown)", ["field"], registry=r)
        self.latency = Histogram("ctxrec_request_seconds", "Request latency (server side)", ["route"], registry=r,
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
        self.batch = Histogram("ctxrec_batch_size", "Recommend requests scored per forward pass", registry=r,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.model = Gauge("ctxrec_model_info", "Loaded model version (value 1)", ["version", "kind"], registry=r)
        self.catalogue = Gauge("ctxrec_catalogue_items", "Items in the catalogue", ["state"], registry=r)
        self.events = Gauge("ctxrec_events_stored", "Events in the store", registry=r)
        self.unfolded = Gauge("ctxrec_events_unfolded", "Stored events not yet folded into the model", registry=r)
        self.lag = Gauge("ctxrec_event_lag_seconds", "Age of the oldest stored event not yet folded into the model",
                         registry=r)
        self.cache = Gauge("ctxrec_user_cache", "User-state cache lookups of the current model version", ["result"],
                           registry=r)

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch.observe(size)


# ----------------------------------------------------------------------------------------- app
def create_app(settings: ServingSettings) -> FastAPI:
    state = ServiceState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        state.sync.start()
        try:
            yield
        finally:
            await state.sync.stop()
            await state.batcher.stop()
            state.close()

    app = FastAPI(title="ctxrec recommendation service", version=ctxrec_version, lifespan=lifespan,
                  description="Context-aware recommendations, event ingestion and catalogue updates. See docs/serving.md.")
    app.state.ctxrec = state
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type"])
    from ctxrec.serving import middleware

    middleware.install(app)  # request ids, JSON 500s, 503 on store outages (inside the metrics middleware)
    app.add_middleware(_EdgeMiddleware, state=state)
    _exception_handlers(app, state)
    _routes(app, state)
    add_web_routes(app, state)  # the demo page (GET /ui/) and the read-only endpoints it uses
    return app


def create_app_from_env() -> FastAPI:
    """The app of one worker process of ``ctxrec serve --workers N`` (uvicorn's factory: settings
    from ``$CTXREC_SERVE_SETTINGS``)."""
    from ctxrec.serving.settings import settings_from_env

    return create_app(settings_from_env())


def _err(status: int, field: str | None, msg: str) -> JSONResponse:
    detail: Any = [{"loc": field.split("."), "msg": msg, "type": "value_error"}] if field else msg
    return JSONResponse({"detail": detail}, status_code=status)


def _exception_handlers(app: FastAPI, state: ServiceState) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return _err(exc.status, exc.field, exc.message)

    @app.exception_handler(AuthError)
    async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": _loc(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)


def _loc(loc: Any) -> list[Any]:
    """An error's location without the tag of a one-or-many body: ``body.item_id``, as the route's own
    422s name it."""
    out = list(loc)
    if len(out) > 1 and out[0] == "body" and out[1] in UNION_TAGS:
        del out[1]
    return out


def _check_k(k: int, settings: ServingSettings, field: str) -> None:
    if k > settings.max_k:
        raise RequestError(422, field, f"k={k} is above this service's limit of {settings.max_k}")


def _routes(app: FastAPI, state: ServiceState) -> None:
    s = state.settings

    @app.post("/v1/recommend", response_model=RecommendResponse, tags=["recommend"])
    async def recommend(body: RecommendRequest, who: Read) -> Any:
        """Top-k items for a user (stored history + stored events) or an anonymous history, in context."""
        _check_k(body.k, s, "body.k")
        # The query itself (history ids, timestamps) is validated where it is encoded, by the model's
        # encode_queries (engine.build_queries): an invalid one is a 422 naming its field.
        f, h = body.filters, state.handle
        for fld in (f.attributes if f else {}):  # a field no item carries would silently filter out everything
            if fld not in h.attributes:
                raise RequestError(422, f"body.filters.attributes.{fld}", f"no item has the attribute {fld!r}; known: "
                                                                          f"{sorted(h.attributes)}")
        try:  # an unknown key is a 422 naming the known fields; unseen values are scored as unknown and said
            ctx = h.model.check_context(dict(body.context))
        except QueryError as exc:
            raise RequestError(422, f"body.{exc.field}", str(exc)) from exc
        for fld in ctx.unknown_values:
            state.metrics.context_unknown.labels(fld).inc()
        req = RecRequest(
            user_id=pseudonymise(body.user_id, state.secret) if body.user_id is not None else None,
            history=body.history, history_timestamps=body.history_timestamps, context=ctx.context,
            timestamp=body.timestamp if body.timestamp is not None else time.time(), k=body.k,
            exclude_seen=not h.model.keeps_seen if body.exclude_seen is None else body.exclude_seen, attributes=f.attributes if f else {}, allow=f.allow if f else None,
            deny=f.deny if f else [], text=body.text, explain=body.explain)
        res = await state.batcher.submit(req)
        return {**res, "context_used": ctx.used, "context_unknown_values": ctx.unknown_values,
                "context_unused_fields": ctx.unused_fields}

    @app.post("/v1/events", response_model=EventsResponse, tags=["events"])
    async def events(body: EventsBody, who: Write) -> Any:
        """Store one event or a batch durably (committed before the answer); the user's next
        recommendation reflects them without retraining."""
        # async: the checks below are a few microseconds per event, and the commit is awaited, not
        # waited for on a pool thread (three thread hops per request for a sync route)
        evs = body.events if isinstance(body, EventBatch) else [body]
        if len(evs) > s.max_events_per_request:
            raise RequestError(413, "body.events", f"{len(evs)} events in one request; the limit is {s.max_events_per_request}")
        vocab = state.handle.model.item_vocab
        assert vocab is not None
        now = time.time()
        rows = []
        for i, e in enumerate(evs):
            if vocab.get(e.item_id) < 0:
                field = f"body.events.{i}.item_id" if isinstance(body, EventBatch) else "body.item_id"
                raise RequestError(422, field, f"unknown item id {e.item_id!r}: add it with POST /v1/items first")
            rows.append((pseudonymise(e.user_id, state.secret), e.item_id, e.type,
                         e.timestamp if e.timestamp is not None else now, dict(e.context), e.event_id))
        stored = await state.store.add_events_async(rows)
        # what the serving model cannot read of them is stored and said, not silent: an event type it does not
        # tell apart, a context field it does not use, a context value it never saw (each read as unknown)
        h = state.handle
        types: dict[str, int] = getattr(h.model, "event_types", None) or {}
        unknown = sorted({e.type for e in evs if types and e.type not in types})
        unused, unseen = h.context_report([e.context for e in evs])
        return {"stored": stored, "duplicates": len(rows) - stored, "event_types_unknown": unknown,
                "context_unused_fields": unused, "context_unknown_values": unseen}

    @app.post("/v1/items", response_model=ItemsResponse, tags=["items"])
    async def add_items(body: ItemsBody, who: Write) -> Any:
        """Add or update items (text + attributes); they are encoded and recommendable on return."""
        items = body.items if isinstance(body, ItemBatch) else [body]
        if len(items) > s.max_items_per_request:
            raise RequestError(413, "body.items", f"{len(items)} items in one request; the limit is {s.max_items_per_request}")
        model = state.handle.model
        if not model.supports_add_items:
            raise RequestError(409, "body", f"the loaded {model.kind!r} model scores items by trained IDs only and cannot "
                                            "add items; retrain with them or serve a text-aware model (fusion)")
        ids = [it.item_id for it in items]
        if len(set(ids)) != len(ids):
            raise RequestError(422, "body.items", "duplicate item_id in one request")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, state.store.put_items, [(it.item_id, dict(it.fields)) for it in items])
        await loop.run_in_executor(state.model_exec, engine.apply_store_items, state.handle, state.store)
        failed = state.handle.failed_items
        for n, i in enumerate(ids):  # the model refused it: quarantined, so the request changed nothing
            if i in failed:
                raise RequestError(422, f"body.items.{n}" if isinstance(body, ItemBatch) else "body",
                                   f"item {i!r} was not added: {failed[i]}")
        return {"added": ids, "catalogue_size": state.handle.n_items}

    @app.delete("/v1/items/{item_id}", tags=["items"])
    async def retire_item(item_id: str, who: Write) -> Any:
        """Retire an item: it is never recommended again (its past events stay)."""
        h = state.handle
        vocab = h.model.item_vocab
        assert vocab is not None
        if vocab.get(item_id) < 0:
            raise RequestError(404, "path.item_id", f"unknown item id {item_id!r}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, state.store.retire_item, item_id)
        await loop.run_in_executor(state.model_exec, engine.apply_store_items, state.handle, state.store)
        return {"retired": item_id}

    @app.get("/v1/items/{item_id}/similar", response_model=SimilarResponse, tags=["items"])
    async def similar(item_id: str, who: Read, k: Annotated[int, Query(ge=1)] = 10) -> Any:
        """Items similar to one item."""
        _check_k(k, s, "query.k")
        h = state.handle
        vocab = h.model.item_vocab
        assert vocab is not None
        i = vocab.get(item_id)
        if i < 0 or h.retired[i]:
            raise RequestError(404, "path.item_id", f"unknown or retired item id {item_id!r}")
        idx, sc, method = await asyncio.get_running_loop().run_in_executor(state.model_exec, engine.similar_items, h, i, k)
        titles = h.model.item_titles
        return {"item_id": item_id, "model_version": h.version, "method": method,
                "items": [{"item_id": x, "score": float(v), "title": titles.get(x)}
                          for x, v in zip(vocab.external(idx), sc, strict=True)]}

    @app.get("/v1/admin/model", response_model=ModelInfo, tags=["admin"])
    async def model_info(who: Read) -> Any:
        """The model version being served."""
        return state.info()

    def _run_dir(raw: str) -> Path:
        """The run folder a model swap names: resolved, inside an allowed root, holding a model."""
        try:
            p = Path(raw).expanduser().resolve()
        except (RuntimeError, OSError) as exc:  # "~nosuchuser/x" (no such home), a loop of links
            raise RequestError(422, "body.run_dir", f"cannot resolve {raw!r}: {exc}") from exc
        roots = [Path(r).resolve() for r in s.allowed_model_roots] or [state.handle.path.parent, state.handle.path.parent.parent]
        if not any(p == r or r in p.parents for r in roots):
            raise RequestError(403, "body.run_dir", f"{str(p)!r} is outside the folders models may be loaded from "
                                                    f"({[str(r) for r in roots]}; see --model-root)")
        if not ((p / "config.json").exists() or (p / "model" / "config.json").exists()):
            raise RequestError(404, "body.run_dir", f"{str(p)!r} is not a ctxrec run or model folder (no config.json)")
        return p

    @app.post("/v1/admin/model", response_model=ModelInfo, tags=["admin"])
    async def swap_model(body: ModelSwapRequest, who: Admin) -> Any:
        """Load a run folder and switch to it atomically: requests in flight finish on the old version,
        later ones use the new one; no request fails during the swap."""
        loop = asyncio.get_running_loop()
        p = await loop.run_in_executor(None, _run_dir, body.run_dir)  # file-system calls off the event loop
        async with state.swap_lock:
            try:
                new = await loop.run_in_executor(None, engine.load_handle, p, s, state.store)
            except Exception as exc:
                raise RequestError(422, "body.run_dir", f"could not load {str(p)!r}: {exc}") from exc

            # recorded first (the other replicas follow it; see sync.py): a store outage here is a 503
            # and nothing has changed anywhere
            seq = await loop.run_in_executor(None, state.store.set_promoted, str(p), new.version)

            def _swap() -> None:
                engine.apply_store_items(new, state.store)  # items changed while it loaded
                state.handle = new

            await loop.run_in_executor(state.model_exec, _swap)
            state.model_seq = seq
        log.info("serving model %s from %s", new.version, new.path)
        return state.info()

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> Any:
        """Liveness: the process answers and no store call has run past its deadline (a driver call
        stuck for good: restart the process)."""
        stalled = state.store.stalled_for()
        if stalled > 0:
            return JSONResponse({"status": f"a store call is {stalled:.1f} s past its deadline"}, status_code=503)
        return {"status": "ok"}

    @app.delete("/v1/users/{user_id}", tags=["users"])
    async def erase_user(user_id: str, who: Admin) -> Any:
        """Erase a user: their stored events, their cached state, and the model's trained history of
        them (never served again; ``ctxrec retrain`` leaves them out)."""
        uid = pseudonymise(user_id, state.secret)
        loop = asyncio.get_running_loop()
        n = await loop.run_in_executor(None, state.store.erase_user, uid)
        await loop.run_in_executor(state.model_exec, engine.forget_user, state.handle, uid)
        return {"erased": True, "events_deleted": n}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Any:
        """Readiness: a model is loaded and the store answers."""
        ok = await asyncio.get_running_loop().run_in_executor(None, state.store.ping)
        body: dict[str, Any] = {"status": "ready" if ok else "store unavailable", "model_version": state.handle.version}
        if state.sync.error:  # the promoted model did not load here: this replica serves the old version
            body["sync_error"] = state.sync.error
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics() -> Response:
        """Prometheus text format: requests, latency histograms, errors, model version, catalogue, event lag."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        m, h = state.metrics, state.handle
        m.model.clear()
        m.model.labels(version=h.version, kind=h.model.kind).set(1)
        retired = int(h.retired[: h.n_items].sum())
        m.catalogue.labels(state="active").set(h.n_items - retired)
        m.catalogue.labels(state="retired").set(retired)
        try:
            total, pending, oldest = state.store.event_stats(h.watermark)
            m.events.set(total)
            m.unfolded.set(pending)
            m.lag.set(0.0 if oldest is None else max(0.0, time.time() - oldest))
        except StoreUnavailable:  # metrics still answer during an outage (the store gauges keep their last value)
            pass
        m.cache.labels(result="hit").set(h.cache_hits)
        m.cache.labels(result="miss").set(h.cache_misses)
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


class _EdgeMiddleware:
    """Pure ASGI: request size limit (413) and request metrics, without BaseHTTPMiddleware overhead."""

    def __init__(self, app: Any, state: ServiceState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        limit = self.state.settings.max_body_bytes
        status = {"code": 500}

        async def send_wrapped(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length")
        too_big = False
        if cl is not None:
            try:
                too_big = int(cl) > limit
            except ValueError:
                await _send_json(send_wrapped, 400, {"detail": [{"loc": ["header", "content-length"],
                                                                  "msg": "not an integer", "type": "value_error"}]})
                self._observe(scope, status["code"], t0)
                return
        elif scope.get("method") in ("POST", "PUT", "PATCH"):
            body, more = b"", True
            while more:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    return
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > limit:
                    too_big = True
                    break
            if not too_big:
                sent = {"done": False}

                async def replay() -> dict[str, Any]:
                    if not sent["done"]:
                        sent["done"] = True
                        return {"type": "http.request", "body": body, "more_body": False}
                    return await receive()

                receive = replay
        if too_big:
            await _send_json(send_wrapped, 413, {"detail": [{"loc": ["body"], "msg": f"request body over {limit} bytes",
                                                              "type": "too_large"}]})
        else:
            await self.app(scope, receive, send_wrapped)
        self._observe(scope, status["code"], t0)

    def _observe(self, scope: dict[str, Any], code: int, t0: float) -> None:
        route = scope.get("route")
        name = getattr(route, "path", None) or "unmatched"
        m = self.state.metrics
        m.requests.labels(route=name, method=scope.get("method", ""), status=str(code)).inc()
        m.latency.labels(route=name).observe(time.perf_counter() - t0)
        if code >= 500:
            m.errors.labels(route=name).inc()


async def _send_json(send: Callable[[dict[str, Any]], Awaitable[None]], status: int, body: Any) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
    await send({"type": "http.response.body", "body": raw})
