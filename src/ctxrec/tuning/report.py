"""What a study leaves in ``<run>/tune/``: the trials table, the best config, plots, a summary.

    trials.csv          one row per trial: number, state, value, params, epochs, seconds, worker, error
    best_config.json    the best trial as an experiment config: ``ctxrec train best_config.json``
    best/               that command's run folder: the best config retrained, evaluated once on test
    history.png         validation metric per trial and the best so far
    importance.png      parameter importances (fANOVA) of the completed trials
    summary.json        counts, best trial, test metrics, command, machine
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.config import to_dict

if TYPE_CHECKING:
    import optuna

    from ctxrec.tuning.spaces import SearchSpace
    from ctxrec.tuning.study import TuneConfig


def write_trials_csv(study: optuna.Study, path: Path) -> None:
    """One row per trial, params as columns (dotted keys), in trial-number order."""
    trials = study.get_trials(deepcopy=False)
    names = sorted({n for t in trials for n in t.params})
    cols = ["number", "state", "value", *names, "epochs_run", "best_epoch", "pruned_at_epoch", "seconds", "worker", "error"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for t in sorted(trials, key=lambda t: t.number):
            pruned_at = t.last_step if t.state.name == "PRUNED" else None
            w.writerow([t.number, t.state.name, "" if t.value is None else f"{t.value:.6f}",
                        *[t.params.get(n, "") for n in names], t.user_attrs.get("epochs_run", ""),
                        t.user_attrs.get("best_epoch", ""), "" if pruned_at is None else pruned_at,
                        f"{t.duration.total_seconds():.2f}" if t.duration else "", t.user_attrs.get("worker", ""),
                        t.user_attrs.get("error", "interrupted" if t.user_attrs.get("interrupted") else "")])


def best_experiment(cfg: TuneConfig, space: SearchSpace, params: dict[str, Any]) -> dict[str, Any]:
    """The best trial as an experiment config dict that ``ctxrec train`` accepts. The CTR split of an AUC
    study is not a ``ctxrec train`` split: there the file trains the tuned config on ``leave-one-out``
    (the ranking protocol), and ``summary.json`` says so (:data:`CTR_CONFIG_NOTE`)."""
    from ctxrec.experiment import experiment_from_dict
    from ctxrec.tuning.objective import CTR_SPLIT

    split = "leave-one-out" if cfg.split == CTR_SPLIT else cfg.split
    raw = {"dataset": cfg.dataset, "split": split, "model": cfg.model, "model_config": space.model_config(params)}
    if cfg.mapping:
        raw["mapping"] = str(Path(cfg.mapping).resolve())
    if cfg.data_dir is not None:
        raw["data_dir"] = cfg.data_dir
    return to_dict(experiment_from_dict(raw))  # validated (and written in full) like any ctxrec train config


CTR_CONFIG_NOTE = (
    "best_config.json holds the tuned model config as a `ctxrec train` config, but `ctxrec train` runs the ranking "
    "protocol (split leave-one-out), not the CTR split this study tuned on. The CTR-trained model and its test "
    "AUC are in best/ (load best/model with ctxrec.load_model). To retrain on the CTR protocol in Python: "
    "split = ctxrec.data.ctr.ctr_split(data); model = build_model(kind, model_config with train.valid_metric='auc'); "
    "model.fit_labelled(split.data, split.train, split.valid); model.predict_table(split.test) (docs/tuning.md)")
"""Said in summary.json and printed by an AUC study: how to use its best_config.json."""


def plot_history(study: optuna.Study, path: Path, metric: str) -> None:
    """Validation metric of each complete trial, the last reported value of pruned ones, best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    done = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    pruned = [(t.number, t.intermediate_values[t.last_step]) for t in trials
              if t.state.name == "PRUNED" and t.last_step is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    if done:
        ax.scatter(*zip(*done, strict=True), label="complete", color="tab:blue", zorder=3)
        best, xs, ys = float("-inf"), [], []
        for n, v in done:
            best = max(best, v)
            xs.append(n)
            ys.append(best)
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned, strict=True), marker="x", color="grey", label="pruned (last reported)", zorder=2)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"optimisation history: {study.study_name}")
    ax.grid(alpha=0.3)
    if done or pruned:  # no trial finished (all failed): an empty plot, without an empty legend's warning
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def param_importances(study: optuna.Study, seed: int) -> dict[str, float] | str:
    """fANOVA importances of the completed trials, or why there are none."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return f"parameter importances need at least 2 complete trials, the study has {len(complete)}"
    try:
        return optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError) as exc:  # e.g. every trial drew the same values
        return f"parameter importances could not be computed: {exc}"


def plot_importances(importances: dict[str, float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA, share of variance)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")

