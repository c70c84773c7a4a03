"""One experiment = dataset + split + model + evaluation, written to a run folder.

The one front door behind ``ctxrec train`` and ``benchmarks/run.py``: both build the experiment with
:func:`experiment_config` (validated in full, model config included, before any data is read) and run
it with :func:`run_experiment`, so both produce the same artefacts:

    run_dir/config.json     the resolved ExperimentConfig
    run_dir/model/          the saved model (config.json, model.safetensors, vocab/)
    run_dir/metrics.json    {"dataset", "model", "split", "metrics", "command", "seconds", "machine", ...}
    run_dir/history.json    per-epoch loss and validation metrics (neural models)
    run_dir/report.png      training curve (neural models)
    run_dir/tensorboard/    TensorBoard logs

The run folder is written under a hidden staging name next to it and renamed at the end, so a run that
fails leaves no half-written folder (and an earlier run at the same place intact).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.config import apply_overrides, from_dict, load_file, to_dict
from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.training.distributed import DistContext


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """What to train and how to evaluate it."""

    dataset: str = "ml-100k"
    data_dir: str | None = None
    """Defaults to $CTXREC_DATA."""
    split: str = "leave-one-out"
    model: str = "sasrec"
    """A registered model kind (``ctxrec.models.MODELS``)."""
    model_config: dict[str, Any] = field(default_factory=dict)
    """Validated against the model's typed config by :func:`check_experiment` (unknown keys are errors)."""
    ks: tuple[int, ...] = (5, 10, 20)
    exclude_seen: bool | None = None
    """Drop already-seen items from the ranking; None = the dataset's default (kept where users return to
    items: ``DatasetSchema.repeat_consumption``)."""


def machine_description() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_experiment(
    cfg: ExperimentConfig, run_dir: str | Path, *, command: str | None = None, data: Dataset | None = None
) -> dict[str, Any]:
    """Load, split, fit (early-stopping on validation), evaluate on test, save everything.

    ``data`` replaces loading ``cfg.dataset`` (used by the quickstart's synthetic fallback)."""
    from ctxrec.training.distributed import context

    model_cfg = check_experiment(cfg)  # every config error before any data is read or any folder written
    dist = context()  # under torchrun every rank trains; rank 0 alone evaluates and writes the run folder
    main = dist is None or dist.is_main
    out = Path(run_dir)
    stage = out.resolve().with_name(f".{out.resolve().name}.partial")
    if main:
        train_cfg = getattr(model_cfg, "train", None)
        _prepare_staging(stage, out, resume=bool(getattr(train_cfg, "resume", False)))
    try:
        result = _run(cfg, model_cfg, stage, command=command, data=data, dist=dist)
    except BaseException:
        if main:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    if main:
        _publish(stage, out)
    return result


def _run(cfg: ExperimentConfig, model_cfg: Any, out: Path, *, command: str | None, data: Dataset | None,
         dist: DistContext | None) -> dict[str, Any]:
    """The experiment itself, writing into ``out`` (the staging folder)."""
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import get_model_class
    from ctxrec.privacy import pseudonym_secret, pseudonymise_dataset

    main = dist is None or dist.is_main
    if main:
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    t0 = time.perf_counter()
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir)
    data = pseudonymise_dataset(data, pseudonym_secret())  # $CTXREC_PSEUDONYM_SECRET: train on the ids serve uses
    split = make_split(data, cfg.split)
    model = get_model_class(cfg.model)(model_cfg)
    t_fit = time.perf_counter()
    model.fit(split.train, valid=split.valid, run_dir=out)
    fit_seconds = time.perf_counter() - t_fit
    if not main:
        return {}
    exclude_seen = cfg.exclude_seen if cfg.exclude_seen is not None else not data.schema.repeat_consumption
    evaluator = Evaluator(EvalConfig(ks=cfg.ks, exclude_seen=exclude_seen))
    metrics = evaluator.evaluate(model, split.test)
    model.save(out / "model")
    info = {k: v for k, v in model.fit_info.items() if k != "history"}
    history = model.fit_info.get("history") or []
    epoch_secs = [h["train_seconds"] for h in history if "train_seconds" in h]
    train_cfg = getattr(model.config, "train", None)
    curve_key = f"valid_{train_cfg.valid_metric}" if train_cfg is not None else None
    if history and curve_key in history[0]:  # the validation curve, compact: runs compare at equal epochs, not only at the end
        info["valid_curve"] = {"metric": curve_key, "values": [round(float(h[curve_key]), 4) for h in history if curve_key in h]}
    result = {
        "dataset": cfg.dataset,
        "model": cfg.model,
        "split": cfg.split,
        "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
        "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events},
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "seconds": round(time.perf_counter() - t0, 2),
        "fit_seconds": round(fit_seconds, 2),
        "seconds_per_epoch": round(sorted(epoch_secs)[len(epoch_secs) // 2], 2) if epoch_secs else None,
        "peak_rss_mib": peak_rss_mib(),
        "exclude_seen": exclude_seen,
        "model_config": to_dict(model.config),
        "fit_info": info,
        "machine": machine_description(),
    }
    if dist is not None:
        result["distributed"] = {"world_size": dist.world_size, "backend": dist.backend}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    if history:
        from ctxrec.reports import plot_training_curve

        plot_training_curve(history, out / "report.png", title=f"{cfg.model} on {cfg.dataset}")
    return result


def _prepare_staging(stage: Path, out: Path, *, resume: bool) -> None:
    """An empty staging folder, or for a resumed run a copy of the run folder it continues (checkpoints,
    history and TensorBoard logs carry on)."""
    shutil.rmtree(stage, ignore_errors=True)  # left by a run that was killed outright
    if resume and out.is_dir():
        shutil.copytree(out, stage)
    else:
        stage.mkdir(parents=True)


def _publish(stage: Path, out: Path) -> None:
    """Replace ``out`` with the finished staging folder (the earlier run, if any, goes only now)."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(stage, out)
    shutil.rmtree(old, ignore_errors=True)


def check_experiment(cfg: ExperimentConfig) -> Any:
    """Everything about ``cfg`` that can be checked without data: the split name, the model kind and the
    model config (unknown keys at any depth, wrong types). Returns the model's typed config; each problem
    is a :class:`~ctxrec.errors.ConfigError` naming it."""
    from ctxrec.data.splits import SPLITS
    from ctxrec.models import get_model_class

    if cfg.split not in SPLITS:
        raise ConfigError(f"unknown split {cfg.split!r}; choose one of {sorted(SPLITS)}")
    return from_dict(get_model_class(cfg.model).config_class, cfg.model_config)


def experiment_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a dict, checked in full by :func:`check_experiment`."""
    cfg = from_dict(ExperimentConfig, d)
    check_experiment(cfg)
    return cfg


def experiment_config(
    config_file: str | Path | None = None,
    *,
    dataset: str | None = None,
    model: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    overrides: Sequence[str] = (),
) -> ExperimentConfig:
    """The experiment a front door asks for (``ctxrec train``, ``benchmarks/run.py``): an experiment file,
    then the options that are not None, then ``key=value`` overrides of the model config; validated by
    :func:`experiment_from_dict`."""
    raw = load_file(config_file) if config_file else {}
    for key, val in (("dataset", dataset), ("model", model), ("split", split), ("data_dir", data_dir)):
        if val is not None:
            raw[key] = val
    if overrides:
        mc = raw.get("model_config", {})
        if not isinstance(mc, dict):
            raise ConfigError(f"model_config must be a table, got {mc!r}")
        raw["model_config"] = apply_overrides(mc, overrides)
    return experiment_from_dict(raw)
