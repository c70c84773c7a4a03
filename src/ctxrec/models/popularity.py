"""Most-popular baseline: every query gets the same ranking, by train interaction counts.

It is the floor every other model must beat, and the documented cold-start fallback of the
history-based models (a query with no history and no usable context is ranked by popularity).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np

from ctxrec.data.dataset import Columns
from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet

SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True, kw_only=True)
class PopularityConfig:
    """How popularity is counted."""

    window_days: float | None = None
    """Count only events in the last ``window_days`` before the latest train timestamp (recency
    matters for trending catalogues). Ignored when train has no timestamps; with partial timestamps,
    events of unknown time are not counted because they cannot be shown to be recent."""
    weighting: Literal["count", "weight"] = "count"
    """``count``: each event counts 1; ``weight``: each event counts its ``weight`` column."""

    def __post_init__(self) -> None:
        if self.window_days is not None and not self.window_days > 0:
            raise ConfigError(
                "PopularityConfig.window_days must be a positive number of days or None, "
                f"got {self.window_days!r}"
            )


def item_popularity(data: Dataset, config: PopularityConfig) -> tuple[np.ndarray, dict[str, object]]:
    """``(n_items,)`` float64 popularity of every catalogue item in ``data``, plus fit notes.

    Shared with models that fall back to popularity for queries without history.
    """
    df = data.interactions
    keep = np.ones(len(df), dtype=bool)
    info: dict[str, object] = {"window_applied": False}
    if config.window_days is not None:
        times = df[Columns.TIME].to_numpy(dtype=np.float64)
        known = ~np.isnan(times)
        if known.any():
            end = float(times[known].max())
            start = end - config.window_days * SECONDS_PER_DAY
            keep = known & (times >= start)
            info.update(window_applied=True, window_start=start, window_end=end)
    w = df[Columns.WEIGHT].to_numpy(dtype=np.float64) if config.weighting == "weight" else np.ones(len(df))
    pop = np.bincount(data.item_idx[keep], weights=w[keep], minlength=data.n_items).astype(np.float64)
    info["n_events_counted"] = int(keep.sum())
    return pop, info


class PopularityRecommender(Recommender):
    """Ranks items by how often they occur in train (ties: lower catalogue index first)."""

    kind: ClassVar[str] = "popularity"
    config_class: ClassVar[type] = PopularityConfig
    config: PopularityConfig

    def __init__(self, config: PopularityConfig | None = None) -> None:
        super().__init__(config)
        self._pop: np.ndarray | None = None  # (n_items,) float64

    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        self._pop, info = item_popularity(data, self.config)
        self.fit_info = info

    def _score(self, batch: QueryBatch) -> np.ndarray:
        assert self._pop is not None
        return np.broadcast_to(self._pop.astype(np.float32), (len(batch), len(self._pop)))  # (B, n_items)

    @property
    def popularity(self) -> np.ndarray:
        """``(n_items,)`` train popularity, in catalogue (dense index) order."""
        self._check_fitted()
        assert self._pop is not None
        return self._pop

    def _state(self) -> dict[str, np.ndarray]:
        assert self._pop is not None
        return {"popularity": self._pop}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._pop = np.asarray(state["popularity"], dtype=np.float64)
