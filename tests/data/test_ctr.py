"""The CTR protocol (ctxrec.data.ctr) on a hand-made log: positives, same-context negatives that the
(user, context) pair never used, the 7:2:1 cut, determinism, ``exclude_item``, the training positives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.ctr import ctr_split
from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.errors import DataError

ITEMS = [f"i{j}" for j in range(6)]
# (user, device, item): u0 on the phone used i0..i3, so its only possible negatives are i4 and i5.
EVENTS = [("u0", "phone", "i0"), ("u0", "phone", "i1"), ("u0", "phone", "i2"), ("u0", "phone", "i3"),
          ("u0", "tv", "i0"), ("u1", "phone", "i4"), ("u1", "tv", "i5"), ("u1", "tv", "i1"),
          ("u2", "phone", "i2"), ("u2", "tv", "i3")]


def tiny(events: list[tuple[str, str, str]] = EVENTS, context: bool = True) -> Dataset:
    frame = pd.DataFrame(events, columns=["user_id", "device", "item_id"]).assign(timestamp=np.arange(len(events)))
    schema = DatasetSchema(context=(ContextField(name="device"),) if context else ())
    return Dataset.from_frames(frame, items=pd.DataFrame({"item_id": ITEMS}), schema=schema, name="tiny")


def test_every_event_is_a_positive_with_two_unused_same_context_negatives() -> None:
    data = tiny()
    sp = ctr_split(data, seed=1)
    table = pd.concat([sp.train, sp.valid, sp.test], ignore_index=True)
    inter = data.interactions
    pos, neg = table[table["label"] == 1.0], table[table["label"] == 0.0]
    assert sorted(pos["row"]) == list(range(10)) and len(neg) == 20  # 10 positives, 2 negatives each
    for _, r in pos.iterrows():  # a positive is its own log row
        src = inter.iloc[r["row"]]
        assert (r["user_id"], r["device"], r["item_id"]) == (src["user_id"], src["device"], src["item_id"])
    used = {(u, d, i) for u, d, i in EVENTS}
    for row, group in neg.groupby("row"):
        src = inter.iloc[row]
        assert set(group["user_id"]) == {src["user_id"]} and set(group["device"]) == {src["device"]}
        assert group["item_id"].nunique() == 2  # without replacement per positive
        assert not any((src["user_id"], src["device"], i) in used for i in group["item_id"])
    u0_phone = neg[(neg["user_id"] == "u0") & (neg["device"] == "phone")]
    assert set(u0_phone["item_id"]) == {"i4", "i5"} and len(u0_phone) == 8  # the only unused items, for all 4 rows


def test_parts_are_cut_7_2_1_and_the_split_is_seeded() -> None:
    sp = ctr_split(tiny(), seed=3)
    assert (len(sp.train), len(sp.valid), len(sp.test)) == (21, 6, 3)  # 30 instances: test int(3.0), valid round(6.0)
    again = ctr_split(tiny(), seed=3)
    for a, b in ((sp.train, again.train), (sp.valid, again.valid), (sp.test, again.test)):
        pd.testing.assert_frame_equal(a, b)
    other = ctr_split(tiny(), seed=4)
    assert not other.train.equals(sp.train)
    assert list(sp.test.columns) == ["user_id", "device", "item_id", "label", "row"]
    assert sp.describe() == ("ctr: every event a positive, 2 same-context negatives per positive, random 7:2:1 (seed 3)")


def test_train_rows_exclude_their_own_event_and_the_data_is_the_training_positives() -> None:
    data = tiny()
    sp = ctr_split(data, seed=1)
    assert "exclude_item" in sp.train.columns and "exclude_item" not in sp.valid.columns
    own = data.interactions["item_id"].to_numpy()
    np.testing.assert_array_equal(sp.train["exclude_item"].to_numpy(), own[sp.train["row"].to_numpy()])
    rows = sorted(sp.train.loc[sp.train["label"] == 1.0, "row"])
    kept = data.interactions.iloc[rows].reset_index(drop=True)
    pd.testing.assert_frame_equal(sp.data.interactions, kept)
    assert sp.data.item_vocab is data.item_vocab and sp.data.name == "tiny/ctr-train"


def test_more_negatives_per_positive() -> None:
    sp = ctr_split(tiny(), seed=0, n_neg=1)
    assert len(sp.train) + len(sp.valid) + len(sp.test) == 20 and sp.n_neg == 1


def test_clear_errors() -> None:
    with pytest.raises(DataError, match=r"dataset 'tiny' has no context fields.*--metric ndcg@10"):
        ctr_split(tiny(context=False))
    crowded = [*EVENTS, ("u0", "phone", "i4")]  # u0 on the phone used 5 of the 6 items: one left, 2 needed
    with pytest.raises(DataError, match=r"pair 'u0\|phone' used 5 of the 6 catalogue items.*n_neg=2.*lower n_neg"):
        ctr_split(tiny(crowded))
    ok = ctr_split(tiny(crowded), n_neg=1)  # 22 instances: test int(2.2), valid round(4.4), the rest train
    assert (len(ok.train), len(ok.valid), len(ok.test)) == (16, 4, 2)
    with pytest.raises(DataError, match="n_neg must be >= 1"):
        ctr_split(tiny(), n_neg=0)


@pytest.mark.data
def test_frappe_has_the_bars_sizes(data_dir: Path) -> None:
    from ctxrec.data.datasets import load_dataset

    data = load_dataset("frappe", str(data_dir))
    sp = ctr_split(data, seed=2026)
    assert (len(sp.train), len(sp.valid), len(sp.test)) == (202_027, 57_722, 28_860)
    assert sp.data.n_events == 67_299 and int(sp.train["label"].sum()) == 67_299
