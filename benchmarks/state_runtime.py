"""What a served user state costs on PyTorch and on ONNX Runtime (``ctxrec serve --state-runtime``).

A fusion model recomputes a user's state (``FusionRecommender.encode_state``: the Transformer over the
history) whenever that user has a new event. This times ``encode_state`` in one process, one thread,
for 1 and 4 users at a time with full-length histories, on two models:

* ``tiny``: the model the serving tests and ``faults.py`` serve (d_model 16, 1 layer, max_len 16);
* ``ml1m-shape``: the ml-1m headline's shape (d_model 256, 4 heads, 2 layers, max_len 200, 3,416 items),
  trained for one epoch on the simulator (the time depends on the shapes, not on what was learned).

Each figure is the median of ``--repeats`` rounds of ``--calls`` calls; the export itself (once per
set of weights, then cached on disk) is timed too. Writes benchmarks/results/serving/state_runtime.json
and STATE_RUNTIME.md.

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/state_runtime.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]
OUT = ROOT / "benchmarks" / "results" / "serving" / "state_runtime.json"


def _model(shape: str) -> Any:
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models.fusion import FusionConfig, FusionRecommender
    from ctxrec.text.encoders import TextEncoderConfig
    from ctxrec.training.loop import TrainConfig

    if shape == "tiny":
        data = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1))
        cfg = FusionConfig(d_model=16, n_layers=1, max_len=16, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                           train=TrainConfig(max_epochs=3, lr=1e-2, progress=False, seed=1))
    else:
        data = simulate(SimulatorConfig(n_users=200, n_items=3416, n_genres=18, events_per_user=40, seed=1))
        cfg = FusionConfig(d_model=256, n_heads=4, n_layers=2, max_len=200, dropout=0.2, mixture=False, use_text=False,
                           train=TrainConfig(max_epochs=1, batch_size=64, progress=False, seed=1))
    return FusionRecommender(cfg).fit(data)


def _time(fn: Any, calls: int, repeats: int) -> float:
    fn()
    rounds = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t) / calls * 1000)
    return round(float(np.median(rounds)), 3)


def measure(shape: str, calls: int, repeats: int) -> dict[str, Any]:
    import torch

    from ctxrec.deploy.state_runtime import onnx_state_runtime
    from ctxrec.models.base import RecQuery

    m = _model(shape)
    L = m.config.max_len
    items = list(m.item_vocab.ids[:40])
    out: dict[str, Any] = {"d_model": m.config.d_model, "n_layers": m.config.n_layers, "max_len": L,
                           "items": m.n_items}
    batches = {b: m.encode_queries([RecQuery(history=[items[(u + j) % len(items)] for j in range(L)]) for u in range(b)])
               for b in (1, 4)}
    with torch.inference_mode():
        eager = {b: _time(lambda qb=qb: m.encode_state(qb), calls, repeats) for b, qb in batches.items()}
        want = {b: m.encode_state(qb) for b, qb in batches.items()}
        m.state_runtime = onnx_state_runtime()
        t = time.perf_counter()
        m.encode_state(batches[1])
        first_build = time.perf_counter() - t
        m._state_runtime = None  # built again from the disk cache
        t = time.perf_counter()
        m.encode_state(batches[1])
        cached_build = time.perf_counter() - t
        onnx = {b: _time(lambda qb=qb: m.encode_state(qb), calls, repeats) for b, qb in batches.items()}
        diff = max(float(np.abs(m.encode_state(qb) - want[b]).max()) for b, qb in batches.items())
    for b in (1, 4):
        out[f"users_{b}"] = {"torch_ms": eager[b], "onnx_ms": onnx[b], "speedup": round(eager[b] / onnx[b], 2)}
    out.update(export_s=round(first_build, 2), load_from_cache_s=round(cached_build, 3), max_abs_diff=diff)
    return out


def main() -> None:
    from ctxrec.experiment import machine_description

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    os.environ["CTXREC_CACHE"] = tempfile.mkdtemp(prefix="ctxrec-state-runtime-")  # a cold cache: the export is timed
    import torch

    torch.set_num_threads(1)
    res: dict[str, Any] = {"models": {s: measure(s, args.calls if s == "tiny" else max(1, args.calls // 10), args.repeats)
                                      for s in ("tiny", "ml1m-shape")}}
    res["command"] = " ".join(shlex.quote(x) for x in ["flock", "/tmp/ctxrec-heavy.lock", ".venv/bin/python",
                                                        "benchmarks/state_runtime.py", *sys.argv[1:]])
    res["machine"] = {**machine_description(), "torch_threads": 1, "onnxruntime_threads": 1}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    lines = ["# User-state cost: PyTorch vs ONNX Runtime", "",
             f"`{res['command']}`; one process, one thread; {res['machine']['cpu']}, {res['machine']['cores']} cores.",
             "`encode_state` per call (ms, median of rounds) with full-length histories.", "",
             "| model | users per call | PyTorch ms | ONNX Runtime ms | speedup | export s (once) | from cache s |",
             "|---|---|---|---|---|---|---|"]
    for name, r in res["models"].items():
        for b in (1, 4):
            u = r[f"users_{b}"]
            lines.append(f"| {name} (d {r['d_model']}, {r['n_layers']} layers, max_len {r['max_len']}) | {b} | "
                         f"{u['torch_ms']} | {u['onnx_ms']} | {u['speedup']}x | {r['export_s']} | {r['load_from_cache_s']} |")
    lines += ["", "Largest difference from PyTorch: " + ", ".join(f"{n} {r['max_abs_diff']:.1e}" for n, r in res["models"].items())]
    out.with_name("STATE_RUNTIME.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
