"""leave_one_out and temporal splits on a small hand-built log: exact rows, targets and histories."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.dataset import Columns, ContextField, Dataset, DatasetSchema
from ctxrec.data.splits import (
    EvalSet,
    Split,
    leave_one_out,
    make_split,
    random_holdout,
    target_support,
    temporal,
)
from ctxrec.errors import DataError

# Events per user (item@time, device). User ids sort naturally as 1, 2, 3, 10 -> dense 0, 1, 2, 3,
# while the frame sorts them as strings ("1", "10", "2", "3"): the splits must use dense order.
#   "1":  a@10 m, b@20 d, c@30 t, e@32 m, d@40 d     (5 events)
#   "2":  b@15 m, a@25 m, c@38 t                    (3 events)
#   "3":  d@1 d, e@2 d                               (2 events: too few for an eval case)
#   "10": c@5 t, a@35 m, b@45 d                     (3 events)
# Catalogue a..f (f has no events) -> dense 0..5.
EVENTS = [
    ("10", "b", 45, "desktop"),
    ("1", "c", 30, "tv"),
    ("2", "b", 15, "mobile"),
    ("1", "a", 10, "mobile"),
    ("3", "e", 2, "desktop"),
    ("1", "d", 40, "desktop"),
    ("10", "c", 5, "tv"),
    ("2", "c", 38, "tv"),
    ("1", "e", 32, "mobile"),
    ("3", "d", 1, "desktop"),
    ("10", "a", 35, "mobile"),
    ("2", "a", 25, "mobile"),
    ("1", "b", 20, "desktop"),
]
A, B, C, D, E = 0, 1, 2, 3, 4


def _data() -> Dataset:
    inter = pd.DataFrame(EVENTS, columns=["user_id", "item_id", "timestamp", "device"])
    items = pd.DataFrame({"item_id": list("abcdef"), "title": list("ABCDEF")})
    schema = DatasetSchema(context=(ContextField(name="device"),), item_text_fields=("title",))
    return Dataset.from_frames(inter, items=items, schema=schema, name="toy")


def _rows(train: Dataset) -> list[tuple[str, str, float]]:
    df = train.interactions
    return list(zip(df[Columns.USER], df[Columns.ITEM], df[Columns.TIME].astype(float), strict=True))


def _ints(arrays: list[np.ndarray]) -> list[list[int]]:
    return [[int(x) for x in a] for a in arrays]


def _floats(arrays: list[np.ndarray]) -> list[list[float]]:
    return [[float(x) for x in a] for a in arrays]


def test_toy_dataset_layout() -> None:
    data = _data()
    assert data.user_vocab.ids == ["1", "2", "3", "10"]
    assert data.item_vocab.ids == list("abcdef")
    assert [s.tolist() for s in data.sequences()] == [[A, B, C, E, D], [B, A, C], [D, E], [C, A, B]]


# ----------------------------------------------------------------------------- leave-one-out
def test_leave_one_out_exact() -> None:
    split = leave_one_out(_data())
    assert split.name == "leave-one-out"
    # Last two events of every user with >= 3 events leave train; user "3" keeps both.
    assert _rows(split.train) == [
        ("1", "a", 10.0), ("1", "b", 20.0), ("1", "c", 30.0),
        ("10", "c", 5.0),
        ("2", "b", 15.0),
        ("3", "d", 1.0), ("3", "e", 2.0),
    ]  # fmt: skip
    assert split.train.item_idx.tolist() == [A, B, C, C, B, D, E]
    assert split.train.user_idx.tolist() == [0, 0, 0, 3, 1, 2, 2]

    v, t = split.valid, split.test
    assert v.users.tolist() == [0, 1, 3] and t.users.tolist() == [0, 1, 3]
    assert _ints(v.targets) == [[E], [A], [A]]
    assert _ints(v.histories) == [[A, B, C], [B], [C]]
    assert _floats(v.history_times) == [[10, 20, 30], [15], [5]]
    assert v.timestamps.tolist() == [32, 25, 35]
    assert v.contexts == [{"device": "mobile"}, {"device": "mobile"}, {"device": "mobile"}]

    assert _ints(t.targets) == [[D], [C], [B]]
    assert _ints(t.histories) == [[A, B, C, E], [B, A], [C, A]]
    assert _floats(t.history_times) == [[10, 20, 30, 32], [15, 25], [5, 35]]
    assert t.timestamps.tolist() == [40, 38, 45]
    assert t.contexts == [{"device": "desktop"}, {"device": "tv"}, {"device": "desktop"}]


def test_leave_one_out_min_events() -> None:
    split = leave_one_out(_data(), min_events=4)  # only user "1" qualifies
    assert split.test.users.tolist() == [0]
    assert split.train.n_events == 13 - 2
    with pytest.raises(DataError, match="no user has 6 or more events"):
        leave_one_out(_data(), min_events=6)
    # min_events=2: users with 2 events get a case with an empty validation history.
    two = leave_one_out(_data(), min_events=2)
    assert two.valid.users.tolist() == [0, 1, 2, 3]
    assert _ints(two.valid.histories)[2] == [] and _ints(two.valid.targets)[2] == [D]
    assert _ints(two.test.histories)[2] == [D] and _ints(two.test.targets)[2] == [E]
    # A single event cannot be both targets (it used to yield an empty target array).
    with pytest.raises(DataError, match="min_events >= 2"):
        leave_one_out(_data(), min_events=1)


def test_leave_one_out_without_timestamps_uses_row_order() -> None:
    inter = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["x", "y", "z", "w"]})
    split = leave_one_out(Dataset.from_frames(inter))
    assert split.train.interactions[Columns.ITEM].tolist() == ["x", "y"]
    assert split.test.targets[0].tolist() == [split.train.item_vocab.index("w")]
    assert np.isnan(split.test.timestamps[0])


def test_leave_one_out_timestamp_ties_keep_input_order() -> None:
    inter = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["x", "q", "p", "y"], "timestamp": [1, 5, 5, 2]})
    split = leave_one_out(Dataset.from_frames(inter))
    vocab = split.train.item_vocab
    assert split.valid.targets[0].tolist() == [vocab.index("q")]
    assert split.test.targets[0].tolist() == [vocab.index("p")]


# ----------------------------------------------------------------------------- temporal
# 13 timestamps sorted: 1 2 5 10 15 20 25 | 30 32 35 | 38 40 45. With valid_frac = 3/12 and
# test_frac = 2.5/12 the quantile cut points fall mid-gap: t_valid = 27.5, t_test = 36.5.
FRACS = {"valid_frac": 3 / 12, "test_frac": 2.5 / 12}


def test_temporal_exact() -> None:
    split = temporal(_data(), **FRACS)
    assert split.name == "temporal"
    assert _rows(split.train) == [
        ("1", "a", 10.0), ("1", "b", 20.0),
        ("10", "c", 5.0),
        ("2", "b", 15.0), ("2", "a", 25.0),
        ("3", "d", 1.0), ("3", "e", 2.0),
    ]  # fmt: skip

    v = split.valid  # window [27.5, 36.5)
    assert v.users.tolist() == [0, 3]
    assert _ints(v.targets) == [[C, E], [A]]  # user "1" has two events in the window
    assert _ints(v.histories) == [[A, B], [C]]
    assert _floats(v.history_times) == [[10, 20], [5]]
    assert v.timestamps.tolist() == [30, 35]  # time and context of the first event in the window
    assert v.contexts == [{"device": "tv"}, {"device": "mobile"}]

    t = split.test  # window [36.5, inf); history = everything before 36.5 (validation events too)
    assert t.users.tolist() == [0, 1, 3]
    assert _ints(t.targets) == [[D], [C], [B]]
    assert _ints(t.histories) == [[A, B, C, E], [B, A], [C, A]]
    assert t.timestamps.tolist() == [40, 38, 45]
    assert t.contexts == [{"device": "desktop"}, {"device": "tv"}, {"device": "desktop"}]


def test_temporal_targets_are_unique_and_sorted() -> None:
    inter = pd.DataFrame(
        {"user_id": ["u"] * 6, "item_id": ["a", "b", "c", "c", "b", "c"], "timestamp": [1, 2, 3, 4, 9, 10]}
    )
    split = temporal(Dataset.from_frames(inter), valid_frac=0.2, test_frac=0.3)
    vocab = split.train.item_vocab
    assert split.test.targets[0].tolist() == sorted({vocab.index("b"), vocab.index("c")})


def test_temporal_requires_timestamps_on_every_event() -> None:
    no_time = Dataset.from_frames(pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"]}), name="nt")
    with pytest.raises(DataError, match=r"3 events without a timestamp.*leave-one-out"):
        temporal(no_time)
    partial = Dataset.from_frames(
        pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["a", "b", "c"], "timestamp": [1.0, np.nan, 3.0]})
    )
    with pytest.raises(DataError, match="1 events without a timestamp"):
        temporal(partial)


@pytest.mark.parametrize(("valid_frac", "test_frac"), [(0.0, 0.1), (0.1, 0.0), (0.5, 0.5), (1.2, 0.1), (-0.1, 0.2)])
def test_temporal_rejects_bad_fractions(valid_frac: float, test_frac: float) -> None:
    with pytest.raises(DataError, match="fractions"):
        temporal(_data(), valid_frac=valid_frac, test_frac=test_frac)


# ----------------------------------------------------------------------------- shared properties
def _same(a: Split, b: Split) -> None:
    pd.testing.assert_frame_equal(a.train.interactions, b.train.interactions)
    for x, y in ((a.valid, b.valid), (a.test, b.test)):
        assert x.users.tolist() == y.users.tolist()
        assert _ints(x.targets) == _ints(y.targets)
        assert _ints(x.histories) == _ints(y.histories)
        assert x.contexts == y.contexts
        np.testing.assert_array_equal(x.timestamps, y.timestamps)


@pytest.mark.parametrize("name", ["leave-one-out", "temporal"])
def test_splits_are_deterministic_and_keep_vocabularies(name: str) -> None:
    data = _data()
    a, b = make_split(data, name), make_split(_data(), name)
    _same(a, b)
    assert a.train.item_vocab is data.item_vocab and a.train.user_vocab is data.user_vocab
    assert a.train.n_items == 6  # the catalogue (with the event-less item f) survives the split


def _assert_no_leakage(split: Split, data: Dataset) -> None:
    for ev in (split.valid, split.test):
        for hist_t, ts in zip(ev.history_times, ev.timestamps, strict=True):
            assert (hist_t < ts).all()
    # No train event of a user is at or after that user's validation target.
    train = split.train
    first_valid = dict(zip(split.valid.users.tolist(), split.valid.timestamps.tolist(), strict=True))
    times = train.interactions[Columns.TIME].to_numpy()
    for u, t in zip(train.user_idx.tolist(), times.tolist(), strict=True):
        if u in first_valid:
            assert t < first_valid[u]


@pytest.mark.parametrize("name", ["leave-one-out", "temporal"])
def test_no_future_leakage(name: str) -> None:
    data = _data()
    _assert_no_leakage(make_split(data, name), data)


def test_no_future_leakage_on_simulated_data() -> None:
    from ctxrec.data.synthetic import SimulatorConfig, simulate

    data = simulate(SimulatorConfig(n_users=60, n_items=80, events_per_user=12, seed=3))
    for split in (leave_one_out(data), temporal(data)):
        _assert_no_leakage(split, data)
        assert len(split.test) > 0
    t = temporal(data)
    assert t.train.interactions[Columns.TIME].max() < t.valid.timestamps.min()
    assert t.valid.timestamps.max() < t.test.timestamps.min()


def test_evalset_take() -> None:
    ev: EvalSet = leave_one_out(_data()).test
    sub = ev.take([2, 0])
    assert sub.users.tolist() == [3, 0]
    assert _ints(sub.targets) == [[B], [D]]
    assert len(sub) == 2 and len(ev.take([])) == 0


def test_unknown_split_name() -> None:
    with pytest.raises(DataError, match=r"unknown split 'shuffled'.*leave-one-out.*random"):
        make_split(_data(), "shuffled")


# ----------------------------------------------------------------------------- event order
def _timeless(order: Literal["time", "file"], timestamps: list[float] | None = None) -> Dataset:
    inter = pd.DataFrame({"user_id": ["u"] * 4 + ["v"] * 3, "item_id": list("xyzwxyq")})
    if timestamps is not None:
        inter["timestamp"] = timestamps
    return Dataset.from_frames(inter, schema=DatasetSchema(order=order, has_timestamps=timestamps is not None),
                               name="log")


@pytest.mark.parametrize(("timestamps", "why"), [
    (None, "the log has no timestamps"),
    ([1, 2, 3, np.nan, 5, 6, 7], "1 of 7 events have no timestamp, so events are kept in file order"),
    ([9, 9, 9, 9, 5, 6, 7], "1 of 2 users with 3+ events have one timestamp for all their events (e.g. user 'u')"),
])
def test_leave_one_out_refuses_file_order_unless_the_data_vouches_for_it(timestamps: list[float] | None,
                                                                          why: str) -> None:
    with pytest.raises(DataError) as info:
        leave_one_out(_timeless("time", timestamps))
    msg = str(info.value)
    assert why in msg and 'order = "file"' in msg and 'split = "random"' in msg and "'log'" in msg
    split = leave_one_out(_timeless("file", timestamps))  # the file's order is the event order
    assert split.test.targets[0].tolist() == [split.train.item_vocab.index("w")]
    assert len(random_holdout(_timeless("time", timestamps)).test) == 2


def test_leave_one_out_accepts_a_tie_at_the_end_when_timestamps_vary() -> None:
    split = leave_one_out(_timeless("time", [1, 2, 3, 3, 5, 6, 7]))  # u's last two tie; file order breaks it
    assert split.test.targets[0].tolist() == [split.train.item_vocab.index("w")]


def test_mapping_without_timestamps_needs_order_file(tmp_path: Path) -> None:
    from ctxrec.data.readers import read_dataset

    base = tmp_path
    (base / "plays.csv").write_text("user,artist\nu,a1\nu,a2\nu,a3\nv,a1\nv,a3\nv,a4\n")
    mapping = {"interactions": "plays.csv", "user_column": "user", "item_column": "artist"}
    with pytest.raises(DataError, match=r'no timestamps.*order = "file".*split = "random"'):
        make_split(read_dataset(mapping, base_dir=base), "leave-one-out")
    assert len(make_split(read_dataset({**mapping, "order": "file"}, base_dir=base), "leave-one-out").test) == 2
    assert len(make_split(read_dataset(mapping, base_dir=base), "random").test) == 2


# ----------------------------------------------------------------------------- random holdout
def test_random_holdout_partitions_each_users_events() -> None:
    data = _data()
    split = random_holdout(data, seed=7)
    assert split.name == "random" and split.train.n_events == 13 - 2 * 3  # users 1, 2, 10 each lose two
    seqs = data.sequences()
    train_seqs = split.train.sequences()
    for k, u in enumerate(split.test.users.tolist()):
        (test_item,) = split.test.targets[k].tolist()
        (valid_item,) = split.valid.targets[k].tolist()
        assert split.valid.users[k] == u
        full = seqs[u].tolist()
        # histories keep event order: the test history is everything but the test event, the validation
        # history everything but both held-out events (= the user's train events).
        rest = full.copy()
        rest.remove(test_item)
        assert split.test.histories[k].tolist() == rest
        rest.remove(valid_item)
        assert split.valid.histories[k].tolist() == rest == train_seqs[u].tolist()
        assert split.test.contexts[k]["device"] in {"mobile", "desktop", "tv"}
    assert train_seqs[2].tolist() == [D, E]  # user "3" has too few events: all in train


def test_random_holdout_is_seeded_per_user() -> None:
    a, b = random_holdout(_data(), seed=1), random_holdout(_data(), seed=1)
    _same(a, b)
    seeds = {tuple(_ints(random_holdout(_data(), seed=s).test.targets)[0]) for s in range(12)}
    assert len(seeds) > 1  # the seed matters
    # Dropping user "2" does not move the other users' held-out events.
    inter = pd.DataFrame(EVENTS, columns=["user_id", "item_id", "timestamp", "device"])
    fewer = Dataset.from_frames(inter[inter.user_id != "2"], items=pd.DataFrame({"item_id": list("abcdef")}))
    c = random_holdout(fewer, seed=1)
    assert _ints(c.test.targets) == [_ints(a.test.targets)[0], _ints(a.test.targets)[2]]


# ----------------------------------------------------------------------------- target support
def test_target_support_counts_targets_no_other_user_has() -> None:
    #   u1: a b x c -> test c; c is in train for u2 and u3: supported
    #   u2: a c y d -> test d; nobody has d in train
    #   u3: b c z e -> test e; nobody has e
    #   u4: f g h f -> test f; only u4 itself has f in train, which does not count
    seqs = {"u1": "abxc", "u2": "acyd", "u3": "bcze", "u4": "fghf"}
    rows = [(u, i, t) for u, s in seqs.items() for t, i in enumerate(s)]
    data = Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    support = target_support(leave_one_out(data))
    assert (support.cases, support.unsupported, support.share) == (4, 3, 0.75)
    assert support.warning is not None and support.warning.startswith("75% of the test targets (3 of 4)")
    assert 'split = "random"' in support.warning
    assert target_support(leave_one_out(data), warn_above=0.8).warning is None
