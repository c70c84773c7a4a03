"""Distributed data-parallel check: the same `ctxrec train` run with 1 and with N processes.

    flock /tmp/ctxrec-heavy.lock python benchmarks/ddp.py            # ml-100k SASRec, 20 epochs, nproc 1 and 2

Each run is a real `ctxrec train [--nproc N]` command (so the figure covers the launcher, DDP start-up,
rank-0 validation and the run folder). A fixed number of epochs (patience above it) keeps the two runs'
work identical; model selection is still on validation NDCG@10. A second single-process run with
another seed shows how far two equally good runs land apart on this test set (the noise floor the
1-vs-N difference should be read against: ranks draw their own dropout noise, so a N-process run is
another sample of the same training, not a bit-copy). Writes ``benchmarks/results/distributed/ddp.json``
and ``ddp.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent


def _train(args: argparse.Namespace, nproc: int, seed: int, tag: str) -> dict:
    run_dir = REPO / "runs" / "bench" / "ddp" / tag
    sets = [f"max_len={args.max_len}", "dropout=0.2", f"train.batch_size={args.batch_size}", "train.lr=0.002",
            f"train.max_epochs={args.epochs}", f"train.patience={args.epochs + 1}", "train.progress=false",
            f"train.seed={seed}"]
    cmd = ["ctxrec", "train", "--dataset", args.dataset, "--model", "sasrec"]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    for kv in sets:
        cmd += ["--set", kv]
    cmd += ["-o", str(run_dir.relative_to(REPO))]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    # The machine's cores split evenly: 1 process x all cores, N processes x cores/N threads each.
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // nproc)))
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ctxrec.cli", *cmd[1:]], cwd=REPO, capture_output=True, text=True, env=env,
                          check=False)  # its output goes into the error
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    m = json.loads((run_dir / "metrics.json").read_text())
    hist = json.loads((run_dir / "history.json").read_text())
    out = {
        "command": " ".join(shlex.quote(c) for c in cmd),
        "nproc": nproc,
        "seed": seed,
        "ndcg@10": m["metrics"]["ndcg@10"],
        "hr@10": m["metrics"]["hr@10"],
        "seconds": round(wall, 2),
        "fit_seconds": m["fit_seconds"],
        "train_seconds": round(sum(h["train_seconds"] for h in hist), 2),
        "epochs_run": m["fit_info"]["epochs_run"],
        "best_epoch": m["fit_info"]["best_epoch"],
        "final_loss": round(hist[-1]["loss"], 4),
        "distributed": m.get("distributed"),
        "peak_rss_mib_rank0": m["peak_rss_mib"],
        "omp_threads_per_process": int(env["OMP_NUM_THREADS"]),
        "load_average_1min": {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(out), flush=True)
    return out


def write_markdown(result: dict, out: Path) -> list[str]:
    """ddp.md next to the JSON (``--table`` rebuilds it from an existing JSON)."""
    one, other = result["nproc_1"], result.get("nproc_1_other_seed")
    nproc = next(int(k.split("_")[1]) for k in result if k.startswith("nproc_") and k[6:].isdigit() and k != "nproc_1")
    many = result[f"nproc_{nproc}"]
    rows = [("1 process (seed 42)", one), (f"{nproc} processes (seed 42)", many)]
    if other is not None:
        rows.append(("1 process (seed 43, noise floor)", other))
    fastest = min(r["seconds"] for r in (one, other) if r)
    md = [f"# Distributed data parallel (SASRec, {one['epochs_run']} epochs)", "",
          result["what"] + ".", "",
          "| run | NDCG@10 | HR@10 | wall s (whole command) | training s (sum of epochs) | best epoch | load avg start/end |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {name} | {r['ndcg@10']:.4f} | {r['hr@10']:.4f} | {r['seconds']:.1f} | {r['train_seconds']:.1f} | {r['best_epoch']} "
           f"| {r['load_average_1min']['start']} / {r['load_average_1min']['end']} |" for name, r in rows]
    mach = result["machine"]
    md += ["", (f"|NDCG@10(N) - NDCG@10(1)| = {result['ndcg@10_abs_diff']:.4f} (target <= 0.005); two single-process seeds "
           f"differ by {result.get('ndcg@10_abs_diff_between_seeds_1proc')}."),
           (f"Speed-up of {nproc} processes: {result['speedup_wall']:.2f}x wall against the seed-42 single process, "
           f"{fastest / many['seconds']:.2f}x against the faster single-process run. On {mach['cores']} cores, "
           f"{nproc} processes x {many['omp_threads_per_process']} thread(s) share the same cores as 1 process x "
           f"{one['omp_threads_per_process']} threads, so no speed-up beyond noise is to be expected here; DDP pays off "
           "with more cores, machines or GPUs. Runs slowed by other jobs show a higher load average."), "",
           f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, GPU {mach['gpu']}, torch {mach['torch']}.",
           f"Command: `{result['command']}`; per-run commands are in {out.name}.", ""]
    out.with_suffix(".md").write_text("\n".join(md))
    return md


def main(argv: list[str] | None = None) -> dict:
    from ctxrec.experiment import machine_description

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=200)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--no-seed-check", action="store_true", help="skip the second single-process seed")
    ap.add_argument("--out", default=str(ROOT / "results" / "distributed" / "ddp.json"), help="result JSON (a .md goes next to it)")
    ap.add_argument("--table", action="store_true", help="only rebuild the .md from the existing --out JSON")
    ap.add_argument("--tag", default="", help="suffix for the run folders under runs/bench/ddp/")
    args = ap.parse_args(argv)
    if args.table:
        out = Path(args.out)
        result = json.loads(out.read_text())
        result.setdefault("speedup_wall_vs_fastest_1proc", round(
            min(r["seconds"] for r in (result["nproc_1"], result.get("nproc_1_other_seed")) if r)
            / result[f"nproc_{args.nproc}"]["seconds"], 3))
        out.write_text(json.dumps(result, indent=2) + "\n")
        print("\n".join(write_markdown(result, out)))
        return result

    one = _train(args, 1, 42, f"nproc1{args.tag}")
    many = _train(args, args.nproc, 42, f"nproc{args.nproc}{args.tag}")
    other = None if args.no_seed_check else _train(args, 1, 43, f"nproc1-seed43{args.tag}")
    diff = round(abs(many["ndcg@10"] - one["ndcg@10"]), 4)
    result = {
        "dataset": args.dataset,
        "model": "sasrec",
        "what": (f"`ctxrec train` with 1 and {args.nproc} processes (torchrun + DDP, gloo on CPU), same seed, "
                 f"{args.epochs} epochs, global batch {args.batch_size} rows split across ranks; test NDCG@10, full ranking, LOO"),
        "command": "python benchmarks/ddp.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "nproc_1": one,
        f"nproc_{args.nproc}": many,
        "nproc_1_other_seed": other,
        "ndcg@10_abs_diff": diff,
        "ndcg@10_abs_diff_between_seeds_1proc": None if other is None else round(abs(other["ndcg@10"] - one["ndcg@10"]), 4),
        "speedup_wall": round(one["seconds"] / many["seconds"], 3),
        "speedup_train": round(one["train_seconds"] / many["train_seconds"], 3),
        # The conservative figure: against the faster of the two single-process runs (load from other
        # jobs on the machine slows a run down; it never speeds one up).
        "speedup_wall_vs_fastest_1proc": round(min(r["seconds"] for r in (one, other) if r) / many["seconds"], 3),
        "machine": machine_description(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    md = write_markdown(result, out)
    print("\n".join(md))
    return result


if __name__ == "__main__":
    main()
