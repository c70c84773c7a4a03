"""The in-memory dataset: an interaction log with context, an item table with text, a user table.

Invariants (checked in ``Dataset.__init__``):

* ``interactions`` has the canonical columns of :class:`Columns` plus one column per context field,
  and is sorted by user, then event order (timestamp where known, then original row order);
* ``user_idx`` / ``item_idx`` are the dense indices of each row in ``user_vocab`` / ``item_vocab``;
* ``item_vocab`` covers the whole catalogue (items that appear in ``items`` even with no events), so
  evaluation ranks over every item.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from ctxrec.data.vocab import Vocab
from ctxrec.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


class Columns:
    """Canonical column names; code refers to these, never to string literals."""

    USER = "user_id"
    ITEM = "item_id"
    TIME = "timestamp"
    EVENT = "event_type"
    WEIGHT = "weight"
    ORDER = "_order"  # original row order, breaks timestamp ties deterministically


@dataclass(frozen=True, kw_only=True)
class ContextField:
    """One context column of the interaction log."""

    name: str
    kind: Literal["categorical", "numeric"] = "categorical"
    """Categorical values get a vocabulary with an unknown bucket; numeric ones are normalised."""


@dataclass(frozen=True, kw_only=True)
class DatasetSchema:
    """What the columns mean: which are context, which item/user fields are text or attributes."""

    context: tuple[ContextField, ...] = ()
    item_text_fields: tuple[str, ...] = ()
    """Item columns rendered into the item text template (title, genres, description, ...)."""
    item_attribute_fields: tuple[str, ...] = ()
    """Categorical item columns (a value may be a list, e.g. genres or attribute ids)."""
    user_text_fields: tuple[str, ...] = ()
    user_attribute_fields: tuple[str, ...] = ()
    has_timestamps: bool = True
    order: Literal["time", "file"] = "file"
    """What orders events where timestamps do not (missing, or equal within a user). ``"file"``: the file's
    order is the event order (the built-in sequence datasets). ``"time"``: only timestamps order events,
    so leave-one-out refuses where they do not (logs read with a mapping that does not say ``order = "file"``)."""
    repeat_consumption: bool = False
    """Users return to items they used before (apps, music or films in another context): evaluation then
    keeps already-seen items in the ranking by default instead of excluding them."""

    @property
    def context_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.context)


@dataclass
class Dataset:
    """An interaction log with its catalogue. Build with :meth:`from_frames` (or a loader)."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame | None
    schema: DatasetSchema
    user_vocab: Vocab
    item_vocab: Vocab
    user_idx: np.ndarray = field(repr=False)
    item_idx: np.ndarray = field(repr=False)
    notes: tuple[str, ...] = ()
    """Human-readable notes from loading (what was filtered and why)."""

    @classmethod
    def from_frames(
        cls,
        interactions: pd.DataFrame,
        *,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        schema: DatasetSchema | None = None,
        name: str = "custom",
        item_vocab: Vocab | None = None,
        user_vocab: Vocab | None = None,
        notes: tuple[str, ...] = (),
    ) -> Dataset:
        """Canonicalise frames: string ids, float timestamps, stable per-user event order.

        ``interactions`` needs ``user_id`` and ``item_id``; ``timestamp``, ``event_type``, ``weight``
        and context columns are optional. ``items`` is indexed (or has a column) ``item_id``.
        """
        import pandas as pd

        schema = schema or DatasetSchema()
        df = interactions.copy()
        for col in (Columns.USER, Columns.ITEM):
            if col not in df.columns:
                raise DataError(f"interactions of dataset {name!r} have no {col!r} column (columns: {list(df.columns)})")
            df[col] = df[col].astype(str)
        if Columns.TIME not in df.columns:
            df[Columns.TIME] = np.nan
        df[Columns.TIME] = pd.to_numeric(df[Columns.TIME], errors="raise").astype("float64")
        if Columns.EVENT not in df.columns:
            df[Columns.EVENT] = "interaction"
        df[Columns.EVENT] = df[Columns.EVENT].astype(str)
        if Columns.WEIGHT not in df.columns:
            df[Columns.WEIGHT] = 1.0
        df[Columns.WEIGHT] = df[Columns.WEIGHT].astype("float32")
        if Columns.ORDER not in df.columns:
            df[Columns.ORDER] = np.arange(len(df), dtype=np.int64)
        missing = [c.name for c in schema.context if c.name not in df.columns]
        if missing:
            raise DataError(f"context columns {missing} are declared in the schema but absent from the interactions")
        for c in schema.context:
            if c.kind == "numeric":
                df[c.name] = pd.to_numeric(df[c.name], errors="coerce").astype("float64")
            else:
                df[c.name] = df[c.name].astype("string").fillna("<unk>").astype(str)

        # Stable event order: timestamp where known (NaN sorts last within a user only if all NaN,
        # which is the no-timestamp case), then original row order.
        df = df.sort_values([Columns.USER, Columns.TIME, Columns.ORDER], kind="stable", na_position="last")
        if df[Columns.TIME].isna().any() and df[Columns.TIME].notna().any():
            # Partial timestamps (ml-1m): order by original position only, keep the known times.
            df = df.sort_values([Columns.USER, Columns.ORDER], kind="stable")
        df = df.reset_index(drop=True)

        if items is None:
            items = pd.DataFrame(index=pd.Index(pd.unique(df[Columns.ITEM]), name=Columns.ITEM))
        else:
            items = items.copy()
            if Columns.ITEM in items.columns:
                items = items.set_index(Columns.ITEM)
            items.index = items.index.astype(str)
            items.index.name = Columns.ITEM
        if users is not None:
            users = users.copy()
            if Columns.USER in users.columns:
                users = users.set_index(Columns.USER)
            users.index = users.index.astype(str)
            users.index.name = Columns.USER

        if item_vocab is None:
            # Catalogue = items table, then any item that only appears in the log (sorted for determinism).
            extra = sorted(set(pd.unique(df[Columns.ITEM])) - set(items.index), key=_natural_key)
            item_vocab = Vocab(list(items.index) + extra, kind="item")
        if user_vocab is None:
            user_ids: list[str] = sorted(pd.unique(df[Columns.USER]), key=_natural_key)
            user_vocab = Vocab(user_ids, kind="user")
        return cls(
            name=name,
            interactions=df,
            items=items,
            users=users,
            schema=schema,
            user_vocab=user_vocab,
            item_vocab=item_vocab,
            user_idx=user_vocab.lookup(df[Columns.USER].tolist()),
            item_idx=item_vocab.lookup(df[Columns.ITEM].tolist()),
            notes=notes,
        )

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    @property
    def n_events(self) -> int:
        return len(self.interactions)

    def user_offsets(self) -> np.ndarray:
        """CSR offsets: rows of user ``u`` are ``offsets[u]:offsets[u+1]`` (rows are sorted by user id string,
        so we sort by dense index here)."""
        counts = np.bincount(self.user_idx, minlength=self.n_users)
        return np.concatenate([[0], np.cumsum(counts)])

    def row_order(self) -> np.ndarray:
        """Row permutation that groups rows by dense user index, keeping each user's event order."""
        return np.argsort(self.user_idx, kind="stable")

    def sequences(self) -> list[np.ndarray]:
        """Per dense user index, the item indices of their events in order."""
        order = self.row_order()
        offsets = self.user_offsets()
        items = self.item_idx[order]
        return [items[offsets[u] : offsets[u + 1]] for u in range(self.n_users)]

    def subset(self, mask: np.ndarray, *, name: str | None = None) -> Dataset:
        """Rows where ``mask`` is true, with the same vocabularies (so indices stay comparable)."""
        return dataclasses.replace(
            self,
            name=name or self.name,
            interactions=self.interactions[mask].reset_index(drop=True),
            user_idx=self.user_idx[mask],
            item_idx=self.item_idx[mask],
        )

    def item_text(self, template: str | None = None) -> list[str]:
        """One text per catalogue item, from ``template`` or ``"field: value; ..."`` over text fields.

        Rendered column-wise by :func:`ctxrec.text.templates.render_item_texts`; schema text fields that the
        items table lacks are skipped, template placeholders must name a column.
        """
        from ctxrec.text.templates import render_item_texts

        items = self.items.reindex(self.item_vocab.ids)
        return render_item_texts(items, self.schema.item_text_fields, template, missing="skip")

    def summary(self) -> dict[str, object]:
        """Counts and fields, as printed by ``ctxrec data info``."""
        ts = self.interactions[Columns.TIME]
        return {
            "name": self.name,
            "users": self.interactions[Columns.USER].nunique(),
            "items": self.interactions[Columns.ITEM].nunique(),
            "catalogue": self.n_items,
            "events": self.n_events,
            "events_with_timestamp": int(ts.notna().sum()),
            "event_types": sorted(self.interactions[Columns.EVENT].unique().tolist()),
            "context_fields": [f"{c.name} ({c.kind})" for c in self.schema.context],
            "item_text_fields": list(self.schema.item_text_fields),
            "item_attribute_fields": list(self.schema.item_attribute_fields),
            "user_fields": list(self.schema.user_text_fields + self.schema.user_attribute_fields),
            "notes": list(self.notes),
        }


def _natural_key(s: str) -> tuple[int, int | str]:
    """Sort numeric-looking ids numerically, then everything else as strings."""
    return (0, int(s)) if s.isdigit() else (1, s)
