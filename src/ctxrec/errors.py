"""Exceptions raised by ctxrec. Every message names the bad value and says how to fix it."""

from __future__ import annotations


class CtxrecError(Exception):
    """Base class for all ctxrec errors."""


class ConfigError(CtxrecError, ValueError):
    """A configuration value or key is invalid."""


class DataError(CtxrecError, ValueError):
    """Input data is malformed: the message names the file, row and column."""


class InputFileNotFoundError(CtxrecError, FileNotFoundError):
    """A file a config names (``item_vectors``, ...) does not exist: the message names it and what it must hold."""


class DatasetNotFoundError(CtxrecError, FileNotFoundError):
    """A built-in dataset's files are missing and could not be downloaded."""


class NotFittedError(CtxrecError, RuntimeError):
    """A model was used before ``fit`` (or ``load``)."""


class UnknownIdError(CtxrecError, KeyError):
    """An external user or item id is not in the model's vocabulary."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnsupportedError(CtxrecError, NotImplementedError):
    """A model cannot do this by design (an ID-only model asked to add items, an ONNX export asked to
    train); the message says which model can. A NotImplementedError, so callers may catch either."""


class QueryError(CtxrecError, ValueError):
    """A recommendation query is invalid. ``query`` is its position in the batch and ``field`` the
    offending field as a path (``"history.3"``), so a service can point at it."""

    def __init__(self, message: str, *, query: int, field: str) -> None:
        super().__init__(message)
        self.query, self.field = query, field


class UnknownQueryIdError(QueryError, UnknownIdError):
    """A query names a user or item the model does not know (a :class:`QueryError` and an
    :class:`UnknownIdError`, so either may be caught)."""
