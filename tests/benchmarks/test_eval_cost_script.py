"""benchmarks/eval_cost.py: the full-sequence pass and the chunked states timed side by side; same rankings."""

import json
from pathlib import Path

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["synthetic:fusion", "synthetic:sasrec"])
def test_full_and_chunked_evaluations_side_by_side(load_bench, tmp_path: Path, recipe: str) -> None:
    bench = load_bench("eval_cost")
    out = tmp_path / "eval_cost.json"
    result = bench.main(["--recipes", recipe, "--reps", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    (row,) = result["rows"]
    assert row["cases"] > 0 and row["full"]["median_s"] > 0 and row["chunked"]["median_s"] > 0
    # the two paths compute the same states up to float rounding: the same ranking quality
    assert abs(row["full"]["ndcg@10"] - row["chunked"]["ndcg@10"]) < 1e-3
    assert row["full"]["median_peak_mib"] >= 0 and row["chunked"]["median_peak_mib"] >= 0
    assert f"| {recipe} |" in (tmp_path / "EVAL_COST.md").read_text()


def test_bad_arguments_are_errors_naming_the_value(load_bench) -> None:
    bench = load_bench("eval_cost")
    with pytest.raises(SystemExit, match="unknown recipe"):
        bench.main(["--recipes", "nope"])
    with pytest.raises(SystemExit, match="--reps 0"):
        bench.main(["--recipes", "synthetic:sasrec", "--reps", "0"])
