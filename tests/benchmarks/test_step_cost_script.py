"""benchmarks/step_cost.py: each variant timed in its own process, rows and the table written."""

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_variants_timed_side_by_side(load_bench, tmp_path: Path) -> None:
    step_cost = load_bench("step_cost")
    out = tmp_path / "step_cost.json"
    result = step_cost.main(["--dataset", "synthetic", "--variants", "current,d 64", "--batches", "2", "--epochs", "2",
                             "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    current, small = result["rows"]
    assert current["variant"] == "current" and current["vs_current"] == 1.0
    assert len(small["s_per_batch_each_epoch"]) == 2 and small["s_per_batch"] > 0
    assert small["vs_current"] == round(small["s_per_batch"] / current["s_per_batch"], 3)
    assert all(r["peak_rss_mib"] > 0 and r["cpu_s_per_batch"] > 0 for r in result["rows"])
    table = (tmp_path / "STEP_COST.md").read_text()
    assert "| d 64 |" in table and "| current |" in table


def test_unknown_variant_is_an_error(load_bench) -> None:
    with pytest.raises(SystemExit, match="unknown variant"):
        load_bench("step_cost").main(["--variants", "current,d 999"])


def test_the_default_variant_list_parses_back(load_bench) -> None:
    variants = load_bench("step_cost").VARIANTS
    assert ",".join(variants).split(",") == list(variants)  # --variants is comma-separated: names hold none


def test_heap_guard_off_names_real_variants(load_bench) -> None:
    bench = load_bench("step_cost")
    assert set(bench.VARIANTS) >= bench.HEAP_GUARD_OFF
    for name in bench.HEAP_GUARD_OFF:  # each has its guarded twin with the same overrides
        twin = name.removesuffix(" + heap guard off")
        assert bench.VARIANTS[twin if twin in bench.VARIANTS else "fp32"] == bench.VARIANTS[name]


def test_compiled_variants_are_real_variants_with_an_eager_twin(load_bench) -> None:
    bench = load_bench("step_cost")
    assert bench.COMPILED and set(bench.VARIANTS) >= bench.COMPILED
    for name in bench.COMPILED:  # the same settings, eager: the pair measures torch.compile alone
        assert bench.VARIANTS[name.removesuffix(" + torch.compile")] == bench.VARIANTS[name]
