"""Pure metric functions. Arrays in, float out; tested against hand-computed values.

Ranking metrics take ``ranked`` (``(n, K)`` int item indices, best first, ``K >= k``; ``-1`` pads
short lists) and ``targets`` (``n`` arrays of relevant item indices). Each returns the mean over the
``n`` queries. A query with no relevant items contributes 0 (it should not be in an eval set).

Definitions (``rel_i`` = 1 if the item at rank ``i`` (1-based) is relevant, ``R`` = #relevant):

* HR@k: 1 if any of the top k is relevant.
* Recall@k: hits in top k / R.           * Precision@k: hits in top k / k.
* F1@k: harmonic mean of Precision@k and Recall@k (0 when both are 0).
* NDCG@k: sum_i rel_i / log2(i+1), divided by the ideal DCG with min(R, k) hits.
* MRR@k: 1 / rank of the first relevant item in the top k, else 0.
* MAP@k: sum_i rel_i * Precision@i / min(R, k).
* Coverage@k: distinct items in all top-k lists / catalogue size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hit_matrix(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> np.ndarray:
    """Boolean ``(n, k)``: is the item at each rank relevant."""
    ranked = np.asarray(ranked)[:, :k]
    if ranked.shape[0] != len(targets):
        raise ValueError(f"ranked has {ranked.shape[0]} rows but there are {len(targets)} target sets")
    if all(len(t) == 1 for t in targets):  # fast path: leave-one-out
        tgt = np.fromiter((int(t[0]) for t in targets), dtype=np.int64, count=len(targets))
        return ranked == tgt[:, None]
    return np.stack([np.isin(r, t) for r, t in zip(ranked, targets, strict=True)]) if len(targets) else np.zeros((0, k), bool)


def _n_rel(targets: Sequence[np.ndarray]) -> np.ndarray:
    return np.fromiter((len(np.unique(t)) for t in targets), dtype=np.float64, count=len(targets))


def hr_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    return float(hit_matrix(ranked, targets, k).any(axis=1).mean()) if len(targets) else 0.0


def recall_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    if not len(targets):
        return 0.0
    hits = hit_matrix(ranked, targets, k).sum(axis=1)
    return float(np.mean(hits / np.maximum(_n_rel(targets), 1)))


def precision_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    if not len(targets):
        return 0.0
    return float(np.mean(hit_matrix(ranked, targets, k).sum(axis=1) / k))


def f1_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    if not len(targets):
        return 0.0
    hits = hit_matrix(ranked, targets, k).sum(axis=1).astype(np.float64)
    p = hits / k
    r = hits / np.maximum(_n_rel(targets), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(f1.mean())


def ndcg_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    if not len(targets):
        return 0.0
    hits = hit_matrix(ranked, targets, k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))  # rank 1 -> 1/log2(2)
    dcg = (hits * discounts[: hits.shape[1]]).sum(axis=1)
    ideal_n = np.minimum(_n_rel(targets), k).astype(int)
    cum = np.concatenate([[0.0], np.cumsum(discounts)])
    idcg = cum[ideal_n]
    return float(np.mean(np.where(idcg > 0, dcg / np.where(idcg > 0, idcg, 1), 0.0)))


def mrr_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    if not len(targets):
        return 0.0
    hits = hit_matrix(ranked, targets, k)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, 0)
    return float(np.mean(np.where(first > 0, 1.0 / np.maximum(first, 1), 0.0)))


def map_at_k(ranked: np.ndarray, targets: Sequence[np.ndarray], k: int) -> float:
    if not len(targets):
        return 0.0
    hits = hit_matrix(ranked, targets, k).astype(np.float64)
    prec_at_i = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    denom = np.minimum(_n_rel(targets), k)
    return float(np.mean((hits * prec_at_i).sum(axis=1) / np.maximum(denom, 1)))


def coverage_at_k(ranked: np.ndarray, n_items: int, k: int) -> float:
    """Fraction of the catalogue that appears in at least one top-k list."""
    top = np.asarray(ranked)[:, :k]
    top = top[top >= 0]
    return float(len(np.unique(top)) / n_items) if n_items else 0.0


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC via the rank-sum (Mann-Whitney U) statistic; ties count one half."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"AUC got {y.size} labels but {s.size} scores; pass one score per label")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties
    _, first_idx, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first_idx + (counts + 1) / 2.0  # 1-based average rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy; probabilities are clipped to ``[eps, 1-eps]``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    if y.shape != p.shape:  # a silent broadcast would average the wrong pairs
        raise ValueError(f"log_loss got {y.size} labels but {p.size} probabilities; pass one per label")
    if y.size == 0:
        raise ValueError("log_loss needs at least one label (got none)")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


RANKING_METRICS = {
    "hr": hr_at_k,
    "recall": recall_at_k,
    "precision": precision_at_k,
    "f1": f1_at_k,
    "ndcg": ndcg_at_k,
    "mrr": mrr_at_k,
    "map": map_at_k,
}
