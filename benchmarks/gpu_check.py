"""GPU check: device selection, bf16 autocast, pinned non_blocking batches, sampled softmax at 1M items, DDP.

    CTXREC_DATA=/path/to/data python benchmarks/gpu_check.py            # about 5-10 minutes on one recent GPU

Needs a CUDA build of torch (docs/getting-started.md, "On a GPU machine") and exits with a message otherwise. Steps, each
recorded in ``benchmarks/results/gpu/gpu_check.json`` (and a Markdown table next to it):

1. ``sasrec_fp32`` / ``sasrec_bf16``: SASRec (full softmax CE, the ml-1m benchmark recipe) for
   ``--epochs`` epochs on ml-1m (the seeded ``synthetic`` dataset when ml-1m is absent), fp32 then bf16
   autocast: seconds per epoch, peak GPU memory, test NDCG@10 (full ranking), so bf16's speed-up and its
   (small) effect on quality are both visible;
2. ``large_1m_items``: one epoch of SASRec with sampled softmax on the 1M-item / 10M-event log of
   ``benchmarks/large_catalogue.py`` (bf16), events/s and peak GPU memory (use ``--skip-large`` to omit);
3. ``ddp``: when the machine has 2+ GPUs, ``ctxrec train --nproc <GPUs>`` (NCCL) on the same ml-1m run as
   step 1 (bf16), seconds and NDCG@10 next to the single-GPU figure.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
OUT = ROOT / "results" / "gpu"


def _sasrec_run(dataset: str, epochs: int, bf16: bool, data_dir: str | None) -> dict:
    import torch

    from ctxrec.experiment import ExperimentConfig, run_experiment

    cfg = ExperimentConfig(dataset=dataset, data_dir=data_dir, model="sasrec", model_config={
        "max_len": 200, "dropout": 0.2,
        "train": {"device": "cuda", "bf16": bf16, "batch_size": 128, "lr": 1e-3, "max_epochs": epochs,
                  "patience": epochs + 1, "progress": False}})
    torch.cuda.reset_peak_memory_stats()
    tag = "bf16" if bf16 else "fp32"
    res = run_experiment(cfg, REPO / "runs" / "bench" / "gpu" / f"{dataset}-sasrec-{tag}",
                         command=f"python benchmarks/gpu_check.py (step sasrec_{tag})")
    hist = res["fit_info"]
    return {"dataset": dataset, "bf16": bf16, "epochs": epochs, "ndcg@10": res["metrics"]["ndcg@10"],
            "hr@10": res["metrics"]["hr@10"], "seconds_per_epoch": res["seconds_per_epoch"],
            "fit_seconds": res["fit_seconds"], "best_epoch": hist["best_epoch"],
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1), "peak_rss_mib": res["peak_rss_mib"]}


def _large_run(negatives: int) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from large_catalogue import make_dataset  # type: ignore[import-not-found]

    from ctxrec.data.splits import leave_one_out
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import build_model

    t0 = time.perf_counter()
    data = make_dataset(1_000_000, 10_000_000, mean_len=50.0, max_user_len=103, seed=0)
    split = leave_one_out(data)
    prep = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    model = build_model("sasrec", {"max_len": 100, "loss": "sampled", "n_negatives": negatives,
                                   "train": {"device": "cuda", "bf16": True, "max_epochs": 1, "batch_size": 512,
                                             "progress": False}})
    model.fit(split.train, valid=None)
    epoch_s = model.fit_info["history"][0]["train_seconds"]
    rng = np.random.default_rng(0)
    cases = split.test.take(np.sort(rng.choice(len(split.test), 2000, replace=False)))
    m = Evaluator(EvalConfig(ks=(10,), metrics=("ndcg", "hr"), batch_size=256)).evaluate(model, cases)
    return {"items": data.n_items, "events": data.n_events, "train_events": split.train.n_events,
            "data_seconds": round(prep, 1), "epoch_seconds": round(epoch_s, 2),
            "events_per_second": round(split.train.n_events / epoch_s, 1),
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
            "ndcg@10_2000_test_users": round(m["ndcg@10"], 5), "final_loss": round(model.fit_info["history"][0]["loss"], 4)}


def _ddp_run(dataset: str, epochs: int, nproc: int, data_dir: str | None) -> dict:
    run_dir = REPO / "runs" / "bench" / "gpu" / f"{dataset}-sasrec-ddp{nproc}"
    cmd = [sys.executable, "-m", "ctxrec.cli", "train", "--dataset", dataset, "--model", "sasrec", "--nproc", str(nproc),
           "--set", "max_len=200", "--set", "dropout=0.2", "--set", "train.device=cuda", "--set", "train.bf16=true",
           "--set", "train.batch_size=128", "--set", f"train.max_epochs={epochs}", "--set", f"train.patience={epochs + 1}",
           "--set", "train.progress=false", "-o", str(run_dir)] + (["--data-dir", data_dir] if data_dir else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)  # its output goes into the error
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "command": shlex.join(cmd)}
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"nproc": nproc, "command": shlex.join(cmd[2:]), "wall_seconds": round(wall, 1), "fit_seconds": m["fit_seconds"],
            "seconds_per_epoch": m["seconds_per_epoch"], "ndcg@10": m["metrics"]["ndcg@10"], "distributed": m.get("distributed")}


def main(argv: list[str] | None = None) -> dict:
    import torch

    from ctxrec.data.datasets import resolve_data_dir
    from ctxrec.experiment import machine_description

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument("--negatives", type=int, default=1024)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_check: torch.cuda.is_available() is False (CPU build of torch, or no GPU); "
                         "install the CUDA build of torch first (docs/getting-started.md, 'On a GPU machine')")
    try:
        dataset = "ml-1m" if (Path(resolve_data_dir(args.data_dir)) / "ml-1m").is_dir() else "synthetic"
    except Exception:  # noqa: BLE001 - any data-dir problem: fall back to generated data
        dataset = "synthetic"
    result: dict = {"command": "python benchmarks/gpu_check.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
                    "machine": machine_description(), "gpus": torch.cuda.device_count(),
                    "bf16_supported": torch.cuda.is_bf16_supported(), "steps": {}}
    OUT.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        (OUT / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")

    steps = result["steps"]
    t0 = time.perf_counter()
    steps["sasrec_fp32"] = _sasrec_run(dataset, args.epochs, False, args.data_dir)
    save()
    steps["sasrec_bf16"] = _sasrec_run(dataset, args.epochs, True, args.data_dir)
    save()
    if not args.skip_large:
        steps["large_1m_items"] = _large_run(args.negatives)
        save()
    if torch.cuda.device_count() > 1:
        steps["ddp"] = _ddp_run(dataset, args.epochs, torch.cuda.device_count(), args.data_dir)
        save()
    result["total_seconds"] = round(time.perf_counter() - t0, 1)
    save()
    fp, bf = steps["sasrec_fp32"], steps["sasrec_bf16"]
    md = [f"# GPU check ({result['machine']['gpu']}, {result['gpus']} GPU(s), torch {result['machine']['torch']})", "",
          f"SASRec on {dataset}, {args.epochs} epochs, full softmax CE; test NDCG@10 with full ranking.", "",
          "| run | s/epoch | peak GPU MiB | NDCG@10 |", "|---|---|---|---|",
          f"| fp32 | {fp['seconds_per_epoch']} | {fp['peak_gpu_mib']} | {fp['ndcg@10']:.4f} |",
          f"| bf16 autocast | {bf['seconds_per_epoch']} | {bf['peak_gpu_mib']} | {bf['ndcg@10']:.4f} |"]
    if "large_1m_items" in steps:
        lg = steps["large_1m_items"]
        md += ["", (f"1M items / 10M events, sampled softmax, bf16: one epoch {lg['epoch_seconds']} s "
               f"({lg['events_per_second']:,.0f} events/s), peak GPU {lg['peak_gpu_mib']} MiB.")]
    if "ddp" in steps:
        md += ["", f"DDP ({steps['ddp'].get('nproc')} GPUs, NCCL): {json.dumps(steps['ddp'])}"]
    md += ["", f"Command: `{result['command']}`", ""]
    (OUT / "gpu_check.md").write_text("\n".join(md))
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
