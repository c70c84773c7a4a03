"""Large catalogue: SASRec with sampled softmax (log-Q) on 1M items / 10M events, one epoch, on the CPU.

    flock /tmp/ctxrec-heavy.lock env OMP_NUM_THREADS=2 python benchmarks/large_catalogue.py
    python benchmarks/large_catalogue.py --items 100000 --events 500000 --out /tmp/small.json   # smoke test

The events are generated with numpy straight into a :class:`ctxrec.data.dataset.Dataset` (dense indices,
categorical id columns): the simulator and ``Dataset.from_frames`` handle millions of Python-object
strings row by row, which is not what this benchmark measures. The log has learnable structure:

* item popularity is Zipf-like (exponent 0.8) over a random ranking of the 1M items;
* each user has a taste cluster (1,000 clusters of 1,000 items) from which 60% of fresh events come,
  Zipf-distributed inside the cluster;
* with probability 0.3 an event continues a "series": the item right after the previous one.

Then the standard protocol: leave-one-out split, ``SASRecRecommender.fit`` for one epoch with
``loss="sampled"`` (1,024 shared negatives per step drawn from item popularity, log-Q corrected: memory
grows with the number of negatives, never with ``batch x length x n_items``), and full-catalogue
ranking (all 1M items, seen items excluded) on a seeded sample of test users, next to popularity.
Reports peak RSS after each phase, training seconds and throughput (events/s). Writes
``benchmarks/results/large/1m_items.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def rss_now_mib() -> float:
    """Current resident memory (the peak is ctxrec.experiment.peak_rss_mib)."""
    with open("/proc/self/statm") as fh:
        return round(int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def make_dataset(n_items: int, n_events: int, *, mean_len: float, max_user_len: int, seed: int):
    """A Dataset with ``n_items`` catalogue items and exactly ``n_events`` events, built with numpy."""
    import pandas as pd

    from ctxrec.data.dataset import Columns, Dataset, DatasetSchema
    from ctxrec.data.vocab import Vocab

    rng = np.random.default_rng(seed)
    # Events per user: gamma around mean_len, clipped to [5, max_user_len]; the last user is trimmed so
    # the total is exactly n_events.
    est = int(n_events / mean_len * 1.3) + 10
    lens = np.clip(np.rint(rng.gamma(4.0, mean_len / 4.0, est)), 5, max_user_len).astype(np.int64)
    cum = np.cumsum(lens)
    n_users = int(np.searchsorted(cum, n_events) + 1)
    lens = lens[:n_users]
    lens[-1] -= int(cum[n_users - 1] - n_events)
    user_idx = np.repeat(np.arange(n_users, dtype=np.int64), lens)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    first = np.zeros(n_events, dtype=bool)
    first[starts] = True

    # Fresh draws: global Zipf over a random ranking, or Zipf inside the user's taste cluster.
    n_clusters = max(1, n_items // 1000)
    size = n_items // n_clusters
    rank_item = rng.permutation(n_items)
    cdf = np.cumsum(1.0 / np.arange(1, n_items + 1) ** 0.8)
    glob = rank_item[np.minimum(np.searchsorted(cdf, rng.random(n_events) * cdf[-1]), n_items - 1)]
    ccdf = np.cumsum(1.0 / np.arange(1, size + 1))
    in_cl = np.minimum(np.searchsorted(ccdf, rng.random(n_events) * ccdf[-1]), size - 1)
    cluster = rng.integers(0, n_clusters, n_users)[user_idx]
    base = np.where(rng.random(n_events) < 0.6, cluster * size + in_cl, glob)
    # Series: a chained event is the item after the previous event's item; run starts are fresh draws.
    chain = (rng.random(n_events) < 0.3) & ~first
    idx = np.arange(n_events)
    run_start = np.maximum.accumulate(np.where(chain, 0, idx))
    item_idx = (base[run_start] + (idx - run_start)) % n_items
    # Timestamps: a start date per user, then exponential gaps (mean one hour).
    gaps = rng.exponential(3600.0, n_events)
    gaps[first] = 0.0
    cs = np.cumsum(gaps)
    ts = rng.uniform(1.6e9, 1.63e9, n_users)[user_idx] + cs - cs[starts][user_idx]
    del gaps, cs, base, glob, in_cl, cluster, chain, run_start, idx, first

    item_ids = pd.Index([f"i{i}" for i in range(n_items)], name=Columns.ITEM)
    user_ids = pd.Index([f"u{u}" for u in range(n_users)])
    interactions = pd.DataFrame({
        Columns.USER: pd.Categorical.from_codes(user_idx.astype(np.int32), categories=user_ids),
        Columns.ITEM: pd.Categorical.from_codes(item_idx.astype(np.int32), categories=item_ids),
        Columns.TIME: ts,
        Columns.EVENT: pd.Categorical.from_codes(np.zeros(n_events, np.int8), categories=["interaction"]),
        Columns.WEIGHT: np.ones(n_events, np.float32),
        Columns.ORDER: np.arange(n_events, dtype=np.int64),
    })
    return Dataset(
        name=f"synthetic-{n_items}-items-{n_events}-events", interactions=interactions,
        items=pd.DataFrame(index=item_ids), users=None, schema=DatasetSchema(),
        user_vocab=Vocab(user_ids, kind="user"), item_vocab=Vocab(item_ids, kind="item"),
        user_idx=user_idx, item_idx=item_idx.astype(np.int64),
        notes=("generated by benchmarks/large_catalogue.py with numpy (Zipf popularity, taste clusters, series)",),
    )


def main(argv: list[str] | None = None) -> dict:
    import torch

    from ctxrec.data.splits import leave_one_out
    from ctxrec.evaluation.evaluator import EvalConfig, Evaluator
    from ctxrec.experiment import machine_description, peak_rss_mib
    from ctxrec.models import build_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--mean-len", type=float, default=50.0)
    ap.add_argument("--max-len", type=int, default=100, help="SASRec max_len (users have at most this many events + 1)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--negatives", type=int, default=1024)
    ap.add_argument("--eval-users", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "results" / "large" / "1m_items.json"))
    args = ap.parse_args(argv)
    phases: dict[str, dict[str, float]] = {}

    def mark(name: str, t0: float) -> float:
        phases[name] = {"seconds": round(time.perf_counter() - t0, 2), "rss_mib": rss_now_mib(), "peak_rss_mib": peak_rss_mib()}
        print(f"{name}: {phases[name]}", flush=True)
        return time.perf_counter()

    load_start = os.getloadavg()
    t = t_all = time.perf_counter()
    data = make_dataset(args.items, args.events, mean_len=args.mean_len, max_user_len=args.max_len + 3, seed=args.seed)
    t = mark("generate", t)
    split = leave_one_out(data)
    t = mark("split", t)
    train = split.train
    sasrec_cfg = {"d_model": 64, "n_layers": 2, "n_heads": 1, "max_len": args.max_len, "dropout": 0.2,
                  "loss": "sampled", "n_negatives": args.negatives,
                  "train": {"max_epochs": 1, "batch_size": args.batch_size, "lr": 1e-3, "progress": True}}
    model = build_model("sasrec", sasrec_cfg)
    rss_before_fit = rss_now_mib()
    model.fit(train, valid=None)  # one epoch; validation would rank 1M items for every user
    t = mark("fit", t)
    hist = model.fit_info["history"]
    epoch_s = hist[0]["train_seconds"]
    lens = np.bincount(train.user_idx, minlength=train.n_users)
    positions = int(np.minimum(np.maximum(lens - 1, 0), args.max_len).sum())  # next-item targets trained on

    rng = np.random.default_rng(args.seed)
    cases = split.test.take(np.sort(rng.choice(len(split.test), size=min(args.eval_users, len(split.test)), replace=False)))
    ev = Evaluator(EvalConfig(ks=(10,), metrics=("ndcg", "hr"), batch_size=64))
    sas = ev.evaluate(model, cases)
    t = mark("evaluate_sasrec", t)
    pop = ev.evaluate(build_model("popularity", {}).fit(train), cases)
    t = mark("evaluate_popularity", t)

    result = {
        "what": "SASRec, sampled softmax with log-Q correction, one epoch on a numpy-generated log (see script docstring)",
        "command": "python benchmarks/large_catalogue.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "dataset": {"items": data.n_items, "users": data.n_users, "events": data.n_events,
                    "train_events": train.n_events, "items_with_train_events": int((np.bincount(train.item_idx, minlength=train.n_items) > 0).sum())},
        "model_config": sasrec_cfg,
        "parameters": int(sum(p.numel() for p in model.net.parameters())) if model.net is not None else None,
        "train": {
            "epoch_seconds": round(epoch_s, 2),
            "steps": int(np.ceil(int((lens >= 2).sum()) / args.batch_size)),
            "events_per_second": round(train.n_events / epoch_s, 1),
            "target_positions": positions,
            "target_positions_per_second": round(positions / epoch_s, 1),
            "final_loss": round(hist[0]["loss"], 4),
            "rss_before_fit_mib": rss_before_fit,
            "peak_rss_after_fit_mib": phases["fit"]["peak_rss_mib"],
        },
        "peak_rss_mib": peak_rss_mib(),
        "eval": {"test_users_sampled": len(cases), "ranking": f"full catalogue ({data.n_items:,} items), seen items excluded",
                 "sasrec": {k: round(v, 5) for k, v in sas.items() if k != "n_cases"},
                 "popularity": {k: round(v, 5) for k, v in pop.items() if k != "n_cases"}},
        "phases": phases,
        "total_seconds": round(time.perf_counter() - t_all, 2),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(os.getloadavg()[0], 2),
                              "note": "other contributors' jobs share these 2 cores; above ~1 the timings are slowed"},
        "machine": machine_description(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("dataset", "train", "peak_rss_mib", "eval")}, indent=1))
    return result


if __name__ == "__main__":
    main()
