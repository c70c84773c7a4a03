"""PopularityRecommender: the contract plus hand-computed counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract import DAY, Checkerboard, RecommenderContract

from ctxrec.config import from_dict
from ctxrec.data.dataset import Dataset
from ctxrec.errors import ConfigError
from ctxrec.models import build_model
from ctxrec.models.base import RecQuery
from ctxrec.models.popularity import PopularityConfig, PopularityRecommender


class TestPopularityContract(RecommenderContract):
    learns_groups = False  # same ranking for everyone by design
    cold_start_is_popularity = True
    batch_rtol = 0.0

    def make_model(self) -> PopularityRecommender:
        return PopularityRecommender(PopularityConfig())


def _toy(*, timestamps: bool = True, weights: bool = False) -> Dataset:
    """x: 3 events, y: 2, z: 1, w: catalogue only. Times: x's events are old, y's and z's recent."""
    rows = [
        ("u1", "x", 0 * DAY, 1.0),
        ("u2", "x", 1 * DAY, 1.0),
        ("u3", "x", 2 * DAY, 1.0),
        ("u1", "y", 9 * DAY, 5.0),
        ("u2", "y", 10 * DAY, 5.0),
        ("u3", "z", 10 * DAY, 2.0),
    ]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "weight"])
    if not timestamps:
        df = df.drop(columns="timestamp")
    if not weights:
        df = df.drop(columns="weight")
    return Dataset.from_frames(df, items=pd.DataFrame({"item_id": ["w", "x", "y", "z"]}))


def _ranking(
    model: PopularityRecommender, query: RecQuery | None = None, **kw: object
) -> tuple[list[str], list[float]]:
    (rec,) = model.recommend([query or RecQuery()], k=10, exclude_seen=False, **kw)  # type: ignore[arg-type]
    return rec.item_ids, rec.scores.tolist()


def test_order_equals_hand_counts() -> None:
    model = PopularityRecommender().fit(_toy())
    assert _ranking(model) == (["x", "y", "z", "w"], [3.0, 2.0, 1.0, 0.0])
    np.testing.assert_array_equal(model.popularity, [0.0, 3.0, 2.0, 1.0])  # catalogue order w, x, y, z
    assert model.fit_info["n_events_counted"] == 6


def test_same_ranking_for_every_user_and_seen_items_dropped() -> None:
    model = PopularityRecommender().fit(_toy())
    for user in ("u1", "u2", "u3", "stranger"):
        assert _ranking(model, RecQuery(user_id=user))[0] == ["x", "y", "z", "w"]
    (rec,) = model.recommend([RecQuery(user_id="u3")], k=10)  # u3 saw x and z
    assert rec.item_ids == ["y", "w"]


def test_ties_break_by_catalogue_order() -> None:
    df = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["b", "c", "c", "b"]})
    data = Dataset.from_frames(df, items=pd.DataFrame({"item_id": ["c", "a", "b"]}))
    model = PopularityRecommender().fit(data)
    assert _ranking(model)[0] == ["c", "b", "a"]


def test_weighting_weight_sums_the_weight_column() -> None:
    model = PopularityRecommender(PopularityConfig(weighting="weight")).fit(_toy(weights=True))
    assert _ranking(model) == (["y", "x", "z", "w"], [10.0, 3.0, 2.0, 0.0])


def test_window_counts_only_recent_events() -> None:
    model = PopularityRecommender(PopularityConfig(window_days=2.0)).fit(_toy())
    assert _ranking(model) == (["y", "z", "w", "x"], [2.0, 1.0, 0.0, 0.0])
    assert model.fit_info["window_applied"] is True
    assert model.fit_info["window_end"] - model.fit_info["window_start"] == pytest.approx(2 * DAY)
    assert model.fit_info["n_events_counted"] == 3


def test_window_is_ignored_without_timestamps() -> None:
    model = PopularityRecommender(PopularityConfig(window_days=2.0)).fit(_toy(timestamps=False))
    assert _ranking(model)[0] == ["x", "y", "z", "w"]
    assert model.fit_info["window_applied"] is False


def test_window_drops_events_of_unknown_time_when_others_have_one() -> None:
    df = _toy().interactions[["user_id", "item_id", "timestamp"]].copy()
    df.loc[df["item_id"] == "z", "timestamp"] = np.nan
    model = PopularityRecommender(PopularityConfig(window_days=2.0)).fit(
        Dataset.from_frames(df, items=pd.DataFrame({"item_id": ["w", "x", "y", "z"]}))
    )
    assert _ranking(model) == (["y", "w", "x", "z"], [2.0, 0.0, 0.0, 0.0])


@pytest.mark.parametrize("bad", [{"window_days": 0}, {"window_days": -1.5}, {"weighting": "clicks"}])
def test_bad_config_is_a_config_error(bad: dict[str, object]) -> None:
    key = next(iter(bad))
    with pytest.raises(ConfigError, match=key):
        from_dict(PopularityConfig, bad)


def test_build_model_and_save_load(tmp_path: Path) -> None:
    model = build_model("popularity", {"window_days": 2.0})
    assert isinstance(model, PopularityRecommender) and model.config == PopularityConfig(window_days=2.0)
    model.fit(_toy())
    model.save(tmp_path / "pop")
    loaded = PopularityRecommender.load(tmp_path / "pop")
    np.testing.assert_array_equal(loaded.popularity, model.popularity)
    assert loaded.fit_info == model.fit_info


def test_checkerboard_counts(shared_board: Checkerboard) -> None:
    model = PopularityRecommender().fit(shared_board.data)
    # Each user withholds one of its group's 5 items: a (10 users) -> 8 events per item, b (15) -> 12.
    assert model.popularity.tolist() == [8.0] * 5 + [12.0] * 5 + [0.0]
    (rec,) = model.recommend([RecQuery()], k=6)
    assert rec.item_ids == shared_board.group_items["b"] + shared_board.group_items["a"][:1]
