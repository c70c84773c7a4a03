"""benchmarks/tune.py end to end on the simulator: the tuned-row JSON has the fields issue 15 names,
its test figure is the mean of the seeds it lists, and the study's own retrain is seed 1 of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

KEYS = {"dataset", "model", "trials", "pruned", "budget_s", "best_valid", "test_metrics", "hand_tuned_test_ndcg@10",
        "default_test_ndcg@10", "best_config", "command", "machine"}


def _two_trials(load_bench, model: str, tiny: list[str], tmp_path: Path) -> dict:
    """benchmarks/tune.py: a 2-trial study of ``model`` on the simulator, its best config over 2 seeds."""
    return load_bench("tune").main(["--dataset", "synthetic", "--model", model, "--trials", "2", "--seeds", "2",
                                    *[a for kv in tiny for a in ("--set", kv)], "--out", str(tmp_path / "row.json"),
                                    "--run-dir", str(tmp_path / "run")])


@pytest.mark.slow
def test_tuned_row_on_the_simulator(load_bench, tmp_path: Path) -> None:
    out = tmp_path / "row.json"
    result = _two_trials(load_bench, "sasrec", ["d_model=16", "n_layers=1", "n_heads=1", "train.batch_size=256",
                                                "train.max_epochs=2", "train.progress=false"], tmp_path)
    saved = json.loads(out.read_text())
    assert set(saved) >= KEYS and saved == json.loads(json.dumps(result))
    assert saved["trials"] == 2 and saved["seeds"] == [42, 43] and saved["hand_tuned_test_ndcg@10"] is None
    per_seed = [p["metrics"]["ndcg@10"] for p in saved["per_seed"]]
    assert saved["test_metrics"]["ndcg@10"] == pytest.approx(sum(per_seed) / 2, abs=1e-6)
    study_retrain = json.loads((tmp_path / "run" / "tune" / "best" / "metrics.json").read_text())
    assert per_seed[0] == study_retrain["metrics"]["ndcg@10"]
    assert saved["best_config"]["model_config"]["d_model"] == 16  # the fixed settings are in the best config


def test_committed_reads_a_row_or_says_none(load_bench) -> None:
    tune = load_bench("tune")
    assert tune.committed("no-such-dataset", "fusion", "ndcg@10") is None
    row = json.loads((Path(tune.__file__).parent / "results" / "ml-100k" / "sasrec.json").read_text())
    assert tune.committed("ml-100k", "sasrec", "ndcg@10") == pytest.approx(row["metrics"]["ndcg@10"])  # the mean over seeds


@pytest.mark.slow
def test_ctr_row_on_the_simulator_is_auc_over_seeds(load_bench, tmp_path: Path) -> None:
    saved = _two_trials(load_bench, "pointwise", ["d_field=4", "use_text=false", "mlp=[8]", "max_history=5",
                                                  "train.batch_size=4096", "train.max_epochs=2"], tmp_path)
    assert {"hand_tuned_test_auc", "default_test_auc"} <= set(saved) and "hand_tuned_test_ndcg@10" not in saved
    assert saved["objective"] == "auc" and set(saved["test_metrics"]) >= {"auc", "logloss"}
    aucs = [p["metrics"]["auc"] for p in saved["per_seed"]]
    assert saved["seeds"] == [42, 43] and saved["test_metrics"]["auc"] == pytest.approx(sum(aucs) / 2, abs=1e-6)
    seed_run = json.loads((tmp_path / "run" / "seeds" / "seed-43" / "metrics.json").read_text())
    assert seed_run["model_config"]["train"]["seed"] == 43 and seed_run["metrics"]["auc"] == aucs[1]


@pytest.mark.slow
def test_seeds_train_in_workers_and_a_rerun_reads_them(load_bench, tmp_path: Path) -> None:
    """--jobs 2: seeds 43 and 44 train in a worker process beside the retrain of the best trial; the
    same command again resumes the finished study and reads every seed's run instead of retraining."""
    tiny = ["d_model=16", "n_layers=1", "n_heads=1", "train.batch_size=256", "train.max_epochs=2",
            "train.progress=false"]
    argv = ["--dataset", "synthetic", "--model", "sasrec", "--trials", "2", "--seeds", "3", "--jobs", "2",
            *[a for kv in tiny for a in ("--set", kv)], "--out", str(tmp_path / "row.json"),
            "--run-dir", str(tmp_path / "run")]
    first = load_bench("tune").main(argv)
    assert first["seeds"] == [42, 43, 44] and first["trials"] == 2
    runs = {s: tmp_path / "run" / "seeds" / f"seed-{s}" / "metrics.json" for s in (43, 44)}
    for seed, path in runs.items():
        saved = json.loads(path.read_text())
        assert saved["model_config"]["train"]["seed"] == seed
        assert saved["model_config"]["d_model"] == first["best_config"]["model_config"]["d_model"] == 16
    stamps = {s: p.stat().st_mtime_ns for s, p in runs.items()}
    again = load_bench("tune").main(argv)
    assert {s: p.stat().st_mtime_ns for s, p in runs.items()} == stamps
    assert again["per_seed"] == first["per_seed"]
    # a seed run of another configuration (say the study found a better trial since) is trained again
    other = json.loads(runs[43].read_text())
    other["model_config"]["d_model"] = 32
    runs[43].write_text(json.dumps(other))
    stamps = {s: p.stat().st_mtime_ns for s, p in runs.items()}
    load_bench("tune").main(argv)
    assert runs[43].stat().st_mtime_ns != stamps[43] and runs[44].stat().st_mtime_ns == stamps[44]
    assert json.loads(runs[43].read_text())["model_config"]["d_model"] == 16


def test_a_seed_run_is_reused_only_for_its_own_configuration() -> None:
    from ctxrec.tuning.run import _holds, _seed_config

    saved = {"d_model": 64, "mlp": [8], "train": {"seed": 43, "lr": 0.001, "progress": False, "ema": None}}
    assert _holds(saved, _seed_config({"d_model": 64, "train": {"lr": 0.001, "seed": 42, "progress": True}}, 43))
    assert not _holds(saved, _seed_config({"d_model": 64, "train": {"lr": 0.001}}, 44))  # another seed
    assert not _holds(saved, _seed_config({"d_model": 128, "train": {}}, 43))
    assert not _holds(saved, _seed_config({"mlp": [16], "train": {}}, 43))
    assert not _holds({"d_model": 64}, _seed_config({"d_model": 64, "train": {"lr": 0.001}}, 43))  # no train part
