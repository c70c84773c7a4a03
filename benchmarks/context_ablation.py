"""Does context help top-K recommendation? The same model with and without context, full ranking.

    python benchmarks/context_ablation.py --dataset frappe --models pointwise,fusion
    python benchmarks/context_ablation.py --table          # only rebuild benchmarks/CONTEXT.md

Per dataset, leave-one-out (last event = test, second-to-last = validation; datasets without
timestamps use file order), every model ranks the whole catalogue for (user, history, request
context) and is trained twice from the same config: with context, and with context removed
(``use_context=false``; on MovieLens also ``use_profile=false``, since there "context" means the
request time features plus the user's demographics). Reported:

* NDCG@10 / HR@10 on the test cases, with and without context;
* how much context changes the list: for the same test users, the request context is swapped for
  the context of another test case (a seeded derangement; on MovieLens the request time is moved by
  12 hours) and the top-10 lists are compared: users whose top-10 changes (count and share) and the
  mean number of the 10 items that change. A context-blind model must show 0 here (sanity check).

``frappe``, ``incarmusic`` and ``depaulmovie`` have the same item in several contexts of one user
(repeat consumption is the point of the data), so their ranking keeps seen items
(``exclude_seen=false``); MovieLens excludes them (standard). Results:
``benchmarks/results/context/<dataset>.json``; table: ``benchmarks/CONTEXT.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "context"
MOVIELENS = {"ml-100k", "ml-1m"}

# Per model: settings shared by both variants (small enough for a 2-core CPU; early stopping on valid NDCG@10).
BASE: dict[str, dict[str, Any]] = {
    "pointwise": {"d_field": 16, "mlp": [128, 64], "n_negatives": 4, "dropout": 0.1,
                  "train": {"lr": 1e-3, "batch_size": 1024, "max_epochs": 40, "patience": 4, "max_seconds": 300}},
    "fusion": {"d_model": 64, "n_layers": 2, "max_len": 50, "dropout": 0.2,
               "train": {"lr": 1e-3, "batch_size": 64, "max_epochs": 60, "patience": 5, "max_seconds": 300}},
}


def swapped(ev: Any, dataset: str, seed: int) -> Any:
    """The same cases with another case's request context (or the request time moved by 12 h)."""
    if dataset in MOVIELENS:
        return dataclasses.replace(ev, timestamps=ev.timestamps + 12 * 3600.0)
    rng = np.random.default_rng(seed)
    n = len(ev)
    perm = rng.permutation(n)
    donor = np.empty(n, dtype=np.int64)
    donor[perm] = np.roll(perm, 1)  # a derangement: nobody keeps their own context
    return dataclasses.replace(ev, contexts=[ev.contexts[d] for d in donor], timestamps=ev.timestamps[donor])


def top10_change(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    changed = np.array([len(set(x[:10]) - set(y[:10])) for x, y in zip(a, b, strict=True)])
    return {"users": len(a), "users_changed": int((changed > 0).sum()),
            "share_changed": round(float((changed > 0).mean()), 4), "mean_items_changed": round(float(changed.mean()), 3)}


def run_dataset(dataset: str, models: list[str], seeds: list[int], data_dir: str | None, sets: list[str]) -> dict[str, Any]:
    from ctxrec.config import apply_overrides, to_dict
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import leave_one_out
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.experiment import machine_description
    from ctxrec.models import build_model

    data = load_dataset(dataset, data_dir)
    split = leave_one_out(data)
    exclude_seen = not data.schema.repeat_consumption  # frappe, incarmusic, depaulmovie keep seen items
    ev = Evaluator(EvalConfig(ks=(10,), metrics=("ndcg", "hr"), exclude_seen=exclude_seen))
    alt = swapped(split.test, dataset, 0)
    rows = []
    for kind, seed, with_ctx in ((k, s, c) for k in models for s in seeds for c in (True, False)):
        cfg = json.loads(json.dumps(BASE[kind]))
        cfg["train"]["progress"] = False
        cfg["train"]["seed"] = seed
        if not with_ctx:
            cfg["use_context"] = False
            if dataset in MOVIELENS:
                cfg["use_profile"] = False
        cfg = apply_overrides(cfg, [s.split(":", 1)[1] for s in sets if s.startswith(kind + ":")])
        model = build_model(kind, cfg)
        t0 = time.perf_counter()
        model.fit(split.train, valid=split.valid)
        fit_s = time.perf_counter() - t0
        ranked = ev.rank(model, split.test)
        m = ev.metrics_from_ranking(ranked, split.test.targets, model.n_items)
        ranked_alt = ev.rank(model, alt)
        row = {"model": kind, "context": with_ctx, "seed": seed, "ndcg@10": round(m["ndcg@10"], 6), "hr@10": round(m["hr@10"], 6),
               "top10_change": top10_change(ranked, ranked_alt), "fit_seconds": round(fit_s, 1),
               "best_epoch": model.fit_info.get("best_epoch"), "epochs_run": model.fit_info.get("epochs_run"),
               "stopped_by": model.fit_info.get("stopped_by"), "model_config": to_dict(model.config)}
        rows.append(row)
        print(f"{dataset} {kind} seed {seed} context={with_ctx}: ndcg@10 {row['ndcg@10']:.4f} hr@10 {row['hr@10']:.4f} "
              f"top-10 changed for {row['top10_change']['users_changed']}/{row['top10_change']['users']} "
              f"({fit_s:.0f}s)", flush=True)
    return {"dataset": dataset, "split": "leave-one-out", "exclude_seen": exclude_seen,
            "context_swap": "request time +12 h" if dataset in MOVIELENS else "context of another test case (seeded derangement, seed 0)",
            "seeds": seeds,
            "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events,
                              "test_cases": len(split.test)},
            "rows": rows, "machine": machine_description()}


