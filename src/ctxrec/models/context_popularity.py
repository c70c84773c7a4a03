"""Context popularity: the most popular items in the request's context, backing off field by field.

The strong simple baseline for context-aware logs (frappe, in-car music, context movies): count
item events for every combination of the first ``l`` context fields, ``l = 0 .. n``, and rank a
request by the item distribution of the longest combination it matches, smoothed towards the next
shorter one (hierarchical Dirichlet back-off: ``p_l = (c_l + alpha p_{l-1}) / (n_l + alpha)``, down
to global popularity). ``alpha`` is chosen on validation by default: small, the longest match
decides (ties broken by shorter ones); large, sparse combinations lean on their parents. Fields are ordered most informative first (lowest conditional
entropy of the item given the field, on train), so back-off drops the least informative first.

A missing value is matched as "not given" (logs such as in-car music set one context field per
event): a request that leaves a field out matches the events that left it out too, and backs off
where train has no such combination.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from ctxrec.context import is_missing
from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet

_SEP = "\x1f"  # joins field values into one key (unit separator: never in a real value)
_NOT_GIVEN = ""  # key token of a missing value (context.is_missing: None, NaN, "<unk>", "NULL", ...)


@dataclass(frozen=True, kw_only=True)
class ContextPopularityConfig:
    """Which context fields to count over and how much support a combination needs."""

    fields: tuple[str, ...] | None = None
    """Categorical context fields to use (``None``: every categorical context field of the dataset)."""
    min_support: int = 1
    """A combination seen in fewer train events than this is skipped (backs off to a shorter one)."""
    alpha: float | None = None
    """Back-off strength (pseudo-events drawn from the parent combination). ``None``: chosen on the
    validation cases from :data:`ALPHA_GRID` (10 without validation cases)."""

    def __post_init__(self) -> None:
        if self.min_support < 1:
            raise ConfigError(f"ContextPopularityConfig.min_support must be >= 1, got {self.min_support!r}")
        if self.alpha is not None and not self.alpha > 0:
            raise ConfigError(f"ContextPopularityConfig.alpha must be > 0 or None (auto), got {self.alpha!r}")


ALPHA_GRID = (0.01, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6)  # up to ~global popularity: context may not help
DEFAULT_ALPHA = 10.0


def _token(v: Any) -> str:
    return _NOT_GIVEN if is_missing(v) else str(v)


def _conditional_entropy(items: np.ndarray, values: pd.Series) -> float:
    """H(item | field) in nats ("not given" is one of the field's values here)."""
    df = pd.DataFrame({"v": values.to_numpy(), "i": items})
    joint = df.groupby(["v", "i"], sort=False).size().to_numpy(np.float64)
    marg = df.groupby("v", sort=False).size().to_numpy(np.float64)
    n = joint.sum()
    return float(-(joint / n * np.log(joint)).sum() + (marg / n * np.log(marg)).sum())


class ContextPopularityRecommender(Recommender):
    """Per-context popularity with field-by-field back-off to global popularity."""

    kind: ClassVar[str] = "context_popularity"
    config_class: ClassVar[type] = ContextPopularityConfig
    config: ContextPopularityConfig

    def __init__(self, config: ContextPopularityConfig | None = None) -> None:
        super().__init__(config)
        self.fields: list[str] = []  # most informative first
        self._keys: list[dict[str, int]] = []  # per level l >= 1: key -> row of that level's table
        self._tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # per level: CSR (indptr, items, counts)
        self._global: np.ndarray | None = None  # (n_items,) float64
        self.alpha = DEFAULT_ALPHA

    # ------------------------------------------------------------------ fit
    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        cats = [c.name for c in data.schema.context if c.kind == "categorical"]
        fields = list(self.config.fields) if self.config.fields is not None else cats
        bad = [f for f in fields if f not in cats]
        if bad:
            raise ConfigError(
                f"context_popularity fields {bad} are not categorical context fields of {data.name!r}; "
                f"it has {cats or 'none'}"
            )
        df = data.interactions
        items = data.item_idx.astype(np.int64)
        values = {f: df[f].map(_token) for f in fields}
        self.fields = sorted(fields, key=lambda f: _conditional_entropy(items, values[f]))
        self._global = np.bincount(items, minlength=data.n_items).astype(np.float64)
        self._keys, self._tables = [], []
        key = pd.Series([""] * len(df), index=df.index, dtype=object)
        for level, f in enumerate(self.fields, start=1):
            key = key + (_SEP if level > 1 else "") + values[f]
            frame = pd.DataFrame({"k": key.to_numpy(), "i": items})
            counts = frame.groupby(["k", "i"], sort=True).size()
            support = counts.groupby(level=0).sum()
            counts = counts[counts.index.get_level_values(0).isin(support.index[support >= self.config.min_support])]
            keys = counts.index.get_level_values(0)
            uniq, starts = np.unique(keys.to_numpy(dtype=str), return_index=True)
            indptr = np.append(starts, len(counts)).astype(np.int64)
            self._keys.append({k: r for r, k in enumerate(uniq.tolist())})
            self._tables.append((indptr, counts.index.get_level_values(1).to_numpy(np.int64),
                                 counts.to_numpy(np.float64)))
        self.fit_info = {"fields": self.fields, "combinations": [len(k) for k in self._keys]}
        self.alpha = self.config.alpha or DEFAULT_ALPHA
        if self.config.alpha is None and valid is not None and len(valid):
            self.alpha, self.fit_info["alpha_valid_ndcg@10"] = self._choose_alpha(valid, data.schema.repeat_consumption)
        self.fit_info["alpha"] = self.alpha

    def _choose_alpha(self, valid: EvalSet, keep_seen: bool) -> tuple[float, dict[str, float]]:
        """The grid value with the best validation NDCG@10 (first on ties)."""
        from ctxrec.evaluation.metrics import ndcg_at_k
        from ctxrec.models.base import top_k

        seen = None if keep_seen else valid.histories
        found: dict[str, float] = {}
        for a in ALPHA_GRID:
            self.alpha = a
            scores = np.stack([self._level_scores(c) for c in valid.contexts])  # (n, n_items)
            for b, h in enumerate(seen or []):
                scores[b, h] = -np.inf
            found[str(a)] = ndcg_at_k(top_k(scores, 10)[0], valid.targets, 10)
        best = max(ALPHA_GRID, key=lambda a: found[str(a)])
        return best, found

    # ------------------------------------------------------------------ score
    def matched_levels(self, context: Mapping[str, Any]) -> int:
        """How many leading fields of :attr:`fields` the context matches in train (0 = global popularity)."""
        key, level = "", 0
        for f in self.fields:
            v = _token(context.get(f))
            key = v if level == 0 else key + _SEP + v
            if key not in self._keys[level]:
                break
            level += 1
        return level

    def context_schema(self) -> dict[str, dict[str, Any]]:
        """Its fields, each with the values counted in training (at that field's level of the back-off)."""
        self._check_fitted()
        return {f: {"kind": "categorical",
                    "values": sorted({k.split(_SEP)[-1] for k in self._keys[level]} - {_NOT_GIVEN})}
                for level, f in enumerate(self.fields)}

    def _level_scores(self, context: Mapping[str, Any]) -> np.ndarray:
        """``(n_items,)`` back-off distribution: p_0 = (c_0 + 1) / (n_0 + n_items) (add-one global
        popularity), p_l = (c_l + alpha p_{l-1}) / (n_l + alpha) for each matched level l."""
        assert self._global is not None
        s = (self._global + 1.0) / (self._global.sum() + len(self._global))
        key = ""
        for level in range(self.matched_levels(context)):
            v = _token(context.get(self.fields[level]))
            key = v if level == 0 else key + _SEP + v
            indptr, it, cnt = self._tables[level]
            r = self._keys[level][key]
            c = np.zeros_like(s)
            c[it[indptr[r] : indptr[r + 1]]] = cnt[indptr[r] : indptr[r + 1]]
            s = (c + self.alpha * s) / (c.sum() + self.alpha)
        return s

    def _score(self, batch: QueryBatch) -> np.ndarray:
        out = np.empty((len(batch), self.n_items), dtype=np.float64)
        for b, ctx in enumerate(batch.contexts):
            out[b] = self._level_scores(dict(ctx))
        return out  # (B, n_items)

    # ------------------------------------------------------------------ persistence
    def _meta(self) -> dict[str, Any]:
        return {"fields": self.fields, "alpha": self.alpha, "keys": [sorted(k, key=k.__getitem__) for k in self._keys]}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.fields = list(meta["fields"])
        self.alpha = float(meta["alpha"])
        self._keys = [{k: r for r, k in enumerate(keys)} for keys in meta["keys"]]

    def _state(self) -> dict[str, np.ndarray]:
        assert self._global is not None
        state = {"global": self._global}
        for level, (indptr, it, cnt) in enumerate(self._tables, start=1):
            state.update({f"l{level}.indptr": indptr, f"l{level}.items": it, f"l{level}.counts": cnt})
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._global = np.asarray(state["global"], dtype=np.float64)
        self._tables = [(state[f"l{level}.indptr"], state[f"l{level}.items"], state[f"l{level}.counts"])
                        for level in range(1, len(self.fields) + 1)]
