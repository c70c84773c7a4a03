"""What each training-cost lever does to one fusion training step (issue 18): seconds per batch and peak RSS.

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/step_cost.py --dataset ml-1m

Every variant (``VARIANTS``: the ml-1m headline recipe with one or two settings changed) trains in its
own process, so its peak RSS is its own, for ``--epochs`` epochs of the first ``--batches`` batches each
(the batches of a full epoch are alike: 128 users' histories of up to 200 events); the figure is the
median over epochs of seconds per batch. No validation runs and nothing is scored: this times the step,
not the quality. What a lever does to quality and to the time to a target NDCG@10 is ``cost.py``'s job.
Writes ``benchmarks/results/<dataset>/step_cost.json`` and ``STEP_COST.md`` (``--out X.json``: ``X.md`` in capitals).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent

BASE = ["d_model=256", "n_heads=4", "mixture=false", "use_text=true", "max_len=200", "dropout=0.2",
        "train.batch_size=128", "train.bf16=true", "context_head=false"]
"""The ml-1m headline recipe (benchmarks/results/ml-1m/fusion.json) with text on (what its pilots chose)."""

VARIANTS: dict[str, list[str]] = {
    "current": [],
    "fp32": ["train.bf16=false"],
    "no attention dropout": ["attention_dropout=0"],
    "no attention dropout + fp32": ["attention_dropout=0", "train.bf16=false"],
    "no attention dropout + sampled 1024": ["attention_dropout=0", "loss=sampled", "n_negatives=1024"],
    "no attention dropout + sampled 512": ["attention_dropout=0", "loss=sampled", "n_negatives=512"],
    "no attention dropout + sampled 1024 + no text": ["attention_dropout=0", "loss=sampled", "n_negatives=1024",
                                                    "use_text=false"],
    "d 128": ["d_model=128", "n_heads=2"],
    "d 128 + no attention dropout": ["d_model=128", "n_heads=2", "attention_dropout=0"],
    "d 64": ["d_model=64", "n_heads=1"],
    # ctxrec.training.memory.HeapGuard (on in every variant above since it landed) against none
    "fp32 + heap guard off": ["train.bf16=false"],
    "new recipe": ["train.bf16=false", "attention_dropout=0", "loss=sampled", "n_negatives=1024", "use_text=false",
                   "train.batch_size=64", "train.lr=0.002"],
    "new recipe + heap guard off": ["train.bf16=false", "attention_dropout=0", "loss=sampled", "n_negatives=1024",
                                    "use_text=false", "train.batch_size=64", "train.lr=0.002"],
    "new recipe + torch.compile": ["train.bf16=false", "attention_dropout=0", "loss=sampled", "n_negatives=1024",
                                   "use_text=false", "train.batch_size=64", "train.lr=0.002"],
}


HEAP_GUARD_OFF = {"fp32 + heap guard off", "new recipe + heap guard off"}
"""Variants trained without ``ctxrec.training.memory.HeapGuard`` (it is not a setting: this process turns it off)."""

COMPILED = {"new recipe + torch.compile"}
"""Variants whose training step (the model's loss function: forward, loss) runs through ``torch.compile``
(inductor, ``dynamic=True`` since a batch's length varies). Not a setting: this process wraps the loss function.
The first epoch pays the compilation; the figure is the median epoch, so use ``--epochs 3`` or more."""


def time_variant(dataset: str, name: str, n_batches: int, epochs: int, data_dir: str | None) -> dict[str, Any]:
    """Train one variant in this process on the first ``n_batches`` batches of each epoch; its row."""
    import ctxrec.models.fusion.recommender as fusion_recommender
    from ctxrec.config import apply_overrides
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.experiment import peak_rss_mib
    from ctxrec.models import build_model

    every_batch = fusion_recommender.training_batches

    cpu: list[float] = []  # CPU seconds per batch, each epoch: unlike the wall clock, other jobs do not move it

    def first_batches(*args: Any, **kwargs: Any) -> Any:
        epoch = every_batch(*args, **kwargs)

        def run(rng: Any) -> Any:
            t0 = time.process_time()
            yield from itertools.islice(epoch(rng), n_batches)
            cpu.append((time.process_time() - t0) / n_batches)  # the loop asks for more after the last step

        return run

    fusion_recommender.training_batches = first_batches  # this process trains this one variant only
    if name in HEAP_GUARD_OFF:
        from ctxrec.training import memory

        memory.HEAP_SLACK_MIB = float("inf")
    if name in COMPILED:
        import torch

        from ctxrec.training import loop as training_loop

        loop = training_loop.train_loop  # fit imports it from there when it runs

        def compiled_loop(*args: Any, loss_fn: Any, **kwargs: Any) -> Any:
            return loop(*args, loss_fn=torch.compile(loss_fn, dynamic=True), **kwargs)

        training_loop.train_loop = compiled_loop
    data = load_dataset(dataset, data_dir)
    split = make_split(data, "leave-one-out")
    overrides = [*BASE, *VARIANTS[name], f"train.max_epochs={epochs}", "train.progress=false"]
    model = build_model("fusion", apply_overrides({}, overrides))
    model.fit(split.train, valid=None)  # no validation: nothing is scored, the step is timed
    per_batch = [r["train_seconds"] / n_batches for r in model.fit_info["history"]]
    return {"variant": name, "overrides": VARIANTS[name], "s_per_batch": round(statistics.median(per_batch), 3),
            "s_per_batch_each_epoch": [round(s, 3) for s in per_batch], "peak_rss_mib": peak_rss_mib(),
            "cpu_s_per_batch": round(statistics.median(cpu), 3) if cpu else None}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from ctxrec.experiment import machine_description

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="ml-1m")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--batches", type=int, default=6, help="batches timed per epoch")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None, help="default benchmarks/results/<dataset>/step_cost.json")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: time this variant
    ap.add_argument("--row-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        row = time_variant(args.dataset, args.one, args.batches, args.epochs, args.data_dir)
        Path(args.row_out).write_text(json.dumps(row) + "\n")
        return row
    names = [n.strip() for n in args.variants.split(",") if n.strip()]  # variant names hold no commas
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)} (add one to VARIANTS)")
    rows = []
    for name in names:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, str(Path(__file__).resolve()), "--dataset", args.dataset, "--one", name,
                            "--row-out", f.name, "--batches", str(args.batches), "--epochs", str(args.epochs),
                            *(["--data-dir", args.data_dir] if args.data_dir else [])], check=True)
            rows.append(json.loads(Path(f.name).read_text()))
        print(f"{name}: {rows[-1]['s_per_batch']} s/batch, peak RSS {rows[-1]['peak_rss_mib']} MiB", flush=True)
    base = next((r for r in rows if r["variant"] == "current"), None)
    for r in rows:
        r["vs_current"] = None if base is None else round(r["s_per_batch"] / base["s_per_batch"], 3)
    command = "python benchmarks/step_cost.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = {"dataset": args.dataset, "base_overrides": BASE, "batches_per_epoch_timed": args.batches,
              "epochs": args.epochs, "rows": rows, "command": command, "machine": machine_description()}
    out = Path(args.out) if args.out else ROOT / "results" / args.dataset / "step_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = [f"# Training step cost on {args.dataset}", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}. Base recipe: `{' '.join(BASE)}`.",
             (f"Median over {args.epochs} epochs of the first {args.batches} batches (`train.batch_size` users each: 128 unless "
             f"the variant sets it). Command: `{command}`."), "",
             "| variant | s / batch | vs current | CPU s / batch | peak RSS MiB |", "|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['s_per_batch']} | {r['vs_current'] if r['vs_current'] is not None else '-'} | "
              f"{r.get('cpu_s_per_batch') or '-'} | {r['peak_rss_mib']} |" for r in rows]
    out.with_name(f"{out.stem.upper()}.md").write_text("\n".join(lines) + "\n")  # step_cost.json: STEP_COST.md
    print(f"-> {out}")
    return result


if __name__ == "__main__":
    main()
