"""EASE (Steck, WWW 2019): a shallow item-item autoencoder with a closed-form solution.

With ``X`` the binary user-item matrix of train and ``P = (X^T X + l2 * I)^-1``,
``B = I - P diag(1 / diag(P))`` (so ``diag(B) = 0``). A query's score is its history's binary
vector times ``B``: it needs no user embedding, so new users are served from their history.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender
from ctxrec.models.popularity import PopularityConfig, item_popularity

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet

_ROW_CHUNK = 256  # history rows of B summed at a time (bounds memory for long histories)
_BLOCK_BYTES = 64 * 2**20  # Gram rows built per step: bounds the sparse product and its dense copy


@dataclass(frozen=True, kw_only=True)
class EASEConfig:
    """EASE hyperparameters."""

    l2: float = 500.0
    """L2 penalty on B (Steck uses 100-1000 on ML-20M/Netflix/MSD); larger = smoother scores."""
    max_memory_gib: float = 4.0
    """Refuse to fit when the estimated peak memory (:func:`ease_memory_bytes`: two dense n x n float32
    matrices, 8 n^2 bytes, 2.3 GiB at 17.6k items) is above this; the inversion also costs O(n^3)."""
    max_items: int = 50_000
    """Refuse catalogues above this size whatever the memory limit says."""

    def __post_init__(self) -> None:
        if not self.l2 > 0:
            raise ConfigError(
                f"EASEConfig.l2 must be > 0 (it keeps X^T X + l2*I invertible), got {self.l2!r}"
            )
        if self.max_items < 1:
            raise ConfigError(f"EASEConfig.max_items must be a positive item count, got {self.max_items!r}")
        if not self.max_memory_gib > 0:
            raise ConfigError(f"EASEConfig.max_memory_gib must be > 0 (GiB), got {self.max_memory_gib!r}")


def ease_memory_bytes(n_items: int, nnz: int) -> int:
    """Estimated peak bytes of :func:`ease_weights`: two live dense ``n x n`` float32 matrices (the Gram
    matrix, then its Cholesky factor, then the inverse that becomes B, each step freeing the one before
    the last), the sparse interaction matrix (``nnz`` entries of 20 bytes: two int64 indices and a float32)
    and one block of Gram rows being built."""
    return 2 * 4 * n_items * n_items + 20 * nnz + 2 * _BLOCK_BYTES


def ease_weights(x: np.ndarray | tuple[np.ndarray, np.ndarray], n_items: int, l2: float) -> np.ndarray:
    """``(n_items, n_items)`` float32 EASE matrix ``B`` from interactions.

    ``x`` is either a dense ``(n_users, n_items)`` 0/1 matrix or ``(rows, cols)`` index arrays of its
    non-zeros (duplicates are counted once). Peak memory: :func:`ease_memory_bytes`.
    """
    import torch

    if isinstance(x, tuple):
        rows, cols = (np.asarray(a, dtype=np.int64) for a in x)
    else:
        rows, cols = (a.astype(np.int64) for a in np.nonzero(np.asarray(x)))
    n_users = int(rows.max()) + 1 if len(rows) else 1
    gram = _gram(rows, cols, n_users, n_items)  # (n, n) item co-occurrence counts
    gram.diagonal().add_(float(l2))
    # G + l2*I is symmetric positive definite: Cholesky inverse is faster and stabler than inv().
    # Each step frees its input, so at most two n x n matrices are alive.
    factor = torch.linalg.cholesky(gram)  # (n, n)
    del gram
    b = torch.cholesky_inverse(factor)  # (n, n) P = (G + l2 I)^-1
    del factor
    b.div_(-b.diagonal().clone().unsqueeze(0))  # B_ij = -P_ij / P_jj for i != j, in place
    b.diagonal().zero_()
    return b.numpy()


def _gram(rows: np.ndarray, cols: np.ndarray, n_users: int, n_items: int) -> Any:
    """Dense float32 ``X^T X`` of the binary matrix with non-zeros ``(rows, cols)``, built a block of
    item rows at a time (sparse x sparse), so no n x n sparse intermediate is ever materialised."""
    import torch

    n = max(n_items, 1)
    pairs = np.unique(rows * n + cols)  # binarise: one entry per (user, item), sorted by user
    users, items = pairs // n, pairs % n
    xs = torch.sparse_coo_tensor(  # (n_users, n_items) X; sorted unique pairs are already coalesced
        torch.from_numpy(np.stack([users, items])), torch.ones(len(pairs)), (n_users, n_items),
        check_invariants=True, is_coalesced=True,
    )
    by_item = np.lexsort((users, items))  # X^T's entries, item-major
    t_items, t_users = items[by_item], users[by_item]
    gram = torch.zeros((n_items, n_items), dtype=torch.float32)
    step = max(1, _BLOCK_BYTES // (20 * n))  # a dense block row of the product costs 4n, a sparse one <= 20n
    for lo in range(0, n_items, step):
        hi = min(n_items, lo + step)
        a, z = np.searchsorted(t_items, [lo, hi])
        block = torch.sparse_coo_tensor(  # (hi - lo, n_users) rows lo..hi of X^T
            torch.from_numpy(np.stack([t_items[a:z] - lo, t_users[a:z]])), torch.ones(int(z - a)),
            (hi - lo, n_users), check_invariants=True, is_coalesced=True,
        )
        with warnings.catch_warnings():  # torch routes sparse @ sparse through its beta CSR kernels
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            gram[lo:hi] = torch.sparse.mm(block, xs).to_dense()
    return gram


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
        need = ease_memory_bytes(n, len(data.item_idx))
        limit = self.config.max_memory_gib * 2**30
        if need > limit:
            one = 4 * n * n / 2**30
            raise ConfigError(
                f"EASE: fitting on this catalogue needs about {need / 2**30:.2f} GiB ({n:,} items: two dense "
                f"{n:,} x {n:,} float32 matrices of {one:.2f} GiB each, plus the interactions; memory grows as "
                f"items^2), above EASEConfig.max_memory_gib = {self.config.max_memory_gib:g}. Use a model whose memory "
                "grows linearly with the catalogue (sasrec or fusion), keep only the most popular items, or raise the "
                f"limit if the machine has the memory (e.g. --set max_memory_gib={math.ceil(need / 2**30)})"
            )
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
        self.fit_info = {"n_items": n, "n_users": data.n_users, "nnz": len(data.item_idx)}

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
