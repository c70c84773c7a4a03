"""What the routes of :mod:`ctxrec.serving.app` and :mod:`ctxrec.serving.web` share: the API-key
dependencies (``Read``, ``Write``, ``Admin``) and the view of the service state they use. A module of
its own so that ``app`` (which registers the web routes) and ``web`` both import it, not each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Protocol

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ctxrec.serving.security import KeyRing, Principal

if TYPE_CHECKING:
    from ctxrec.serving.engine import ModelHandle
    from ctxrec.serving.settings import ServingSettings
    from ctxrec.serving.store import EventStore

_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (or use Authorization: Bearer)")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


class Service(Protocol):
    """The parts of the service state (``app.ServiceState``, kept on ``app.state.ctxrec``) that routes
    outside ``app`` use."""

    settings: ServingSettings
    store: EventStore
    keys: KeyRing
    handle: ModelHandle
    secret: str | None


def _principal(scope: str) -> Callable[..., Awaitable[Principal]]:
    # async: a hash and a dict lookup, not worth a hop to the thread pool on every request
    async def dep(request: Request, key: Annotated[str | None, Depends(_api_key)] = None,
                  bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None) -> Principal:
        state: Service = request.app.state.ctxrec
        return state.keys.check(key or (bearer.credentials if bearer else None), scope)

    return dep


Read = Annotated[Principal, Depends(_principal("read"))]
Write = Annotated[Principal, Depends(_principal("write"))]
Admin = Annotated[Principal, Depends(_principal("admin"))]
