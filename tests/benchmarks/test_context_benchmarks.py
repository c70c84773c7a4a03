"""The protocol code of benchmarks/frappe_bars.py and benchmarks/context_ablation.py on tiny data:
BARS instances (negatives in the same context, never an item the pair used; 7:2:1), the context swap
(a derangement) and the top-10 change count."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.data.splits import leave_one_out


@pytest.fixture(scope="module")
def bars(load_bench):
    return load_bench("frappe_bars")


@pytest.fixture(scope="module")
def ablation(load_bench):
    return load_bench("context_ablation")


def tiny_frappe(bars) -> Dataset:
    rng = np.random.default_rng(0)
    rows = [{"user_id": f"u{u}", "item_id": f"i{rng.integers(12)}",
             **{c: f"{c}{rng.integers(2)}" for c in bars.CONTEXT}} for u in range(8) for _ in range(10)]
    schema = DatasetSchema(context=tuple(ContextField(name=c) for c in bars.CONTEXT), has_timestamps=False)
    items = pd.DataFrame({"item_id": [f"i{j}" for j in range(12)]})
    return Dataset.from_frames(pd.DataFrame(rows), items=items, schema=schema, name="tiny")


def test_bars_instances(bars) -> None:
    data = tiny_frappe(bars)
    t = bars.build_instances(data, seed=1)
    n = data.n_events
    assert len(t) == 3 * n and (t["label"] == 1).sum() == n
    sizes = t["part"].value_counts()
    assert sizes["test"] == int(3 * n * 0.1) and sizes["valid"] == round(3 * n * 0.2)
    inter = data.interactions
    used = {tuple(r) for r in inter[["user_id", *bars.CONTEXT, "item_id"]].astype(str).itertuples(index=False)}
    for _, r in t[t["label"] == 0].iterrows():
        src = inter.iloc[r["row"]]
        assert all(r[c] == src[c] for c in ["user_id", *bars.CONTEXT])  # same user and context
        assert (r["user_id"], *(r[c] for c in bars.CONTEXT), r["item_id"]) not in used
    assert bars.build_instances(data, seed=1).equals(t)


def test_context_swap_and_top10_change(ablation) -> None:
    rows = [{"user_id": f"u{u}", "item_id": f"i{(u + k) % 6}", "timestamp": float(k), "device": f"d{u}"}
            for u in range(5) for k in range(4)]
    data = Dataset.from_frames(pd.DataFrame(rows), schema=DatasetSchema(context=(ContextField(name="device"),)))
    test = leave_one_out(data).test
    alt = ablation.swapped(test, "tiny", seed=0)
    assert all(a != b for a, b in zip(alt.contexts, test.contexts, strict=True))  # nobody keeps their own
    assert sorted(c["device"] for c in alt.contexts) == sorted(c["device"] for c in test.contexts)
    ml = ablation.swapped(test, "ml-100k", seed=0)
    np.testing.assert_array_equal(ml.timestamps, test.timestamps + 12 * 3600)
    a = np.arange(20).reshape(2, 10)
    b = a.copy()
    b[1, [0, 3]] = [50, 51]
    assert ablation.top10_change(a, b) == {"users": 2, "users_changed": 1, "share_changed": 0.5, "mean_items_changed": 1.0}


def test_context_topk_overrides_and_anonymous_cases(load_bench) -> None:
    topk = load_bench("context_topk")
    base = {"d_model": 64, "train": {"lr": 1e-3, "max_epochs": 60}}
    got = topk.apply_overrides(base, ["train.max_epochs=10", "context_head=false", "context.fields=[\"a\"]", "name=x"])
    assert got == {"d_model": 64, "train": {"lr": 1e-3, "max_epochs": 10}, "context_head": False,
                   "context": {"fields": ["a"]}, "name": "x"}
    assert base["train"]["max_epochs"] == 60  # the base config is not modified
    with pytest.raises(SystemExit, match="key=value"):
        topk.apply_overrides(base, ["max_epochs"])
    rows = [{"user_id": f"u{u}", "item_id": f"i{(u + k) % 6}", "timestamp": float(k), "device": f"d{u}"}
            for u in range(5) for k in range(4)]
    data = Dataset.from_frames(pd.DataFrame(rows), schema=DatasetSchema(context=(ContextField(name="device"),)))
    test = leave_one_out(data).test
    anon = topk.anonymous(test)
    assert (anon.users == -1).all() and all(len(h) == 0 for h in anon.histories) and anon.history_rows is None
    assert anon.contexts == test.contexts and anon.targets == test.targets
