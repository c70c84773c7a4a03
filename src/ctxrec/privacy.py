"""User-id pseudonymisation shared by training and serving.

With a secret (``$CTXREC_PSEUDONYM_SECRET``), every user id is replaced by its keyed HMAC-SHA256
before anything is trained or stored: ``ctxrec train`` and ``ctxrec retrain`` apply it to the
dataset, ``ctxrec serve`` to each request, with the same function, so the users a model was trained
on stay known to the service while no raw id is kept in the model or in the store.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset

SECRET_ENV = "CTXREC_PSEUDONYM_SECRET"


def pseudonym_secret() -> str | None:
    return os.environ.get(SECRET_ENV) or None


def pseudonymise(user_id: str, secret: str | None) -> str:
    """HMAC-SHA256 of the user id under ``secret`` (hex); the id itself when no secret is set."""
    if not secret:
        return user_id
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def pseudonymise_dataset(data: Dataset, secret: str | None, *, drop: Callable[[str], bool] | None = None) -> Dataset:
    """``data`` with every user id pseudonymised (interactions and user table), leaving out users for
    which ``drop(pseudonymised id)`` is true (erased users). Unchanged when there is nothing to do."""
    if not secret and drop is None:
        return data
    from ctxrec.data.dataset import Dataset

    mapping = {u: pseudonymise(u, secret) for u in data.user_vocab.ids}
    keep = {u for u, p in mapping.items() if drop is None or not drop(p)}
    inter = data.interactions[data.interactions["user_id"].isin(keep)].copy()
    inter["user_id"] = inter["user_id"].map(mapping)
    users = None
    if data.users is not None:
        users = data.users[data.users.index.isin(keep)].copy()
        users.index = users.index.map(mapping)
        users.index.name = "user_id"
    return Dataset.from_frames(inter, items=data.items, users=users, schema=data.schema, name=data.name,
                               item_vocab=data.item_vocab, notes=data.notes)
