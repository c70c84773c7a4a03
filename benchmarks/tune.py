"""A tuned row (issue 15): ``ctxrec tune`` on a built-in dataset, then the best configuration trained
with several seeds, next to the hand-tuned and default-flags rows of the same model.

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/tune.py --dataset ml-100k --model fusion \\
        --trials 40 --set train.max_epochs=60 --seeds 3

Writes ``benchmarks/results/tuning/<dataset>-<model>.json``: the study's counts (trials, pruned),
its budget and cost (wall seconds, CPU hours of this process and its workers), the best validation
score, the best configuration, and its test metrics as the mean over ``--seeds`` (seed 42 is the
study's own retrain of the best trial; 43, 44, ... train ``best_config.json`` again), with
``hand_tuned_test_ndcg@10`` (``results/<dataset>/<model>.json``, or ``--hand-tuned NAME``'s row) and ``default_test_ndcg@10``
(``results/<dataset>/<model>-default.json``) read from the committed rows. A pointwise (CTR) study
optimises validation AUC (``ctxrec tune``'s default for that kind): its keys are ``test_metrics.auc``,
``hand_tuned_test_auc`` and ``default_test_auc``, and every seed trains on the study's CTR split. The study itself is in
``runs/tune/<dataset>-<model>/tune/`` (trials.csv, plots); rerunning the command resumes it, and a seed
whose run folder holds its metrics is read, not retrained. With ``--jobs K`` the other seeds train in
K-1 worker processes beside the retrain of the best trial.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its finished children (``--jobs`` workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def committed(dataset: str, name: str, metric: str) -> float | None:
    """``metric`` of a committed result row, or None when there is none."""
    path = ROOT / "results" / dataset / f"{name}.json"
    if not path.exists():
        return None
    value = json.loads(path.read_text()).get("metrics", {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from seeds import combine, seed_list

    from ctxrec.config import apply_overrides, flatten
    from ctxrec.experiment import machine_description
    from ctxrec.tuning import TuneConfig, finish, parse_duration, retrain_seed, run_study
    from ctxrec.tuning.report import best_experiment
    from ctxrec.tuning.study import task_space

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--trials", type=int, required=True)
    ap.add_argument("--timeout", default=None, help="start no trial after this long (e.g. 90m): the stated budget")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trials (and then seed retrains) trained at once, each in its own process")
    ap.add_argument("--space", default=None, help="TOML file editing the model's search space")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed in every trial")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the best configuration's test figure")
    ap.add_argument("--confirm", type=int, default=0, help="ctxrec tune --confirm K: re-score the K best trials "
                                                           "over more seeds on validation, keep the best mean")
    ap.add_argument("--hand-tuned", default=None, metavar="NAME",
                    help="the hand-tuned row to compare with, results/<dataset>/NAME.json (default: the model kind; "
                         "amazon-beauty's headline is fusion-ema)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="result file (default benchmarks/results/tuning/<dataset>-<model>.json)")
    ap.add_argument("--run-dir", default=None, help="study folder (default runs/tune/<dataset>-<model>)")
    args = ap.parse_args(argv)
    command = "python benchmarks/tune.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    label = f"{args.dataset}-{args.model}"
    run_dir = Path(args.run_dir) if args.run_dir else ROOT.parent / "runs" / "tune" / label
    cfg = TuneConfig(dataset=args.dataset, model=args.model, trials=args.trials, out=str(run_dir),
                     data_dir=args.data_dir, timeout_s=parse_duration(args.timeout) if args.timeout else None,
                     jobs=args.jobs, space_file=args.space, confirm=args.confirm, overrides=flatten(apply_overrides({}, args.set)),
                     command=command)
    cpu0, t0 = _cpu_s(), time.time()
    study = run_study(cfg)
    space, _ = task_space(cfg)
    pool, futures = None, {}
    if args.jobs > 1 and not args.confirm and args.seeds > 1:
        # the best trial is known now (--confirm picks it later): its other seeds train in worker
        # processes beside the study's own retrain of it (seed 42)
        import multiprocessing as mp
        import os
        from concurrent.futures import ProcessPoolExecutor

        params = study.best_trial.params
        experiment = best_experiment(cfg, space, params)
        first = int(experiment.get("model_config", {}).get("train", {}).get("seed", 42))
        extra = [s for s in seed_list(args.seeds) if s != first][: args.seeds - 1]
        pool = ProcessPoolExecutor(max_workers=min(args.jobs - 1, len(extra)), mp_context=mp.get_context("spawn"))
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        futures = {s: pool.submit(retrain_seed, cfg, params, experiment, s, run_dir / "seeds" / f"seed-{s}",
                                  command, threads) for s in extra}
    try:
        summary = finish(cfg, study, study_seconds=time.time() - t0)
        study_cpu_s, study_wall_s = _cpu_s() - cpu0, time.time() - t0

        best_cfg = json.loads((run_dir / "tune" / "best_config.json").read_text())
        first_seed = int(best_cfg.get("model_config", {}).get("train", {}).get("seed", 42))
        runs, seeds = [json.loads((Path(summary["best_run"]) / "metrics.json").read_text())], [first_seed]
        for seed in [s for s in seed_list(args.seeds) if s != first_seed][: args.seeds - 1]:
            seed_dir = run_dir / "seeds" / f"seed-{seed}"
            runs.append(futures[seed].result() if seed in futures  # the same best trial: no --confirm
                        else retrain_seed(cfg, summary["best_params"], best_cfg, seed, seed_dir, command))
            seeds.append(seed)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    ctr = cfg.metric == "auc"
    seeded = combine(runs, seeds)
    states = summary["states"]
    key = "auc" if ctr else "ndcg@10"
    result = {
        "dataset": args.dataset, "model": args.model, "trials": summary["trials"], "pruned": states["PRUNED"],
        "failed": states["FAIL"], "budget_s": cfg.timeout_s, "budget_trials": args.trials,
        "study_wall_s": round(study_wall_s, 1), "cpu_hours": round(study_cpu_s / 3600, 2),
        "trial_seconds": summary["trial_seconds"],
        "best_trial": summary["best_trial"], "best_valid": summary["best_valid"], "objective": cfg.metric,
        "test_metrics": seeded["metrics"], "test_metrics_std": seeded["metrics_std"],
        "per_seed": seeded["per_seed"], "seeds": seeds,
        f"hand_tuned_test_{key}": committed(args.dataset, args.hand_tuned or args.model, key),
        "hand_tuned_row": f"results/{args.dataset}/{args.hand_tuned or args.model}.json",
        f"default_test_{key}": committed(args.dataset, f"{args.model}-default", key),
        "confirmed": summary.get("confirmed"),
        "best_params": summary["best_params"], "best_config": best_cfg, "importances": summary.get("importances"),
        "command": command, "machine": machine_description(),
        "note": "cpu_hours covers this command: the study (or the part of it this run resumed), the --confirm "
                f"retrains and the retrain of the best trial (seed {first_seed}); the other seeds' retrains are not "
                "counted. trial_seconds: the wall seconds of every trial in the study, summed over its workers",
    }
    hand = result[f"hand_tuned_test_{key}"]
    if hand:
        result[f"tuned_over_hand_tuned_{key}"] = round(result["test_metrics"][key] / hand, 3)
    out = Path(args.out) if args.out else ROOT / "results" / "tuning" / f"{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    sd = result["test_metrics_std"].get(key, 0.0)
    print(f"{label}: tuned test {key} {result['test_metrics'][key]:.4f} +- {sd:.4f} over {len(seeds)} seeds "
          f"(hand-tuned {hand}, default {result[f'default_test_{key}']}); {result['trials']} trials, "
          f"{result['pruned']} pruned, {result['cpu_hours']} CPU h -> {out}")
    return result


if __name__ == "__main__":
    main()
