"""benchmarks/seeds.py: the mean/std/per_seed fold of a multi-seed headline, and RESULTS.md's noise note."""

from __future__ import annotations

import sys

import pytest


def _run(ndcg: float, stopped_by: str = "early_stopping") -> dict:
    return {"metrics": {"ndcg@10": ndcg, "hr@10": 2 * ndcg}, "fit_info": {"stopped_by": stopped_by, "best_epoch": 3,
            "epochs_run": 6}, "fit_seconds": 10.0, "peak_rss_mib": ndcg * 1000, "command": "python x"}


def test_combine_mean_sample_std_and_per_seed(load_bench) -> None:
    seeds = load_bench("seeds")
    out = seeds.combine([_run(0.10), _run(0.12), _run(0.14, "time_budget")], [42, 43, 44])
    assert out["metrics"]["ndcg@10"] == pytest.approx(0.12)
    assert out["metrics_std"]["ndcg@10"] == pytest.approx(0.02)  # sqrt((0.02^2 + 0 + 0.02^2) / 2)
    assert out["metrics_std"]["hr@10"] == pytest.approx(0.04)
    assert [p["seed"] for p in out["per_seed"]] == [42, 43, 44]
    assert out["per_seed"][2]["metrics"]["ndcg@10"] == 0.14
    assert out["stopped_by_time_budget"] == [44]
    assert out["peak_rss_mib"] == pytest.approx(140.0)  # the worst seed's memory, not the mean


def test_seed_list_starts_at_the_default_seed_and_refuses_zero(load_bench) -> None:
    seeds = load_bench("seeds")
    assert seeds.seed_list(3) == [42, 43, 44]
    with pytest.raises(SystemExit, match="at least 1"):
        seeds.seed_list(0)


def test_noise_note_marks_a_published_figure_within_two_std(load_bench) -> None:
    table = load_bench("make_table")
    row = {"name": "fusion", "metrics": {"ndcg@10": 0.200}, "metrics_std": {"ndcg@10": 0.002}}
    assert table.noise_note([row], {"ndcg@10": 0.1965}, ["ndcg@10"]) == "ndcg@10 within noise of ctxrec fusion"
    assert table.noise_note([row], {"ndcg@10": 0.1955}, ["ndcg@10"]) == ""  # 2.25 std away
    assert table.noise_note([{**row, "metrics_std": None}], {"ndcg@10": 0.2}, ["ndcg@10"]) == ""  # one seed


def test_only_multi_seed_or_closed_form_rows_stand_beside_published_figures(load_bench) -> None:
    table = load_bench("make_table")
    trained = {"fit_info": {"stopped_by": "early_stopping", "best_epoch": 3, "epochs_run": 8}}
    three = {**trained, "per_seed": [{"seed": s} for s in (42, 43, 44)]}
    assert table.compared(three) and table.compared({"fit_info": {}})  # 3 seeds; a closed form (popularity, EASE)
    assert not table.compared(trained) and not table.compared({**trained, "per_seed": [{"seed": 42}]})
    one = {**trained, "name": "fusion", "metrics": {"ndcg@10": 0.19}, "command": "python benchmarks/run.py ..."}
    lines = table.records([one], ["ndcg@10"])
    assert "| ctxrec fusion | 0.1900 | early_stopping (3/8) | `python benchmarks/run.py ...` |" in lines
    assert table.records([], ["ndcg@10"]) == []


def test_reuse_seeds_takes_only_a_finished_run_of_the_same_config(load_bench, tmp_path) -> None:
    import json

    from ctxrec.config import to_dict
    from ctxrec.experiment import experiment_config

    run = load_bench("run")
    cfg = experiment_config(dataset="ml-100k", model="sasrec", overrides=["train.seed=43", "train.max_epochs=2"])
    assert run._finished_run(tmp_path, cfg) is None  # nothing there
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    assert run._finished_run(tmp_path, cfg) is None  # started, never finished
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"ndcg@10": 0.1}}))
    assert run._finished_run(tmp_path, cfg) == {"metrics": {"ndcg@10": 0.1}}
    other = experiment_config(dataset="ml-100k", model="sasrec", overrides=["train.seed=43", "train.max_epochs=3"])
    assert run._finished_run(tmp_path, other) is None  # another config: trained again
    resumed = experiment_config(dataset="ml-100k", model="sasrec",
                                overrides=["train.seed=43", "train.max_epochs=2", "train.resume=true"])
    assert run._finished_run(tmp_path, resumed) == {"metrics": {"ndcg@10": 0.1}}  # --resume: how, not what


