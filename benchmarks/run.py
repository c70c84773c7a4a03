"""Run one model on one dataset with the standard protocol; write benchmarks/results/<dataset>/<name>.json.

    python benchmarks/run.py --dataset ml-1m --model sasrec --name sasrec \
        --set train.max_epochs=200 --set max_len=200 --seeds 3

``--seeds N`` trains with ``train.seed`` = 42, 43, ... and writes the mean as ``metrics`` with
``metrics_std`` and ``per_seed`` (benchmarks/seeds.py). Long seed runs, in parallel or over several
sittings: ``--only-seed S`` trains one seed into its run folder, and ``--reuse-seeds`` takes each seed whose
folder finished with the same experiment config instead of training it again (a finished ``--seeds 1``
run of the same flags counts as seed 42):

    OMP_NUM_THREADS=1 python benchmarks/run.py --dataset ml-1m --model fusion --name fusion-default --seeds 3 --only-seed 43 &
    python benchmarks/run.py --dataset ml-1m --model fusion --name fusion-default --seeds 3 --reuse-seeds

A seed stopped before it finished (killed, or the sitting ended) continues from its last checkpoint with
the same command plus ``--resume``. A ``--seeds 1`` run publishes by replacing its whole run folder, where
the seed folders live, so it is refused while seed runs of its name are there, and they while it trains.

The same front door as ``ctxrec train`` (``ctxrec.experiment.experiment_config`` then ``run_experiment``):
the config, model config included, is checked before any data is read. Results use the schema of
``metrics.json`` (see ``ctxrec.experiment``); the run folder (model, TensorBoard logs, curve) goes to
``runs/bench/<dataset>/<name>`` and is not committed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _without_resume(config: dict) -> dict:
    """An experiment config as compared between runs: ``train.resume`` says how a run was continued, not
    what it trains; a seed left unset is the training default (a ``--seeds 1`` run is seed 42 of ``--seeds N``)."""
    from ctxrec.training.loop import TrainConfig

    train = dict((config.get("model_config") or {}).get("train") or {})
    train.pop("resume", None)
    if train.get("seed") is None:
        train["seed"] = TrainConfig().seed
    return {**config, "model_config": {**(config.get("model_config") or {}), "train": train}}


ENSEMBLE_MEMBERS = 3


def seed_overrides(model: str, seed: int | None, resume: bool) -> list[str]:
    """The overrides that make run ``seed`` of a ``--seeds N`` run (None: the one run of ``--seeds 1``, with
    the config's own seed), and ``--resume``. A fusion ensemble has no ``train`` of its own: run ``seed``
    trains members from seeds ``seed``, ``seed + 100``, ``seed + 200`` (runs share no member: their spread is
    the ensemble's), and its members do not resume."""
    if model == "ensemble":
        if resume:
            raise SystemExit("--resume: an ensemble's members train from the start; run it without --resume")
        return [] if seed is None else [f"seeds=[{','.join(str(seed + 100 * m) for m in range(ENSEMBLE_MEMBERS))}]"]
    return ([] if seed is None else [f"train.seed={seed}"]) + (["train.resume=true"] if resume else [])


def _finished_run(out: Path, cfg: object) -> dict | None:
    """The run's metrics.json if it finished with this exact experiment config (its config.json)."""
    from ctxrec.config import to_dict

    if not (out / "metrics.json").exists() or not (out / "config.json").exists():
        return None
    same = _without_resume(json.loads((out / "config.json").read_text())) == _without_resume(json.loads(json.dumps(to_dict(cfg))))
    return json.loads((out / "metrics.json").read_text()) if same else None


def _check_layout(run_dir: Path, n_seeds: int) -> None:
    """Refuse a run that would delete another: a ``--seeds 1`` run is published by replacing its whole run
    folder, where the seed folders of a ``--seeds N`` run of the same name live (``seed-S``, and
    ``.seed-S.partial`` while one trains)."""
    if n_seeds == 1:
        seeds = sorted(p.name for p in run_dir.glob("seed-*")) + sorted(p.name for p in run_dir.glob(".seed-*.partial"))
        if seeds:
            raise SystemExit(f"{run_dir} holds the seed runs of a --seeds N run ({', '.join(seeds)}); a --seeds 1 "
                             "run is published by replacing that folder and would delete them: train it as a seed "
                             "(--seeds N --only-seed 42) or give it another --name")
    else:
        stage = run_dir.with_name(f".{run_dir.name}.partial")
        if stage.is_dir():
            raise SystemExit(f"a --seeds 1 run of this --name is training or was stopped ({stage}); when it finishes "
                             f"it replaces {run_dir}, this seed's folder with it: let it finish (or remove {stage}) "
                             "first, or give this run another --name")


def main(argv: list[str] | None = None) -> dict:
    from seeds import run_seeds, seed_list

    from ctxrec.experiment import experiment_config, run_experiment

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--name", help="result file name (default: the model kind)")
    ap.add_argument("--split", default="leave-one-out")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="model config override, dotted for nested keys (e.g. train.lr=0.001)")
    ap.add_argument("--seeds", type=int, default=1, help="train with N seeds (42, 43, ...) and report mean +- std")
    ap.add_argument("--reuse-seeds", action="store_true",
                    help="take a seed's finished run from its run folder when its experiment config (config.json) "
                         "is this command's: a long --seeds run split over several sittings")
    ap.add_argument("--only-seed", type=int, default=None, metavar="S",
                    help="train seed S of the --seeds N runs into its run folder and write no result file: seeds "
                         "in parallel processes (OMP_NUM_THREADS=1 each), then the --seeds N --reuse-seeds "
                         "command gathers them")
    ap.add_argument("--resume", action="store_true",
                    help="continue each seed's run that was stopped before it finished (killed, or the sitting "
                         "ended) from its last checkpoint (train.resume=true); a finished seed is reused")
    args = ap.parse_args(argv)
    name = args.name or args.model
    seed_key = "seeds" if args.model == "ensemble" else "train.seed"
    if args.seeds > 1 and any(o.split("=", 1)[0].strip() == seed_key for o in args.set):
        raise SystemExit(f"--seeds sets {seed_key} itself: drop --set {seed_key}=... or use --seeds 1")
    if args.only_seed is not None and args.only_seed not in seed_list(args.seeds):
        raise SystemExit(f"--only-seed {args.only_seed} is not one of the --seeds {args.seeds} runs: {seed_list(args.seeds)}")
    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    run_dir = ROOT.parent / "runs" / "bench" / args.dataset / name
    _check_layout(run_dir, args.seeds)

    def run_one(seed: int) -> dict:
        extra = seed_overrides(args.model, seed if args.seeds > 1 else None, args.resume)
        cfg = experiment_config(dataset=args.dataset, model=args.model, split=args.split, data_dir=args.data_dir,
                                overrides=[*args.set, *extra])
        out = run_dir / f"seed-{seed}" if args.seeds > 1 else run_dir
        if args.reuse_seeds or args.resume:
            # the first seed may have finished as a --seeds 1 run, in the run folder itself
            for folder in [out, *([run_dir] if args.seeds > 1 and seed == seed_list(args.seeds)[0] else [])]:
                done = _finished_run(folder, cfg)
                if done is not None:
                    at = (done.get("code") or {}).get("commit") or "an unrecorded commit"
                    print(f"seed {seed}: reusing the finished run in {folder} (trained at {at})", flush=True)
                    return done
        return run_experiment(cfg, out, command=command)

    if args.only_seed is not None:
        res = run_one(args.only_seed)
        print(f"seed {args.only_seed}: ndcg@10 {res['metrics']['ndcg@10']:.4f} (in {run_dir}; no result file written)")
        return res
    result = run_seeds(run_one, args.seeds)
    result["name"] = name
    result["command"] = command  # a reused seed's own metrics.json names the command that trained it
    out = ROOT / "results" / args.dataset / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["metrics"]
    sd = result.get("metrics_std") or {}

    def pm(k: str) -> str:
        return f"{m[k]:.4f}" + (f" +- {sd[k]:.4f}" if k in sd else "")

    print(f"{args.dataset} {name}: ndcg@10 {pm('ndcg@10')} hr@10 {pm('hr@10')} -> {out}")
    return result


def cli() -> None:
    """``main`` for a person at a terminal: a ctxrec error (a bad ``--set`` key or value, a dataset that
    is not there) is one line that names the value and the fix, not a traceback."""
    from ctxrec.errors import CtxrecError

    try:
        main()
    except CtxrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    cli()
