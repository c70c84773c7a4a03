"""Cold-start benchmark: items with no training events, and new users with no id.

Protocol (amazon-scientific by default): leave-one-out split; a seeded 10% of the catalogue is made
*cold*: all their events are removed from training (they stay in the catalogue, with their text). Test
cases are then split by whether the target is cold or warm, and every model ranks the full catalogue
for each case (history items excluded). New users: the same test cases with the user id removed and
only the last 3 history items given.

    python benchmarks/cold_start.py --dataset amazon-scientific

Writes benchmarks/results/<dataset>/cold_start.json and COLD_START.md beside it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent

MODELS = {
    "popularity": ("popularity", {}),
    "sasrec": ("sasrec", {"max_len": 50, "dropout": 0.5, "train": {"max_epochs": 200, "patience": 10, "max_seconds": 900, "progress": False}}),
    "fusion": ("fusion", {"max_len": 50, "dropout": 0.3, "id_dropout": 0.3,
                          "train": {"max_epochs": 200, "patience": 10, "max_seconds": 900, "progress": False}}),
    # the library's defaults, as a user gets them (issue 18: the cold/warm ratio with default flags)
    "fusion-default": ("fusion", {"train": {"progress": False}}),
}


def _value(text: str) -> object:
    """'0.5' -> 0.5, '10' -> 10, anything else stays a string."""
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def main(argv: list[str] | None = None) -> dict:
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import EvalSet, leave_one_out
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.experiment import machine_description, peak_rss_mib
    from ctxrec.models import build_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="amazon-scientific")
    ap.add_argument("--cold-frac", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default="popularity,sasrec,fusion")
    ap.add_argument("--max-epochs", type=int, default=None, help="cap epochs (smoke runs)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="MODEL:KEY=VALUE",
                    help="config override for one model, e.g. fusion:id_dropout=0.5")
    ap.add_argument("--variant", default="", help="row-name suffix for this invocation's models, e.g. '-iddrop0.5'")
    ap.add_argument("--id-scales", default="",
                    help="fusion: after one fit, also evaluate with the ID part of item vectors scaled by each of "
                         "these (comma-separated, e.g. 0.75,0.5,0.25; FusionConfig.id_scale), one row each; the "
                         "validation cases pick the scale with the best overall Recall@10")
    ap.add_argument("--inference", action="append", default=[], metavar="K=V,K=V",
                    help="fusion: after the fit, also evaluate with these inference options "
                         "(FusionRecommender.set_inference, e.g. cold_ids=neighbours), one row each; "
                         "validation picks among them as for --id-scales")
    ap.add_argument("--append", action="store_true",
                    help="add these rows to the existing result file instead of replacing it (same protocol only)")
    ap.add_argument("--table", action="store_true", help="only rebuild COLD_START.md from the result file")
    args = ap.parse_args(argv)
    dest = Path(args.out) if args.out else ROOT / "results" / args.dataset / "cold_start.json"
    if args.table:
        out = json.loads(dest.read_text())
        write_md(out, dest.with_name("COLD_START.md"))
        return out

    data = load_dataset(args.dataset, args.data_dir)
    split = leave_one_out(data)
    rng = np.random.default_rng(args.seed)
    cold = np.zeros(data.n_items, dtype=bool)
    cold[rng.choice(data.n_items, size=round(args.cold_frac * data.n_items), replace=False)] = True
    train = split.train.subset(~cold[split.train.item_idx], name=f"{data.name}/train-cold")
    cold_case = np.array([bool(cold[t[0]]) for t in split.test.targets])
    groups = {"cold_target": np.flatnonzero(cold_case), "warm_target": np.flatnonzero(~cold_case)}

    def new_users(ev: EvalSet) -> EvalSet:
        out = ev.take(np.arange(len(ev)))
        out.users = np.full(len(ev), -1, dtype=np.int64)
        out.histories = [h[-3:] for h in ev.histories]
        out.history_times = [t[-3:] for t in ev.history_times]
        out.history_rows = None if ev.history_rows is None else [r[-3:] for r in ev.history_rows]
        return out

    evaluator = Evaluator(EvalConfig(ks=(10, 20), metrics=("recall", "ndcg", "hr")))
    results: dict[str, dict] = {}
    from ctxrec.config import apply_overrides

    for name in args.models.split(","):
        kind, cfg = MODELS[name]
        cfg = json.loads(json.dumps(cfg))
        if args.max_epochs is not None and "train" in cfg:
            cfg["train"]["max_epochs"] = args.max_epochs
        cfg = apply_overrides(cfg, [kv.split(":", 1)[1] for kv in args.set if kv.split(":", 1)[0] == name])
        model = build_model(kind, cfg)
        t0 = time.perf_counter()
        model.fit(train, valid=split.valid)
        fit_s = time.perf_counter() - t0
        overrides = [kv.split(":", 1)[1] for kv in args.set if kv.split(":", 1)[0] == name]
        options: list[dict] = []
        if kind == "fusion":
            options = [{"id_scale": float(x)} for x in args.id_scales.split(",") if x]
            options += [{k: _value(v) for k, v in (kv.split("=", 1) for kv in spec.split(","))} for spec in args.inference]
            trained = {k: getattr(model.config, k) for k in model.INFERENCE_OPTIONS}  # type: ignore[attr-defined]
        for opts in [None, *options]:
            if opts is not None:
                model.set_inference(**{**trained, **opts})  # type: ignore[attr-defined]  # each row from the trained options
            row = {"fit_seconds": round(fit_s, 1)}
            for g, idx in groups.items():
                m = evaluator.evaluate(model, split.test.take(idx))
                row[g] = {k: round(v, 5) for k, v in m.items() if k in ("recall@10", "ndcg@10", "recall@20", "n_cases")}
            m = evaluator.evaluate(model, new_users(split.test))
            row["new_user_last3"] = {k: round(v, 5) for k, v in m.items() if k in ("recall@10", "ndcg@10", "n_cases")}
            row["cold_over_warm_recall@10"] = round(row["cold_target"]["recall@10"] / max(row["warm_target"]["recall@10"], 1e-9), 4)
            row["overrides"] = overrides + [f"{k}={v}" for k, v in (opts or {}).items()]
            if options:
                # Validation decides among the options (all its cases: ~10% have a cold target, as in test).
                row["valid_recall@10"] = round(evaluator.evaluate(model, split.valid)["recall@10"], 5)
            key = name + args.variant + "".join(f", {k} {v}" for k, v in (opts or {}).items())
            results[key] = row
            print(key, json.dumps(row), flush=True)
        if options:
            keys = [k for k in results if k.startswith(name + args.variant)]
            best = max(keys, key=lambda k: results[k]["valid_recall@10"])
            for k in keys:
                results[k]["chosen_on_validation"] = k == best

    command = "python benchmarks/cold_start.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    for row in results.values():
        row["command"] = command
    if args.append and dest.exists():
        old = json.loads(dest.read_text())
        for row in old["results"].values():
            row.setdefault("command", old["command"])
        results = {**old["results"], **results}
    out = {
        "dataset": args.dataset, "protocol": f"leave-one-out, {args.cold_frac:.0%} of items cold (seed {args.seed}), "
        "full ranking over all items, history excluded", "n_cold_items": int(cold.sum()),
        "results": results, "peak_rss_mib": peak_rss_mib(), "machine": machine_description(),
        "command": command,
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(out, indent=2) + "\n")
    write_md(out, dest.with_name("COLD_START.md"))
    return out


def write_md(out: dict, path: Path) -> None:
    """COLD_START.md from the result file's content."""
    results = out["results"]
    lines = [f"# Cold start on {out['dataset']}", "", out["protocol"] + f"; {out['n_cold_items']} cold items.", "",
             ("Commands: each row's `command` in cold_start.json (the last one: "
             f"`{out['command']}`)."), "",
             "| model | cold-target R@10 | cold-target N@10 | warm-target R@10 | warm-target N@10 | cold/warm R@10 | new user (last 3, no id) R@10 | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        mark = " (chosen on validation)" if r.get("chosen_on_validation") else ""
        lines.append(f"| {name}{mark} | {r['cold_target']['recall@10']:.4f} | {r['cold_target']['ndcg@10']:.4f} | "
                     f"{r['warm_target']['recall@10']:.4f} | {r['warm_target']['ndcg@10']:.4f} | "
                     f"{r['cold_over_warm_recall@10']:.3f} | {r['new_user_last3']['recall@10']:.4f} | {r['fit_seconds']} |")
    lines += ["", "Reading: the `id_scale` rows are the same trained model scored with the ID part of every warm",
              "item vector multiplied by the scale (`FusionRecommender.set_inference`, no retraining); validation",
              "(overall Recall@10) keeps scale 1. The `cold_ids neighbours` rows are likewise the same trained",
              "model with each ID-less item given the similarity-weighted ID part of the k warm items (10 unless",
              "the row says otherwise) whose MiniLM text vectors are closest. The `cold prior fitted` row was a separate training run with",
              "`cold_prior=fit` (an option since removed). With 803 cold-target cases the standard error of a cold Recall@10 near 0.05 is",
              "about 0.008: rows closer than that are not told apart. Every variant was read on the test cases",
              "(an exploration, each one a row), so the best row is not a tuned claim.", "",
              "Rows are in the order they were run, and the library's defaults changed between them (each name says",
              "what it had). The defaults today, no flags, are the rows `fusion-default (library defaults: cold-start",
              "settings auto)`: `id_dropout`, `temperature` and `cold_ids` are decided from the training catalogue and",
              "take 0.8, cosine/0.07 and 10 text neighbours here (10% of it cold); `train.seed` S rows are the same",
              "with another training seed."]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
