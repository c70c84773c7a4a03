"""AUC studies (the CTR task): pointwise trials trained with fit_labelled on the CTR split of the
simulator, the test table sealed during the study, one test evaluation of the best config."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.config import load_file
from ctxrec.errors import ConfigError
from ctxrec.experiment import check_experiment, experiment_from_dict
from ctxrec.tuning import TuneConfig, tune
from ctxrec.tuning.objective import (
    CtrTrialData,
    TrialData,
    load_trial_data,
    run_trial,
)
from ctxrec.tuning.spaces import load_space

# Every trial: a d 4 pointwise model without text, short histories, one epoch of large batches (~2 s).
TINY_CTR = {"d_field": 4, "use_text": False, "mlp": [8], "max_history": 5, "train.batch_size": 4096,
            "train.max_epochs": 1, "train.progress": False}


@pytest.fixture(scope="module")
def ctr_data() -> CtrTrialData:
    data = load_trial_data("synthetic", None, "ctr")
    assert isinstance(data, CtrTrialData)
    return data


def test_an_auc_study_never_reads_the_test_table_and_evaluates_the_best_once(tmp_path: Path,
                                                                             ctr_data: CtrTrialData) -> None:
    cfg = TuneConfig(dataset="synthetic", model="pointwise", trials=2, out=str(tmp_path), overrides=TINY_CTR)
    assert (cfg.metric, cfg.split) == ("auc", "ctr")
    lines: list[str] = []
    summary = tune(cfg, echo=lines.append, data=ctr_data)
    study = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2  # a read of test fails a trial
    assert ctr_data.test.attempts == 0  # nothing in the study looked at the test table
    for t in study.trials:  # each trial's value is its validation AUC, reported per epoch to the pruner
        assert 0.0 < t.value < 1.0 and t.intermediate_values == {0: t.value}
    assert (summary["metric"], summary["split"]) == ("auc", "ctr")
    assert set(summary["test_metrics"]) == {"auc", "logloss"} and 0.5 < summary["test_metrics"]["auc"] < 1.0
    # Retrained with the same seed on the same split, the best config scores the same validation AUC.
    assert summary["retrained_valid"] == pytest.approx(summary["best_valid"], abs=1e-6)
    out = tmp_path / "tune"
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["metrics"] == summary["test_metrics"] and (out / "best" / "model" / "config.json").is_file()
    instances = metrics["dataset_stats"]["instances"]
    assert (instances["train"], instances["valid"]) == (len(ctr_data.train), len(ctr_data.valid)) and instances["test"] > 0
    assert metrics["model_config"]["train"]["valid_metric"] == "auc" and metrics["split"] == ctr_data.split
    # best_config.json is a `ctxrec train` config (the ranking protocol), and the summary and output say so.
    exp = experiment_from_dict(load_file(out / "best_config.json"))
    check_experiment(exp)
    assert (exp.model, exp.split) == ("pointwise", "leave-one-out")
    assert "valid_metric" not in exp.model_config["train"]  # the task's setting, not the user's
    assert "ranking protocol" in summary["best_config_note"] and any(summary["best_config_note"] in s for s in lines)
    assert "n_negatives" not in summary["best_params"] and "use_history" in summary["best_params"]


def test_metric_and_split_defaults_per_kind() -> None:
    base = {"dataset": "synthetic", "trials": 1, "out": "runs/x"}
    assert (TuneConfig(model="pointwise", **base).metric, TuneConfig(model="pointwise", **base).split) == ("auc", "ctr")
    assert (TuneConfig(model="sasrec", **base).metric, TuneConfig(model="sasrec", **base).split) == ("ndcg@10", "leave-one-out")
    assert TuneConfig(model="pointwise", metric="ndcg@10", **base).split == "leave-one-out"
    assert TuneConfig(model="fm", metric="auc", **base).split == "ctr"
    with pytest.raises(ConfigError, match=r"'auc' needs a model kind that trains on labelled CTR tables.*'sasrec' does not"):
        TuneConfig(model="sasrec", metric="auc", **base)
    with pytest.raises(ConfigError, match="--split temporal does not apply to an AUC study"):
        TuneConfig(model="pointwise", split="temporal", **base)
    with pytest.raises(ConfigError, match=r"must be 'auc' .* or look like NAME@K"):
        TuneConfig(model="pointwise", metric="AUC", **base)


def test_an_auc_space_drops_sampled_training_settings_and_keeps_the_epoch_metric() -> None:
    ranking, _ = load_space("pointwise")
    ctr, _ = load_space("pointwise", labelled=True)
    assert "n_negatives" in ranking.names() and "n_negatives" not in ctr.names()
    assert {"use_history", "history_pooling"} <= set(ctr.names()) and ctr.fixed == {"train.patience": 3}
    with pytest.raises(ConfigError, match=r"train.valid_metric = 'ndcg@10' in an AUC study"):
        load_space("pointwise", overrides={"train.valid_metric": "ndcg@10"}, labelled=True)


def test_cli_metric_defaults_per_kind(tmp_path: Path) -> None:
    """Settings that only fit the other task fail before any data is read, naming the resolved metric."""
    run = ["tune", "--dataset", "synthetic", "--trials", "1", "-o", str(tmp_path)]
    res = CliRunner().invoke(app, [*run, "--model", "pointwise", "--split", "temporal"])
    assert res.exit_code != 0 and "does not apply to an AUC study" in res.output  # pointwise: auc
    res = CliRunner().invoke(app, [*run, "--model", "sasrec", "--split", "ctr"])
    assert res.exit_code != 0 and "with 'ndcg@10' give a ranking split" in res.output  # sasrec: ndcg@10
    res = CliRunner().invoke(app, [*run, "--model", "sasrec", "--metric", "auc"])
    assert res.exit_code != 0 and "'sasrec' does not" in res.output
    assert not (tmp_path / "tune").exists()


def test_a_ranking_split_cannot_feed_an_auc_trial(ctr_data: CtrTrialData) -> None:
    ranking = load_trial_data("synthetic", None, "leave-one-out")
    assert isinstance(ranking, TrialData)
    space, _ = load_space("pointwise", overrides=TINY_CTR, labelled=True)
    trial = optuna.create_study(direction="maximize").ask()
    with pytest.raises(ConfigError, match="objective metric 'auc' does not fit the trial data"):
        run_trial(trial, space, ranking, "auc")
    with pytest.raises(ConfigError, match="objective metric 'ndcg@10' does not fit the trial data"):
        run_trial(trial, space, ctr_data, "ndcg@10")
