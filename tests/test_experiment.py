"""run_experiment: evaluation follows the dataset's repeat-use default unless the config says otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from ctxrec.data.dataset import Dataset, DatasetSchema
from ctxrec.experiment import ExperimentConfig, run_experiment


def _repeat_log() -> pd.DataFrame:
    """Every user plays the same two items again and again: the next item is always one already seen."""
    rows = [{"user_id": f"u{u}", "item_id": f"i{(t + u) % 2}", "timestamp": float(t)} for u in range(12) for t in range(8)]
    rows += [{"user_id": "other", "item_id": f"i{2 + j % 2}", "timestamp": float(j)} for j in range(6)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("repeat", "override", "expect_exclude"),
                         [(True, None, False), (False, None, True), (True, True, True)])
def test_exclude_seen_defaults_to_the_dataset(tmp_path: Path, repeat: bool, override: bool | None,
                                              expect_exclude: bool) -> None:
    data = Dataset.from_frames(_repeat_log(), schema=DatasetSchema(repeat_consumption=repeat), name="repeat")
    cfg = dataclasses.replace(ExperimentConfig(dataset="repeat", model="popularity"), exclude_seen=override)
    res = run_experiment(cfg, tmp_path / "run", data=data)
    assert res["exclude_seen"] is expect_exclude
    # Keeping seen items is what makes repeat use measurable at all: excluding them scores 0 here.
    assert (res["metrics"]["hr@10"] == 0.0) is expect_exclude


def test_result_keeps_the_validation_curve(tmp_path: Path) -> None:
    """A neural model's result carries its per-epoch validation metric, so runs with different budgets
    can be compared at equal epochs from the committed JSON alone."""
    data = Dataset.from_frames(_repeat_log(), schema=DatasetSchema(repeat_consumption=True), name="repeat")
    cfg = ExperimentConfig(dataset="repeat", model="sasrec", model_config={
        "d_model": 8, "n_heads": 1, "max_len": 8,
        "train": {"max_epochs": 3, "patience": 10, "batch_size": 4, "progress": False}})
    res = run_experiment(cfg, tmp_path / "run", data=data)
    curve = res["fit_info"]["valid_curve"]
    assert curve["metric"] == "valid_ndcg@10"
    assert len(curve["values"]) == res["fit_info"]["epochs_run"] == 3
    assert max(curve["values"]) == pytest.approx(res["fit_info"]["best_valid"], abs=1e-4)
