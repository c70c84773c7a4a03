"""The simulator: deterministic, fast, and its planted effects are visible in the generated log."""

from __future__ import annotations

import time
from functools import cache

import numpy as np
import pandas as pd
import pytest

from ctxrec.config import from_dict, to_dict
from ctxrec.data.dataset import Columns, Dataset
from ctxrec.data.synthetic import (
    DAYPARTS,
    DEVICES,
    SimulatedTruth,
    SimulatorConfig,
    simulate,
    simulate_with_truth,
)
from ctxrec.errors import ConfigError


@cache
def _sim(**kw: object) -> tuple[Dataset, SimulatedTruth]:
    """Cached per config: several tests read the same simulated log (treat it as read-only)."""
    base: dict[str, object] = {"n_users": 600, "n_items": 300, "n_genres": 6, "events_per_user": 25, "seed": 7}
    base.update(kw)
    return simulate_with_truth(SimulatorConfig(**base))  # type: ignore[arg-type]


def _genres(data: Dataset, truth: SimulatedTruth) -> np.ndarray:
    return truth.item_genre[data.item_idx]


# ----------------------------------------------------------------------------- API, determinism, counts
def test_same_seed_gives_identical_frames_and_truth() -> None:
    cfg = SimulatorConfig(n_users=50, n_items=40, n_genres=4, seed=11)
    (a, ta), (b, tb) = simulate_with_truth(cfg), simulate_with_truth(cfg)
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.items, b.items)
    assert a.users is not None and b.users is not None
    pd.testing.assert_frame_equal(a.users, b.users)
    for name in ("item_genre", "item_popularity", "successor", "user_genre", "context_genre", "followed_successor"):
        np.testing.assert_array_equal(getattr(ta, name), getattr(tb, name))
    c = simulate(SimulatorConfig(n_users=50, n_items=40, n_genres=4, seed=12))
    assert not c.interactions[Columns.ITEM].equals(a.interactions[Columns.ITEM])


def test_catalogue_does_not_depend_on_the_number_of_users() -> None:
    small, ts = simulate_with_truth(SimulatorConfig(n_users=5, n_items=40, seed=3))
    large, tl = simulate_with_truth(SimulatorConfig(n_users=80, n_items=40, seed=3))
    pd.testing.assert_frame_equal(small.items, large.items)
    np.testing.assert_array_equal(ts.successor, tl.successor)
    np.testing.assert_array_equal(ts.context_genre, tl.context_genre)


def test_counts_schema_and_alignment() -> None:
    data, truth = _sim()
    cfg = truth.config
    assert isinstance(data, Dataset)
    assert data.n_users == cfg.n_users and data.n_items == cfg.n_items
    assert data.user_vocab.ids[:2] == ["u000", "u001"] and data.item_vocab.ids[:2] == ["i000", "i001"]
    lengths = np.bincount(data.user_idx, minlength=cfg.n_users)
    assert lengths.min() >= cfg.min_events_per_user
    assert abs(lengths.mean() - cfg.events_per_user) < 1.0
    assert data.schema.context_names == ("daypart", "device", "weather")
    assert data.schema.item_text_fields == ("title", "description")
    assert data.schema.item_attribute_fields == ("genre",)
    assert set(data.interactions["daypart"]) == set(DAYPARTS)
    assert set(data.interactions["device"]) == set(DEVICES)
    # Dense indices are the simulator's indices: truth lines up with data without any mapping.
    assert (data.items["genre"].to_numpy() == np.asarray(truth.genre_names)[truth.item_genre]).all()
    assert data.users is not None
    assert (data.users["home_device"].to_numpy() == np.asarray(DEVICES)[truth.user_device]).all()
    assert len(truth.followed_successor) == data.n_events
    texts = data.item_text()
    assert len(texts) == cfg.n_items and all(t.startswith("title: ") and "description: " in t for t in texts)


def test_min_events_and_no_repeats() -> None:
    data, _ = _sim()
    pairs = data.interactions[[Columns.USER, Columns.ITEM]]
    assert not pairs.duplicated().any()
    tiny, _ = simulate_with_truth(SimulatorConfig(n_users=30, n_items=6, n_genres=2, events_per_user=20))
    counts = np.bincount(tiny.user_idx)
    assert counts.max() == 6  # capped at the catalogue size when repeats are not allowed
    assert not tiny.interactions[[Columns.USER, Columns.ITEM]].duplicated().any()
    few = simulate(SimulatorConfig(n_users=200, n_items=50, events_per_user=1, min_events_per_user=5))
    assert np.bincount(few.user_idx).min() == 5


def test_repeats_appear_when_allowed() -> None:
    data, _ = _sim(allow_repeats=True)
    assert data.interactions[[Columns.USER, Columns.ITEM]].duplicated().any()


