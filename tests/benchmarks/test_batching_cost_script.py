"""benchmarks/batching_cost.py: random and bucketed batches timed one after the other, rows and table written."""

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_random_and_bucketed_epochs_side_by_side(load_bench, tmp_path: Path) -> None:
    bench = load_bench("batching_cost")
    out = tmp_path / "batching_cost.json"
    result = bench.main(["--recipes", "synthetic:smoke", "--epochs", "2", "--valid", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["rows"]
    assert row["random"]["pool"] == 1 and row["bucketed"]["pool"] == 16
    for arm in ("random", "bucketed"):  # --valid: a validation NDCG@10 per epoch
        assert len(row[arm]["valid_ndcg@10"]) == 2 and all(0 <= v <= 1 for v in row[arm]["valid_ndcg@10"])
    # bucketing wastes fewer positions on padding than random batches of the same data
    assert row["bucketed"]["real_over_padded"] > row["random"]["real_over_padded"]
    assert row["speedup"] == round(row["random"]["median_epoch_s"] / row["bucketed"]["median_epoch_s"], 2)
    assert "| synthetic:smoke |" in (tmp_path / "BATCHING_COST.md").read_text()


def test_unknown_recipe_is_an_error(load_bench) -> None:
    with pytest.raises(SystemExit, match="unknown recipe"):
        load_bench("batching_cost").main(["--recipes", "nope"])


def test_zero_epochs_is_an_error_naming_the_value(load_bench) -> None:
    with pytest.raises(SystemExit, match="--epochs 0"):
        load_bench("batching_cost").main(["--recipes", "synthetic:smoke", "--epochs", "0"])
