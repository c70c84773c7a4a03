"""The real-time recommendation service (``ctxrec serve``): FastAPI app, event store, keys, index.

Nothing is built at import time: ``create_app(settings)`` (in :mod:`ctxrec.serving.app`) makes an
app; see docs/serving.md for the HTTP API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctxrec.serving.settings import ServingSettings

__all__ = ["ServingSettings", "create_app"]


def create_app(settings: ServingSettings) -> Any:
    from ctxrec.serving.app import create_app as _create

    return _create(settings)


def __getattr__(name: str) -> Any:
    if name == "ServingSettings":
        from ctxrec.serving.settings import ServingSettings

        return ServingSettings
    raise AttributeError(name)
