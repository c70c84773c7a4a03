"""What scoring histories in bounded length groups saves (``ctxrec.models.layers.state_chunks``): seconds and
peak RSS of one full-ranking evaluation of the validation cases, against the full-sequence pass it replaced.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eval_cost.py --recipes ml-1m:new,amazon-beauty:sasrec

Each recipe (``RECIPES``: a dataset, a model and its ``--set`` flags, those of a results row) trains one epoch
on the leave-one-out training split (the weights do not change the cost; fusion without its context prior,
whose fit without validation cases runs all its epochs and which costs both paths the same), then evaluates the validation cases
(NDCG@10 and HR@10 over the whole catalogue, as each epoch's validation does) ``--reps`` times with each path,
alternating:

- ``full``: the path before this change, rebuilt here: each evaluation batch (512 cases) padded to its
  longest history and run through every block at every position, the state taken at the last position;
- ``chunked``: the models' path now: histories in groups of similar length of at most
  ``STATE_TOKENS`` padded positions, the last block at the predicting position only.

The figures: the median seconds of an evaluation, and its peak RSS above the RSS before it (sampled every
10 ms, after the allocator's free pages were returned). Both paths rank the same (their NDCG@10 is printed).
Writes ``benchmarks/results/eval_cost.json`` and ``EVAL_COST.md``.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from batching_cost import RECIPES as TRAIN_RECIPES
from recipe_rows import checked_recipes, run_rows

ROOT = Path(__file__).resolve().parent

RECIPES: dict[str, tuple[str, str, list[str]]] = {
    # benchmarks/cost.py's recipes (fp32), as batching_cost.py trains them
    **{name: TRAIN_RECIPES[name] for name in ("ml-1m:current", "ml-1m:new")},
    # benchmarks/results/ml-1m/sasrec.json
    "ml-1m:sasrec": ("ml-1m", "sasrec", ["max_len=200", "dropout=0.2", "train.batch_size=128"]),
    # benchmarks/results/amazon-beauty/fusion-ema.json and sasrec.json
    "amazon-beauty:fusion-ema": ("amazon-beauty", "fusion", [
        "use_text=false", "mixture=false", "max_len=50", "dropout=0.5", "train.batch_size=256", "train.lr=0.002"]),
    "amazon-beauty:sasrec": ("amazon-beauty", "sasrec", ["max_len=50", "dropout=0.5", "train.batch_size=256"]),
    # tiny ones for the test
    "synthetic:fusion": ("synthetic", "fusion", ["d_model=16", "n_layers=1", "n_heads=1", "max_len=50",
                                                 "use_text=false", "mixture=false"]),
    "synthetic:sasrec": ("synthetic", "sasrec", ["d_model=16", "n_layers=1", "n_heads=1", "max_len=50"]),
}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@contextmanager
def peak_rss_above_start() -> Iterator[dict[str, float]]:
    """Yields a dict that holds, after the block, ``peak_mib``: the block's peak RSS above its start."""
    from ctxrec.training.memory import release_free_heap

    release_free_heap()
    start, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.01)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out: dict[str, float] = {}
    try:
        yield out
    finally:
        done.set()
        thread.join()
        out["peak_mib"] = max(0.0, max(peak[0], _rss_mib()) - start)


def full_sequence_path(model: Any) -> tuple[str, Callable[..., Any]]:
    """(attribute, replacement) that scores ``model`` as before ``state_chunks``: the whole batch padded to its
    longest history, every block at every position."""
    import torch

    if model.kind == "fusion":
        from ctxrec.models.fusion.batches import history_tensors

        @torch.no_grad()
        def fusion_states(batch: Any) -> torch.Tensor:
            net = model._eval_net()
            x = history_tensors(model, batch)
            h = net.encode(x["inp"], x["ev"], x["ci"], x["cd"], model._eval_item_table())  # (B, T, D)
            return h[torch.arange(h.shape[0]), x["len"] - 1]

        return "_state_tensor", fusion_states
    from ctxrec.models.sasrec import right_pad

    @torch.no_grad()
    def sasrec_vectors(histories: list[np.ndarray]) -> torch.Tensor:
        model.net.eval()
        inp, lens = right_pad([h + 1 for h in histories], model.config.max_len)
        h = model.net(torch.from_numpy(inp))  # (B, T, D)
        out = h[torch.arange(len(histories)), torch.from_numpy(np.maximum(lens - 1, 0))]
        return out * torch.from_numpy(lens > 0).unsqueeze(-1)

    return "user_vectors", sasrec_vectors


