"""The Evaluator on a real Recommender subclass with a fixed score table (hand-computed metrics)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.dataset import Dataset
from ctxrec.data.splits import EvalSet, leave_one_out
from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
from ctxrec.models.base import QueryBatch, Recommender

L2 = math.log2

# 3 users x 6 items. Full rankings: u0 -> 0 1 2 3 4 5; u1 -> 5 4 3 2 1 0; u2 -> 2 0 1 3 4 5 (tie 0/1 by index).
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        [0.5, 0.5, 0.9, 0.1, 0.1, 0.0],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True, kw_only=True)
class FixedConfig:
    pass


class FixedScores(Recommender):
    """Scores ``SCORES[user]`` whatever the history; records the batches it saw."""

    kind = "fixed-test"
    config_class = FixedConfig

    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        self.table = SCORES[:, : data.n_items]
        self.batches: list[QueryBatch] = []

    def _score(self, batch: QueryBatch) -> np.ndarray:
        self.batches.append(batch)
        return self.table[batch.users]

    def _state(self) -> dict[str, np.ndarray]:
        return {"table": self.table}

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.table = state["table"]


def _model() -> FixedScores:
    inter = pd.DataFrame({"user_id": ["0", "1", "2"], "item_id": ["0", "1", "2"]})
    items = pd.DataFrame({"item_id": [str(i) for i in range(6)]})
    return FixedScores().fit(Dataset.from_frames(inter, items=items))


def _cases() -> EvalSet:
    return EvalSet(
        users=np.array([0, 1, 2], dtype=np.int64),
        histories=[np.array([0]), np.array([5, 4]), np.array([], dtype=np.int64)],
        history_times=[np.array([1.0]), np.array([1.0, 2.0]), np.array([])],
        targets=[np.array([2]), np.array([3]), np.array([0, 4])],
        contexts=[{}, {}, {}],
        timestamps=np.array([2.0, 3.0, 4.0]),
    )


ALL = ("hr", "recall", "precision", "f1", "ndcg", "mrr", "map")


def test_full_ranking_with_seen_items_excluded() -> None:
    ev = Evaluator(EvalConfig(ks=(1, 3), metrics=ALL, exclude_seen=True, batch_size=2))
    ranked = ev.rank(_model(), _cases())
    # u0 without item 0; u1 without 5 and 4; u2 unchanged.
    assert ranked.tolist() == [[1, 2, 3], [3, 2, 1], [2, 0, 1]]


def test_metrics_with_seen_items_excluded() -> None:
    # Target ranks: case 0 -> 2, case 1 -> 1, case 2 -> 2 and 5 (two targets).
    model = _model()
    res = Evaluator(EvalConfig(ks=(1, 3), metrics=ALL, exclude_seen=True, batch_size=2)).evaluate(model, _cases())
    expected = {
        "hr@1": 1 / 3,
        "hr@3": 1.0,
        "recall@1": 1 / 3,
        "recall@3": (1 + 1 + 1 / 2) / 3,
        "precision@1": 1 / 3,
        "precision@3": 1 / 3,
        "f1@1": (0 + 1 + 0) / 3,
        "f1@3": (1 / 2 + 1 / 2 + 2 / 5) / 3,  # case 2: p = 1/3, r = 1/2
        "ndcg@1": 1 / 3,
        "ndcg@3": (1 / L2(3) + 1 + (1 / L2(3)) / (1 + 1 / L2(3))) / 3,
        "mrr@1": 1 / 3,
        "mrr@3": (1 / 2 + 1 + 1 / 2) / 3,
        "map@1": 1 / 3,
        "map@3": (1 / 2 + 1 + (1 / 2) / 2) / 3,
        "coverage@1": 3 / 6,  # {1, 3, 2}
        "coverage@3": 4 / 6,  # {0, 1, 2, 3}
        "n_cases": 3.0,
    }
    assert res.keys() == expected.keys()
    for key, value in expected.items():
        assert res[key] == pytest.approx(value), key
    # Batching: 3 cases at batch_size 2 -> two model calls of 2 and 1 queries.
    assert [len(b) for b in model.batches] == [2, 1]


def test_metrics_with_seen_items_kept() -> None:
    ev = Evaluator(EvalConfig(ks=(1, 3), metrics=("hr", "mrr", "ndcg"), exclude_seen=False))
    model = _model()
    assert ev.rank(model, _cases()).tolist() == [[0, 1, 2], [5, 4, 3], [2, 0, 1]]
    res = ev.evaluate(model, _cases())
    assert res["hr@1"] == 0
    assert res["hr@3"] == 1
    assert res["mrr@3"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3)
    assert res["ndcg@3"] == pytest.approx((1 / L2(4) + 1 / L2(4) + (1 / L2(3)) / (1 + 1 / L2(3))) / 3)
    assert res["coverage@3"] == pytest.approx(6 / 6)


def test_short_rankings_are_padded_with_minus_one() -> None:
    # k = 5 but case 1 excludes 2 of 6 items -> only 4 real items; the 5th slot is -1 and never a hit.
    ev = Evaluator(EvalConfig(ks=(5,), metrics=("precision", "hr"), exclude_seen=True))
    model = _model()
    ranked = ev.rank(model, _cases())
    assert ranked[1].tolist() == [3, 2, 1, 0, -1]
    res = ev.evaluate(model, _cases())
    assert res["precision@5"] == pytest.approx((1 / 5 + 1 / 5 + 2 / 5) / 3)
    assert res["coverage@5"] == pytest.approx(6 / 6)


def test_k_larger_than_catalogue() -> None:
    res = Evaluator(EvalConfig(ks=(10,), metrics=("hr", "precision"))).evaluate(_model(), _cases())
    assert res["hr@10"] == 1
    assert res["precision@10"] == pytest.approx((1 / 10 + 1 / 10 + 2 / 10) / 3)


def test_empty_eval_set() -> None:
    empty = _cases().take([])
    res = Evaluator(EvalConfig(ks=(3,), metrics=("hr", "ndcg"))).evaluate(_model(), empty)
    assert res == {"hr@3": 0.0, "ndcg@3": 0.0, "coverage@3": 0.0, "n_cases": 0.0}


def test_unknown_metric_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown metrics \\['ndgc'\\]"):
        Evaluator(EvalConfig(metrics=("ndgc",)))


def test_evaluator_on_a_leave_one_out_split() -> None:
    # users 0 and 1 each with 3 events; the model ranks by SCORES rows 0 and 1.
    inter = pd.DataFrame(
        {
            "user_id": ["0", "0", "0", "1", "1", "1"],
            "item_id": ["0", "1", "3", "5", "4", "2"],
            "timestamp": [1, 2, 3, 1, 2, 3],
        }
    )
    items = pd.DataFrame({"item_id": [str(i) for i in range(6)]})
    split = leave_one_out(Dataset.from_frames(inter, items=items))
    model = FixedScores().fit(split.train)
    ev = Evaluator(EvalConfig(ks=(2,), metrics=("hr", "mrr")))
    # test case u0: history {0, 1}, target 3 -> ranking 2 3 -> rank 2
    # test case u1: history {5, 4}, target 2 -> ranking 3 2 -> rank 2
    res = ev.evaluate(model, split.test)
    assert res["hr@2"] == 1
    assert res["mrr@2"] == pytest.approx(1 / 2)
    # valid case u0: history {0}, target 1 -> rank 1; u1: history {5}, target 4 -> rank 1
    assert ev.evaluate(model, split.valid)["mrr@2"] == 1
