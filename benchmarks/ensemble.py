"""Seed ensembles of one benchmark's seeds trained apart, as an ensemble row with mean +- std.

``benchmarks/run.py --model ensemble`` trains its members one after the other in one process; on a
machine whose cores run two trainings side by side faster than one, train the members as seeds of a
fusion row instead (``run.py --only-seed S``, one thread each, two at a time), then fold them here: the
seeds ``--seeds N`` runs (42, 43, ...) go, in order, into ensembles of ``--size`` members (42-44, 45-47,
...: no member shared, so the spread over ensembles is the ensemble's own), each written as a run folder
by :func:`ctxrec.experiment.combine_runs` (the library path of ``ctxrec ensemble``) and evaluated on the
test cases; the row's ``metrics`` are their mean, ``metrics_std`` the std over ensembles.

    python benchmarks/ensemble.py --dataset ml-1m --runs fusion-fast --seeds 9 --size 3 --name fusion-fast-ens3
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def groups(seeds: list[int], size: int) -> list[list[int]]:
    """Consecutive, disjoint groups of ``size`` seeds; every seed in exactly one."""
    if size < 2 or len(seeds) % size:
        raise SystemExit(f"--size {size}: the {len(seeds)} seeds must split into ensembles of at least 2 members, "
                         f"with none left over (choose --seeds a multiple of --size)")
    return [seeds[i:i + size] for i in range(0, len(seeds), size)]


def main(argv: list[str] | None = None) -> dict:
    from seeds import combine, seed_list

    from ctxrec.experiment import combine_runs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--runs", required=True, help="the run.py --name whose seed folders hold the members")
    ap.add_argument("--seeds", type=int, required=True, help="members: the seeds of a --seeds N run (42, 43, ...)")
    ap.add_argument("--size", type=int, default=3, help="members per ensemble")
    ap.add_argument("--name", required=True, help="result file name")
    args = ap.parse_args(argv)
    command = "python benchmarks/ensemble.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    src = ROOT.parent / "runs" / "bench" / args.dataset / args.runs
    parts = groups(seed_list(args.seeds), args.size)
    missing = [s for g in parts for s in g if not (src / f"seed-{s}" / "metrics.json").is_file()]
    if missing:
        raise SystemExit(f"seeds {missing} of {src} have no finished run: train them with benchmarks/run.py "
                         f"--name {args.runs} --seeds {args.seeds} --only-seed S first")
    results = []
    for g in parts:
        out = ROOT.parent / "runs" / "bench" / args.dataset / args.name / f"seeds-{g[0]}-{g[-1]}"
        results.append(combine_runs([src / f"seed-{s}" for s in g], out, command=command))
        print(f"ensemble {g}: ndcg@10 {results[-1]['metrics']['ndcg@10']:.4f} hr@10 {results[-1]['metrics']['hr@10']:.4f}",
              flush=True)
    result = results[0] if len(results) == 1 else combine(results, [g[0] for g in parts])
    result["name"] = args.name
    result["command"] = command
    result["ensembles"] = [{"seeds": g, "metrics": r["metrics"]} for g, r in zip(parts, results, strict=True)]
    result["member_command"] = results[0]["members"][0]["command"]  # each member's own is in its run folder
    out = ROOT / "results" / args.dataset / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.dataset} {args.name}: ndcg@10 {result['metrics']['ndcg@10']:.4f} hr@10 {result['metrics']['hr@10']:.4f} -> {out}")
    return result


if __name__ == "__main__":
    main()
