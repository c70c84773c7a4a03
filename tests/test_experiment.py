"""run_experiment: evaluation follows the dataset's repeat-use default unless the config says otherwise."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from ctxrec.data.dataset import Dataset, DatasetSchema
from ctxrec.errors import ConfigError, DataError
from ctxrec.experiment import ExperimentConfig, experiment_config, experiment_from_dict, run_experiment


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


def test_experiment_config_merges_file_options_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text('dataset = "ml-1m"\nmodel = "sasrec"\n[model_config]\nd_model = 32\n[model_config.train]\nlr = 0.01\n')
    cfg = experiment_config(path, dataset="synthetic", overrides=["train.max_epochs=3", "d_model=16"])
    assert (cfg.dataset, cfg.model, cfg.split) == ("synthetic", "sasrec", "leave-one-out")
    assert cfg.model_config == {"d_model": 16, "train": {"lr": 0.01, "max_epochs": 3}}


@pytest.mark.parametrize(("change", "message"), [
    ({"model_config": {"train": {"warmup_steps": 100}}}, r"unknown config key train\.'warmup_steps' for TrainConfig"),
    ({"model_config": {"d_model": "wide"}}, "d_model"),
    ({"model": "sasrek"}, "unknown model kind 'sasrek'"),
    ({"split": "by-moon"}, "unknown split 'by-moon'"),
    ({"epochs": 3}, "unknown config key 'epochs' for ExperimentConfig"),
])
def test_every_config_error_comes_before_the_data(tmp_path: Path, change: dict, message: str) -> None:
    raw = {"dataset": "no-such-dataset", "model": "sasrec", **change}  # reading it would fail differently
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(raw)
    if "epochs" not in change:  # run_experiment checks a config built in code as well
        with pytest.raises(ConfigError, match=message):
            run_experiment(ExperimentConfig(**raw), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_item_vectors_file_is_said_before_the_data(tmp_path: Path) -> None:
    """The file a model reads at fit time is checked with the config, not after minutes of loading."""
    from ctxrec.errors import InputFileNotFoundError

    raw = {"dataset": "no-such-dataset", "model": "fusion", "model_config": {"item_vectors": str(tmp_path / "v.npz")}}
    with pytest.raises(InputFileNotFoundError, match=r"item_vectors file '.*v\.npz' does not exist"):
        experiment_from_dict(raw)
    with pytest.raises(InputFileNotFoundError, match="does not exist"):
        run_experiment(ExperimentConfig(**raw), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_a_killed_run_resumes_from_its_own_checkpoints(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A run killed outright (SIGKILL, the machine going away) leaves its staging folder with checkpoints;
    train.resume=true continues from them instead of deleting them and starting over."""
    import json
    import shutil

    data = Dataset.from_frames(_repeat_log(), schema=DatasetSchema(repeat_consumption=True), name="repeat")

    def cfg(resume: bool) -> ExperimentConfig:
        return ExperimentConfig(dataset="repeat", model="sasrec", model_config={
            "d_model": 8, "n_heads": 1, "max_len": 8,
            "train": {"max_epochs": 2, "patience": 10, "batch_size": 4, "progress": False, "resume": resume}})

    first = run_experiment(cfg(False), tmp_path / "done", data=data)
    killed = tmp_path / ".run.partial"  # what a killed run leaves: its staging folder, checkpoints and all
    shutil.copytree(tmp_path / "done", killed)
    (killed / "metrics.json").unlink()
    with caplog.at_level("WARNING", logger="ctxrec.experiment"):
        again = run_experiment(cfg(True), tmp_path / "run", data=data)
    assert "continuing the run that was stopped" in caplog.text
    # Both epochs came from the checkpoint (their timings are the first run's): nothing was trained again.
    def timings(run: str) -> list[float]:
        meta = json.loads((tmp_path / run / "checkpoints" / "last" / "meta.json").read_text())
        return [h["train_seconds"] for h in meta["meta"]["history"]]

    assert len(timings("run")) == 2 and timings("run") == timings("done")
    assert again["metrics"] == first["metrics"] and not killed.exists()
    caplog.clear()
    shutil.copytree(tmp_path / "done", killed)  # without resume the killed run's checkpoints go, and that is said
    with caplog.at_level("WARNING", logger="ctxrec.experiment"):
        run_experiment(cfg(False), tmp_path / "run", data=data)
    assert "train.resume=true would have continued it" in caplog.text


