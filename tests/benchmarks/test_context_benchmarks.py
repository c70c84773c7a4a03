"""The protocol code of benchmarks/context_ablation.py on tiny data: the context swap (a derangement)
and the top-10 change count. (The frappe BARS instances are ctxrec.data.ctr's: tests/data/test_ctr.py.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.data.splits import leave_one_out


@pytest.fixture(scope="module")
def ablation(load_bench):
    return load_bench("context_ablation")


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
