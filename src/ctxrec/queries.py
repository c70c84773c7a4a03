"""Request types shared by models, evaluation and serving: one query in external ids
(:class:`RecQuery`), one result (:class:`Recommendations`) and a batch in dense indices
(:class:`QueryBatch`). They live below ``models`` so that evaluation and serving need no model code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ctxrec.data.splits import EvalSet


@dataclass(frozen=True, kw_only=True)
class RecQuery:
    """One recommendation request, in external ids.

    ``history`` (oldest first) overrides the stored history of ``user_id``; with neither, the
    model recommends from context alone (cold user). ``history_timestamps`` align with ``history``.
    """

    user_id: str | None = None
    history: Sequence[str] | None = None
    history_timestamps: Sequence[float] | None = None
    history_contexts: Sequence[Mapping[str, str | float]] | None = None
    """Context of each history event (aligned with ``history``), for context-aware models."""
    context: Mapping[str, str | float] = field(default_factory=dict)
    timestamp: float | None = None
    text: str | None = None
    """Optional free-text query ("cozy winter mystery"), used by text-aware models."""


@dataclass(frozen=True)
class Recommendations:
    """Top-k result for one query: external item ids and scores, best first."""

    item_ids: list[str]
    scores: np.ndarray  # (k,) float32
    explanation: dict[str, Any] | None = None


@dataclass
class QueryBatch:
    """A batch of queries in dense indices, as models see them."""

    users: np.ndarray  # (B,) int64, -1 for a user the model does not know
    histories: list[np.ndarray]  # B x (L_i,) int64 item indices, oldest first
    history_times: list[np.ndarray]  # B x (L_i,) float64 (NaN where unknown)
    contexts: list[Mapping[str, Any]]
    timestamps: np.ndarray  # (B,) float64, NaN where unknown
    history_contexts: list[Sequence[Mapping[str, Any]] | None] | None = None  # per-event context dicts
    history_rows: list[np.ndarray] | None = None  # or: rows of `frame` behind each history (eval path)
    frame: Any = None  # pandas DataFrame holding those rows
    texts: list[str | None] | None = None  # free-text queries
    known_prefix: list[int] | None = None
    """Per query: how many leading history events are the model's trained history of the user (a model
    reads their stored contexts and event types); the rest came with the query or from an event store."""
    history_event_types: list[Sequence[str] | None] | None = None
    """Per query: the event type of each history event after the known prefix (None: not given)."""

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: Sequence[int]) -> QueryBatch:
        """The queries ``rows`` of this batch, in that order (for scoring part of a batch)."""
        r = list(rows)
        return QueryBatch(users=self.users[r], histories=[self.histories[b] for b in r],
                          history_times=[self.history_times[b] for b in r], contexts=[self.contexts[b] for b in r],
                          timestamps=self.timestamps[r],
                          history_contexts=None if self.history_contexts is None else [self.history_contexts[b] for b in r],
                          history_rows=None if self.history_rows is None else [self.history_rows[b] for b in r],
                          frame=self.frame, texts=None if self.texts is None else [self.texts[b] for b in r],
                          known_prefix=None if self.known_prefix is None else [self.known_prefix[b] for b in r],
                          history_event_types=None if self.history_event_types is None
                          else [self.history_event_types[b] for b in r])

    @classmethod
    def from_evalset(cls, ev: EvalSet, sl: slice | None = None) -> QueryBatch:
        sl = sl or slice(0, len(ev))
        return cls(
            users=ev.users[sl],
            histories=ev.histories[sl],
            history_times=ev.history_times[sl],
            contexts=ev.contexts[sl],
            timestamps=ev.timestamps[sl],
            history_rows=None if ev.history_rows is None else ev.history_rows[sl],
            frame=ev.frame,
        )
