"""The early-stopping floor in optimizer steps (``ctxrec.training.loop.MIN_PATIENCE_STEPS``), measured.

On a small log an epoch is one optimizer step, so ``patience`` epochs are a handful of steps. This trains
each model on the small context-aware datasets (random holdout per user, as a user without timestamps
would) with the floor off (0: patience counts epochs only) and on (the library's value), over seeds, and
writes ``benchmarks/results/patience/patience_steps.json`` and ``PATIENCE_STEPS.md``.

    python benchmarks/patience_steps.py --datasets incarmusic,depaulmovie --models fusion,sasrec --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from seeds import mean_std, seed_list

OUT = Path(__file__).resolve().parent / "results" / "patience"


def run_one(dataset: str, model: str, seed: int, floor: int) -> dict[str, Any]:
    from ctxrec.experiment import ExperimentConfig, run_experiment
    from ctxrec.training import loop

    loop.MIN_PATIENCE_STEPS = floor  # read by patience_epochs at each evaluation
    cfg = ExperimentConfig(dataset=dataset, model=model, split="random",
                           model_config={"train": {"seed": seed, "progress": False}})
    with tempfile.TemporaryDirectory() as tmp:
        res = run_experiment(cfg, Path(tmp) / "run")
    info = res["fit_info"]
    return {"ndcg@10": res["metrics"]["ndcg@10"], "hr@10": res["metrics"]["hr@10"],
            "best_epoch": info.get("best_epoch"), "epochs_run": info.get("epochs_run"),
            "fit_seconds": res.get("fit_seconds"), "n_cases": res["metrics"]["n_cases"]}


def main() -> None:
    from ctxrec.experiment import code_version, machine_description
    from ctxrec.training import loop

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="incarmusic,depaulmovie")
    ap.add_argument("--models", default="fusion,sasrec")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    default = loop.MIN_PATIENCE_STEPS
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets.split(","):
        for model in args.models.split(","):
            for floor in (0, default):
                runs = [run_one(dataset, model, s, floor) for s in seed_list(args.seeds)]
                n, sd = mean_std([r["ndcg@10"] for r in runs])
                h, hsd = mean_std([r["hr@10"] for r in runs])
                rows.append({"dataset": dataset, "model": model, "min_patience_steps": floor,
                             "ndcg@10": round(n, 4), "ndcg@10_std": round(sd, 4), "hr@10": round(h, 4),
                             "hr@10_std": round(hsd, 4), "per_seed": runs})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_seed"}), flush=True)
    command = "python benchmarks/patience_steps.py " + " ".join(sys.argv[1:])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "patience_steps.json").write_text(json.dumps(
        {"rows": rows, "seeds": seed_list(args.seeds), "split": "random", "command": command,
         "machine": machine_description(), "code": code_version()}, indent=1))
    lines = ["# Early stopping: a floor in optimizer steps", "",
             (f"Machine: {machine_description()['cpu']}, {machine_description()['cores']} cores. Command: `{command}`. "
              "Random holdout per user, test NDCG@10 / HR@10, mean +- std over seeds; 0 = patience in epochs only "
              "(before), the other row the library's default floor."), "",
             "| dataset | model | min patience steps | ndcg@10 | hr@10 | epochs run (per seed) | test cases |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        eps = ", ".join(str(p["epochs_run"]) for p in r["per_seed"])
        lines.append(f"| {r['dataset']} | {r['model']} | {r['min_patience_steps']} | {r['ndcg@10']:.4f} +- "
                     f"{r['ndcg@10_std']:.4f} | {r['hr@10']:.4f} +- {r['hr@10_std']:.4f} | {eps} | "
                     f"{int(r['per_seed'][0]['n_cases'])} |")
    (OUT / "PATIENCE_STEPS.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
