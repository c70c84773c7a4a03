"""The main job: baselines and the best ctxrec model side by side on ml-100k, in minutes on a CPU.

Falls back to a seeded synthetic dataset (and says so) when ml-100k is neither in the data
directory nor downloadable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The models the quickstart trains, the fusion model last (the one it shows), each with its defaults: what a
# user gets without flags (fusion decides use_text / mixture on validation, "auto"). `ctxrec tune` finds more.
QUICKSTART_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("popularity", {}),
    ("ease", {}),
    ("sasrec", {"train": {}}),
    ("fusion", {"train": {}}),
]


def load_quickstart_data(data_dir: str | None, echo: Callable[[str], None]) -> tuple[Any, bool]:
    """ml-100k if available (downloading it when the network allows), else the synthetic simulator."""
    from ctxrec.data.datasets import load_dataset
    from ctxrec.errors import DatasetNotFoundError

    try:
        return load_dataset("ml-100k", data_dir), False
    except DatasetNotFoundError as exc:
        from ctxrec.data.synthetic import SimulatorConfig, simulate

        echo(f"ml-100k is not available ({exc}).")
        echo("Running on a seeded SYNTHETIC dataset instead (ctxrec.data.synthetic, seed 0): figures below are "
             "not MovieLens figures.")
        return simulate(SimulatorConfig(n_users=800, n_items=600, seed=0)), True


def run_quickstart(*, data_dir: str | None, out: Path, budget_seconds: float, echo: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    from ctxrec.experiment import ExperimentConfig, run_experiment
    from ctxrec.models import load_model
    from ctxrec.queries import RecQuery
    from ctxrec.reports import auto_decisions, print_metrics

    t0 = time.perf_counter()
    data, synthetic = load_quickstart_data(data_dir, echo)
    echo(f"dataset {data.name}: {data.n_users:,} users, {data.n_items:,} items, {data.n_events:,} events; "
         "leave-one-out split, full ranking over all items")
    results: dict[str, dict[str, float]] = {}
    for kind, base_cfg in QUICKSTART_MODELS:
        mcfg = base_cfg
        if "train" in mcfg:  # the neural models: a time budget each, so the quickstart stays short
            mcfg = {**mcfg, "train": {**mcfg["train"], "max_seconds": budget_seconds, "progress": False}}
        cfg = ExperimentConfig(dataset=data.name, model=kind, model_config=mcfg)
        echo(f"training {kind} ...")
        res = run_experiment(cfg, out / kind, data=data, command="ctxrec quickstart")
        results[kind] = res["metrics"]
        decided = auto_decisions(res.get("fit_info"))
        chose = f" {decided}" if decided else ""
        timed_out = (res.get("fit_info") or {}).get("stopped_by") == "time_budget"
        cut = f"; stopped by --budget-seconds {budget_seconds:g}, a longer budget may score higher" if timed_out else ""
        echo(f"  {kind}: ndcg@10 {res['metrics']['ndcg@10']:.4f}  hr@10 {res['metrics']['hr@10']:.4f}  "
             f"({res['fit_seconds']:.0f}s{cut}){chose}")

    print_metrics(results)
    best = QUICKSTART_MODELS[-1][0]
    model = load_model(out / best)
    user = data.user_vocab.ids[0]
    recs = model.recommend([RecQuery(user_id=user)], k=5)[0]
    titles = data.items.reindex(recs.item_ids)
    title_col = "title" if "title" in titles.columns else None
    echo(f"\nexample: top-5 {best} recommendations for user {user}:")
    for i, (item, score) in enumerate(zip(recs.item_ids, recs.scores, strict=True), 1):
        t = titles.loc[item, title_col] if title_col else ""
        echo(f"  {i}. {item:<8} {score:7.3f}  {t}")
    echo(f"\nrun folders (config, model, metrics.json, report.png, tensorboard/) are in {out}/; "
         f"total {time.perf_counter() - t0:.0f}s" + (" [synthetic data]" if synthetic else ""))
    return results
