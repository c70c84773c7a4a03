"""``ctxrec tune`` end to end: run the study, then write its files and evaluate the best config on test once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.config import to_dict
from ctxrec.errors import CtxrecError
from ctxrec.tuning.objective import AUC, ctr_model_config, fit_ctr
from ctxrec.tuning.report import (
    CTR_CONFIG_NOTE,
    best_experiment,
    param_importances,
    plot_history,
    plot_importances,
    write_json,
    write_trials_csv,
)
from ctxrec.tuning.study import Echo, TuneConfig, counted, run_study, safe_url, task_space

if TYPE_CHECKING:
    import optuna

    from ctxrec.tuning.objective import CtrTrialData, TrialData
    from ctxrec.tuning.spaces import SearchSpace


def tune(cfg: TuneConfig, echo: Echo = print, data: TrialData | CtrTrialData | None = None) -> dict[str, Any]:
    """Run (or resume) the study, then :func:`finish` it. Returns the summary."""
    t0 = time.time()
    study = run_study(cfg, echo, data)
    return finish(cfg, study, echo, study_seconds=time.time() - t0, data=data)


def confirm_best(cfg: TuneConfig, study: optuna.Study, space: SearchSpace, echo: Echo = print,
                 data: TrialData | CtrTrialData | None = None) -> tuple[optuna.trial.FrozenTrial, list[dict[str, Any]]]:
    """Train the ``cfg.confirm`` best complete trials with ``cfg.confirm_seeds`` more seeds each (on
    validation, test sealed) and return the trial with the best mean score and the table behind it.
    Scores are kept in the study (user attrs), so a resumed study does not train them again."""
    from optuna.trial import TrialState

    from ctxrec.tuning.objective import load_trial_data, seeded_score

    done = sorted((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
                  key=lambda t: -float(t.value or 0.0))[: cfg.confirm]
    base = int(space.fixed.get("train.seed", 42))
    seeds = [base + i for i in range(1, cfg.confirm_seeds + 1)]
    table: list[dict[str, Any]] = []
    for t in done:
        key = f"confirm:{t.number}"
        stored = dict(study.user_attrs.get(key, {}))
        for seed in seeds:
            if str(seed) in stored:
                continue
            if data is None:
                data = load_trial_data(cfg.dataset, cfg.data_dir, cfg.split, mapping=cfg.mapping)
            stored[str(seed)] = seeded_score(space, t.params, data, cfg.metric, seed)
            study.set_user_attr(key, stored)
            echo(f"confirm trial {t.number} (validation {t.value:.4f} with seed {base}): seed {seed} "
                 f"{stored[str(seed)]:.4f}")
        values = [float(t.value or 0.0)] + [float(stored[str(s)]) for s in seeds]
        table.append({"trial": t.number, "seeds": [base, *seeds], "valid": [round(v, 6) for v in values],
                      "mean": round(sum(values) / len(values), 6)})
    chosen = max(table, key=lambda r: r["mean"])  # first of equals: the higher single score
    echo(f"confirmed: trial {chosen['trial']} has the best mean validation {cfg.metric} over "
         f"{len(chosen['seeds'])} seeds ({chosen['mean']:.4f}; the best single trial was {done[0].number})")
    return next(t for t in done if t.number == chosen["trial"]), table


def finish(cfg: TuneConfig, study: optuna.Study, echo: Echo = print, study_seconds: float | None = None,
           data: TrialData | CtrTrialData | None = None) -> dict[str, Any]:
    """Write the trials table, plots and best config; retrain the best config into ``tune/best`` and
    evaluate it on the test cases (the only time a study reads them). A finished study whose best trial
    already has its ``best/`` run is not retrained. An AUC study retrains with ``fit_labelled`` on the CTR
    split and reports test AUC and log loss (:func:`run_ctr`). With ``cfg.confirm``, "best" is the trial
    :func:`confirm_best` picks."""
    from ctxrec.experiment import experiment_from_dict, machine_description, run_experiment

    space, _ = task_space(cfg)
    out = cfg.tune_dir
    out.mkdir(parents=True, exist_ok=True)
    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    write_trials_csv(study, out / "trials.csv")
    plot_history(study, out / "history.png", cfg.metric)
    if not states["COMPLETE"]:
        errors = [t.user_attrs["error"] for t in trials if "error" in t.user_attrs]
        raise CtxrecError(f"no trial of study {cfg.study_name!r} completed ({states['PRUNED']} pruned, "
                          f"{states['FAIL']} failed{'; first error: ' + errors[0] if errors else ''}); "
                          f"see {out / 'trials.csv'}")
    best = study.best_trial
    confirmed: list[dict[str, Any]] | None = None
    if cfg.confirm:
        best, confirmed = confirm_best(cfg, study, space, echo, data)
    experiment = best_experiment(cfg, space, best.params)
    write_json(experiment, out / "best_config.json")
    importances = param_importances(study, cfg.seed)
    if isinstance(importances, dict):
        plot_importances(importances, out / "importance.png", f"parameter importance: {study.study_name}")
    else:
        (out / "importance.png").unlink(missing_ok=True)
        echo(f"note: no importance.png: {importances}")
    best_dir = out / "best"
    previous = _load(out / "summary.json")
    if previous.get("best_trial") == best.number and (best_dir / "metrics.json").exists():
        echo(f"best trial {best.number} was already evaluated on test: {best_dir}")
        result = _load(best_dir / "metrics.json")
    else:
        echo(f"best trial {best.number} (validation {cfg.metric} {best.value:.4f}): retraining it and "
             "evaluating once on the test cases")
        if cfg.metric == AUC:
            result = run_ctr(cfg, space, best.params, best_dir)
        else:
            command = f"ctxrec train {out / 'best_config.json'} -o {best_dir}"
            result = run_experiment(experiment_from_dict(experiment), best_dir, command=command)
    summary = {
        "dataset": cfg.dataset, "model": cfg.model, "split": cfg.split, "metric": cfg.metric,
        "study": cfg.study_name, "storage": safe_url(cfg.storage_url),
        "trials": counted(trials), "states": states,
        "trial_seconds": round(sum(t.duration.total_seconds() for t in trials if t.duration), 1),
        "study_seconds": round(study_seconds, 1) if study_seconds is not None else previous.get("study_seconds"),
        "best_trial": best.number, "best_valid": best.value, "best_params": best.params,
        "confirmed": confirmed,
        "retrained_valid": result.get("fit_info", {}).get("best_valid"),
        "test_metrics": result["metrics"],
        "importances": importances if isinstance(importances, dict) else None,
        "best_config": experiment, "best_run": str(best_dir),
        "command": cfg.command, "machine": machine_description(),
    }
    if cfg.metric == AUC:
        summary["best_config_note"] = CTR_CONFIG_NOTE
        echo(f"note: {CTR_CONFIG_NOTE}")
    write_json(summary, out / "summary.json")
    echo(f"tune folder: {out} (trials.csv, best_config.json, history.png"
         f"{', importance.png' if isinstance(importances, dict) else ''}, best/, summary.json)")
    return summary


def run_ctr(cfg: TuneConfig, space: SearchSpace, params: dict[str, Any], best_dir: Path) -> dict[str, Any]:
    """Retrain ``params`` on the CTR split with ``fit_labelled`` and evaluate it once on the test table:
    ``best_dir/metrics.json`` (the ``ctxrec train`` metrics schema, metrics ``auc`` and ``logloss``) and
    ``best_dir/model``."""
    from ctxrec.data.ctr import ctr_split
    from ctxrec.evaluation.metrics import auc, log_loss
    from ctxrec.experiment import load_data, machine_description, peak_rss_mib, staged_folder
    from ctxrec.models import build_model

    t0 = time.perf_counter()
    data = load_data(dataset=None if cfg.mapping else cfg.dataset, mapping=cfg.mapping, data_dir=cfg.data_dir)
    split = ctr_split(data)
    model = build_model(cfg.model, ctr_model_config(space.model_config(params)))
    with staged_folder(best_dir) as stage:
        t_fit = time.perf_counter()
        fit_ctr(model, split.data, split.train, split.valid, run_dir=str(stage))
        fit_seconds = time.perf_counter() - t_fit
        p = model.predict_table(split.test)  # type: ignore[attr-defined]  # fit_ctr checked it is a CTR model
        y = split.test["label"].to_numpy()
        model.save(stage / "model")
        result = {
            "dataset": cfg.dataset, "model": cfg.model, "split": split.describe(),
            "metrics": {"auc": round(float(auc(y, p)), 6), "logloss": round(float(log_loss(y, p)), 6)},
            "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events,
                              "instances": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)}},
            "command": cfg.command, "seconds": round(time.perf_counter() - t0, 2), "fit_seconds": round(fit_seconds, 2),
            "peak_rss_mib": peak_rss_mib(), "model_config": to_dict(model.config),
            "fit_info": {k: v for k, v in model.fit_info.items() if k != "history"},
            "machine": machine_description(),
        }
        write_json(result, stage / "metrics.json")
    return result


def _load(path: Any) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def retrain_seed(cfg: TuneConfig, params: dict[str, Any], experiment: dict[str, Any], seed: int,
                 seed_dir: Path, command: str, threads: int | None = None) -> dict[str, Any]:
    """One more seed of the best configuration, evaluated once on test: ``seed_dir/metrics.json``.

    A ``seed_dir`` that already holds that seed's metrics is read, not retrained, so a rerun after an
    interruption trains only the missing seeds. Top-level (picklable) so seeds can train in worker
    processes; ``threads`` caps torch's threads there."""
    from ctxrec.experiment import experiment_from_dict, run_experiment

    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    space, _ = task_space(cfg)
    ctr_params = {**params, "train.seed": seed}
    wanted = ctr_model_config(space.model_config(ctr_params)) if cfg.metric == AUC else experiment.get("model_config", {})
    done = _load(seed_dir / "metrics.json")
    if done.get("metrics") and _holds(done.get("model_config", {}), _seed_config(wanted, seed)):
        return done  # this seed of this configuration (a study that found a better trial trains it again)
    if cfg.metric == AUC:
        return run_ctr(cfg, space, ctr_params, seed_dir)
    exp = json.loads(json.dumps(experiment))
    train = exp.setdefault("model_config", {}).setdefault("train", {})
    train["seed"] = seed
    train.setdefault("progress", False)  # one summary line per seed in the log, not bars
    return run_experiment(experiment_from_dict(exp), seed_dir, command=command)


def _seed_config(model_config: dict[str, Any], seed: int) -> dict[str, Any]:
    """``model_config`` as seed ``seed`` trains it, without the settings that do not change the model."""
    train = {k: v for k, v in model_config.get("train", {}).items() if k != "progress"}
    return {**model_config, "train": {**train, "seed": seed}}


def _holds(saved: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Every setting in ``wanted`` has its value in ``saved`` (a run's full config holds the partial one)."""
    return all(_holds(saved.get(k) or {}, v) if isinstance(v, dict) and isinstance(saved.get(k), dict | None)
               else saved.get(k) == v for k, v in wanted.items())
