"""One experiment = dataset + split + model + evaluation, written to a run folder.

Used by ``ctxrec train`` and by ``benchmarks/run.py`` so both produce the same artefacts:

    run_dir/config.json     the resolved ExperimentConfig
    run_dir/model/          the saved model (config.json, model.safetensors, vocab/)
    run_dir/metrics.json    {"dataset", "model", "split", "metrics", "command", "seconds", "machine", ...}
    run_dir/history.json    per-epoch loss and validation metrics (neural models)
    run_dir/report.png      training curve (neural models)
    run_dir/tensorboard/    TensorBoard logs
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrec.config import from_dict, to_dict

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """What to train and how to evaluate it."""

    dataset: str = "ml-100k"
    data_dir: str | None = None
    """Defaults to $CTXREC_DATA."""
    split: str = "leave-one-out"
    model: str = "sasrec"
    model_config: dict[str, Any] = field(default_factory=dict)
    """Validated against the model's typed config (unknown keys are errors)."""
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
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import build_model
    from ctxrec.privacy import pseudonym_secret, pseudonymise_dataset

    from ctxrec.training.distributed import context

    dist = context()  # under torchrun every rank trains; rank 0 alone evaluates and writes the run folder
    main = dist is None or dist.is_main
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    if main:
        (out / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    t0 = time.perf_counter()
    if data is None:
        data = load_dataset(cfg.dataset, cfg.data_dir)
    data = pseudonymise_dataset(data, pseudonym_secret())  # $CTXREC_PSEUDONYM_SECRET: train on the ids serve uses
    split = make_split(data, cfg.split)
    model = build_model(cfg.model, cfg.model_config)
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


def experiment_from_dict(d: dict[str, Any]) -> ExperimentConfig:
    return from_dict(ExperimentConfig, d)