def test_timestamps_dayparts_and_weather() -> None:
    data, truth = _sim()
    df = data.interactions
    ts = df[Columns.TIME].to_numpy()
    same_user = data.user_idx[1:] == data.user_idx[:-1]
    assert (np.diff(ts)[same_user] > 0).all()  # strictly increasing within each user
    assert ts.min() >= truth.config.start_timestamp
    hour = pd.to_datetime(ts, unit="s", utc=True).hour.to_numpy()
    expected = np.select([hour < 6, hour < 12, hour < 18], ["night", "morning", "afternoon"], "evening")
    assert (df["daypart"].to_numpy() == expected).all()
    day = ts // 86400
    assert (df.groupby(day)["weather"].nunique() == 1).all()  # one weather per calendar day
    # Every (daypart, device) cell is populated.
    assert df.groupby(["daypart", "device"]).size().min() > 300


def test_fast_enough() -> None:
    simulate(SimulatorConfig(n_users=20))  # warm imports
    t0 = time.perf_counter()
    data = simulate(SimulatorConfig(n_users=2000, events_per_user=30))
    assert time.perf_counter() - t0 < 2.0
    assert data.n_events > 55_000


def test_config_validation_and_round_trip() -> None:
    cfg = SimulatorConfig(n_users=10, context_strength=0.0, seed=5)
    assert from_dict(SimulatorConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match=r"sequential_strength=1.5"):
        SimulatorConfig(sequential_strength=1.5)
    with pytest.raises(ConfigError, match="n_items=3 must be at least n_genres=8"):
        SimulatorConfig(n_items=3)
    with pytest.raises(ConfigError, match="text_strength"):
        from_dict(SimulatorConfig, {"text_strength": -0.1})
    with pytest.raises(ConfigError, match="unknown config key 'n_user'"):
        from_dict(SimulatorConfig, {"n_user": 3})


