"""The demo web page (``GET /ui/``) and the small read-only endpoints it needs.

The page is plain HTML + vanilla JS + CSS shipped inside the package (``serving/web/``), served from
the service's own origin under a strict Content-Security-Policy: no CDN, no inline script, and it
talks only to this service's JSON API with the API key the user types (kept in sessionStorage).

Endpoints added here (``read`` scope, like recommend):

* ``GET /v1/users?limit=&offset=`` -- user ids the loaded model was trained with (a picker for demos);
* ``GET /v1/users/{user_id}/history?limit=`` -- the history the service scores that user with (the
  model's stored training history followed by the store's events), newest first, with titles;
* ``GET /v1/model/context-fields`` -- the context fields the model encodes and their known values.
"""

import math
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import RedirectResponse, Response

from ctxrec.serving.deps import Admin, Read, Service
from ctxrec.serving.engine import RequestError
from ctxrec.serving.security import pseudonymise
from ctxrec.serving.store import user_tombstone

_ASSETS = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8"}
# Same-origin only: the page loads nothing from elsewhere and can send its key nowhere else.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                 "Cache-Control": "no-cache"}


def asset(name: str) -> bytes:
    """One file of the page, read from the installed package (works from a wheel as well)."""
    return resources.files("ctxrec.serving").joinpath("web", name).read_bytes()


def add_web_routes(app: FastAPI, state: Service) -> None:
    """Register the page and its endpoints on ``app`` (called by ``create_app``).

    No ``from __future__ import annotations`` in this module: FastAPI sees the ``Read`` dependency
    as a real annotation, not a string to resolve."""

    @app.get("/ui", include_in_schema=False)
    async def ui_redirect() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    @app.get("/ui/", include_in_schema=False)
    async def ui_index() -> Response:
        return Response(asset("index.html"), media_type=_ASSETS["index.html"], headers=_PAGE_HEADERS)

    @app.get("/ui/{name}", include_in_schema=False)
    async def ui_asset(name: str) -> Response:
        if name not in _ASSETS:
            raise RequestError(404, "path.name", f"no such page asset {name!r}")
        return Response(asset(name), media_type=_ASSETS[name], headers=_PAGE_HEADERS)

    @app.get("/v1/users", tags=["users"])
    async def users(_: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                    offset: Annotated[int, Query(ge=0)] = 0) -> Any:
        """User ids the loaded model was trained with (``total`` of them), each with the length of its
        stored training history; ``admin`` scope (a list of user ids is personal data). Erased users
        and users seen only through ``POST /v1/events`` are not listed."""
        h = state.handle
        model = h.model
        vocab = model.user_vocab
        ids = [(n, u) for n, u in enumerate(vocab.ids if vocab is not None else [])
               if not (h.erased and user_tombstone(u) in h.erased)]
        page = ids[offset: offset + limit]
        return {"total": len(ids), "offset": offset,
                "users": [{"user_id": u, "history_length": len(model.known_history(n))} for n, u in page]}

    @app.get("/v1/users/{user_id}/history", tags=["users"])
    def user_history(user_id: str, _: Read, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> Any:
        """What the service scores this user with, newest first: the model's training history
        (``source: "model"``, with each event's type and context as the model reads them; their times
        are not kept) followed by the events stored since (``source: "event"``)."""
        h = state.handle
        model = h.model
        vocab, users_v = model.item_vocab, model.user_vocab
        assert vocab is not None and users_v is not None
        uid = pseudonymise(user_id, state.secret)
        u = users_v.get(uid)
        if u >= 0 and h.erased and user_tombstone(uid) in h.erased:
            u = -1  # erased
        base = [str(x) for x in vocab.external(model.known_history(u))] if u >= 0 else []
        kept = model.known_history_events(u) if base else None  # (type, context) of each trained event
        events = state.store.user_events(uid, state.settings.max_history)
        titles = model.item_titles
        rows: list[dict[str, Any]] = [{"item_id": i, "title": titles.get(i), "source": "model",
                                       "type": kept[n][0] if kept else None, "timestamp": None,
                                       "context": kept[n][1] if kept else {}} for n, i in enumerate(base)]
        rows += [{"item_id": e.item_id, "title": titles.get(e.item_id), "source": "event", "type": e.event_type,
                  "timestamp": e.timestamp, "context": e.context} for e in events]
        rows.reverse()
        return {"user_id": user_id, "known_user": u >= 0, "total": len(rows), "items": rows[:limit]}

    @app.get("/v1/model/context-fields", tags=["recommend"])
    async def context_fields(_: Read) -> Any:
        """The loaded model's context schema (``Recommender.context_schema``): categorical fields with
        their known values (an unseen value is scored as unknown and reported in the answer), numeric
        fields with their training mean; whether the request time feeds time features; and
        ``context_used: false`` for a model that ignores request context (a key it does not know is a 422)."""
        h = state.handle
        schema = h.model.context_schema()
        enc = getattr(h.model, "ctx_encoder", None)  # numeric means and time features, for the page's hints
        stats = getattr(enc, "num_stats", {}) or {}
        fields: list[dict[str, Any]] = []
        for name, spec in schema.items():
            row: dict[str, Any] = {"name": name, "kind": spec["kind"], "values": spec["values"]}
            if spec["kind"] == "numeric":
                mean = stats.get(name, {}).get("mean")
                row["mean"] = float(mean) if mean is not None and math.isfinite(mean) else None
            fields.append(row)
        return {"model_version": h.version, "kind": h.model.kind, "fields": fields, "context_used": bool(schema),
                "time_features": bool(getattr(enc, "use_time", False))}
