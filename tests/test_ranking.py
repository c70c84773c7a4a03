"""ctxrec.ranking against hand-worked answers: ties, -inf and NaN, k beyond the candidates, and every
filter alone and combined (the same definitions the library, the service and deploy use)."""

from __future__ import annotations

import numpy as np
import pytest

from ctxrec import ranking
from ctxrec.ranking import ItemFilter, item_filter, rank, top_k, top_k_row

NEG = -np.inf


def test_ties_go_to_the_lower_index_and_top_k_is_a_prefix() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    idx, sc = top_k(scores, 2)
    assert idx.tolist() == [[1, 2], [0, 1]]
    assert sc.tolist() == [[3.0, 3.0], [0.0, 0.0]]
    idx3, _ = top_k(scores, 3)
    assert idx3.tolist() == [[1, 2, 4], [0, 1, 2]]
    full, _ = top_k(scores, 5)
    assert full.tolist() == [[1, 2, 4, 3, 0], [0, 1, 2, 3, 4]]


def test_minus_inf_and_nan_rank_last_and_a_result_list_drops_them() -> None:
    scores = np.array([[NEG, 1.0, np.nan, 0.0, NEG]])
    idx, sc = top_k(scores, 4)
    assert idx.tolist() == [[1, 3, 0, 2]]  # the unrankable ones after, lower index first
    assert sc[0, :2].tolist() == [1.0, 0.0] and np.isneginf(sc[0, 2:]).all()
    row_idx, row_sc = top_k_row(scores[0], 4)
    assert row_idx.tolist() == [1, 3] and row_sc.tolist() == [1.0, 0.0]
    assert row_idx.dtype == np.int64 and row_sc.dtype == np.float32
    empty_idx, empty_sc = top_k_row(np.full(3, NEG), 2)
    assert empty_idx.tolist() == [] and empty_sc.tolist() == []


def test_k_beyond_the_catalogue_returns_every_item() -> None:
    idx, sc = top_k(np.array([[0.5, 2.0, 1.0]]), 10)
    assert idx.tolist() == [[1, 2, 0]] and sc.tolist() == [[2.0, 1.0, 0.5]]
    assert top_k_row(np.array([0.5, NEG, 1.0]), 10)[0].tolist() == [2, 0]
    with pytest.raises(ValueError, match="k must be a positive integer, got 0"):
        top_k(np.zeros((1, 3)), 0)


def test_large_catalogue_path_gives_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.topk picks candidates for large catalogues; ties are resolved afterwards, so the answer
    is the argpartition path's exactly (scores with many ties and -inf)."""
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, (7, 300)).astype(np.float32)
    scores[rng.random((7, 300)) < 0.1] = NEG
    want = [top_k(scores, k) for k in (1, 10, 299, 300)]
    monkeypatch.setattr(ranking, "TORCH_TOPK_FROM", 1)
    for k, (w_idx, w_sc) in zip((1, 10, 299, 300), want, strict=True):
        idx, sc = top_k(scores, k)
        np.testing.assert_array_equal(idx, w_idx)
        np.testing.assert_array_equal(sc, w_sc)


def test_each_filter_alone() -> None:
    n = 5
    row = np.arange(n, dtype=np.float32)  # item 4 is best
    assert top_k_row(item_filter(n, seen=np.array([4, 3])).apply(row.copy()), 5)[0].tolist() == [2, 1, 0]
    assert top_k_row(item_filter(n, deny=np.array([0, 4])).apply(row.copy()), 5)[0].tolist() == [3, 2, 1]
    assert top_k_row(item_filter(n, allow=np.array([1, 3])).apply(row.copy()), 5)[0].tolist() == [3, 1]
    assert top_k_row(item_filter(n, allow=np.zeros(0, np.int64)).apply(row.copy()), 5)[0].tolist() == []
    blocked = np.array([False, False, True, False, True])
    assert top_k_row(item_filter(n, blocked=blocked).apply(row.copy()), 5)[0].tolist() == [3, 1, 0]
    index = {"genre": {"a": {0, 1}, "b": {2}}}
    f = item_filter(n, attributes={"genre": ["a", "b"]}, attribute_index=index)  # any value of the field
    assert top_k_row(f.apply(row.copy()), 5)[0].tolist() == [2, 1, 0]
    f = item_filter(n, attributes={"genre": ["no-such-value"]}, attribute_index=index)
    assert top_k_row(f.apply(row.copy()), 5)[0].tolist() == []
    # ids a caller could not resolve come in as -1: they name no item (not the last one)
    assert top_k_row(item_filter(n, deny=np.array([-1])).apply(row.copy()), 1)[0].tolist() == [4]
    assert top_k_row(item_filter(n, allow=np.array([-1, 2])).apply(row.copy()), 5)[0].tolist() == [2]


def test_filters_combined_keep_only_what_every_filter_admits() -> None:
    """Six items, best first 5..0. Seen 5, denied 4, allow {0..4}, genre a = {0, 2, 3} and lang x =
    {2, 3, 5} (one value of every field), item 3 retired: only item 2 is left."""
    n = 6
    scores = np.arange(n, dtype=np.float32)
    index = {"genre": {"a": {0, 2, 3}, "b": {1, 4, 5}}, "lang": {"x": {2, 3, 5}}}
    blocked = np.array([False, False, False, True, False, False])
    f = item_filter(n, seen=np.array([5]), deny=np.array([4]), allow=np.array([0, 1, 2, 3, 4]),
                    attributes={"genre": ["a"], "lang": ["x"]}, attribute_index=index, blocked=blocked)
    idx, sc = top_k_row(f.apply(scores.copy()), 10)
    assert idx.tolist() == [2] and sc.tolist() == [2.0]
    # the same filter on retrieved candidates (approximate retrieval) admits the same items
    assert f.admits(np.arange(n)).tolist() == [False, False, True, False, False, False]


def test_rank_filters_each_row_with_its_own_filter() -> None:
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    filters = [item_filter(3, seen=np.array([0])), ItemFilter()]
    idx, sc = rank(scores, 2, filters)
    assert idx.tolist() == [[1, 2], [0, 1]] and sc.tolist() == [[2.0, 1.0], [3.0, 2.0]]
    with pytest.raises(ValueError, match="1 filters for 2 score rows"):
        rank(scores, 2, filters[:1])


def test_top_k_equals_a_full_stable_sort() -> None:
    """Against the definition: sort every row by (-score, index) and cut at k (tie-heavy rows)."""
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (20, 50)).astype(np.float64)
    scores[rng.random((20, 50)) < 0.2] = NEG
    order = np.lexsort((np.broadcast_to(np.arange(50), scores.shape), -scores), axis=1)
    for k in (1, 2, 7, 49, 50, 60):
        idx, sc = top_k(scores, k)
        np.testing.assert_array_equal(idx, order[:, :k])
        np.testing.assert_array_equal(sc, np.take_along_axis(scores, order[:, :k], axis=1))
