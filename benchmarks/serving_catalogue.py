"""Serving a synthetic 1M-item catalogue: exact scoring vs faiss HNSW (recall@10 against exact).

Builds a SASRec-shaped model (d=64) whose 1,000,000 item vectors are clustered (2,000 centres +
noise, like real item embeddings) and whose users have 50-item histories, saves it, then serves it
twice with ``ctxrec serve`` (``--index exact`` and ``--index hnsw``) and measures POST /v1/recommend
(k=10, one client) on the same requests. Recall@10 = overlap of the two services' answers.

    .venv/bin/python benchmarks/serving_catalogue.py --items 1000000
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
    args = ap.parse_args()
    from ctxrec.experiment import machine_description

    tmp = Path(tempfile.mkdtemp(prefix="ctxrec-1m-"))
    run = Path(args.model_dir) if args.model_dir else tmp / "run"
    t0 = time.perf_counter()
    if not (run / "model" / "config.json").exists():
        build_model(run, args.items, args.users)
    build_s = time.perf_counter() - t0
    if args.build_only:
        print(f"built {run} in {build_s:.1f} s")
        return
    rng = np.random.default_rng(1)
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
    tag = "1m" if args.items == 1_000_000 else f"{args.items // 1000}k"
    for mode, res in results.items():
        res.update({"name": f"catalogue_{tag}_{mode}", "endpoint": "POST /v1/recommend", "k": 10, "context_given": True,
                    "catalogue_size": args.items, "model": "synthetic SASRec-shaped (d=64, 2 layers, 50-item histories, "
                    "clustered item vectors)", "model_build_seconds": round(build_s, 1), "command": cmd,
                    "machine": machine_description()})
        out = ROOT / "benchmarks" / "results" / "serving" / f"catalogue_{tag}_{mode}.json"
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps({k: res.get(k) for k in ("name", "p50_ms", "p99_ms", "errors", "server_rss_mib",
                                                   "recall_at_10_vs_exact", "startup_seconds")}))


if __name__ == "__main__":
    main()