def _one_epoch(kind: str, flags: list[str]) -> list[str]:
    return [*flags, "train.max_epochs=1", "train.progress=false", *(["context_head=false"] if kind == "fusion" else [])]


def run_recipe(name: str, reps: int, data_dir: str | None) -> dict[str, Any]:
    from ctxrec.config import apply_overrides
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.splits import make_split
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.models import build_model

    dataset, kind, flags = RECIPES[name]
    data = load_dataset(dataset, data_dir)
    split = make_split(data, "leave-one-out")
    model = build_model(kind, apply_overrides({}, _one_epoch(kind, flags)))
    model.fit(split.train)
    evaluator = Evaluator(EvalConfig(ks=(10,), metrics=("ndcg", "hr"), exclude_seen=not data.schema.repeat_consumption))
    attr, full = full_sequence_path(model)
    runs: dict[str, list[dict[str, float]]] = {"full": [], "chunked": []}
    for _ in range(reps):
        for label in ("full", "chunked"):
            if label == "full":
                setattr(model, attr, full)  # an instance attribute shadows the method
            try:
                with peak_rss_above_start() as mem:
                    t0 = time.perf_counter()
                    metrics = evaluator.evaluate(model, split.valid)
                    seconds = time.perf_counter() - t0
            finally:
                model.__dict__.pop(attr, None)
            runs[label].append({"seconds": seconds, "peak_mib": mem["peak_mib"], "ndcg@10": float(metrics["ndcg@10"])})
    row: dict[str, Any] = {"recipe": name, "dataset": dataset, "model": kind, "overrides": flags,
                           "cases": len(split.valid), "reps": reps}
    for label, rs in runs.items():
        row[label] = {"median_s": round(statistics.median(r["seconds"] for r in rs), 2),
                      "median_peak_mib": round(statistics.median(r["peak_mib"] for r in rs), 1),
                      "ndcg@10": round(rs[0]["ndcg@10"], 6), "runs": rs}
    row["speedup"] = round(row["full"]["median_s"] / max(row["chunked"]["median_s"], 1e-9), 2)
    print(f"{name}: full {row['full']['median_s']} s +{row['full']['median_peak_mib']} MiB, chunked "
          f"{row['chunked']['median_s']} s +{row['chunked']['median_peak_mib']} MiB; NDCG@10 "
          f"{row['full']['ndcg@10']} / {row['chunked']['ndcg@10']}", flush=True)
    return row


def write_table(result: dict[str, Any], path: Path) -> None:
    m = result["machine"]
    lines = ["# Evaluation cost: bounded length groups against the full-sequence pass", "",
             (f"Machine: {m.get('cpu')}, {m.get('cores')} cores, torch {m.get('torch')}, {m.get('torch_threads')} "
              f"thread(s). Command: `{result['command']}`. One full-ranking evaluation of the validation cases "
              "(median of the reps); peak RSS above the RSS before it."), "",
             ("| recipe | cases | full-sequence s | chunked s | speed-up | full peak +MiB | chunked peak +MiB "
              "| NDCG@10 full / chunked |"),
             "|---|---|---|---|---|---|---|---|"]
    lines.extend(f"| {r['recipe']} | {r['cases']} | {r['full']['median_s']} | {r['chunked']['median_s']} | "
                 f"{r['speedup']}x | {r['full']['median_peak_mib']} | {r['chunked']['median_peak_mib']} | "
                 f"{r['full']['ndcg@10']:.4f} / {r['chunked']['ndcg@10']:.4f} |" for r in result["rows"])
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", default="ml-1m:new,ml-1m:sasrec,amazon-beauty:fusion-ema,amazon-beauty:sasrec",
                    help=f"comma-separated, of {sorted(RECIPES)}")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "results" / "eval_cost.json"))
    args = ap.parse_args(argv)
    if args.reps < 1:
        raise SystemExit(f"--reps {args.reps}: at least 1 evaluation per path is needed to time one")
    names = checked_recipes(args.recipes, RECIPES)
    command = "python benchmarks/eval_cost.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    return run_rows(names, lambda n: run_recipe(n, args.reps, args.data_dir), out, out.with_name("EVAL_COST.md"),
                    write_table, command)


if __name__ == "__main__":
    main()
