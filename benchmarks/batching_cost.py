"""What length-bucketed batches save (``ctxrec.training.batching``): seconds per training epoch, random
batches against 16-batch sorted pools, one recipe after the other in one process on the same machine.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/batching_cost.py --recipes amazon-beauty:fusion-ema,ml-1m:new

Each recipe (``RECIPES``: a dataset, a model and its ``--set`` flags, those of a results row) trains
``--epochs`` full epochs on the leave-one-out training split with each batching, without validation; the
figure is the median epoch's training seconds. ``real / padded`` is the share of the padded positions
(batch x its longest sequence, summed over an epoch) that hold an event: the Transformer's work scales
with the padded positions, the loss's with the real ones. What bucketing does to quality is in the
results rows trained with it (the closing notes of issue 18 list them). Writes
``benchmarks/results/batching_cost.json`` and ``BATCHING_COST.md``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from recipe_rows import checked_recipes, run_rows

ROOT = Path(__file__).resolve().parent

RECIPES: dict[str, tuple[str, str, list[str]]] = {
    # benchmarks/results/amazon-beauty/fusion-ema.json
    "amazon-beauty:fusion-ema": ("amazon-beauty", "fusion", [
        "use_text=false", "mixture=false", "max_len=50", "dropout=0.5", "train.batch_size=256", "train.lr=0.002",
        "train.ema=0.99"]),
    # benchmarks/results/amazon-scientific/fusion.json
    "amazon-scientific:fusion": ("amazon-scientific", "fusion", [
        "max_len=50", "dropout=0.3", "d_model=128", "n_heads=2", "train.ema=0.99", "use_text=true"]),
    # benchmarks/results/amazon-beauty/sasrec.json
    "amazon-beauty:sasrec": ("amazon-beauty", "sasrec", ["max_len=50", "dropout=0.5", "train.batch_size=256"]),
    # benchmarks/cost.py's recipes, in fp32 (this CPU has no bf16 instructions: benchmarks/results/ml-1m/step_cost_avx2.json)
    "ml-1m:current": ("ml-1m", "fusion", [
        "d_model=256", "n_heads=4", "mixture=false", "use_text=true", "max_len=200", "dropout=0.2",
        "train.batch_size=128", "train.lr=0.001"]),
    "ml-1m:new": ("ml-1m", "fusion", [
        "d_model=256", "n_heads=4", "mixture=false", "use_text=false", "max_len=200", "dropout=0.2",
        "attention_dropout=0", "loss=sampled", "n_negatives=1024", "train.batch_size=64", "train.lr=0.002"]),
    # a tiny one for the test
    "synthetic:smoke": ("synthetic", "sasrec", ["d_model=16", "n_layers=1", "n_heads=1", "max_len=50"]),
}


def padding_share(lengths: np.ndarray, batch_size: int, pool: int, seed: int = 0) -> float:
    """Real / padded positions over one epoch of :func:`length_bucketed_batches` with ``pool``."""
    from ctxrec.training.batching import length_bucketed_batches

    batches = length_bucketed_batches(lengths, batch_size, np.random.default_rng(seed), pool=pool)
    return float(lengths.sum() / sum(int(lengths[b].max()) * len(b) for b in batches))


def run_recipe(name: str, epochs: int, data_dir: str | None, valid: bool = False) -> dict[str, Any]:
    from ctxrec.config import apply_overrides
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.models import build_model
    from ctxrec.training import batching

    dataset, kind, flags = RECIPES[name]
    split = make_split(load_dataset(dataset, data_dir), "leave-one-out")
    cfg = apply_overrides({}, [*flags, f"train.max_epochs={epochs}", "train.progress=false"])
    max_len = int(cfg.get("max_len", 50))
    lengths = np.minimum(np.diff(split.train.user_offsets()), max_len)
    lengths = lengths[lengths > 0]
    batch_size = int(cfg.get("train", {}).get("batch_size", 128))
    row: dict[str, Any] = {"recipe": name, "dataset": dataset, "model": kind, "overrides": flags, "epochs": epochs}
    for label, pool in (("random", 1), ("bucketed", batching.SORTED_POOL)):
        model = build_model(kind, apply_overrides(cfg, [f"train.length_pool={pool}"]))
        t0 = time.perf_counter()
        model.fit(split.train, valid=split.valid if valid else None)
        wall = time.perf_counter() - t0
        secs = [h["train_seconds"] for h in model.fit_info["history"]]
        row[label] = {"pool": pool, "epoch_seconds": [round(s, 1) for s in secs],
                      "median_epoch_s": round(statistics.median(secs), 1), "fit_wall_s": round(wall, 1),
                      "real_over_padded": round(padding_share(lengths, batch_size, pool), 3),
                      "last_loss": round(float(model.fit_info["history"][-1]["loss"]), 4)}
        if valid:  # the validation curve: what each batching reaches per epoch (the test cases are not read)
            row[label]["valid_ndcg@10"] = [round(float(h["valid_ndcg@10"]), 4) for h in model.fit_info["history"]]
        print(f"{name} {label}: {row[label]['median_epoch_s']} s/epoch, real/padded {row[label]['real_over_padded']}",
              flush=True)
    row["speedup"] = round(row["random"]["median_epoch_s"] / row["bucketed"]["median_epoch_s"], 2)
    return row


def write_table(result: dict[str, Any], path: Path) -> None:
    m = result["machine"]
    lines = ["# Length-bucketed training batches", "",
             (f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {m.get('torch_threads')} "
              f"thread(s). Command: `{result['command']}`."), "",
             "| recipe | random s/epoch | bucketed s/epoch | speed-up | real/padded random | real/padded bucketed |",
             "|---|---|---|---|---|---|"]
    lines.extend(f"| {r['recipe']} | {r['random']['median_epoch_s']} | {r['bucketed']['median_epoch_s']} | "
                 f"{r['speedup']}x | {r['random']['real_over_padded']} | {r['bucketed']['real_over_padded']} |"
                 for r in result["rows"])
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, of {sorted(RECIPES)}")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--valid", action="store_true", help="validate after each epoch: NDCG@10 per epoch per batching")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "results" / "batching_cost.json"))
    args = ap.parse_args(argv)
    if args.epochs < 1:
        raise SystemExit(f"--epochs {args.epochs}: at least 1 epoch is needed to time one")
    names = checked_recipes(args.recipes, RECIPES)
    command = "python benchmarks/batching_cost.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    return run_rows(names, lambda n: run_recipe(n, args.epochs, args.data_dir, args.valid), out,
                    out.with_name("BATCHING_COST.md"), write_table, command)


if __name__ == "__main__":
    main()
