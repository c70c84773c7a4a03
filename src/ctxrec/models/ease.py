"""EASE (Steck, WWW 2019): a shallow item-item autoencoder with a closed-form solution.

With ``X`` the binary user-item matrix of train and ``P = (X^T X + l2 * I)^-1``,
``B = I - P diag(1 / diag(P))`` (so ``diag(B) = 0``). A query's score is its history's binary
vector times ``B``: it needs no user embedding, so new users are served from their history.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender
from ctxrec.models.popularity import PopularityConfig, item_popularity

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet

_ROW_CHUNK = 256  # history rows of B summed at a time (bounds memory for long histories)


@dataclass(frozen=True, kw_only=True)
class EASEConfig:
    """EASE hyperparameters."""

    l2: float = 500.0
    """L2 penalty on B (Steck uses 100-1000 on ML-20M/Netflix/MSD); larger = smoother scores."""
    max_items: int = 50_000
    """Refuse catalogues above this size: B is a dense n x n float32 matrix (4 n^2 bytes, 10 GB at
    50k items) and the inversion costs O(n^3)."""

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ConfigError(
                f"EASEConfig.l2 must be > 0 (it keeps X^T X + l2*I invertible), got {self.l2!r}"
            )
        if self.max_items < 1:
            raise ConfigError(f"EASEConfig.max_items must be a positive item count, got {self.max_items!r}")


def ease_weights(x: np.ndarray | tuple[np.ndarray, np.ndarray], n_items: int, l2: float) -> np.ndarray:
    """``(n_items, n_items)`` float32 EASE matrix ``B`` from interactions.

    ``x`` is either a dense ``(n_users, n_items)`` 0/1 matrix or ``(rows, cols)`` index arrays of its
    non-zeros (duplicates are counted once).
    """
    import torch

    if isinstance(x, tuple):
        rows, cols = (np.asarray(a, dtype=np.int64) for a in x)
        n_users = int(rows.max()) + 1 if len(rows) else 0
        pairs = np.unique(rows * max(n_items, 1) + cols)  # binarise: one entry per (user, item)
        idx = torch.from_numpy(np.stack([pairs // max(n_items, 1), pairs % max(n_items, 1)]))
        # pairs are unique and sorted, so the COO tensor is already coalesced.
        xs = torch.sparse_coo_tensor(
            idx, torch.ones(len(pairs)), (n_users, n_items), check_invariants=True, is_coalesced=True
        )
        with warnings.catch_warnings():  # torch routes sparse @ sparse through its beta CSR kernels
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            gram = torch.sparse.mm(xs.t().coalesce(), xs).to_dense()  # (n, n) item co-occurrence counts
    else:
        xd = torch.from_numpy((np.asarray(x) != 0).astype(np.float32))
        gram = xd.T @ xd
    gram = gram.to(torch.float32)
    gram.diagonal().add_(float(l2))
    # G + l2*I is symmetric positive definite: Cholesky inverse is faster and stabler than inv().
    p = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # (n, n)
    b = -p / p.diagonal().unsqueeze(0)  # B_ij = -P_ij / P_jj for i != j
    b.diagonal().zero_()
    return b.numpy()


class EASERecommender(Recommender):
    """Item-item closed-form model. Queries without history are ranked by train popularity."""

    kind: ClassVar[str] = "ease"
    config_class: ClassVar[type] = EASEConfig
    config: EASEConfig

    def __init__(self, config: EASEConfig | None = None) -> None:
        super().__init__(config)
        self._b: np.ndarray | None = None  # (n_items, n_items) float32
        self._pop: np.ndarray | None = None  # (n_items,) float64 cold-start fallback

    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        n = data.n_items
        if n > self.config.max_items:
            gib = 4 * n * n / 2**30
            raise ConfigError(
                f"EASE: the catalogue has {n} items, above EASEConfig.max_items={self.config.max_items}; "
                f"B would be a dense {n} x {n} float32 matrix ({gib:.3g} GiB; memory grows as n^2). "
                f"Raise max_items to at least {n} if you have the memory, or keep only the most popular "
                "items of the catalogue"
            )
        self._b = ease_weights((data.user_idx, data.item_idx), n, self.config.l2)
        self._pop, _ = item_popularity(data, PopularityConfig())
        self.fit_info = {"n_items": n, "n_users": data.n_users, "nnz": int(len(data.item_idx))}

    def _score(self, batch: QueryBatch) -> np.ndarray:
        assert self._b is not None and self._pop is not None
        n = self._b.shape[0]
        out = np.empty((len(batch), n), dtype=np.float32)  # (B, n_items)
        for row, hist in enumerate(batch.histories):
            items = np.unique(hist)  # binary history vector
            if len(items) == 0:
                out[row] = self._pop  # documented cold-start fallback
                continue
            acc = np.zeros(n, dtype=np.float32)
            # x @ B == sum of B's rows of the history items; summed per query, so a query's scores
            # do not depend on the batch it is in.
            for s in range(0, len(items), _ROW_CHUNK):
                acc += self._b[items[s : s + _ROW_CHUNK]].sum(axis=0)
            out[row] = acc
        return out

    @property
    def weights(self) -> np.ndarray:
        """The ``(n_items, n_items)`` item-item matrix ``B`` (dense catalogue indices)."""
        self._check_fitted()
        assert self._b is not None
        return self._b

    def _state(self) -> dict[str, np.ndarray]:
        assert self._b is not None and self._pop is not None
        return {"B": self._b, "popularity": self._pop}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self._b = np.asarray(state["B"], dtype=np.float32)
        self._pop = np.asarray(state["popularity"], dtype=np.float64)
