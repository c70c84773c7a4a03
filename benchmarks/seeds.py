"""Several seeds of one benchmark command, folded into one result JSON.

A headline row is the mean over seeds: ``metrics`` keeps the mean (so every reader of the old one-seed
files still works), ``metrics_std`` the sample standard deviation (ddof=1) and ``per_seed`` each run's
``{"seed", "metrics", "stopped_by", "best_epoch", "epochs_run", "fit_seconds", "code"}`` (``code``: the
commit each seed was trained at, which differs between seeds trained in different sittings). A run that a time budget
cut is not a headline: ``stopped_by_time_budget`` lists its seeds and the table says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

FIRST_SEED = 42  # the library's default train.seed, so seed 1 of N is the old one-seed run


def seed_list(n: int) -> list[int]:
    """The seeds a ``--seeds N`` run uses: 42, 43, ..."""
    if n < 1:
        raise SystemExit(f"--seeds must be at least 1, got {n}")
    return [FIRST_SEED + i for i in range(n)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std); the std of a single value is 0."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def combine(runs: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """One result from per-seed results of the same command (the first run gives every other field)."""
    if len(runs) != len(seeds) or not runs:
        raise ValueError(f"{len(runs)} runs for {len(seeds)} seeds")
    out = dict(runs[0])
    keys = [k for k in runs[0]["metrics"] if all(isinstance(r["metrics"].get(k), (int, float)) for r in runs)]
    stats = {k: mean_std([float(r["metrics"][k]) for r in runs]) for k in keys}
    out["metrics"] = {k: round(m, 6) for k, (m, _) in stats.items()}
    out["metrics_std"] = {k: round(s, 6) for k, (_, s) in stats.items()}
    out["seeds"] = list(seeds)
    out["per_seed"] = []
    for seed, r in zip(seeds, runs, strict=True):
        info = r.get("fit_info") or {}
        out["per_seed"].append({"seed": seed, "metrics": r["metrics"], "stopped_by": info.get("stopped_by"),
                                "best_epoch": info.get("best_epoch"), "epochs_run": info.get("epochs_run"),
                                "fit_seconds": r.get("fit_seconds"), "code": r.get("code")})
    cut = [p["seed"] for p in out["per_seed"] if p["stopped_by"] == "time_budget"]
    out["stopped_by_time_budget"] = cut
    for k in ("fit_seconds", "seconds", "peak_rss_mib"):
        vals = [r[k] for r in runs if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = round(max(vals) if k == "peak_rss_mib" else sum(vals) / len(vals), 2)
    return out


def run_seeds(run_one: Callable[[int], dict[str, Any]], n: int) -> dict[str, Any]:
    """Call ``run_one(seed)`` for each of ``seed_list(n)`` and combine; one seed returns its run unchanged."""
    seeds = seed_list(n)
    runs = []
    for seed in seeds:
        runs.append(run_one(seed))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in runs[-1]["metrics"].items()
                                           if isinstance(v, float)), flush=True)
    return runs[0] if n == 1 else combine(runs, seeds)