def test_a_failed_run_leaves_no_folder_and_keeps_an_earlier_one(tmp_path: Path) -> None:
    log = _repeat_log().assign(timestamp=float("nan"))  # a temporal split needs timestamps: fails after staging
    data = Dataset.from_frames(log, schema=DatasetSchema(repeat_consumption=True), name="no-times")
    cfg = ExperimentConfig(dataset="no-times", model="popularity", split="temporal")
    with pytest.raises(DataError, match="without a timestamp"):
        run_experiment(cfg, tmp_path / "run", data=data)
    assert list(tmp_path.iterdir()) == []
    good = Dataset.from_frames(_repeat_log(), schema=DatasetSchema(repeat_consumption=True), name="repeat")
    run_experiment(ExperimentConfig(dataset="repeat", model="popularity"), tmp_path / "run", data=good)
    before = (tmp_path / "run" / "metrics.json").read_text()
    with pytest.raises(DataError):
        run_experiment(cfg, tmp_path / "run", data=data)
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (tmp_path / "run" / "metrics.json").read_text() == before


def test_a_disk_that_fills_mid_training_costs_no_training(small_disk: Path, fill_disk, caplog: pytest.LogCaptureFixture) -> None:
    """The disk fills after epoch 1 of 4: the later checkpoints are skipped with a warning (training goes
    on), the run fails when it writes its results, and its checkpoints stay; once space is freed,
    train.resume=true finishes the run from epoch 1's checkpoint instead of training from scratch."""
    import errno
    import json

    from ctxrec.training.loop import epoch_reporter

    data = Dataset.from_frames(_repeat_log(), schema=DatasetSchema(repeat_consumption=True), name="repeat")

    def cfg(resume: bool) -> ExperimentConfig:
        return ExperimentConfig(dataset="repeat", model="sasrec", model_config={
            "d_model": 8, "n_heads": 1, "max_len": 8,
            "train": {"max_epochs": 4, "patience": 10, "batch_size": 4, "progress": False, "resume": resume}})

    filled: list[Path] = []

    def fill_after_epoch_1(epoch: int, score: float) -> None:
        if epoch == 1:
            filled.append(fill_disk(small_disk))

    with (epoch_reporter(fill_after_epoch_1), caplog.at_level("WARNING", logger="ctxrec.experiment"),
          pytest.warns(UserWarning, match=r"checkpoint .*last not written \(\[Errno 28\] No space left on device"),
          pytest.raises(OSError) as failed):
        run_experiment(cfg(False), small_disk / "run", data=data)
    assert failed.value.errno == errno.ENOSPC
    stage = small_disk / ".run.partial"
    assert not (small_disk / "run").exists()
    meta = json.loads((stage / "checkpoints" / "last" / "meta.json").read_text())["meta"]
    assert meta["epoch"] == 1 and [h["epoch"] for h in meta["history"]] == [0, 1]
    assert "checkpoints up to epoch 1 are kept" in caplog.text and "train.resume=true" in caplog.text
    assert not list(stage.rglob("*.tmp"))  # no half-written checkpoint left taking space

    filled[0].unlink()
    result = run_experiment(cfg(True), small_disk / "run", data=data)
    history = json.loads((small_disk / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]  # epochs 0-1 from the checkpoint, 2-3 trained now
    assert [h["train_seconds"] for h in history[:2]] == [h["train_seconds"] for h in meta["history"]]
    assert result["fit_info"]["epochs_run"] == 4 and not stage.exists()


def test_a_resumed_run_whose_training_had_ended_trains_no_more() -> None:
    from ctxrec.training.loop import TrainConfig, _stopped_before

    cfg = TrainConfig(patience=3, max_seconds=100.0)
    assert _stopped_before([{"elapsed": 50.0}], 3, cfg, validated=True) == "early_stopping"
    assert _stopped_before([{"elapsed": 50.0}], 3, cfg, validated=False) is None  # no validation: no patience
    assert _stopped_before([{"elapsed": 101.0}], 0, cfg, validated=True) == "time_budget"
    assert _stopped_before([{"elapsed": 50.0}], 2, cfg, validated=True) is None
