"""Fingerprint of the fusion model's seeded behaviour, to check that a refactor moves no result.

Trains small fusion models (3 epochs, fixed seed, CPU, one thread) on the seeded simulator and records
the per-epoch training loss and validation NDCG/HR, digests of score matrices over every query path
(evaluation frames, explicit per-event contexts, a known user's stored history, a cold user, a text
query), of the explanations and of the saved state-dict keys. Floating point rounds differently per torch
build and per CPU kernel set (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...), so the file
holds one recording per (torch, cpu). ``--record`` adds or replaces this machine's recording;
``test_fusion_invariance.py`` recomputes it and compares exactly with the recording of the same torch and
cpu, or within a tolerance with one of another cpu.

    PYTHONPATH=src .venv/bin/python tests/models/fusion_invariance.py --record
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

REFERENCE = Path(__file__).with_suffix(".json")

VARIANTS: dict[str, dict[str, Any]] = {
    # the defaults: mixture of views, text, attributes, event + request context, profile view
    "default": {},
    # the other heads and paths: single softmax, sampled loss, cosine scoring, context as text
    "single_sampled_cosine_ctxtext": {"mixture": False, "loss": "sampled", "n_negatives": 16, "temperature": 0.1,
                                      "context": {"as_text": True}},
}


def recordings() -> list[dict[str, Any]]:
    """The recorded fingerprints, one per (torch, cpu)."""
    return list(json.loads(REFERENCE.read_text())["recordings"]) if REFERENCE.exists() else []


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()[:16]


def fingerprint() -> dict[str, Any]:
    from ctxrec.config import from_dict
    from ctxrec.data.splits import leave_one_out
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models.base import QueryBatch, RecQuery
    from ctxrec.models.fusion import FusionConfig, FusionRecommender

    torch.set_num_threads(1)
    data = simulate(SimulatorConfig(n_users=120, n_items=60, events_per_user=12, seed=3))
    split = leave_one_out(data)
    out: dict[str, Any] = {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}
    for name, overrides in VARIANTS.items():
        # use_text / mixture pinned to the values the fingerprint was recorded with (before "auto" defaults)
        cfg = from_dict(FusionConfig, {"d_model": 16, "n_layers": 1, "max_len": 12, "text": {"model": "hashing:32"},
                                       "use_text": True, "mixture": True,
                                       "train": {"max_epochs": 3, "lr": 0.01, "batch_size": 32, "patience": 10,
                                                 "progress": False, "seed": 7, "device": "cpu"}, **overrides})
        model = FusionRecommender(cfg).fit(split.train, valid=split.valid)
        hist = [{k: repr(float(r[k])) for k in ("loss", "valid_ndcg@10", "valid_hr@10")} for r in model.fit_info["history"]]
        ids = data.item_vocab.ids
        ctx = {"daypart": "evening", "device": "tv", "weather": "rainy"}
        queries = [
            RecQuery(history=[ids[1], ids[5], ids[9]], history_timestamps=[1.6e9, 1.6e9 + 60, 1.6e9 + 600],
                     history_contexts=[ctx, {"device": "mobile"}, {}], context=ctx, timestamp=1.6e9 + 900),
            RecQuery(user_id=data.user_vocab.ids[4], context={"device": "desktop"}),  # stored history
            RecQuery(context=ctx),  # cold user
            RecQuery(history=[ids[2]], context={"daypart": "night"}, text="some words"),
        ]
        recs = model.recommend(queries, k=5, explain=True)
        out[name] = {
            "history": hist,
            "test_scores": _digest(model.score(QueryBatch.from_evalset(split.test))),
            "query_scores": _digest(model.score(model.encode_queries(queries))),
            "explanations": hashlib.sha256(json.dumps([r.explanation for r in recs], sort_keys=True).encode()).hexdigest()[:16],
            "state_keys": sorted(model._state()),
        }
    return out


def main(argv: list[str]) -> None:
    got = fingerprint()
    if "--record" in argv:
        kept = [r for r in recordings() if (r["torch"], r["cpu"]) != (got["torch"], got["cpu"])]
        REFERENCE.write_text(json.dumps({"recordings": [*kept, got]}, indent=1) + "\n")
        print(f"wrote {REFERENCE} (torch {got['torch']}, cpu {got['cpu']})")
    else:
        print(json.dumps(got, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
