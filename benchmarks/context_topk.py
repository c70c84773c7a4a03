"""Context top-K: does a ctxrec model beat the context-aware baselines on the context logs?

    python benchmarks/context_topk.py --dataset frappe --dataset incarmusic --dataset depaulmovie --seeds 3
    python benchmarks/context_topk.py --table          # only rebuild benchmarks/CONTEXT.md's top-K section

Per dataset: leave-one-out (last event = test, second-to-last = validation), full ranking over the
catalogue with already-seen items KEPT (these logs repeat: the same app, song or film in another
context). Models: ``popularity``, ``context_popularity`` (most popular items in the request's
context, backing off field by field), ``fm`` (user, item, history and context fields, scored over
the whole catalogue), ``pointwise`` and ``fusion``; each trained with seeds 0..N-1 (deterministic
models once: the seed does not change them). For pointwise and fusion two more readings of the same
test cases: *anonymous* (no user, no history: context only) and *swapped context* (each case gets
another test case's context, a seeded derangement as in ``context_ablation.py``).

Results: ``benchmarks/results/context_topk/<dataset>.json``; table in ``benchmarks/CONTEXT.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "context_topk"
sys.path.insert(0, str(ROOT))
from context_ablation import merge_rows, swapped  # noqa: E402  (a sibling script: importable once ROOT is on sys.path)

DETERMINISTIC = {"popularity", "context_popularity"}
# Per model: small enough for a 2-core CPU; early stopping on validation NDCG@10 (epochs and patience, no clock).
BASE: dict[str, dict[str, Any]] = {
    "popularity": {},
    "context_popularity": {},
    "fm": {"train": {"lr": 1e-3, "batch_size": 1024, "max_epochs": 40, "patience": 4}},
    "pointwise": {"d_field": 16, "mlp": [128, 64], "n_negatives": 4, "dropout": 0.1,
                  "train": {"lr": 1e-3, "batch_size": 1024, "max_epochs": 40, "patience": 4}},
    # use_text / mixture pinned to what the committed rows ran with (they predate the "auto" defaults)
    "fusion": {"d_model": 64, "n_layers": 2, "max_len": 50, "dropout": 0.2, "use_text": True, "mixture": True,
               "train": {"lr": 1e-3, "batch_size": 64, "max_epochs": 60, "patience": 5}},
}
READINGS = {"pointwise", "fusion"}


def anonymous(ev: Any) -> Any:
    """The same cases as context-only requests: no user, no history."""
    n = len(ev)
    empty_i, empty_t = np.zeros(0, np.int64), np.zeros(0, np.float64)
    return dataclasses.replace(ev, users=np.full(n, -1, np.int64), histories=[empty_i] * n,
                               history_times=[empty_t] * n, history_rows=None)


def _summary(values: list[float]) -> tuple[float, float]:
    return round(float(np.mean(values)), 6), round(float(np.std(values)), 6)


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key=value`` (dotted key, JSON value, else a string) into a copy of a model config dict."""
    cfg = json.loads(json.dumps(cfg))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise SystemExit(f"--set takes key=value, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *path, last = key.split(".")
        node = cfg
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return cfg


@contextlib.contextmanager
def held(lock: str | None) -> Any:
    """Hold an exclusive ``flock`` on ``lock`` (a shared machine's heavy-work lock) for one fit; no-op without one."""
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_dataset(dataset: str, models: list[str], seeds: list[int], data_dir: str | None,
                overrides: list[str] | None = None, lock: str | None = None) -> dict[str, Any]:
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import leave_one_out
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.experiment import machine_description
    from ctxrec.models import build_model

    data = load_dataset(dataset, data_dir)
    split = leave_one_out(data)
    ev = Evaluator(EvalConfig(ks=(10,), metrics=("ndcg", "hr"), exclude_seen=False))
    alt, anon = swapped(split.test, dataset, 0), anonymous(split.test)
    rows = []
    for kind in models:
        per_seed, extra = [], []
        model_config = apply_overrides(BASE[kind], overrides or [])
        for seed in seeds[:1] if kind in DETERMINISTIC else seeds:
            cfg = json.loads(json.dumps(model_config))
            if "train" in cfg:
                cfg["train"].update(seed=seed, progress=False)
            model = build_model(kind, cfg)
            with held(lock):  # one fit and its evaluations per acquisition
                t0 = time.perf_counter()
                model.fit(split.train, valid=split.valid)
                fit_s = time.perf_counter() - t0
                m = ev.evaluate(model, split.test)
                if kind in READINGS:
                    extra.append({"anonymous": ev.evaluate(model, anon)["ndcg@10"], "swapped": ev.evaluate(model, alt)["ndcg@10"]})
            per_seed.append({"seed": seed, "metrics": {"ndcg@10": round(m["ndcg@10"], 6), "hr@10": round(m["hr@10"], 6)},
                             "fit_seconds": round(fit_s, 1), "stopped_by": model.fit_info.get("stopped_by"),
                             "best_epoch": model.fit_info.get("best_epoch"), "epochs_run": model.fit_info.get("epochs_run")})
            if "context_head" in model.fit_info:  # fusion's context prior: its own fit after the network's
                head = model.fit_info["context_head"]
                per_seed[-1]["context_head"] = {k: head[k] for k in ("best_epoch", "epochs_run", "best_valid_ndcg@10", "weight") if k in head}
            print(f"{dataset} {kind} seed {seed}: ndcg@10 {m['ndcg@10']:.4f} hr@10 {m['hr@10']:.4f} ({fit_s:.0f}s)"
                  + (f" anonymous {extra[-1]['anonymous']:.4f} swapped {extra[-1]['swapped']:.4f}" if extra else ""),
                  flush=True)
        nd, nd_std = _summary([p["metrics"]["ndcg@10"] for p in per_seed])
        hr, hr_std = _summary([p["metrics"]["hr@10"] for p in per_seed])
        row: dict[str, Any] = {"model": kind, "seeds": [p["seed"] for p in per_seed],
                               "metrics": {"ndcg@10": nd, "hr@10": hr}, "metrics_std": {"ndcg@10": nd_std, "hr@10": hr_std},
                               "per_seed": per_seed, "model_config": model_config}
        if kind == "context_popularity" or kind in READINGS:
            if kind == "context_popularity":  # context-only by construction: anonymous = its own answer
                model_anon = ev.evaluate(model, anon)["ndcg@10"]
                row["anonymous"] = {"ndcg@10": round(model_anon, 6)}
                row["swapped_context"] = {"ndcg@10": round(ev.evaluate(model, alt)["ndcg@10"], 6)}
            else:
                a, a_std = _summary([x["anonymous"] for x in extra])
                s, s_std = _summary([x["swapped"] for x in extra])
                row["anonymous"], row["swapped_context"] = {"ndcg@10": a, "std": a_std}, {"ndcg@10": s, "std": s_std}
        rows.append(row)
    return {"dataset": dataset,
            "protocol": "leave-one-out (last event test, second-to-last validation), full ranking, seen items kept",
            "dataset_stats": {"users": data.n_users, "items": data.n_items, "events": data.n_events,
                              "test_cases": len(split.test)},
            "rows": rows, "machine": machine_description()}


def make_table() -> str:
    lines = ["## Context top-K against context-aware baselines", "",
             "Generated by `python benchmarks/context_topk.py` from `benchmarks/results/context_topk/<dataset>.json`.",
             "Leave-one-out, full ranking, seen items kept (repeat consumption). Mean ± std over seeds (deterministic",
             "baselines: one run). *anonymous*: the same test cases with no user and no history (context only);",
             "*swapped*: each case scored with another test case's context. fusion answers a context-only request",
             "with its context prior (`context_head`) and mixes that prior into answers with a history at a weight",
             "chosen on validation (`context_prior_weight`, per seed in the JSON's `per_seed[].context_head`).", "",
             "| dataset | model | seeds | NDCG@10 | HR@10 | anonymous NDCG@10 | swapped-context NDCG@10 |",
             "|---|---|---|---|---|---|---|"]
    for f in sorted(OUT.glob("*.json")):
        r = json.loads(f.read_text())
        for x in r["rows"]:
            sd = x["metrics_std"]
            an = x.get("anonymous", {}).get("ndcg@10")
            sw = x.get("swapped_context", {}).get("ndcg@10")
            lines.append(f"| {r['dataset']} | {x['model']} | {len(x['seeds'])} | {x['metrics']['ndcg@10']:.4f} ± {sd['ndcg@10']:.4f} | "
                         f"{x['metrics']['hr@10']:.4f} ± {sd['hr@10']:.4f} | {'' if an is None else f'{an:.4f}'} | "
                         f"{'' if sw is None else f'{sw:.4f}'} |")
    lines.append("")
    return "\n".join(lines)


def write_context_md(section: str) -> None:
    """Replace (or append) the top-K section of CONTEXT.md, keeping the ablation table above it."""
    path = ROOT / "CONTEXT.md"
    text = path.read_text() if path.exists() else ""
    head = text.split("## Context top-K against context-aware baselines")[0].rstrip()
    path.write_text((head + "\n\n" if head else "") + section)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", action="append", default=[], help="repeatable")
    ap.add_argument("--models", default="popularity,context_popularity,fm,pointwise,fusion")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a model config field (dotted, JSON value; e.g. train.max_epochs=10), "
                         "repeatable; recorded in the row's model_config")
    ap.add_argument("--lock", default=None, metavar="PATH",
                    help="hold an exclusive flock on PATH during each fit (one seed at a time), e.g. /tmp/ctxrec-heavy.lock")
    ap.add_argument("--table", action="store_true", help="only rebuild the table")
    args = ap.parse_args(argv)
    command = "python benchmarks/context_topk.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    for ds in [] if args.table else args.dataset:
        res = run_dataset(ds, args.models.split(","), list(range(args.seeds)), args.data_dir, args.set, args.lock)
        for row in res["rows"]:
            row["command"] = command
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{ds}.json"
        merge_rows(path, res)
        path.write_text(json.dumps(res, indent=2) + "\n")
    section = make_table()
    write_context_md(section)
    print(section)


if __name__ == "__main__":
    main()
