"""Training cost of fusion recipes side by side (issue 18): wall time to a test NDCG@10 target and peak RSS.

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/cost.py --dataset ml-1m --target 0.19 \\
        --recipes current,new --stop-at-target current,new --budget new=1800

Each recipe (a named list of ``--set`` overrides of the fusion model, in ``RECIPES``) trains in its own
process, so its peak RSS is its own, on the leave-one-out split with the model's usual early stopping on
validation NDCG@10. After every epoch a probe scores the *test* cases with the weights of that epoch:
the probe only times when the target is reached (model selection still reads validation alone), and
its own seconds are taken off the clock, so ``time_to_target_s`` is what the recipe costs without it.
``--budget NAME=SECONDS`` ends that recipe once its clock (probe excluded) passes SECONDS, and it is then
judged by the probe at its best-validation epoch (the issue's 30 minutes for the new recipe; a
``train.max_seconds`` would count the probe's time too). ``--stop-at-target NAME`` ends that recipe
once it reaches the target (the current recipe's last hour
adds nothing to the comparison). A recipe that runs to its end is evaluated on test with its selected
(best-validation) weights. Writes ``benchmarks/results/<dataset>/cost.json``: every recipe's row under
``recipes``, and ``current`` / ``new`` in the shape the issue asks for.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

RECIPES: dict[str, list[str]] = {
    # the ml-1m fusion headline of benchmarks/results/ml-1m/fusion.json, without its time budget, in fp32: it was
    # recorded with train.bf16=true on a CPU with bf16 instructions; on one without (AVX2 only) bf16 is emulated and
    # 16x slower than fp32 (benchmarks/results/ml-1m/step_cost_avx2.json), and train.bf16 warns there. It had text
    # and no context prior (neither "auto" pilots nor the prior existed then): both said, as the headline ran
    "current": ["d_model=256", "n_heads=4", "mixture=false", "use_text=true", "max_len=200", "dropout=0.2",
                "train.batch_size=128", "train.lr=0.001", "train.patience=10", "train.max_epochs=200",
                "context_head=false"],
    # issue 18's cheaper recipe: no attention dropout (CPU attention takes its fused kernel), a sampled
    # softmax over 1,024 log-Q-corrected negatives instead of all 3,416 items, no text (on ml-1m it cost
    # 6.6% at equal time), so no "auto" pilot runs either; twice the steps per epoch (batch 64) at twice the
    # learning rate, since at batch 128 and lr 0.001 it gained only ~0.004 validation NDCG@10 an epoch
    # (0.1286 after 6 epochs, 20 minutes); constant learning rate, random batches, fp32 as "current" (it was
    # "new" until session 25: 0.1648 at 30 minutes, benchmarks/results/ml-1m/cost-new-attempt.json and git history)
    "constant-d256": ["d_model=256", "n_heads=4", "mixture=false", "use_text=false", "max_len=200", "dropout=0.2",
                      "attention_dropout=0", "loss=sampled", "n_negatives=1024", "train.batch_size=64",
                      "train.lr=0.002", "train.patience=10", "train.max_epochs=200"],
    # "new" planned as a fixed number of epochs: the learning rate decays along a cosine to ~0 over them
    # (train.lr_schedule), and no context prior is fitted after training (on ml-1m it added 0.0006 validation
    # NDCG@10 for ~8 minutes of fitting and weight choice; it runs after the last probe, so only the
    # recipe's total time sees it)
    "cosine": ["d_model=256", "n_heads=4", "mixture=false", "use_text=false", "max_len=200", "dropout=0.2",
               "attention_dropout=0", "loss=sampled", "n_negatives=1024", "train.batch_size=64", "train.lr=0.002",
               "train.lr_schedule=cosine", "train.max_epochs=9", "context_head=false"],
    # the same at half the width (about half the step cost, benchmarks/results/ml-1m/step_cost.json) for
    # about twice the epochs
    "cosine-d128": ["d_model=128", "n_heads=2", "mixture=false", "use_text=false", "max_len=200", "dropout=0.2",
                    "attention_dropout=0", "loss=sampled", "n_negatives=1024", "train.batch_size=64",
                    "train.lr=0.002", "train.lr_schedule=cosine", "train.max_epochs=16", "context_head=false"],
    # issue 18's cheaper recipe, third form: d 128 under the cosine schedule (the width and the schedule
    # measured above), on length-bucketed batches (train.length_pool: sorted pools of 16 batches, 1.4x less
    # padding work on ml-1m) so that about 30 epochs fit in the 30 minutes
    "new": ["d_model=128", "n_heads=2", "mixture=false", "use_text=false", "max_len=200", "dropout=0.2",
            "attention_dropout=0", "loss=sampled", "n_negatives=1024", "train.batch_size=64", "train.lr=0.002",
            "train.lr_schedule=cosine", "train.max_epochs=30", "train.length_pool=16", "context_head=false"],
    # tiny recipes for tests and smoke runs (the simulator, ml-100k)
    "smoke-a": ["d_model=16", "n_layers=1", "n_heads=1", "use_text=false", "mixture=false", "train.max_epochs=3"],
    "smoke-b": ["d_model=32", "n_layers=1", "n_heads=1", "use_text=false", "mixture=false", "train.max_epochs=3"],
}


class TargetReached(Exception):
    """Raised by the epoch probe to end a ``--stop-at-target`` recipe."""


class BudgetSpent(Exception):
    """Raised by the epoch probe to end a recipe whose ``--budget`` is spent."""


def run_recipe(dataset: str, name: str, target: float, stop: bool, data_dir: str | None,
               budget_s: float | None = None, seed: int | None = None) -> dict[str, Any]:
    """Train one recipe in this process with the per-epoch test probe; returns its row."""
    from ctxrec.config import apply_overrides
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.experiment import peak_rss_mib
    from ctxrec.models import build_model
    from ctxrec.training.loop import epoch_reporter

    overrides = [*RECIPES[name], "train.progress=false", *([f"train.seed={seed}"] if seed is not None else [])]
    data = load_dataset(dataset, data_dir)
    split = make_split(data, "leave-one-out")
    model = build_model("fusion", apply_overrides({}, overrides))
    evaluator = Evaluator(EvalConfig(ks=(10,), metrics=("ndcg", "hr"), exclude_seen=not data.schema.repeat_consumption))
    curve: list[dict[str, float]] = []
    probe_s = 0.0
    reached: dict[str, float] = {}
    t0 = time.perf_counter()

    def probe(epoch: int, valid: float) -> None:
        nonlocal probe_s
        p0 = time.perf_counter()
        test = evaluator.evaluate(model, split.test)
        probe_s += time.perf_counter() - p0
        clock = time.perf_counter() - t0 - probe_s
        curve.append({"epoch": epoch, "seconds": round(clock, 1), "valid_ndcg@10": round(valid, 4),
                      "test_ndcg@10": round(test["ndcg@10"], 4), "test_hr@10": round(test["hr@10"], 4)})
        print(f"{name} {curve[-1]}", flush=True)
        if not reached and test["ndcg@10"] >= target:
            reached.update(epoch=epoch, seconds=round(clock, 1))
            if stop:
                raise TargetReached
        if budget_s is not None and clock >= budget_s:
            raise BudgetSpent

    stopped_at_target = budget_spent = False
    with epoch_reporter(probe):
        try:
            model.fit(split.train, valid=split.valid)
        except TargetReached:
            stopped_at_target = True
        except BudgetSpent:
            budget_spent = True
    fit_s = time.perf_counter() - t0 - probe_s
    row: dict[str, Any] = {
        "recipe": name, "overrides": RECIPES[name], "seed": model.config.train.seed, "budget_s": budget_s, "budget_spent": budget_spent,
        f"time_to_{target:g}_s": reached.get("seconds"),
        "epoch_reaching_target": reached.get("epoch"), "stopped_at_target": stopped_at_target,
        "fit_seconds_without_probe": round(fit_s, 1), "probe_seconds": round(probe_s, 1),
        "epochs": len(curve), "peak_rss_mib": peak_rss_mib(), "curve": curve,
    }
    if stopped_at_target:  # the probe's figures at the epoch that reached the target (that epoch's weights)
        last = curve[-1]
        row["test_metrics"] = {"ndcg@10": last["test_ndcg@10"], "hr@10": last["test_hr@10"]}
        row["test_metrics_are"] = "the per-epoch probe at the epoch that reached the target (no model selection)"
    elif budget_spent:  # model selection on validation over the epochs run, figures from that epoch's probe
        best = max(curve, key=lambda c: c["valid_ndcg@10"])
        row["test_metrics"] = {"ndcg@10": best["test_ndcg@10"], "hr@10": best["test_hr@10"]}
        row["test_metrics_are"] = f"the per-epoch probe at the best-validation epoch ({best['epoch']}) within the budget"
    else:
        final = evaluator.evaluate(model, split.test)
        row["test_metrics"] = {k: round(float(v), 6) for k, v in final.items()}
        row["fit_info"] = {k: v for k, v in model.fit_info.items() if k not in ("history", "valid_curve")}
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--target", type=float, required=True, help="test NDCG@10 to time")
    ap.add_argument("--recipes", default="current", help=f"comma-separated, of {sorted(RECIPES)}")
    ap.add_argument("--stop-at-target", default="", help="recipes that end once they reach the target")
    ap.add_argument("--budget", action="append", default=[], metavar="NAME=SECONDS",
                    help="end recipe NAME once its clock (probe excluded) passes SECONDS; repeatable")
    ap.add_argument("--seed", type=int, default=None,
                    help="train.seed for every recipe (default: the model's, 42): the seed spread of a time to target")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="default benchmarks/results/<dataset>/cost.json")
    ap.add_argument("--gather-seeds", default=None, metavar="RECIPE",
                    help="train nothing: RECIPE's rows from the --out file and from cost_seeds/RECIPE-seed*.json "
                         "(runs with --seed) -> mean +- std of its time to target, test figures and peak RSS")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: train this recipe
    ap.add_argument("--row-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    stop = {s for s in args.stop_at_target.split(",") if s}
    budgets: dict[str, float] = {}
    for spec in args.budget:
        name, _, secs = spec.partition("=")
        try:
            budgets[name] = float(secs)
        except ValueError:
            raise SystemExit(f"--budget {spec!r}: expected NAME=SECONDS, e.g. new=1800") from None
    out = Path(args.out) if args.out else ROOT / "results" / args.dataset / "cost.json"
    if args.gather_seeds:
        return gather_seeds(out, args.gather_seeds, args.target)
    if args.one:
        row = run_recipe(args.dataset, args.one, args.target, args.one in stop, args.data_dir, budgets.get(args.one),
                         args.seed)
        Path(args.row_out).write_text(json.dumps(row) + "\n")
        return row
    names = [n for n in args.recipes.split(",") if n]
    unknown = [n for n in [*names, *stop, *budgets] if n not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; known: {sorted(RECIPES)} (add one to RECIPES)")
    command = "python benchmarks/cost.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    rows: dict[str, Any] = {}
    result: dict[str, Any] = {}
    for name in names:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--dataset", args.dataset, "--target", str(args.target),
                   "--one", name, "--row-out", f.name, "--stop-at-target", args.stop_at_target,
                   *[a for spec in args.budget for a in ("--budget", spec)],
                   *(["--seed", str(args.seed)] if args.seed is not None else []),
                   *(["--data-dir", args.data_dir] if args.data_dir else [])]
            subprocess.run(cmd, check=True)
            rows[name] = json.loads(Path(f.name).read_text())
        r = rows[name]
        print(f"{name}: time to {args.target:g} {r[f'time_to_{args.target:g}_s']} s (epoch {r['epoch_reaching_target']}), "
              f"peak RSS {r['peak_rss_mib']} MiB" + (f", test {r['test_metrics']}" if "test_metrics" in r else ""), flush=True)
        result = _result(args, rows, command, names)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")  # after each recipe: a cut run keeps what it measured
        write_table(result, out.with_suffix(".md"))
    print(f"-> {out}")
    return result


def gather_seeds(out: Path, recipe: str, target: float) -> dict[str, Any]:
    """The seed spread of one recipe: its row in ``out`` (a side-by-side run) and its rows in
    ``cost_seeds/<recipe>-seed<S>.json`` beside it (runs with ``--seed S``), one per seed, into
    ``cost_seeds/<recipe>.json`` / ``.md`` and the ``seeds`` entry of ``out``'s ``recipe`` block."""
    import statistics

    key = f"time_to_{target:g}_s"
    if not out.exists():
        raise SystemExit(f"--gather-seeds: no {out} (the side-by-side run's file); run the recipes first or pass --out")
    main_result = json.loads(out.read_text())
    found = {f: json.loads(f.read_text())["recipes"] for f in [out, *sorted((out.parent / "cost_seeds").glob(f"{recipe}-seed*.json"))]}
    files = [f for f, recipes in found.items() if recipe in recipes]
    if not files:
        raise SystemExit(f"--gather-seeds {recipe!r}: no row of that recipe in {out} or {out.parent / 'cost_seeds'}; "
                         f"recipes in {out.name}: {sorted(main_result['recipes'])}")
    rows = [found[f][recipe] for f in files]
    per_seed = [{"seed": r.get("seed", 42), key: r[key], "epoch_reaching_target": r["epoch_reaching_target"],
                 "test_metrics": r.get("test_metrics"), "peak_rss_mib": r["peak_rss_mib"],
                 "selected_then": _selected_then(r)} for r in rows]
    if len({p["seed"] for p in per_seed}) != len(per_seed):
        raise SystemExit(f"two rows of {recipe} have the same seed: {[p['seed'] for p in per_seed]}")

    def spread(values: list[float]) -> dict[str, float]:
        return {"mean": round(statistics.mean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    reached = [p[key] for p in per_seed if p[key] is not None]
    summary: dict[str, Any] = {
        "recipe": recipe, "seeds": [p["seed"] for p in per_seed], "files": [str(f.relative_to(out.parent)) for f in files],
        "reached_target": f"{len(reached)} of {len(per_seed)}",
        key: spread(reached) if reached else None, "max_" + key: max(reached) if reached else None,
        "test_ndcg@10": spread([p["test_metrics"]["ndcg@10"] for p in per_seed]),
        "test_hr@10": spread([p["test_metrics"]["hr@10"] for p in per_seed]),
        "peak_rss_mib": spread([p["peak_rss_mib"] for p in per_seed]), "max_peak_rss_mib": max(p["peak_rss_mib"] for p in per_seed),
        "per_seed": per_seed,
    }
    dest = out.parent / "cost_seeds" / f"{recipe}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# {recipe}: time to test NDCG@10 {target:g}, by seed", "", (f"Gathered by `python benchmarks/cost.py "
             f"--dataset {main_result['dataset']} --target {target:g} --gather-seeds {recipe}` from {', '.join(summary['files'])}."),
             "", (f"| seed | time to {target:g} s | epoch | test NDCG@10 | test HR@10 | peak RSS MiB | best-validation epoch "
             "then: its test NDCG@10 |"), "|---|---|---|---|---|---|---|"]
    for p in per_seed:
        tm, sel = p["test_metrics"] or {}, p["selected_then"]
        lines.append(f"| {p['seed']} | {p[key]} | {p['epoch_reaching_target']} | {tm.get('ndcg@10')} | {tm.get('hr@10')} "
                     f"| {p['peak_rss_mib']} | {sel['epoch'] if sel else None}: {sel['test_ndcg@10'] if sel else None} |")
    t = summary[key]
    lines.append(f"| mean +- std | {t['mean'] if t else None} +- {t['std'] if t else None} | | "
                 f"{summary['test_ndcg@10']['mean']} +- {summary['test_ndcg@10']['std']} | "
                 f"{summary['test_hr@10']['mean']} +- {summary['test_hr@10']['std']} | max {summary['max_peak_rss_mib']} | |")
    lines += ["", (f"Reached the target: {summary['reached_target']} seeds. Test figures: the per-epoch probe at the epoch "
              "that reached the target. Last column: the epoch that model selection on validation would have kept at "
              "that moment (the best validation NDCG@10 so far) and its test NDCG@10.")]
    dest.with_suffix(".md").write_text("\n".join(lines) + "\n")
    if recipe in main_result:
        main_result[recipe]["seeds"] = {k: summary[k] for k in ("seeds", "reached_target", key, "max_" + key,
                                                                 "test_ndcg@10", "test_hr@10", "max_peak_rss_mib")}
        main_result[recipe]["seeds"]["file"] = f"cost_seeds/{recipe}.json"
        out.write_text(json.dumps(main_result, indent=2) + "\n")
    print(f"{recipe}: {summary['reached_target']} seeds reached {target:g}; time {t}; -> {dest}")
    return summary


def _selected_then(row: dict[str, Any]) -> dict[str, Any] | None:
    """The epoch with the best validation NDCG@10 up to the one that reached the target, and its test figure."""
    if row.get("epoch_reaching_target") is None or not row.get("curve"):
        return None
    upto = [c for c in row["curve"] if c["epoch"] <= row["epoch_reaching_target"]]
    best = max(upto, key=lambda c: c["valid_ndcg@10"])  # the first of equal scores, as the training loop keeps
    return {"epoch": best["epoch"], "valid_ndcg@10": best["valid_ndcg@10"], "test_ndcg@10": best["test_ndcg@10"]}


def write_table(result: dict[str, Any], path: Path) -> None:
    """One row per recipe: what it changes, its epochs and clock, when it reached the target, its test figures."""
    target = result["target_test_ndcg@10"]
    m = result["machine"]
    lines = [f"# Training cost on {result['dataset']}: time to test NDCG@10 {target:g}", "",
             (f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {m.get('torch_threads')} thread(s). "
             f"Command: `{result['command']}`. Clocks exclude the per-epoch test probe."), "",
             (f"| recipe | overrides | seed | epochs | clock s | time to {target:g} s | test NDCG@10 | test HR@10 "
             "| peak RSS MiB |"), "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["recipes"].items():
        tm = r.get("test_metrics", {})
        clock = r["curve"][-1]["seconds"] if r.get("curve") else r.get("fit_seconds_without_probe")
        lines.append(f"| {name} | {' '.join(r['overrides'])} | {r.get('seed', 42)} | {r['epochs']} | {clock} | "
                     f"{r[f'time_to_{target:g}_s']} | {tm.get('ndcg@10')} | {tm.get('hr@10')} | {r['peak_rss_mib']} |")
    if "incomplete" in result:
        lines += ["", f"Incomplete: {result['incomplete']}."]
    path.write_text("\n".join(lines) + "\n")


def _result(args: argparse.Namespace, rows: dict[str, Any], command: str, names: list[str]) -> dict[str, Any]:
    from ctxrec.experiment import machine_description

    key = f"time_to_{args.target:g}_s"
    result: dict[str, Any] = {"dataset": args.dataset, "target_test_ndcg@10": args.target, "recipes": rows,
                              "command": command, "machine": machine_description()}
    if missing := [n for n in names if n not in rows]:
        result["incomplete"] = f"recipes not run yet: {missing}"
    for role in ("current", "new"):
        if role in rows:
            r = rows[role]
            result[role] = {key: r[key], "peak_rss_mib": r["peak_rss_mib"], "command": command,
                            "overrides": r["overrides"], **({"test_metrics": r["test_metrics"]} if "test_metrics" in r else {})}
    return result


if __name__ == "__main__":
    main()
