"""Approximate retrieval over the item table: faiss HNSW for dot-product models. Exact top-k over
model scores, and every filter, are :mod:`ctxrec.ranking`'s.

Exact scoring is the default and handles 1M items (one user against 1M x 64 is ~13 ms of memory
bandwidth on the reference machine). HNSW (``--index hnsw``) needs ``model.item_embeddings()``; its
recall@10 against exact is measured by benchmarks/serving_catalogue.py.
"""

from __future__ import annotations

import numpy as np


class HNSWIndex:
    """faiss IndexHNSWFlat for maximum inner product search over ``(n_items, D)`` item vectors.

    HNSW navigates a metric space; inner product is not a metric, and HNSW on raw inner products loses
    recall when item norms differ. So the standard MIPS-to-nearest-neighbour reduction is used: each
    item gets one extra coordinate ``sqrt(M^2 - |x|^2)`` (M = largest item norm) and each query a 0,
    which makes the L2 distance ``|q|^2 + M^2 - 2 q.x``, monotone in the inner product."""

    def __init__(self, vectors: np.ndarray, *, m: int = 32, ef_construction: int = 40, ef_search: int = 128,
                 build_threads: int | None = None) -> None:
        import faiss

        if build_threads:
            faiss.omp_set_num_threads(build_threads)
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        norms2 = (x.astype(np.float64) ** 2).sum(1)
        self.max_norm2 = float(norms2.max()) if len(x) else 1.0
        self.index = faiss.IndexHNSWFlat(x.shape[1] + 1, m, faiss.METRIC_L2)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(self._augment(x, norms2))
        self.index.hnsw.efSearch = ef_search
        self.n = x.shape[0]
        faiss.omp_set_num_threads(1)  # per-request search: one thread is faster (stack notes P7)

    def _augment(self, x: np.ndarray, norms2: np.ndarray) -> np.ndarray:
        extra = np.sqrt(np.maximum(self.max_norm2 - norms2, 0.0)).astype(np.float32)
        return np.ascontiguousarray(np.concatenate([x, extra[:, None]], 1))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) indices (-1 where fewer) and inner-product scores, best first."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        q_aug = np.ascontiguousarray(np.concatenate([q, np.zeros((len(q), 1), np.float32)], 1))
        d, i = self.index.search(q_aug, min(k, self.n))
        ip = ((q.astype(np.float64) ** 2).sum(1, keepdims=True) + self.max_norm2 - d) / 2
        return i.astype(np.int64), ip.astype(np.float32)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean fraction of each exact top-k row found in the approximate row."""
    hits = [len(set(a[a >= 0].tolist()) & set(e.tolist())) / max(1, len(e)) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) if hits else 0.0
