"""Frappe CTR benchmark with the BARS protocol (Frappe_x1): AUC and log loss on a random 7:2:1 split.

    python benchmarks/frappe_bars.py --model pointwise --name pointwise --seeds 3
    python benchmarks/frappe_bars.py --model fm --name fm --set variant=fm
    python benchmarks/frappe_bars.py --model fm --name deepfm --set variant=deepfm

The shared data has the raw CARSKit log, not the BARS ``frappe_x1`` files, so the protocol is rebuilt
from it by ``ctxrec.data.ctr.ctr_split``, exactly as follows (seeded, deterministic):

1. every one of the 96,203 log rows (user, item, 8 context fields) is a positive;
2. per positive, two negatives: the same user and context with an item drawn uniformly from the
   catalogue items that this (user, context) pair has no log row for (without replacement per row);
3. the 288,609 instances are shuffled with ``numpy.random.default_rng(seed)`` and cut 7:2:1 into
   train / validation / test (202,027 / 57,722 / 28,860, the BARS sizes);
4. vocabularies (context values, users) are fitted on the training part only (BARS min_categr_count=1);
   item text (name, category, description, MiniLM) is a frozen input for the pointwise model, and so is
   the user's history: the distinct apps of the user's *training positives*, most used first, with the
   instance's own log row left out for training instances (so the feature means the same at test time).

Models are selected on validation AUC (early stopping); AUC and log loss on the test part go to
``benchmarks/results/frappe/<name>.json`` (the ``metrics.json`` schema of ``ctxrec.experiment``).
These instances are not byte-identical to BARS's (their negatives were drawn once by AFN's authors),
so the published figures are a reference on the same protocol, not on the same rows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from seeds import run_seeds

    from ctxrec.config import apply_overrides, to_dict
    from ctxrec.data.ctr import ctr_split
    from ctxrec.data.datasets import load_dataset
    from ctxrec.evaluation.metrics import auc, log_loss
    from ctxrec.experiment import machine_description, peak_rss_mib
    from ctxrec.models import build_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="pointwise or fm")
    ap.add_argument("--name", help="result file name (default: the model kind)")
    ap.add_argument("--seed", type=int, default=2026, help="seed of the negatives and the split")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    ap.add_argument("--out", default=str(ROOT / "results" / "frappe"))
    ap.add_argument("--seeds", type=int, default=1,
                    help="train N models (train.seed 42, 43, ...) on the same split; report mean +- std")
    args = ap.parse_args(argv)
    if args.seeds > 1 and any(o.split("=", 1)[0].strip() == "train.seed" for o in args.set):
        raise SystemExit("--seeds sets train.seed itself: drop --set train.seed=... or use --seeds 1")
    name = args.name or args.model
    data = load_dataset("frappe", args.data_dir)
    split = ctr_split(data, seed=args.seed, n_neg=2)  # the protocol above (ctxrec.data.ctr)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    train_data = split.data  # vocabularies and histories from the training positives only
    # FM / DeepFM: the 10 BARS fields only. Pointwise: + item text and the user's history (apps used in
    # training, pooled by attention to the candidate app).
    defaults: dict[str, Any] = {"train": {"valid_metric": "auc", "batch_size": 512, "lr": 2e-3, "max_epochs": 100,
                                          "patience": 3, "progress": False}}
    if args.model == "pointwise":
        defaults.update({"use_history": True, "history_pooling": "target", "max_history": 100})
    else:
        defaults["use_history"] = False
    command = "python benchmarks/frappe_bars.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    def run_one(seed: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        cfg = apply_overrides(defaults, [*args.set, *([f"train.seed={seed}"] if args.seeds > 1 else [])])
        model = build_model(args.model, cfg)
        t_fit = time.perf_counter()
        model.fit_labelled(train_data, parts["train"], parts["valid"])  # type: ignore[attr-defined]
        fit_seconds = time.perf_counter() - t_fit
        p = model.predict_table(parts["test"])  # type: ignore[attr-defined]
        y = parts["test"]["label"].to_numpy()
        metrics = {"auc": auc(y, p), "logloss": log_loss(y, p), "valid_auc": float(model.fit_info["best_valid"])}
        history = model.fit_info.get("history") or []
        epoch_secs = [h["train_seconds"] for h in history if "train_seconds" in h]
        result = {
            "dataset": "frappe",
            "model": args.model,
            "name": name,
            "split": f"bars-frappe-x1 rebuilt from the raw log (2 same-context negatives per positive, random 7:2:1, seed {args.seed})",
            "metrics": {k: round(float(v), 6) for k, v in metrics.items()},
            "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events,
                              "instances": {k: len(v) for k, v in parts.items()}},
            "command": command,
            "seconds": round(time.perf_counter() - t0, 2),
            "fit_seconds": round(fit_seconds, 2),
            "seconds_per_epoch": round(sorted(epoch_secs)[len(epoch_secs) // 2], 2) if epoch_secs else None,
            "peak_rss_mib": peak_rss_mib(),
            "model_config": to_dict(model.config),
            "fit_info": {k: v for k, v in model.fit_info.items() if k != "history"},
            "valid_history": [{k: round(v, 5) for k, v in h.items()} for h in history],
            "machine": machine_description(),
        }
        return result

    result = run_seeds(run_one, args.seeds)
    out = Path(args.out) / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m, sd = result["metrics"], result.get("metrics_std") or {}
    print(f"frappe {name}: AUC {m['auc']:.4f}" + (f" +- {sd['auc']:.4f}" if "auc" in sd else "")
          + f" logloss {m['logloss']:.4f} (valid AUC {m['valid_auc']:.4f}) -> {out}", flush=True)
    return result


if __name__ == "__main__":
    main()
