"""Request ids, unhandled exceptions and store outages, at the edge of the app.

* :class:`RequestIdMiddleware` (pure ASGI) gives every request an id (the caller's ``X-Request-ID``
  when it is a short token, else a new one), returns it in the ``X-Request-ID`` header, and turns an
  unhandled exception into a JSON 500 carrying that id, which is also in the log line with the
  traceback. The exception stops here: the metrics middleware outside it counts the 500 like any
  answer, and the server keeps the keep-alive connection (an exception escaping the app makes it
  close the connection, and the client's next request is reset).
* :func:`install` maps :class:`StoreUnavailable` to 503 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ctxrec.serving.store import StoreUnavailable

log = logging.getLogger("ctxrec.serving")

_TOKEN = re.compile(rb"[A-Za-z0-9._-]{1,64}")


class RequestIdMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"")
        rid = given.decode() if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg = {**msg, "headers": [*msg.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(msg)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request %s: unhandled error on %s %s", rid, scope.get("method"), scope.get("path"))
            if started:  # the answer is half sent: nothing sound can follow on this connection
                return
            body = json.dumps({"detail": "internal error; the service log has the traceback under this request id",
                               "request_id": rid}).encode()
            await send_with_id({"type": "http.response.start", "status": 500,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
            await send_with_id({"type": "http.response.body", "body": body})


def install(app: FastAPI) -> None:
    """Register the request-id middleware (inside the metrics middleware, which must be added after
    this call) and the 503 answer for store outages."""
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(StoreUnavailable)
    async def _store_down(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"the event store is unavailable ({exc.message}); retry later"}, status_code=503,
                            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))})