# ----------------------------------------------------------------------------- (a) popularity
def test_popularity_is_zipf_like() -> None:
    # With every other effect off, fresh draws are exactly the popularity distribution.
    data, truth = _sim(context_strength=0.0, user_strength=0.0, sequential_strength=0.0, allow_repeats=True)
    counts = np.bincount(data.item_idx, minlength=data.n_items)
    expected = truth.item_popularity * data.n_events
    assert np.corrcoef(counts, expected)[0, 1] > 0.99
    top = np.sort(counts)[::-1]
    assert top[: data.n_items // 10].sum() / data.n_events > 0.5  # top 10% of items carry most events
    ranks = np.argsort(np.argsort(-truth.item_popularity)) + 1
    np.testing.assert_allclose(truth.item_popularity * ranks, truth.item_popularity[ranks == 1][0])  # w ∝ 1/rank


def test_zero_alpha_gives_uniform_popularity() -> None:
    _, truth = _sim(popularity_alpha=0.0)
    np.testing.assert_allclose(truth.item_popularity, 1 / truth.config.n_items)


# ----------------------------------------------------------------------------- (b) sequence
def test_successor_structure() -> None:
    _, truth = _sim()
    succ, genre = truth.successor, truth.item_genre
    assert (genre[succ] == genre).all()
    assert (succ != np.arange(len(succ))).all()
    assert sorted(succ.tolist()) == list(range(len(succ)))  # a permutation
    for g in range(truth.config.n_genres):  # one cycle through the whole genre
        start = int(np.flatnonzero(genre == g)[0])
        seen, cur = {start}, int(succ[start])
        while cur != start:
            seen.add(cur)
            cur = int(succ[cur])
        assert len(seen) == int((genre == g).sum())


def _successor_rate(data: Dataset, truth: SimulatedTruth) -> float:
    hits = [s[1:] == truth.successor[s[:-1]] for s in data.sequences()]
    return float(np.concatenate(hits).mean())


@pytest.mark.parametrize("strength", [0.0, 0.5])
def test_successor_transition_frequency_matches_strength(strength: float) -> None:
    data, truth = _sim(sequential_strength=strength, allow_repeats=True)
    rate = _successor_rate(data, truth)
    # chance transitions add a little on top of the planted rate
    assert strength - 0.02 < rate < strength + 0.04
    not_first = np.r_[False, data.user_idx[1:] == data.user_idx[:-1]]
    assert truth.followed_successor[not_first].mean() == pytest.approx(strength, abs=0.02)
    assert not truth.followed_successor[~not_first].any()  # a first event has no predecessor
    prev = np.r_[-1, data.item_idx[:-1]]
    f = truth.followed_successor
    assert (data.item_idx[f] == truth.successor[prev[f]]).all()


def test_successor_rate_without_repeats() -> None:
    data, truth = _sim(sequential_strength=0.5)
    assert 0.4 < _successor_rate(data, truth) <= 0.5 + 0.04  # a seen successor is skipped


# ----------------------------------------------------------------------------- (c) context
def _preferred_share_ratios(data: Dataset, truth: SimulatedTruth) -> np.ndarray:
    """Per (daypart, device) cell: share of the cell's preferred genre / its share over all events."""
    g = _genres(data, truth)
    base = np.bincount(g, minlength=truth.config.n_genres) / len(g)
    df = data.interactions
    out = []
    for (dp, dv), rows in df.groupby(["daypart", "device"]).groups.items():
        pg = truth.preferred_genre(dp, dv)
        out.append((g[rows] == pg).mean() / base[pg])
    return np.array(out)


def test_context_effect_is_strong_when_switched_on() -> None:
    data, truth = _sim(context_strength=3.0, sequential_strength=0.0)
    ratios = _preferred_share_ratios(data, truth)
    assert len(ratios) == len(DAYPARTS) * len(DEVICES)
    assert ratios.min() > 2.5


def test_context_effect_survives_the_sequential_effect() -> None:
    data, truth = _sim(context_strength=3.0, sequential_strength=0.3)
    assert _preferred_share_ratios(data, truth).min() > 2.0


def test_no_context_effect_at_zero_strength() -> None:
    data, truth = _sim(context_strength=0.0, sequential_strength=0.0)
    ratios = _preferred_share_ratios(data, truth)
    assert abs(ratios.mean() - 1) < 0.08
    assert ratios.min() > 0.75 and ratios.max() < 1.25


def test_genre_shares_match_the_truth_distribution() -> None:
    # Known answer: with repeats allowed and no successors, each event's genre is drawn from
    # truth.genre_probs(user, daypart, device); compare the mean probability of the preferred genre.
    data, truth = _sim(context_strength=2.0, sequential_strength=0.0, allow_repeats=True)
    df = data.interactions
    g = _genres(data, truth)
    hit = np.empty(len(df))
    expected = np.empty(len(df))
    for (u_genre, dp, dv), rows in df.groupby([truth.user_genre[data.user_idx], "daypart", "device"]).indices.items():
        user = int(np.flatnonzero(truth.user_genre == u_genre)[0])  # any user with that latent genre
        pg = truth.preferred_genre(dp, dv)
        expected[rows] = truth.genre_probs(user, dp, dv)[pg]
        hit[rows] = g[rows] == pg
    assert hit.mean() == pytest.approx(expected.mean(), abs=0.015)


def test_users_lean_to_their_latent_genre() -> None:
    data, truth = _sim(context_strength=0.0, user_strength=2.0, sequential_strength=0.0)
    g = _genres(data, truth)
    own = (g == truth.user_genre[data.user_idx]).mean()
    base = np.bincount(g) / len(g)
    assert own > 2 * float(base.mean())


def test_truth_distributions() -> None:
    _, truth = _sim()
    p = truth.genre_probs(0, "morning", "tv")
    assert p.sum() == pytest.approx(1.0) and p.argmax() in (truth.preferred_genre("morning", "tv"), truth.user_genre[0])
    q = truth.next_item_probs(0, "morning", "tv", prev_item=5)
    assert q.sum() == pytest.approx(1.0) and (q >= 0).all()
    assert q[truth.successor[5]] >= truth.config.sequential_strength
    seen = np.array([1, 2, int(truth.successor[5])])
    r = truth.next_item_probs(0, "morning", "tv", prev_item=5, seen=seen)
    assert r.sum() == pytest.approx(1.0) and (r[seen] == 0).all()
    with pytest.raises(ValueError, match="unknown context"):
        truth.preferred_genre("noon", "tv")


# ----------------------------------------------------------------------------- (d) text
def _word_sets(data: Dataset) -> list[set[str]]:
    items = data.items.reindex(data.item_vocab.ids)
    texts = (items["title"] + " " + items["description"]).str.lower().str.replace(".", "")
    return [set(t.split()) for t in texts]


def _mean_jaccard(data: Dataset, truth: SimulatedTruth) -> tuple[float, float]:
    words = _word_sets(data)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(words), size=(2, 4000))
    keep = a != b
    pairs = zip(a[keep], b[keep], strict=True)
    jac = np.array([len(words[i] & words[j]) / len(words[i] | words[j]) for i, j in pairs])
    same = truth.item_genre[a[keep]] == truth.item_genre[b[keep]]
    return float(jac[same].mean()), float(jac[~same].mean())


def test_same_genre_items_share_more_text() -> None:
    data, truth = _sim()
    same, cross = _mean_jaccard(data, truth)
    assert same > 2 * cross
    # A genre's private words never appear in another genre's items.
    words = _word_sets(data)
    for i, ws in enumerate(words):
        for g, vocab in enumerate(truth.genre_words):
            if g != truth.item_genre[i]:
                assert not ws & set(vocab)


def test_text_says_nothing_at_zero_text_strength() -> None:
    data, truth = _sim(text_strength=0.0)
    same, cross = _mean_jaccard(data, truth)
    assert abs(same - cross) < 0.03
