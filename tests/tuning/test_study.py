"""Studies on the seeded simulator, in one process: artefacts, the sealed test split, resume, pruning."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.config import load_file
from ctxrec.errors import ConfigError, CtxrecError
from ctxrec.experiment import experiment_from_dict
from ctxrec.models import build_model
from ctxrec.tuning import TuneConfig, run_study
from ctxrec.tuning.objective import SealedEvalSet, SealedTestCasesError, TrialData, load_trial_data
from ctxrec.tuning.spaces import load_space
from ctxrec.tuning.study import counted, open_study, safe_url

# Every trial: a 1-layer d 16 SASRec, large batches, few epochs -- about a second each on the simulator.
# (Here, not in conftest.py: ``from conftest import`` takes whichever conftest pytest loaded last.)
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 1, "max_len": 50, "train.batch_size": 256, "train.max_epochs": 2}

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trial_data() -> TrialData:
    return load_trial_data("synthetic", None, "leave-one-out")


def test_cli_tune_writes_every_artefact(tmp_path: Path) -> None:
    sets = [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    res = CliRunner().invoke(app, ["tune", "--dataset", "synthetic", "--model", "sasrec", "--trials", "3",
                                   "-o", str(tmp_path / "run"), *sets])
    assert res.exit_code == 0, res.output
    assert "3/3 counted" in res.output and "| best 0." in res.output  # progress with the best so far
    out = tmp_path / "run" / "tune"
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["number"] for r in rows] == ["0", "1", "2"] and {r["state"] for r in rows} == {"COMPLETE"}
    assert {"dropout", "train.lr", "train.weight_decay", "value", "epochs_run"} <= set(rows[0])
    best_row = max(rows, key=lambda r: float(r["value"]))
    for png in ("history.png", "importance.png"):
        assert (out / png).read_bytes()[:8] == PNG
    # The best config is a `ctxrec train` config holding the best trial's values and the --set ones.
    exp = experiment_from_dict(load_file(out / "best_config.json"))
    assert (exp.dataset, exp.model) == ("synthetic", "sasrec")
    assert exp.model_config["train"]["lr"] == pytest.approx(float(best_row["train.lr"]))
    assert exp.model_config["d_model"] == 16 and exp.model_config["train"]["max_epochs"] == 2
    build_model(exp.model, exp.model_config)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_trial"] == int(best_row["number"]) and summary["trials"] == 3
    assert summary["best_valid"] == pytest.approx(float(best_row["value"]), abs=1e-6)
    # Retrained with the same seed, the best config scores the same on validation (CPU, deterministic).
    assert summary["retrained_valid"] == pytest.approx(summary["best_valid"], abs=1e-6)
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["metrics"]["ndcg@10"] == summary["test_metrics"]["ndcg@10"] and (out / "best" / "model").is_dir()


def test_study_never_reads_the_test_cases_and_resumes(tmp_path: Path, trial_data: TrialData) -> None:
    base: dict = {"dataset": "synthetic", "model": "sasrec", "out": str(tmp_path), "overrides": TINY, "seed": 1}
    study = run_study(TuneConfig(trials=2, **base), echo=lambda s: None, data=trial_data)
    assert len(study.trials) == 2
    # Resumed (same storage and study name): tops the study up to the new total, numbers continue.
    study = run_study(TuneConfig(trials=3, **base), echo=lambda s: None, data=trial_data)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in study.trials)
    assert run_study(TuneConfig(trials=3, **base), echo=lambda s: None, data=trial_data).trials == study.trials
    assert trial_data.test.attempts == 0  # nothing in a study looked at the test cases
    with pytest.raises(ConfigError, match="was created with a different metric"):
        run_study(TuneConfig(trials=4, metric="hr@10", **base), echo=lambda s: None, data=trial_data)


def test_the_sealed_test_cases_raise_on_any_use(trial_data: TrialData) -> None:
    sealed = SealedEvalSet(trial_data.valid)
    with pytest.raises(SealedTestCasesError, match="'targets'"):
        sealed.targets  # noqa: B018
    with pytest.raises(SealedTestCasesError):
        len(sealed)
    assert sealed.attempts == 2


def test_a_trial_with_bad_epochs_is_pruned(tmp_path: Path, trial_data: TrialData) -> None:
    (tmp_path / "space.toml").write_text('[params."train.lr"]\nlow = 1e-7\n')  # room for a learning rate too low
    cfg = TuneConfig(dataset="synthetic", model="sasrec", trials=5, out=str(tmp_path), space_file=str(tmp_path / "space.toml"),
                     overrides={**TINY, "train.max_epochs": 3, "dropout": 0.2, "train.weight_decay": 0.0},
                     prune_after_trials=3, prune_after_epochs=1)
    space, _ = load_space(cfg.model, cfg.space_file, cfg.overrides)
    assert space.names() == ["train.lr"]
    study = open_study(cfg, space)
    for lr in (1e-2, 1e-2, 1e-2, 1e-6):  # three that learn, then one that cannot
        study.enqueue_trial({"train.lr": lr})
    study = run_study(cfg, echo=lambda s: None, data=trial_data)
    states = [t.state for t in study.trials]
    assert study.trials[0].params == {"train.lr": 1e-3} and study.trials[0].user_attrs["defaults"]  # the default first
    assert states[:4] == [optuna.trial.TrialState.COMPLETE] * 4
    bad = study.trials[4]
    assert bad.state == optuna.trial.TrialState.PRUNED
    assert bad.last_step == 1 and bad.user_attrs["epochs_run"] == 2  # stopped after epoch 1 of 0..2
    assert bad.intermediate_values[1] < min(t.intermediate_values[1] for t in study.trials[:4])


def test_the_first_trial_runs_the_model_defaults(tmp_path: Path, trial_data: TrialData) -> None:
    lines: list[str] = []
    cfg = TuneConfig(dataset="synthetic", model="fusion", trials=1, out=str(tmp_path),
                     overrides={"d_model": 16, "n_layers": 1, "train.max_epochs": 1, "train.batch_size": 256})
    study = run_study(cfg, echo=lines.append, data=trial_data)
    first = study.trials[0]
    assert first.user_attrs["defaults"] and first.state == optuna.trial.TrialState.COMPLETE
    defaults = build_model("fusion", {}).config
    assert first.params["dropout"] == defaults.dropout and first.params["max_len"] == defaults.max_len
    assert first.params["train.lr"] == defaults.train.lr and first.params["id_dropout"] == defaults.id_dropout
    # use_text / mixture default to "auto", outside the searched choices: sampled, and said so.
    assert first.params["use_text"] in (True, False) and first.params["mixture"] in (True, False)
    assert any("first trial runs the model's defaults (sampling use_text, mixture" in s for s in lines), lines


def test_a_running_trial_says_how_it_stands(tmp_path: Path, trial_data: TrialData, monkeypatch) -> None:
    """Long trials are not silent between their per-trial lines: epoch lines, at most one a minute (here: every
    epoch), each with that epoch's validation score and the trial's best."""
    from ctxrec.tuning import objective

    monkeypatch.setattr(objective, "EPOCH_LINE_EVERY_S", 0.0)
    lines: list[str] = []
    cfg = TuneConfig(dataset="synthetic", model="fusion", trials=1, out=str(tmp_path), prune=False,
                     overrides={"d_model": 16, "n_layers": 1, "train.max_epochs": 3, "train.patience": 10,
                                "train.batch_size": 256})
    trial = run_study(cfg, echo=lines.append, data=trial_data).trials[0]
    epoch_lines = [s for s in lines if s.startswith("  trial 0 epoch")]
    scores = [trial.intermediate_values[e] for e in range(3)]
    assert epoch_lines == [f"  trial 0 epoch {e}: validation ndcg@10 {scores[e]:.4f} (its best {max(scores[:e + 1]):.4f})"
                           for e in range(3)], lines
    monkeypatch.setattr(objective, "EPOCH_LINE_EVERY_S", 3600.0)
    lines.clear()
    run_study(dataclasses.replace(cfg, trials=2), echo=lines.append, data=trial_data)
    assert not [s for s in lines if " epoch " in s and s.startswith("  trial")]  # quick trials: per-trial lines only


def test_ctrl_c_during_a_trial_stops_the_study_and_the_trial_is_redone(tmp_path: Path, trial_data: TrialData,
                                                                        monkeypatch) -> None:
    """The training loop ends on Ctrl-C with its best weights (right for `ctxrec train`); inside a study that
    completed the trial with the truncated run's score and went on to the next trial (seen on amazon-beauty:
    a 4-epoch trial counted as complete). Now the study stops, and a rerun redoes that trial."""
    from ctxrec.tuning import objective

    monkeypatch.setattr(objective, "EPOCH_LINE_EVERY_S", 0.0)

    def ctrl_c_at_epoch_1(line: str) -> None:
        if " epoch 1:" in line:
            raise KeyboardInterrupt  # where a Ctrl-C lands: inside the training loop, mid-trial

    cfg = TuneConfig(dataset="synthetic", model="fusion", trials=2, out=str(tmp_path), prune=False,
                     overrides={"d_model": 16, "n_layers": 1, "train.max_epochs": 3, "train.patience": 10,
                                "train.batch_size": 256})
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, echo=ctrl_c_at_epoch_1, data=trial_data)
    study = optuna.load_study(study_name=cfg.study_name, storage=cfg.storage_url)
    (cut,) = study.trials  # the study stopped: no second trial started
    assert cut.state == optuna.trial.TrialState.FAIL and cut.user_attrs.get("interrupted") and counted(study.trials) == 0
    study = run_study(cfg, echo=lambda s: None, data=trial_data)  # resumed: two complete trials besides the cut one
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert all(t.user_attrs["epochs_run"] == 3 for t in study.trials[1:])


def test_trials_that_keep_failing_stop_the_study_with_their_error(tmp_path: Path, trial_data: TrialData,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import ctxrec.models

    def broken(kind: str, config: dict) -> None:  # a model that cannot be built, whatever the trial draws
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ctxrec.models, "build_model", broken)
    cfg = TuneConfig(dataset="synthetic", model="sasrec", trials=10, out=str(tmp_path), overrides=TINY)
    with pytest.raises(CtxrecError, match="3 trials in a row failed; the last with RuntimeError: out of memory"):
        run_study(cfg, echo=lambda s: None, data=trial_data)
    study = open_study(cfg, load_space("sasrec", overrides=cfg.overrides)[0])
    assert len(study.trials) == 3 and all("error" in t.user_attrs for t in study.trials)


def test_interrupted_trials_are_redone_and_errors_count() -> None:
    study = optuna.create_study(direction="maximize")
    for attrs, state in (({}, "COMPLETE"), ({"interrupted": True}, "FAIL"), ({"error": "ValueError: x"}, "FAIL"),
                         ({}, "PRUNED"), ({}, "FAIL")):  # the last: a killed worker's trial, failed by the heartbeat
        trial = study.ask()
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        study.tell(trial, 0.5 if state == "COMPLETE" else None, state=optuna.trial.TrialState[state])
    study.ask()  # running
    assert counted(study.get_trials()) == 4  # complete, error, pruned, running


def test_no_trial_starts_after_the_timeout(tmp_path: Path, trial_data: TrialData) -> None:
    cfg = TuneConfig(dataset="synthetic", model="sasrec", trials=5, timeout_s=1e-3, out=str(tmp_path), overrides=TINY)
    trials = run_study(cfg, echo=lambda s: None, data=trial_data).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.WAITING]  # only the queued defaults, not run


def test_storage_urls() -> None:
    cfg = TuneConfig(dataset="synthetic", model="ease", trials=1, out="runs/x", storage="postgresql://me:secret@db:5432/tune")
    assert cfg.storage_url == "postgresql+psycopg://me:secret@db:5432/tune"
    assert "secret" not in safe_url(cfg.storage_url) and "***" in safe_url(cfg.storage_url)
    local = TuneConfig(dataset="synthetic", model="ease", trials=1, out="runs/x").storage_url
    assert local.startswith("sqlite:////") and local.endswith("runs/x/tune/study.sqlite3")
    with pytest.raises(ConfigError, match="cannot open the study storage 'nosuchdb://x'"):
        open_study(TuneConfig(dataset="synthetic", model="ease", trials=1, out="runs/x", storage="nosuchdb://x"),
                   load_space("ease")[0])


def test_cli_tune_takes_a_mapping_of_your_own_data(tmp_path: Path) -> None:
    """`ctxrec tune --mapping FILE` tunes on a raw log read through its mapping (written by `data init`)."""
    from ctxrec.data.synthetic import SimulatorConfig, simulate, write_raw_log

    write_raw_log(simulate(SimulatorConfig(n_users=120, n_items=60, events_per_user=12, seed=3)), tmp_path / "log")
    files = [str(p) for p in sorted((tmp_path / "log").iterdir())]
    init = CliRunner().invoke(app, ["data", "init", *files, "-o", str(tmp_path / "mapping.toml")])
    assert init.exit_code == 0, init.output
    res = CliRunner().invoke(app, ["tune", "--mapping", str(tmp_path / "mapping.toml"), "--model", "ease",
                                   "--trials", "2", "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    best = load_file(tmp_path / "run" / "tune" / "best_config.json")
    assert best["mapping"] == str((tmp_path / "mapping.toml").resolve())
    summary = json.loads((tmp_path / "run" / "tune" / "summary.json").read_text())
    assert summary["test_metrics"]["ndcg@10"] > 0  # the best config retrained on the mapped data
    both = CliRunner().invoke(app, ["tune", "--dataset", "synthetic", "--mapping", str(tmp_path / "mapping.toml"),
                                    "--model", "ease", "--trials", "1", "-o", str(tmp_path / "x")])
    assert both.exit_code != 0 and "--mapping" in both.output


def test_an_unknown_dataset_fails_before_the_study_is_created(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["tune", "--dataset", "nosuch", "--model", "fusion", "--trials", "1",
                                   "-o", str(tmp_path / "run")])
    assert res.exit_code != 0 and "unknown dataset 'nosuch'" in res.output and "--mapping" in res.output
    assert not (tmp_path / "run").exists()  # no study storage left behind


def test_confirm_rescores_the_best_trials_over_more_seeds(tmp_path: Path, trial_data: TrialData) -> None:
    from ctxrec.tuning.objective import seeded_score
    from ctxrec.tuning.run import confirm_best

    lines: list[str] = []
    cfg = TuneConfig(dataset="synthetic", model="sasrec", trials=3, out=str(tmp_path), overrides=TINY, confirm=2,
                     confirm_seeds=1)
    study = run_study(cfg, echo=lines.append, data=trial_data)
    space, _ = load_space(cfg.model, None, cfg.overrides)
    best, table = confirm_best(cfg, study, space, lines.append, trial_data)
    ranked = sorted((t for t in study.trials if t.value is not None), key=lambda t: -t.value)[:2]
    assert [r["trial"] for r in table] == [t.number for t in ranked] and all(r["seeds"] == [42, 43] for r in table)
    for row, t in zip(table, ranked, strict=True):
        assert row["valid"][0] == pytest.approx(t.value, abs=1e-6)
        assert row["valid"][1] == pytest.approx(seeded_score(space, t.params, trial_data, "ndcg@10", 43), abs=1e-6)
        assert row["mean"] == pytest.approx(sum(row["valid"]) / 2, abs=1e-6)
    assert best.number == max(table, key=lambda r: r["mean"])["trial"]
    # Seed 42 again reproduces the trial's own score (CPU, deterministic): the extra seeds are comparable.
    assert seeded_score(space, ranked[0].params, trial_data, "ndcg@10", 42) == pytest.approx(ranked[0].value, abs=1e-6)
    # The scores are kept in the study: confirming again trains nothing.
    n = len(lines)
    assert confirm_best(cfg, study, space, lines.append, trial_data)[1] == table
    assert not any(s.startswith("confirm trial") for s in lines[n:])
    with pytest.raises(ConfigError, match="no training seed"):
        TuneConfig(dataset="synthetic", model="ease", trials=3, out=str(tmp_path), confirm=2)
