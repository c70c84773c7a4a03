"""Seed ensembles of one benchmark's seeds trained apart, as an ensemble row with mean +- std.

``benchmarks/run.py --model ensemble`` trains its members one after the other in one process; on a
machine whose cores run two trainings side by side faster than one, train the members as seeds of a
fusion row instead (``run.py --only-seed S``, one thread each, two at a time), then fold them here: the
seeds ``--seeds N`` runs (42, 43, ...) go, in order, into ensembles of ``--size`` members (42-44, 45-47,
...: no member shared, so the spread over ensembles is the ensemble's own), each written as a run folder
by :func:`ctxrec.experiment.combine_runs` (the library path of ``ctxrec ensemble``) and evaluated on the
test cases; the row's ``metrics`` are their mean, ``metrics_std`` the std over ensembles.

    python benchmarks/ensemble.py --dataset ml-1m --runs fusion-fast --seeds 9 --size 3 --name fusion-fast-ens3

With several ``--runs`` (one network trained two ways, e.g. a sampled and a full softmax), each ensemble
takes one member from each run, and no two members of an ensemble share a seed: ensemble ``i`` takes seed
``i + j`` (cyclically) of run ``j``, so every seed folder of every run is in exactly one ensemble:

    python benchmarks/ensemble.py --dataset ml-1m --runs fusion-fast-e50 fusion-fast-ce-e50 --seeds 3 --name fusion-fast-e50-ce-ens2
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


def pairings(seeds: list[int], runs: list[str]) -> list[list[tuple[str, int]]]:
    """One ensemble per seed index ``i``: seed ``seeds[(i + j) % n]`` of run ``j``; members of one ensemble
    have different seeds (different initialisations), and each (run, seed) is used once."""
    if len(runs) > len(seeds):
        raise SystemExit(f"{len(runs)} --runs need at least {len(runs)} seeds each, so that no two members of an "
                         f"ensemble share a seed; got --seeds {len(seeds)}")
    n = len(seeds)
    return [[(r, seeds[(i + j) % n]) for j, r in enumerate(runs)] for i in range(n)]


def member_dir(run: Path, seed: int) -> Path | None:
    """The finished run of ``seed`` under ``run``: its ``seed-S`` folder, or the run folder itself where the
    first seed finished as a ``--seeds 1`` run (run.py ``--reuse-seeds`` takes it from there too)."""
    for folder in (run / f"seed-{seed}", run):
        if (folder / "metrics.json").is_file():
            resolved = json.loads((folder / "metrics.json").read_text()).get("model_config") or {}
            if (resolved.get("train") or {}).get("seed") == seed:  # the seed it trained with, defaults resolved
                return folder
    return None


def main(argv: list[str] | None = None) -> dict:
    from seeds import combine, seed_list

    from ctxrec.experiment import combine_runs

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--runs", required=True, nargs="+",
                    help="the run.py --name whose seed folders hold the members; several: one member from each")
    ap.add_argument("--seeds", type=int, required=True, help="members: the seeds of a --seeds N run (42, 43, ...)")
    ap.add_argument("--size", type=int, default=None, help="members per ensemble (one run: default 3; several "
                                                          "runs: one member per run)")
    ap.add_argument("--name", required=True, help="result file name")
    args = ap.parse_args(argv)
    command = "python benchmarks/ensemble.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    bench = ROOT.parent / "runs" / "bench" / args.dataset
    if len(args.runs) == 1:
        parts = [[(args.runs[0], s) for s in g] for g in groups(seed_list(args.seeds), args.size or 3)]
    elif args.size not in (None, len(args.runs)):
        raise SystemExit(f"--size {args.size}: with {len(args.runs)} --runs each ensemble has one member from each "
                         f"run; leave --size out")
    else:
        parts = pairings(seed_list(args.seeds), args.runs)
    found = {(r, s): member_dir(bench / r, s) for g in parts for r, s in g}
    missing = [f"{r}/seed-{s}" for (r, s), folder in found.items() if folder is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} under {bench} have no finished run: train them with benchmarks/run.py "
                         f"--name RUN --seeds {args.seeds} --only-seed S first")
    results = []
    for g in parts:
        label = "-".join(f"{r}-{s}" for r, s in g) if len(args.runs) > 1 else f"seeds-{g[0][1]}-{g[-1][1]}"
        out = bench / args.name / label
        folders = [found[m] for m in g]  # none missing: checked above
        results.append(combine_runs([f for f in folders if f is not None], out, command=command))
        print(f"ensemble {g}: ndcg@10 {results[-1]['metrics']['ndcg@10']:.4f} hr@10 {results[-1]['metrics']['hr@10']:.4f}",
              flush=True)
    result = results[0] if len(results) == 1 else combine(results, [g[0][1] for g in parts])
    result["name"] = args.name
    result["command"] = command
    result["ensembles"] = [{"seeds": [s for _, s in g], **({"runs": [r for r, _ in g]} if len(args.runs) > 1 else {}),
                            "metrics": r["metrics"]} for g, r in zip(parts, results, strict=True)]
    # each member's own command is in its run folder; one per run here
    result["member_commands"] = [m["command"] for m in results[0]["members"][:len(args.runs)]]
    out = ROOT / "results" / args.dataset / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{args.dataset} {args.name}: ndcg@10 {result['metrics']['ndcg@10']:.4f} hr@10 {result['metrics']['hr@10']:.4f} -> {out}")
    return result


if __name__ == "__main__":
    main()
