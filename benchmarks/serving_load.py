"""Latency and throughput of ``ctxrec serve`` for POST /v1/recommend (k=10, request context given).

The server is a real ``ctxrec serve`` process on loopback; clients are threads with keep-alive
``http.client`` connections (cheap per request, so the 2-core machine's CPU goes to the server).
Writes benchmarks/results/serving/<name>.json.

    .venv/bin/python benchmarks/serving_load.py --name ml1m_sasrec_1client --clients 1 --requests 3000
    .venv/bin/python benchmarks/serving_load.py --name ml1m_sasrec_16clients --clients 16 --seconds 60
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = {"device": "mobile", "daypart": "evening", "weather": "sunny"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def hwm_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def start_server(model: str, store: str, port: int, extra: list[str], log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "ctxrec"
    cmd = [str(exe), "serve", "--model", model, "--store", store, "--no-auth", "--port", str(port), *extra]
    with log.open("wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server not ready")


def model_users(model: str, n: int, seed: int = 0) -> list[str]:
    p = Path(model)
    vocab = p / "model" / "vocab" / "users.json" if (p / "model").exists() else p / "vocab" / "users.json"
    ids = json.loads(vocab.read_text())["ids"]
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.integers(0, len(ids), n)]


def client_loop(port: int, bodies: list[bytes], stop_at: float, max_requests: int | None, lat: list[float],
                errors: list[str], offset: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    i = offset
    n = 0
    while time.perf_counter() < stop_at and (max_requests is None or n < max_requests):
        body = bodies[i % len(bodies)]
        i += 1
        n += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/recommend", body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            if r.status != 200 or b'"items"' not in data:
                errors.append(f"{r.status}: {data[:200]!r}")
            else:
                lat.append(dt)
        except Exception as exc:  # noqa: BLE001 - counted as an error
            errors.append(repr(exc))
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def run_load(port: int, bodies: list[bytes], clients: int, seconds: float | None, requests: int | None
             ) -> tuple[list[float], list[str], float]:
    lats: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop_at = time.perf_counter() + (seconds if seconds else 1e9)
    per_client = None if requests is None else max(1, requests // clients)
    threads = [threading.Thread(target=client_loop, args=(port, bodies, stop_at, per_client, lats[c], errors, c * 997))
               for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return [x for lst in lats for x in lst], errors, wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", default=str(ROOT / "runs/bench/ml-1m/sasrec"))
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--server-args", default="", help="extra `ctxrec serve` flags, e.g. '--threads 2'")
    ap.add_argument("--body", default="user", choices=["user", "history"])
    args = ap.parse_args()
    if args.seconds is None and args.requests is None:
        args.requests = 2000

    sys.path.insert(0, str(ROOT / "src"))
    from ctxrec.experiment import machine_description

    tmp = Path(tempfile.mkdtemp(prefix="ctxrec-bench-"))
    port = free_port()
    proc = start_server(args.model, str(tmp / "events.sqlite"), port, shlex.split(args.server_args), tmp / "server.log")
    try:
        users = model_users(args.model, 5000)
        bodies = [json.dumps({"user_id": u, "context": CONTEXT, "k": args.k}).encode() for u in users]
        run_load(port, bodies, 1, None, args.warmup)
        lat, errors, wall = run_load(port, bodies, args.clients, args.seconds, args.requests)
        rss = rss_mib(proc.pid)
        peak = hwm_mib(proc.pid)
        metrics = ""
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/metrics")
            metrics = c.getresponse().read().decode()
        except OSError:
            pass
        batch_sum = batch_count = None
        cache: dict[str, float] = {}
        for line in metrics.splitlines():
            if line.startswith("ctxrec_batch_size_sum"):
                batch_sum = float(line.split()[-1])
            if line.startswith("ctxrec_batch_size_count"):
                batch_count = float(line.split()[-1])
            if line.startswith("ctxrec_user_cache{"):
                cache['hit' if 'result="hit"' in line else 'miss'] = float(line.split()[-1])
        info = json.loads(_get(port, "/v1/admin/model"))
    finally:
        proc.kill()
        proc.wait()
    a = np.asarray(lat) * 1000
    result = {
        "name": args.name,
        "endpoint": "POST /v1/recommend",
        "k": args.k,
        "context_given": True,
        "clients": args.clients,
        "requests": len(lat) + len(errors),
        "errors": len(errors),
        "error_examples": errors[:5],
        "seconds": round(wall, 2),
        "rps": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(a, 50)), 3) if len(a) else None,
        "p90_ms": round(float(np.percentile(a, 90)), 3) if len(a) else None,
        "p99_ms": round(float(np.percentile(a, 99)), 3) if len(a) else None,
        "max_ms": round(float(a.max()), 3) if len(a) else None,
        "mean_batch_size": round(batch_sum / batch_count, 2) if batch_sum and batch_count else None,
        "user_cache_hit_rate": (round(cache["hit"] / (cache["hit"] + cache["miss"]), 3)
                                if cache.get("hit", 0) + cache.get("miss", 0) else None),
        "catalogue_size": info["catalogue_size"],
        "model": info,
        "server_rss_mib": rss,
        "server_peak_rss_mib": peak,
        "server_args": args.server_args,
        "command": " ".join(shlex.quote(x) for x in [".venv/bin/python", "benchmarks/serving_load.py", *sys.argv[1:]]),
        "client": "keep-alive http.client threads in a separate process, loopback",
        "machine": machine_description(),
        "load_average_before": os.getloadavg(),
    }
    out = ROOT / "benchmarks" / "results" / "serving" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("name", "clients", "requests", "errors", "rps", "p50_ms", "p99_ms",
                                              "mean_batch_size", "user_cache_hit_rate", "server_rss_mib")}))


def _get(port: int, path: str) -> str:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    return c.getresponse().read().decode()


if __name__ == "__main__":
    main()
