"""benchmarks/cost.py on the simulator: each recipe in its own process, the test probe timed off the
clock; a recipe stopped at the target reports the probe's figures of that epoch, one that runs out
the figures of its selected weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_recipes_side_by_side(load_bench, tmp_path: Path) -> None:
    cost = load_bench("cost")
    out = tmp_path / "cost.json"
    result = cost.main(["--dataset", "synthetic", "--target", "0.01", "--recipes", "smoke-a,smoke-b",
                        "--stop-at-target", "smoke-b", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    a, b = result["recipes"]["smoke-a"], result["recipes"]["smoke-b"]
    assert b["stopped_at_target"] and b["epochs"] == b["epoch_reaching_target"] + 1
    assert b["test_metrics"]["ndcg@10"] == b["curve"][-1]["test_ndcg@10"] >= 0.0  # the probe at the target epoch
    assert not a["stopped_at_target"] and a["epochs"] == 3 and 0.0 <= a["test_metrics"]["ndcg@10"] <= 1.0
    for r in (a, b):
        secs = [c["seconds"] for c in r["curve"]]
        assert secs == sorted(secs) and r["time_to_0.01_s"] == secs[r["epoch_reaching_target"]]
        assert r["peak_rss_mib"] > 0 and r["fit_seconds_without_probe"] >= secs[-1] - 1.0
    assert "current" not in result and "new" not in result  # only rows of those names fill the keys
    assert "incomplete" not in result


def test_the_file_is_written_after_each_recipe(load_bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run cut during its second recipe keeps the first one's row, marked incomplete."""
    cost = load_bench("cost")
    out = tmp_path / "cost.json"
    calls = []

    real_run = cost.subprocess.run

    def fake_child(cmd: list[str], check: bool = False, **kw: object) -> object:
        """Stands in for the child process of each recipe; any other command (``platform.processor()`` runs
        ``uname -p`` once a process) runs: the test passed alone only after another test had run it."""
        if "--one" not in cmd:
            return real_run(cmd, check=check, **kw)
        name = cmd[cmd.index("--one") + 1]
        calls.append(name)
        assert cmd[cmd.index("--seed") + 1] == "7"  # each child gets the run's seed
        if name == "smoke-b":
            raise KeyboardInterrupt
        Path(cmd[cmd.index("--row-out") + 1]).write_text(json.dumps(
            {"recipe": name, "time_to_0.5_s": 1.0, "epoch_reaching_target": 0, "peak_rss_mib": 1.0, "overrides": [],
             "epochs": 1, "curve": [{"seconds": 1.0}]}))
        return None

    monkeypatch.setattr(cost.subprocess, "run", fake_child)
    with pytest.raises(KeyboardInterrupt):
        cost.main(["--dataset", "synthetic", "--target", "0.5", "--recipes", "smoke-a,smoke-b", "--seed", "7",
                   "--out", str(out)])
    written = json.loads(out.read_text())
    assert calls == ["smoke-a", "smoke-b"] and list(written["recipes"]) == ["smoke-a"]
    assert "smoke-b" in written["incomplete"]


def test_unknown_recipe_is_an_error(load_bench) -> None:
    with pytest.raises(SystemExit, match="unknown recipe"):
        load_bench("cost").main(["--dataset", "synthetic", "--target", "0.1", "--recipes", "nope"])


@pytest.mark.slow
def test_a_budget_ends_a_recipe_and_it_is_judged_at_its_best_validation_epoch(load_bench, tmp_path: Path) -> None:
    result = load_bench("cost").main(["--dataset", "synthetic", "--target", "0.99", "--recipes", "smoke-b",
                                      "--budget", "smoke-b=0", "--seed", "43", "--out", str(tmp_path / "cost.json")])
    row = result["recipes"]["smoke-b"]
    assert row["seed"] == 43  # the child trained with train.seed=43
    assert row["budget_spent"] and row["budget_s"] == 0.0 and row["epochs"] == 1  # the clock passed 0 at epoch 0
    assert row["test_metrics"]["ndcg@10"] == row["curve"][0]["test_ndcg@10"] and row["time_to_0.99_s"] is None


