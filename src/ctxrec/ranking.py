"""Ranking: which items a query may get (filters) and the best ``k`` of them (top-k).

One module for the library (``Recommender.recommend_indices``), the service (exact and approximate
retrieval, ``/similar``) and deploy, so a filter or a tie means the same everywhere:

* ties go to the lower item index, so a top-k list is a prefix of the top-(k+1) list;
* ``-inf`` (and ``NaN``) mean "not rankable": they sort last and :func:`top_k_row` drops them;
* a filter never reorders, it only removes: an :class:`ItemFilter` sets the scores of excluded items
  to ``-inf`` (exact scoring) or says which retrieved candidates it admits (approximate retrieval).

Pure numpy on dense item indices; it imports nothing from ``models`` or ``serving``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

TORCH_TOPK_FROM = 50_000
"""Catalogues at least this large select candidates with ``torch.topk`` (several times faster than
``argpartition`` there); the result is identical, as ties are resolved afterwards either way."""


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of a ``(B, N)`` matrix: ``(B, min(k, N))`` indices and scores, best first.

    Ties go to the lower index; ``NaN`` ranks like ``-inf``; rows with fewer than ``k`` rankable items
    end in ``-inf`` entries (callers drop them, see :func:`top_k_row`)."""
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    scores = np.asarray(scores)
    n = scores.shape[1]
    k_eff = min(k, n)
    if np.isnan(scores).any():  # NaN would break the tie logic below; rank it like -inf
        scores = np.where(np.isnan(scores), -np.inf, scores)
    if k_eff < n:
        part = _candidates(scores, k_eff)  # (B, k_eff): the k largest, ties in arbitrary order
        # The candidates hold an arbitrary subset of the items tied with the k-th score; swap in the
        # lowest-index ones so the tie-break holds and top-k is a prefix of top-(k+1).
        cand = np.take_along_axis(scores, part, axis=1)  # (B, k_eff)
        kth = cand.min(axis=1, keepdims=True)  # (B, 1)
        need = (cand == kth).sum(axis=1)  # (B,) tied items that fit in the top k
        tied = scores == kth  # (B, N)
        rows = np.flatnonzero(tied.sum(axis=1) > need)  # rows where some tied item was left out
        if len(rows):
            first_ties = np.cumsum(tied[rows], axis=1, dtype=np.int32) <= need[rows, None]
            keep = (scores[rows] > kth[rows]) | (tied[rows] & first_ties)  # exactly k_eff per row
            part[rows] = np.nonzero(keep)[1].reshape(len(rows), k_eff)
    else:
        part = np.tile(np.arange(n), (len(scores), 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)  # primary key -score, secondary key index
    idx = np.take_along_axis(part, order, axis=1)
    return idx, np.take_along_axis(scores, idx, axis=1)


def _candidates(scores: np.ndarray, k: int) -> np.ndarray:
    """``(B, k)`` int64 indices of the k largest scores per row (any order, any choice among ties)."""
    if scores.shape[1] >= TORCH_TOPK_FROM:
        import torch

        _, i = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1)  # same dtype: no merged values
        return i.numpy().astype(np.int64)
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def top_k_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one ``(N,)`` score row as a result list: ``-inf`` items dropped, so it may be shorter."""
    idx, sc = top_k(np.asarray(scores)[None, :], k)
    keep = np.isfinite(sc[0])
    return idx[0][keep].astype(np.int64), sc[0][keep].astype(np.float32)


@dataclass(frozen=True)
class ItemFilter:
    """The items one query may get: those ``allowed`` (all when ``None``), minus ``excluded`` and
    ``blocked`` ones. Build it with :func:`item_filter`."""

    excluded: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """(m,) int64 dense indices never returned: the query's seen items, its deny list."""
    blocked: np.ndarray | None = None
    """(N,) bool, True = never returned (a service's retired items); shared by queries, not copied."""
    allowed: np.ndarray | None = None
    """(N,) bool, False = not a candidate (allow list, attribute filters); ``None`` = every item."""

    def apply(self, row: np.ndarray) -> np.ndarray:
        """Set the scores of filtered-out items in the ``(N,)`` row to ``-inf``, in place; returns it."""
        n = row.shape[0]
        if self.blocked is not None and self.blocked[:n].any():
            row[self.blocked[:n]] = -np.inf
        if len(self.excluded):
            row[self.excluded] = -np.inf
        if self.allowed is not None:
            row[~self.allowed[:n]] = -np.inf
        return row

    def admits(self, idx: np.ndarray) -> np.ndarray:
        """Bool mask over the candidate indices ``idx`` (e.g. retrieved by an ANN index): kept or not."""
        ok = np.ones(len(idx), bool)
        if self.blocked is not None:
            ok &= ~self.blocked[idx]
        if len(self.excluded):
            ok &= ~np.isin(idx, self.excluded)
        if self.allowed is not None:
            ok &= self.allowed[idx]
        return ok


def item_filter(
    n_items: int,
    *,
    seen: np.ndarray | None = None,
    deny: np.ndarray | None = None,
    allow: np.ndarray | None = None,
    attributes: Mapping[str, Sequence[str]] | None = None,
    attribute_index: Mapping[str, Mapping[str, Collection[int]]] | None = None,
    blocked: np.ndarray | None = None,
) -> ItemFilter:
    """The filter of one query over a catalogue of ``n_items``.

    ``seen`` and ``deny``: dense indices to exclude; ``allow``: dense indices that are the only
    candidates (an empty array allows nothing); ``attributes``: field -> wanted values, an item must
    match one value of every field, looked up in ``attribute_index`` (field -> value -> item indices);
    ``blocked``: an (N,) bool mask shared by every query (retired items). Negative indices (ids the
    caller could not resolve) are ignored: they name no item."""
    parts = [np.asarray(a, np.int64) for a in (seen, deny) if a is not None and len(a)]
    excluded = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    excluded = excluded[excluded >= 0]
    allowed = None
    if allow is not None:
        allowed = np.zeros(n_items, bool)
        a = np.asarray(allow, np.int64)
        allowed[a[a >= 0]] = True
    for name, values in (attributes or {}).items():
        table = (attribute_index or {}).get(name, {})
        match = np.zeros(n_items, bool)
        for v in values:
            members = table.get(str(v))
            if members:
                match[np.fromiter(members, np.int64, len(members))] = True
        allowed = match if allowed is None else (allowed & match)
    return ItemFilter(excluded=excluded, blocked=blocked, allowed=allowed)


def rank(scores: np.ndarray, k: int, filters: Sequence[ItemFilter] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Filter then top-k a ``(B, N)`` score matrix, one :class:`ItemFilter` per row; the matrix is
    changed in place (pass a copy to keep it). Returns what :func:`top_k` returns."""
    if filters is not None:
        if len(filters) != len(scores):
            raise ValueError(f"{len(filters)} filters for {len(scores)} score rows; give one per row")
        for row, f in zip(scores, filters, strict=True):
            f.apply(row)
    return top_k(scores, k)