def test_reuse_seeds_reads_an_unset_seed_as_the_default(load_bench, tmp_path) -> None:
    """A --seeds 1 run (its config leaves train.seed unset) is seed 42 of a --seeds N run, not seed 43."""
    import json

    from ctxrec.config import to_dict
    from ctxrec.experiment import experiment_config

    run = load_bench("run")
    single = experiment_config(dataset="ml-100k", model="sasrec", overrides=["train.max_epochs=2"])
    (tmp_path / "config.json").write_text(json.dumps(to_dict(single)))
    (tmp_path / "metrics.json").write_text(json.dumps({"metrics": {"ndcg@10": 0.1}}))
    seed42 = experiment_config(dataset="ml-100k", model="sasrec", overrides=["train.max_epochs=2", "train.seed=42"])
    seed43 = experiment_config(dataset="ml-100k", model="sasrec", overrides=["train.max_epochs=2", "train.seed=43"])
    assert run._finished_run(tmp_path, seed42) == {"metrics": {"ndcg@10": 0.1}}
    assert run._finished_run(tmp_path, seed43) is None


def test_only_seed_must_be_one_of_the_seeds(load_bench) -> None:
    import pytest

    run = load_bench("run")
    with pytest.raises(SystemExit, match="--only-seed 45 is not one of the --seeds 3 runs"):
        run.main(["--dataset", "ml-100k", "--model", "sasrec", "--seeds", "3", "--only-seed", "45"])


def test_seed_overrides_per_model_kind(load_bench) -> None:
    """Run ``s`` of ``--seeds N`` sets ``train.seed``; a fusion ensemble (no ``train`` of its own) gets members
    from seeds that no other run shares, and cannot resume."""
    import pytest

    from ctxrec.experiment import experiment_config

    run = load_bench("run")
    assert run.seed_overrides("fusion", 43, False) == ["train.seed=43"]
    assert run.seed_overrides("sasrec", 43, True) == ["train.seed=43", "train.resume=true"]
    assert run.seed_overrides("fusion", None, True) == ["train.resume=true"]
    assert run.seed_overrides("ensemble", None, False) == []
    runs = [run.seed_overrides("ensemble", s, False) for s in (42, 43, 44)]
    assert runs[0] == ["seeds=[42,142,242]"]
    members = [experiment_config(dataset="ml-100k", model="ensemble", overrides=o).model_config["seeds"] for o in runs]
    assert len({m for ms in members for m in ms}) == 9  # every run its own members
    with pytest.raises(SystemExit, match="--resume"):
        run.seed_overrides("ensemble", 42, True)
    with pytest.raises(SystemExit, match="--seeds sets seeds itself"):
        run.main(["--dataset", "ml-100k", "--model", "ensemble", "--seeds", "3", "--set", "seeds=[1,2]"])


def test_a_bad_set_key_is_one_line_that_names_it_not_a_traceback(load_bench, monkeypatch, capsys) -> None:
    run = load_bench("run")
    monkeypatch.setattr(sys, "argv", ["run.py", "--dataset", "ml-1m", "--model", "fusion", "--set", "train.max_epoch=40"])
    with pytest.raises(SystemExit) as exit_:
        run.cli()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "max_epoch" in err and "max_epochs" in err  # the bad key and the known ones
    assert "Traceback" not in err


def test_a_seeds_1_run_and_seed_runs_of_one_name_never_delete_each_other(load_bench, tmp_path, monkeypatch) -> None:
    run = load_bench("run")
    monkeypatch.setattr(run, "ROOT", tmp_path / "benchmarks")
    run_dir = tmp_path / "runs" / "bench" / "ml-1m" / "x"
    args = ["--dataset", "ml-1m", "--model", "fusion", "--name", "x"]
    (run_dir / ".seed-43.partial").mkdir(parents=True)  # seed 43 of a --seeds 3 run is training
    with pytest.raises(SystemExit, match=r"\.seed-43\.partial.*would delete them"):
        run.main(args)  # a --seeds 1 run would replace run_dir on publishing
    (run_dir / ".seed-43.partial").rmdir()
    run_dir.with_name(".x.partial").mkdir()  # a --seeds 1 run is training
    with pytest.raises(SystemExit, match="let it finish"):
        run.main([*args, "--seeds", "3", "--only-seed", "43"])