def test_a_malformed_budget_is_an_error(load_bench) -> None:
    with pytest.raises(SystemExit, match="NAME=SECONDS"):
        load_bench("cost").main(["--dataset", "synthetic", "--target", "0.1", "--budget", "smoke-b"])


def _cost_file(path: Path, seed: int | None, seconds: float | None, ndcg: float) -> None:
    row = {"recipe": "new", "time_to_0.19_s": seconds, "epoch_reaching_target": None if seconds is None else 20,
           "test_metrics": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}, "peak_rss_mib": 1000.0 + ndcg * 1000,
           **({"seed": seed} if seed is not None else {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"dataset": "ml-1m", "recipes": {"new": row}, "new": {"time_to_0.19_s": seconds}}))


def test_seed_runs_are_gathered_into_a_spread(load_bench, tmp_path: Path) -> None:
    """The side-by-side run (seed 42, no seed key: the default) and two --seed runs: mean +- sample std by
    hand; a seed that missed the target counts in the test figures and not in the time."""
    out = tmp_path / "cost.json"
    _cost_file(out, None, 1600.0, 0.19)
    _cost_file(tmp_path / "cost_seeds" / "new-seed43.json", 43, 1400.0, 0.20)
    _cost_file(tmp_path / "cost_seeds" / "new-seed44.json", 44, None, 0.18)
    seed43 = json.loads((tmp_path / "cost_seeds" / "new-seed43.json").read_text())
    seed43["recipes"]["new"]["curve"] = [  # validation peaked at epoch 19, whose test figure was below the target
        {"epoch": e, "valid_ndcg@10": v, "test_ndcg@10": t} for e, v, t in [(18, 0.18, 0.17), (19, 0.195, 0.185),
                                                                              (20, 0.194, 0.20), (21, 0.2, 0.21)]]
    (tmp_path / "cost_seeds" / "new-seed43.json").write_text(json.dumps(seed43))
    s = load_bench("cost").main(["--dataset", "ml-1m", "--target", "0.19", "--gather-seeds", "new", "--out", str(out)])
    assert s["per_seed"][1]["selected_then"] == {"epoch": 19, "valid_ndcg@10": 0.195, "test_ndcg@10": 0.185}
    assert s["per_seed"][0]["selected_then"] is None  # no curve in that file
    assert s["seeds"] == [42, 43, 44] and s["reached_target"] == "2 of 3"
    assert s["time_to_0.19_s"] == {"mean": 1500.0, "std": 141.4214} and s["max_time_to_0.19_s"] == 1600.0
    assert s["test_ndcg@10"] == {"mean": 0.19, "std": 0.01} and s["max_peak_rss_mib"] == 1200.0
    assert json.loads(out.read_text())["new"]["seeds"]["reached_target"] == "2 of 3"
    table = (tmp_path / "cost_seeds" / "new.md").read_text()
    assert "| 44 | None |" in table and "1500.0 +- 141.4214" in table


def test_two_rows_of_one_seed_are_an_error(load_bench, tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    _cost_file(out, 43, 1600.0, 0.19)
    _cost_file(tmp_path / "cost_seeds" / "new-seed43.json", 43, 1400.0, 0.20)
    with pytest.raises(SystemExit, match=r"same seed: \[43, 43\]"):
        load_bench("cost").main(["--dataset", "ml-1m", "--target", "0.19", "--gather-seeds", "new", "--out", str(out)])


def test_gathering_a_recipe_that_never_ran_names_the_ones_that_did(load_bench, tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    with pytest.raises(SystemExit, match=r"no .*cost\.json"):
        load_bench("cost").main(["--dataset", "ml-1m", "--target", "0.19", "--gather-seeds", "new", "--out", str(out)])
    _cost_file(out, None, 1600.0, 0.19)
    with pytest.raises(SystemExit, match=r"no row of that recipe .* recipes in cost.json: \['new'\]"):
        load_bench("cost").main(["--dataset", "ml-1m", "--target", "0.19", "--gather-seeds", "nope", "--out", str(out)])
