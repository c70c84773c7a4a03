"""Metrics against hand-computed values (written as fractions) and brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxrec.evaluation.metrics import (
    RANKING_METRICS,
    auc,
    coverage_at_k,
    f1_at_k,
    hit_matrix,
    hr_at_k,
    log_loss,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

L2 = math.log2


def R(*rows: list[int]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def T(*sets: list[int]) -> list[np.ndarray]:
    return [np.array(s, dtype=np.int64) for s in sets]


# ----------------------------------------------------------------------------- single target (LOO)
def test_single_target_hit_at_rank_2() -> None:
    ranked, targets = R([5, 3, 7, 1, 2]), T([3])
    assert hr_at_k(ranked, targets, 1) == 0
    assert hr_at_k(ranked, targets, 2) == 1
    assert recall_at_k(ranked, targets, 5) == 1
    assert precision_at_k(ranked, targets, 5) == pytest.approx(1 / 5)
    assert f1_at_k(ranked, targets, 5) == pytest.approx(2 * (1 / 5) * 1 / (1 / 5 + 1))  # = 1/3
    assert ndcg_at_k(ranked, targets, 5) == pytest.approx(1 / L2(3))
    assert ndcg_at_k(ranked, targets, 1) == 0
    assert mrr_at_k(ranked, targets, 5) == pytest.approx(1 / 2)
    assert mrr_at_k(ranked, targets, 1) == 0
    assert map_at_k(ranked, targets, 5) == pytest.approx(1 / 2)


def test_single_target_mean_over_queries() -> None:
    ranked = R([1, 2, 3], [4, 5, 6], [7, 8, 9])
    targets = T([1], [6], [0])  # ranks 1, 3, miss
    assert hr_at_k(ranked, targets, 3) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx((1 + 1 / L2(4) + 0) / 3)
    assert mrr_at_k(ranked, targets, 3) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert map_at_k(ranked, targets, 3) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert precision_at_k(ranked, targets, 3) == pytest.approx((1 / 3 + 1 / 3 + 0) / 3)
    assert recall_at_k(ranked, targets, 3) == pytest.approx(2 / 3)
    assert f1_at_k(ranked, targets, 3) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)  # p=1/3, r=1 -> 1/2


# ----------------------------------------------------------------------------- multiple targets
def test_ndcg_three_relevant_hits_at_1_and_3() -> None:
    ranked, targets = R([10, 20, 11, 21, 22]), T([10, 11, 12])
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx((1 + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4)))
    assert ndcg_at_k(ranked, targets, 5) == pytest.approx((1 + 1 / L2(4)) / (1 + 1 / L2(3) + 1 / L2(4)))
    assert hr_at_k(ranked, targets, 3) == 1
    assert recall_at_k(ranked, targets, 3) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, targets, 3) == pytest.approx(2 / 3)
    assert f1_at_k(ranked, targets, 3) == pytest.approx(2 / 3)
    assert precision_at_k(ranked, targets, 5) == pytest.approx(2 / 5)
    assert f1_at_k(ranked, targets, 5) == pytest.approx(2 * (2 / 5) * (2 / 3) / (2 / 5 + 2 / 3))  # = 1/2
    assert mrr_at_k(ranked, targets, 3) == 1
    assert map_at_k(ranked, targets, 3) == pytest.approx((1 / 1 + 2 / 3) / 3)  # = 5/9
    assert map_at_k(ranked, targets, 5) == pytest.approx((1 / 1 + 2 / 3) / 3)


def test_ideal_dcg_is_capped_at_k() -> None:
    # 4 relevant, k = 2: ideal has 2 hits; one hit at rank 2.
    ranked, targets = R([9, 1, 2, 3]), T([1, 2, 3, 4])
    assert ndcg_at_k(ranked, targets, 2) == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))
    assert map_at_k(ranked, targets, 2) == pytest.approx((1 / 2) / 2)
    assert recall_at_k(ranked, targets, 2) == pytest.approx(1 / 4)


def test_first_relevant_rank_for_mrr_with_several_targets() -> None:
    ranked, targets = R([7, 8, 3, 4]), T([4, 3])
    assert mrr_at_k(ranked, targets, 4) == pytest.approx(1 / 3)
    assert map_at_k(ranked, targets, 4) == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_duplicate_targets_count_once() -> None:
    ranked, targets = R([5, 1]), T([5, 5])
    assert recall_at_k(ranked, targets, 2) == 1
    assert ndcg_at_k(ranked, targets, 2) == 1
    assert map_at_k(ranked, targets, 2) == 1


def test_mixed_single_and_multi_target_rows() -> None:
    ranked = R([1, 2, 3], [4, 5, 6])
    targets = T([2], [4, 6])
    assert recall_at_k(ranked, targets, 3) == pytest.approx((1 + 1) / 2)
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx((1 / L2(3) + (1 + 1 / L2(4)) / (1 + 1 / L2(3))) / 2)


# ----------------------------------------------------------------------------- padding and edges
def test_minus_one_padding_is_never_a_hit() -> None:
    ranked = R([4, -1, -1], [-1, -1, -1])
    targets = T([4], [7])
    assert hr_at_k(ranked, targets, 3) == pytest.approx(1 / 2)
    assert precision_at_k(ranked, targets, 3) == pytest.approx((1 / 3) / 2)
    assert mrr_at_k(ranked, targets, 3) == pytest.approx(1 / 2)


def test_padding_with_multiple_targets() -> None:
    ranked, targets = R([1, -1, -1]), T([1, 2])
    assert recall_at_k(ranked, targets, 3) == pytest.approx(1 / 2)
    assert ndcg_at_k(ranked, targets, 3) == pytest.approx(1 / (1 + 1 / L2(3)))
    assert map_at_k(ranked, targets, 3) == pytest.approx(1 / 2)
    assert precision_at_k(ranked, targets, 3) == pytest.approx(1 / 3)


def test_k_larger_than_the_ranking_width() -> None:
    # Only 2 columns (a catalogue of 2): precision still divides by k.
    ranked, targets = R([0, 1]), T([1])
    assert precision_at_k(ranked, targets, 5) == pytest.approx(1 / 5)
    assert ndcg_at_k(ranked, targets, 5) == pytest.approx(1 / L2(3))
    assert hr_at_k(ranked, targets, 5) == 1


def test_no_hit_scores_zero_everywhere() -> None:
    ranked, targets = R([1, 2, 3]), T([9])
    for name, fn in RANKING_METRICS.items():
        assert fn(ranked, targets, 3) == 0, name


def test_empty_query_set_scores_zero() -> None:
    ranked = np.zeros((0, 5), dtype=np.int64)
    for name, fn in RANKING_METRICS.items():
        assert fn(ranked, [], 5) == 0.0, name


def test_query_without_relevant_items_contributes_zero() -> None:
    ranked, targets = R([1, 2, 3], [1, 2, 3]), T([], [1])
    for name, fn in RANKING_METRICS.items():
        single = fn(ranked[1:], targets[1:], 3)
        assert fn(ranked, targets, 3) == pytest.approx(single / 2), name


def test_row_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="2 rows but there are 1 target"):
        hit_matrix(R([1, 2], [3, 4]), T([1]), 2)


def test_hit_matrix_fast_and_general_paths_agree() -> None:
    ranked = R([3, 1, 2], [2, 3, 1])
    fast = hit_matrix(ranked, T([1], [1]), 3)
    general = hit_matrix(np.vstack([ranked, R([0, 0, 0])]), T([1], [1], [5, 6]), 3)[:2]
    assert fast.tolist() == general.tolist() == [[False, True, False], [False, False, True]]


def test_coverage() -> None:
    ranked = R([0, 1, -1], [1, 2, -1], [5, 6, 7])
    assert coverage_at_k(ranked, 10, 2) == pytest.approx(5 / 10)  # {0, 1, 2, 5, 6}
    assert coverage_at_k(ranked, 10, 3) == pytest.approx(6 / 10)  # + 7; -1 is not an item
    assert coverage_at_k(ranked, 0, 3) == 0.0
    assert coverage_at_k(np.zeros((0, 3), np.int64), 10, 3) == 0.0


# ----------------------------------------------------------------------------- pointwise
def test_auc_hand_computed() -> None:
    # positives {0.9, 0.4} vs negatives {0.1, 0.5}: 3 of 4 pairs ordered correctly.
    assert auc(np.array([1, 0, 1, 0]), np.array([0.9, 0.1, 0.4, 0.5])) == pytest.approx(3 / 4)


def test_auc_ties_count_half() -> None:
    # pairs: (0.5 vs 0.5) = 1/2, (0.5 vs 0.2) = 1, (0.7 vs 0.5) = 1, (0.7 vs 0.2) = 1
    assert auc(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.7, 0.2])) == pytest.approx(7 / 8)
    assert auc(np.array([1, 0]), np.array([0.3, 0.3])) == pytest.approx(1 / 2)


def test_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        auc(np.array([1, 1]), np.array([0.2, 0.3]))
    with pytest.raises(ValueError, match="both classes"):
        auc(np.array([0, 0]), np.array([0.2, 0.3]))


def test_auc_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        auc(np.array([1, 0, 1]), np.array([0.2, 0.3]))


def test_log_loss_hand_computed() -> None:
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss(np.array([1.0]), np.array([0.5])) == pytest.approx(math.log(2))


def test_log_loss_clips_certain_mistakes() -> None:
    assert log_loss(np.array([0]), np.array([1.0])) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert log_loss(np.array([1]), np.array([0.0]), eps=1e-3) == pytest.approx(-math.log(1e-3))
    assert log_loss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(-math.log(1 - 1e-7), abs=1e-9)


def test_log_loss_rejects_empty_and_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="at least one"):
        log_loss(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="2 labels but 1 probabilities"):
        log_loss(np.array([1, 0]), np.array([0.9]))


# ----------------------------------------------------------------------------- properties
def _reference(name: str, ranked: np.ndarray, targets: list[np.ndarray], k: int) -> float:
    """Straight-from-the-definition per-query loop, to compare with the vectorised code."""
    vals = []
    for row, tgt in zip(ranked, targets, strict=True):
        rel = {int(x) for x in tgt}
        top = [int(x) for x in row[:k]]
        hits = [1.0 if x in rel else 0.0 for x in top]
        n_hit, n_rel = sum(hits), len(rel)
        if name == "hr":
            v = float(n_hit > 0)
        elif name == "recall":
            v = n_hit / n_rel if n_rel else 0.0
        elif name == "precision":
            v = n_hit / k
        elif name == "f1":
            p, r = n_hit / k, (n_hit / n_rel if n_rel else 0.0)
            v = 2 * p * r / (p + r) if p + r else 0.0
        elif name == "ndcg":
            dcg = sum(h / math.log2(i + 2) for i, h in enumerate(hits))
            idcg = sum(1 / math.log2(i + 2) for i in range(min(n_rel, k)))
            v = dcg / idcg if idcg else 0.0
        elif name == "mrr":
            v = next((1 / (i + 1) for i, h in enumerate(hits) if h), 0.0)
        elif name == "map":
            s, c = 0.0, 0
            for i, h in enumerate(hits):
                if h:
                    c += 1
                    s += c / (i + 1)
            v = s / min(n_rel, k) if n_rel else 0.0
        else:  # pragma: no cover
            raise KeyError(name)
        vals.append(v)
    return float(np.mean(vals)) if vals else 0.0


@st.composite
def rankings(draw: st.DrawFn) -> tuple[np.ndarray, list[np.ndarray], int]:
    n_items = draw(st.integers(2, 12))
    n = draw(st.integers(1, 6))
    width = draw(st.integers(1, n_items))
    k = draw(st.integers(1, width + 2))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.permutation(n_items)[:width] for _ in range(n)])
    n_pad = draw(st.integers(0, width - 1))
    if n_pad:
        ranked[:, width - n_pad :] = -1
    multi = draw(st.booleans())
    targets = [
        rng.choice(n_items, size=int(rng.integers(1, n_items + 1)) if multi else 1, replace=False) for _ in range(n)
    ]
    return ranked, targets, k


@settings(max_examples=50, deadline=None)
@given(rankings())
def test_metrics_match_reference_and_lie_in_unit_interval(case: tuple[np.ndarray, list[np.ndarray], int]) -> None:
    ranked, targets, k = case
    for name, fn in RANKING_METRICS.items():
        got = fn(ranked, targets, k)
        assert 0.0 <= got <= 1.0 + 1e-12, name
        assert got == pytest.approx(_reference(name, ranked, targets, k), abs=1e-12), name
    assert 0.0 <= coverage_at_k(ranked, int(ranked.max()) + 1 if ranked.max() >= 0 else 1, k) <= 1.0


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 30), st.integers(1, 10), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_perfect_ranking_scores_one(n_items: int, n_rel: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_items)
    n_rel = min(n_rel, n_items)
    rel = perm[:n_rel]
    ranked = perm[None, :]  # all relevant items first, in any order among themselves
    targets = [rng.permutation(rel)]
    for name in ("hr", "ndcg", "mrr", "map"):
        assert RANKING_METRICS[name](ranked, targets, k) == pytest.approx(1.0), name
    assert recall_at_k(ranked, targets, k) == pytest.approx(min(n_rel, k) / n_rel)
    assert precision_at_k(ranked, targets, k) == pytest.approx(min(n_rel, k) / k)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=20), st.lists(st.floats(-5, 5), min_size=1, max_size=20))
def test_auc_of_perfectly_separated_scores_is_one(pos: list[float], neg: list[float]) -> None:
    pos_s = np.array(pos) + 11.0  # every positive above every negative
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    scores = np.r_[pos_s, np.array(neg)]
    assert auc(labels, scores) == 1.0
    assert auc(1 - labels, scores) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 4)), min_size=2, max_size=40))
def test_auc_matches_brute_force_pairwise_count_with_ties(pairs: list[tuple[bool, int]]) -> None:
    labels = np.array([p[0] for p in pairs])
    scores = np.array([p[1] for p in pairs], dtype=np.float64)  # few distinct values: many ties
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        with pytest.raises(ValueError):
            auc(labels, scores)
        return
    brute = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))
    assert auc(labels, scores) == pytest.approx(brute, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0)), min_size=1, max_size=30))
def test_log_loss_is_nonnegative_and_matches_definition(pairs: list[tuple[bool, float]]) -> None:
    y = np.array([float(a) for a, _ in pairs])
    p = np.array([b for _, b in pairs])
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    expected = -np.mean([math.log(q) if t else math.log(1 - q) for t, q in zip(y, pc, strict=True)])
    got = log_loss(y, p)
    assert got >= 0
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
