"""ContextPopularityRecommender: the contract plus hand-computed back-off rankings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from contract import RecommenderContract

from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.data.splits import EvalSet
from ctxrec.errors import ConfigError
from ctxrec.models import load_model
from ctxrec.models.base import RecQuery
from ctxrec.models.context_popularity import ALPHA_GRID, ContextPopularityConfig, ContextPopularityRecommender


class TestContextPopularityContract(RecommenderContract):
    learns_groups = False  # no context in the contract's checkerboard: the same ranking for everyone
    cold_start_is_popularity = True
    batch_rtol = 0.0

    def make_model(self) -> ContextPopularityRecommender:
        return ContextPopularityRecommender(ContextPopularityConfig())


def _toy() -> Dataset:
    """Field ``place`` decides the item (home -> a, work -> b); ``mood`` only splits ties.

    events (place, mood, item): home/happy a x3, home/sad a x1 + c x2, work/happy b x2, work/sad b x1,
    plus 4 x d with no context at all (d is globally the most popular item)."""
    rows = ([("home", "happy", "a")] * 3 + [("home", "sad", "a")] + [("home", "sad", "c")] * 2
            + [("work", "happy", "b")] * 2 + [("work", "sad", "b")] + [(None, None, "d")] * 4)
    df = pd.DataFrame(rows, columns=["place", "mood", "item_id"])
    df["user_id"] = [f"u{i}" for i in range(len(df))]
    schema = DatasetSchema(context=(ContextField(name="place"), ContextField(name="mood")), has_timestamps=False)
    return Dataset.from_frames(df, schema=schema, name="toy")


def _top(model: ContextPopularityRecommender, ctx: dict[str, str], k: int = 4) -> list[str]:
    return model.recommend([RecQuery(context=ctx)], k=k)[0].item_ids


SHARP = ContextPopularityConfig(alpha=0.01)  # the longest match decides, shorter ones break ties


def test_fields_ordered_by_information_and_backoff() -> None:
    m = ContextPopularityRecommender(SHARP).fit(_toy())
    assert m.fields == ["place", "mood"]  # place determines the item more than mood does
    # Full match home/sad: c (2) before a (1); ties below broken by home (a 4 > c 2) then global (d 4 > b 3).
    assert _top(m, {"place": "home", "mood": "sad"}) == ["c", "a", "d", "b"]
    assert _top(m, {"place": "home", "mood": "happy"}) == ["a", "c", "d", "b"]
    # Unknown mood: back off to place only.
    assert m.matched_levels({"place": "work", "mood": "bored"}) == 1
    assert _top(m, {"place": "work", "mood": "bored"}) == ["b", "a", "d", "c"]  # a, d tie globally: lower index first
    # Unknown place: global popularity, whatever the mood (back-off is by prefix of the field order).
    assert m.matched_levels({"place": "moon", "mood": "sad"}) == 0
    assert _top(m, {"place": "moon", "mood": "sad"}) == ["a", "d", "b", "c"]
    # No context given: matches the events that gave none (all of them d).
    assert m.matched_levels({}) == 2
    assert _top(m, {}) == ["d", "a", "b", "c"]


def test_min_support_backs_off() -> None:
    m = ContextPopularityRecommender(ContextPopularityConfig(min_support=3, alpha=0.01)).fit(_toy())
    # home/sad has 3 events (kept), work/sad 1 (dropped -> back off to work).
    assert m.matched_levels({"place": "home", "mood": "sad"}) == 2
    assert m.matched_levels({"place": "work", "mood": "sad"}) == 1


def test_scores_are_the_backoff_distribution() -> None:
    m = ContextPopularityRecommender(ContextPopularityConfig(alpha=2.0)).fit(_toy())
    s = m.score(m.encode_queries([RecQuery(context={"place": "home", "mood": "sad"})]))[0]
    # items a, b, c, d. p0 = (global + 1) / (13 + 4); p1 (home: a 4, c 2) = (c1 + 2 p0) / (6 + 2);
    # p2 (home/sad: a 1, c 2) = (c2 + 2 p1) / (3 + 2).
    p0 = (np.array([4, 3, 2, 4]) + 1) / 17
    p1 = (np.array([4, 0, 2, 0]) + 2 * p0) / 8
    p2 = (np.array([1, 0, 2, 0]) + 2 * p1) / 5
    assert m.item_vocab is not None
    np.testing.assert_allclose(s[m.item_vocab.lookup(["a", "b", "c", "d"])], p2, rtol=1e-12)
    assert s.sum() == pytest.approx(1.0)


def test_alpha_moves_the_answer_between_levels() -> None:
    home_sad = {"place": "home", "mood": "sad"}
    assert _top(ContextPopularityRecommender(SHARP).fit(_toy()), home_sad, 1) == ["c"]  # home/sad's own top
    smooth = ContextPopularityRecommender(ContextPopularityConfig(alpha=1000.0)).fit(_toy())
    assert _top(smooth, home_sad, 1) == ["a"]  # leans on home, where a leads


def _valid(target: str, data: Dataset) -> EvalSet:
    t = data.item_vocab.lookup([target])
    return EvalSet(users=np.array([-1, -1]), histories=[np.zeros(0, np.int64)] * 2,
                   history_times=[np.zeros(0)] * 2, targets=[t, t],
                   contexts=[{"place": "home", "mood": "sad"}] * 2, timestamps=np.full(2, np.nan))


# c leads home/sad (best alpha: the smallest); a leads home and overtakes c from alpha 10 on (first on ties).
@pytest.mark.parametrize(("target", "alpha"), [("c", 0.01), ("a", 10.0)])
def test_alpha_chosen_on_validation(target: str, alpha: float) -> None:
    data = _toy()
    m = ContextPopularityRecommender().fit(data, valid=_valid(target, data))
    assert m.alpha == alpha
    assert m.fit_info["alpha"] == alpha
    assert set(m.fit_info["alpha_valid_ndcg@10"]) == {str(a) for a in ALPHA_GRID}


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = ContextPopularityRecommender(ContextPopularityConfig(alpha=3.0)).fit(_toy())
    m.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, ContextPopularityRecommender)
    for ctx in ({"place": "home", "mood": "sad"}, {"place": "work"}, {}):
        assert _top(again, ctx) == _top(m, ctx)
    assert again.fields == m.fields and again.alpha == 3.0


def test_unknown_field_in_config_is_an_error() -> None:
    with pytest.raises(ConfigError, match="weather"):
        ContextPopularityRecommender(ContextPopularityConfig(fields=("weather",))).fit(_toy())