def make_table() -> str:
    lines = ["# Context ablation: top-K with and without context", "",
             "Generated by `python benchmarks/context_ablation.py` from `benchmarks/results/context/<dataset>.json`.",
             "Leave-one-out, full ranking over the catalogue; the same model and config trained with context and with",
             "context removed (`use_context=false`; MovieLens: also `use_profile=false`, i.e. no time features and no",
             "demographics). *top-10 changed*: test users whose top-10 changes when their request context is replaced",
             "by another test case's (MovieLens: request time moved by 12 h); *items*: mean number of the 10 that change.",
             "frappe / incarmusic / depaulmovie keep already-seen items in the ranking (repeat use in other contexts).",
             "With several seeds: mean ± std over seeds (small test sets: 42 users on incarmusic, 97 on depaulmovie).",
             "Both variants of a row get the same budget and patience (each JSON's model_config); a row is a fair",
             "comparison when both stopped for the same reason. Runs stopped by `time_budget` after a few epochs are",
             "undertrained: compare the two columns of a row, not the row with other benchmarks.", "",
             "| dataset | model | NDCG@10 with context | NDCG@10 without | change | HR@10 with / without | top-10 changed (users) | share | items | fit s (with / without) | stop, with context (best/epochs) | stop, without |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in sorted(OUT.glob("*.json")):
        r = json.loads(f.read_text())
        for kind in dict.fromkeys(x["model"] for x in r["rows"]):
            w = [x for x in r["rows"] if x["model"] == kind and x["context"]]
            wo = [x for x in r["rows"] if x["model"] == kind and not x["context"]]
            if not (w and wo):
                continue

            def mean(rows: list[dict], key: str, sub: str | None = None) -> float:
                return float(np.mean([x[key][sub] if sub else x[key] for x in rows]))

            def ndcg(rows: list[dict]) -> str:
                v = [x["ndcg@10"] for x in rows]
                return f"{np.mean(v):.4f}" + (f" ± {np.std(v):.4f}" if len(v) > 1 else "")

            nw, nwo = mean(w, "ndcg@10"), mean(wo, "ndcg@10")
            rel = (nw / nwo - 1) * 100 if nwo else float("nan")
            users = w[0]["top10_change"]["users"]
            lines.append(f"| {r['dataset']} | {kind} ({len(w)} seed{'s' if len(w) > 1 else ''}) | {ndcg(w)} | {ndcg(wo)} | {rel:+.1f}% | "
                         f"{mean(w, 'hr@10'):.4f} / {mean(wo, 'hr@10'):.4f} | {mean(w, 'top10_change', 'users_changed'):.1f} / {users} "
                         f"(blind: {mean(wo, 'top10_change', 'users_changed'):.0f}) | {mean(w, 'top10_change', 'share_changed'):.2f} | "
                         f"{mean(w, 'top10_change', 'mean_items_changed'):.1f} | {mean(w, 'fit_seconds'):.0f} / {mean(wo, 'fit_seconds'):.0f} | "
                         + ", ".join(f"{x['stopped_by']} ({x['best_epoch']}/{x['epochs_run']})" for x in w[:3]) + " | "
                         + ", ".join(f"{x['stopped_by']} ({x['best_epoch']}/{x['epochs_run']})" for x in wo[:3]) + " |")
    lines.append("")
    text = "\n".join(lines)
    path = ROOT / "CONTEXT.md"
    old = path.read_text() if path.exists() else ""
    tail = "## Context top-K against context-aware baselines"  # context_topk.py's section stays
    path.write_text(text + ("\n" + old[old.index(tail):] if tail in old else ""))
    return text


def merge_rows(path: Path, res: dict[str, Any]) -> dict[str, Any]:
    """Keep the rows of other models from an earlier result at ``path`` (this run's models replace
    theirs); returns that earlier result ({} if none)."""
    if not path.exists():
        return {}
    old: dict[str, Any] = json.loads(path.read_text())
    mine = {x["model"] for x in res["rows"]}
    res["rows"] = [x for x in old.get("rows", []) if x["model"] not in mine] + res["rows"]
    return old


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", default=[], help="repeatable")
    ap.add_argument("--models", default="pointwise,fusion")
    ap.add_argument("--seeds", type=int, default=1, help="train each variant with seeds 0..N-1 (mean ± std in the table)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                    help="config override for one model kind, e.g. pointwise:train.lr=0.003")
    ap.add_argument("--table", action="store_true", help="only rebuild CONTEXT.md")
    args = ap.parse_args(argv)
    command = "python benchmarks/context_ablation.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    for ds in args.dataset if not args.table else []:
        res = run_dataset(ds, args.models.split(","), list(range(args.seeds)), args.data_dir, args.set)
        res["command"] = command
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{ds}.json"
        old = merge_rows(path, res)
        if old:
            res["command"] = "; ".join(dict.fromkeys([*old.get("command", "").split("; "), command]))
        path.write_text(json.dumps(res, indent=2) + "\n")
    print(make_table())


if __name__ == "__main__":
    main()
