"""Serving a synthetic 1M-item catalogue: exact scoring vs faiss HNSW (recall@10 against exact).

``--shape sasrec`` (default) builds a SASRec-shaped model (d=64) whose 1,000,000 item vectors are
clustered (2,000 centres + noise, like real item embeddings) and whose users have 50-item histories.
``--shape fusion --base-model RUN`` takes a trained fusion model (e.g. the ml-1m serving model) and adds
``--items`` synthetic items through ``add_items`` (no ID embedding, like any added item), then replaces
their text vectors with random clustered unit vectors of the language model's width: they pass through
the model's trained text adapter as real encodings would, but they are not encodings of any text
(encoding 1M titles with MiniLM takes hours on 2 cores). Requests are the base model's real users.

Either model is saved, then served twice with ``ctxrec serve`` (``--index exact`` and ``--index hnsw``)
and POST /v1/recommend (k=10, one client) is measured on the same requests. Recall@10 = overlap of the
two services' answers.

    .venv/bin/python benchmarks/serving_catalogue.py --items 1000000
    .venv/bin/python benchmarks/serving_catalogue.py --shape fusion --base-model runs/bench/ml-1m/fusion-serve \
        --items 1000000 --model-dir /tmp/cat1m-fusion
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from serving_load import CONTEXT, free_port, hwm_mib, rss_mib, start_server  # noqa: E402


def build_model(out: Path, n_items: int, n_users: int, d: int = 64, seed: int = 0) -> None:
    import torch

    from ctxrec.data.vocab import Vocab
    from ctxrec.models.sasrec import SASRecConfig, SASRecNet, SASRecRecommender

    rng = np.random.default_rng(seed)
    cfg = SASRecConfig(d_model=d, n_layers=2, max_len=50)
    model = SASRecRecommender(cfg)
    model.item_vocab = Vocab([f"i{i:07d}" for i in range(n_items)], kind="item")
    model.user_vocab = Vocab([f"u{u:05d}" for u in range(n_users)], kind="user")
    torch.manual_seed(seed)
    net = SASRecNet(n_items, cfg)
    centres = rng.standard_normal((2000, d)).astype(np.float32)
    assign = rng.integers(0, len(centres), n_items)
    emb = centres[assign] + 0.5 * rng.standard_normal((n_items, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with torch.no_grad():
        net.item_emb.weight[1:] = torch.from_numpy(emb * 0.5)
    net.eval()
    model.net = net
    model.popularity = rng.random(n_items).astype(np.float32)
    hist = rng.integers(0, n_items, (n_users, 50))
    model._hist_indptr = np.arange(0, n_users * 50 + 1, 50, dtype=np.int64)
    model._hist_items = hist.reshape(-1).astype(np.int64)
    model.save(out / "model")


def build_fusion(out: Path, base: Path, n_items: int, seed: int = 0, noise: float = 0.5) -> list[str]:
    """The fusion model at ``base`` plus ``n_items`` synthetic items (see the module docstring); returns
    the base model's user ids."""
    import pandas as pd
    import torch

    from ctxrec.models import load_model

    model = load_model(base)
    assert model.kind == "fusion" and model.user_vocab is not None
    ids = [f"syn{i:07d}" for i in range(n_items)]
    # One shared placeholder text: encoded once (the cache de-duplicates), then replaced below.
    idx = model.add_items(pd.DataFrame({"item_id": ids, "title": ["synthetic item"] * n_items}))
    net = model.net  # type: ignore[attr-defined]  # a FusionRecommender
    rng = np.random.default_rng(seed)
    dt = net.text_vectors.shape[1]
    centres = rng.standard_normal((2000, dt)).astype(np.float32)
    with torch.no_grad():
        for start in range(0, n_items, 100_000):  # chunks: (100k, Dt) at a time
            rows = idx[start : start + 100_000]
            v = centres[rng.integers(0, len(centres), len(rows))] + noise * rng.standard_normal((len(rows), dt)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            net.text_vectors[torch.from_numpy(rows + 1)] = torch.from_numpy(v)
    model.item_titles = {k: v for k, v in model.item_titles.items() if not k.startswith("syn")}
    model.save(out / "model")
    return list(model.user_vocab.ids)


def measure(port: int, bodies: list[bytes], warmup: int) -> tuple[list[float], list[list[str]], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat, answers, errors = [], [], 0
    for n, body in enumerate(bodies[:warmup] + bodies):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/recommend", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        dt = time.perf_counter() - t0
        if n < warmup:
            continue
        if r.status != 200:
            errors += 1
            answers.append([])
            continue
        lat.append(dt)
        answers.append([x["item_id"] for x in json.loads(data)["items"]])
    return lat, answers, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--ef-search", type=int, default=256)
    ap.add_argument("--modes", default="exact,hnsw")
    ap.add_argument("--model-dir", default=None, help="reuse (or build once into) this folder")
    ap.add_argument("--build-only", action="store_true")
    ap.add_argument("--shape", choices=["sasrec", "fusion"], default="sasrec")
    ap.add_argument("--base-model", default=None, help="--shape fusion: the trained fusion run to extend")
    ap.add_argument("--noise", type=float, default=0.5, help="--shape fusion: noise around the text clusters' centres "
                    "(per coordinate, centres ~N(0, 1)); the SASRec shape uses 0.5")
    args = ap.parse_args()
    from ctxrec.experiment import machine_description

    if args.shape == "fusion" and not args.base_model:
        raise SystemExit("--shape fusion needs --base-model RUN (a trained fusion run, e.g. runs/bench/ml-1m/fusion-serve)")
    tmp = Path(tempfile.mkdtemp(prefix="ctxrec-1m-"))
    run = Path(args.model_dir) if args.model_dir else tmp / "run"
    t0 = time.perf_counter()
    if not (run / "model" / "config.json").exists():
        if args.shape == "fusion":
            build_fusion(run, Path(args.base_model), args.items, noise=args.noise)
        else:
            build_model(run, args.items, args.users)
    build_s = time.perf_counter() - t0
    if args.build_only:
        print(f"built {run} in {build_s:.1f} s")
        return
    rng = np.random.default_rng(1)
    if args.shape == "fusion":  # the base model's users; its data has no request context fields
        known = json.loads((run / "model" / "vocab" / "users.json").read_text())["ids"]
        bodies = [json.dumps({"user_id": known[u], "k": 10}).encode() for u in rng.integers(0, len(known), args.requests)]
    else:
        users = [f"u{u:05d}" for u in rng.integers(0, args.users, args.requests)]
        bodies = [json.dumps({"user_id": u, "context": CONTEXT, "k": 10}).encode() for u in users]
    results: dict[str, dict] = {}
    answers: dict[str, list[list[str]]] = {}
    for mode in args.modes.split(","):
        port = free_port()
        extra = ["--index", mode, "--hnsw-ef-search", str(args.ef_search)]
        t1 = time.perf_counter()
        proc = start_server(str(run), str(tmp / f"{mode}.sqlite"), port, extra, tmp / f"{mode}.log")
        startup = time.perf_counter() - t1
        try:
            lat, ans, errors = measure(port, bodies, warmup=50)
            rss, peak = rss_mib(proc.pid), hwm_mib(proc.pid)
        finally:
            proc.kill()
            proc.wait()
        a = np.asarray(lat) * 1000
        answers[mode] = ans
        results[mode] = {"index": mode, "clients": 1, "requests": len(bodies), "errors": errors,
                         "p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
                         "rps": round(len(lat) / (a.sum() / 1000), 1), "server_rss_mib": rss, "server_peak_rss_mib": peak,
                         "startup_seconds": round(startup, 1), "server_args": " ".join(extra)}
    if "exact" in answers and "hnsw" in answers:
        rec = [len(set(h) & set(e)) / max(1, len(e)) for h, e in zip(answers["hnsw"], answers["exact"], strict=True) if e]
        results["hnsw"]["recall_at_10_vs_exact"] = round(float(np.mean(rec)), 4)
    cmd = " ".join(shlex.quote(x) for x in [".venv/bin/python", "benchmarks/serving_catalogue.py", *sys.argv[1:]])
    tag = ("1m" if args.items == 1_000_000 else f"{args.items // 1000}k") + ("_fusion" if args.shape == "fusion" else "")
    described = ("synthetic SASRec-shaped (d=64, 2 layers, 50-item histories, clustered item vectors)"
                 if args.shape == "sasrec" else
                 f"the fusion model {args.base_model} plus {args.items:,} added items whose text vectors are random "
                 f"clustered unit vectors (2,000 centres + {args.noise} x noise) of the language model's width, through the trained "
                 "adapter; no ID embedding; the base model's users and histories")
    for mode, res in results.items():
        res.update({"name": f"catalogue_{tag}_{mode}", "endpoint": "POST /v1/recommend", "k": 10,
                    "context_given": args.shape == "sasrec",
                    "catalogue_size": len(json.loads((run / "model" / "vocab" / "items.json").read_text())["ids"]),
                    "model": described, "model_build_seconds": round(build_s, 1), "command": cmd,
                    "machine": machine_description()})
        out = ROOT / "benchmarks" / "results" / "serving" / f"catalogue_{tag}_{mode}.json"
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps({k: res.get(k) for k in ("name", "p50_ms", "p99_ms", "errors", "server_rss_mib",
                                                   "recall_at_10_vs_exact", "startup_seconds")}))


if __name__ == "__main__":
    main()
