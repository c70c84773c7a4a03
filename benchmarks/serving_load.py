"""Latency and throughput of ``ctxrec serve`` for POST /v1/recommend (k=10, request context given).

By default this script starts a real ``ctxrec serve`` process on loopback for ``--model``; with
``--url`` (and ``--key`` when the server has API keys) it measures a server that is already running,
from this process only. Clients are threads with keep-alive ``http.client`` connections (cheap per
request, so the 2-core machine's CPU goes to the server). ``--body`` picks the request bodies: ``user``
(random trained users of ``--model``), ``history`` (anonymous histories of its items), a JSON object,
or a file holding one JSON object or JSON lines (one body each). Writes
benchmarks/results/serving/<name>.json (or ``--out``).

    .venv/bin/python benchmarks/serving_load.py --name ml1m_sasrec_1client --clients 1 --requests 3000
    .venv/bin/python benchmarks/serving_load.py --name ml1m_sasrec_16clients --clients 16 --seconds 60
    .venv/bin/python benchmarks/serving_load.py --name remote --url http://10.0.0.5:8000 --key $KEY \\
        --body '{"user_id": "42", "k": 10}' --clients 8 --seconds 30
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
import urllib.parse
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
    ids = model_ids(model, "users")
    rng = np.random.default_rng(seed)
    return [ids[i] for i in rng.integers(0, len(ids), n)]


class Target:
    """Where the requests go: host, port and the headers every request carries (the API key)."""

    def __init__(self, url: str, key: str | None = None) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise SystemExit(f"--url {url!r}: expected http://HOST:PORT (plain HTTP; put TLS in front of the server)")
        self.host, self.port = u.hostname, u.port or 80
        self.headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

    def connect(self, timeout: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def get(self, path: str) -> tuple[int, str]:
        c = self.connect(10)
        try:
            c.request("GET", path, headers=self.headers)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()


def client_loop(target: Target | int, bodies: list[bytes], stop_at: float, max_requests: int | None, lat: list[float],
                errors: list[str], offset: int) -> None:
    if isinstance(target, int):
        target = Target(f"http://127.0.0.1:{target}")
    conn = target.connect()
    headers = target.headers
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
            conn = target.connect()
    conn.close()


def run_load(port: Target | int, bodies: list[bytes], clients: int, seconds: float | None, requests: int | None
             ) -> tuple[list[float], list[str], float]:
    lats: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop_at = time.perf_counter() + (seconds or 1e9)
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


def load_bodies(spec: str, model: str | None, k: int) -> list[bytes]:
    """Request bodies from ``--body``: user | history | a JSON object | a file (JSON object or JSON lines)."""
    if spec in ("user", "history"):
        if model is None or not Path(model).exists():
            raise SystemExit(f"--body {spec} draws ids from --model, and {model!r} does not exist: pass --model RUN_DIR "
                             "or a request body with --body FILE|JSON")
        if spec == "user":
            return [json.dumps({"user_id": u, "context": CONTEXT, "k": k}).encode() for u in model_users(model, 5000)]
        items = model_ids(model, "items")
        rng = np.random.default_rng(0)
        return [json.dumps({"history": [items[i] for i in rng.integers(0, len(items), 20)], "context": CONTEXT,
                            "k": k}).encode() for _ in range(2000)]
    text = Path(spec).read_text() if not spec.lstrip().startswith("{") and Path(spec).is_file() else spec
    try:
        parsed = [json.loads(text)] if text.lstrip().startswith("{") and "\n{" not in text.strip() else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--body {spec[:80]!r}: neither user, history, a JSON object nor a file of JSON lines ({exc})") \
            from exc
    if not parsed or not all(isinstance(b, dict) for b in parsed):
        raise SystemExit(f"--body {spec[:80]!r}: each body must be a JSON object")
    return [json.dumps(b).encode() for b in parsed]


def model_ids(model: str, kind: str) -> list[str]:
    p = Path(model)
    vocab = p / "model" / "vocab" / f"{kind}.json" if (p / "model").exists() else p / "vocab" / f"{kind}.json"
    return list(json.loads(vocab.read_text())["ids"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--model", default=None, help="run folder to serve (default runs/bench/ml-1m/sasrec); with --url, "
                                                  "only where --body user|history draws its ids")
    ap.add_argument("--url", default=None, help="measure this running server (http://HOST:PORT) instead of starting one")
    ap.add_argument("--key", default=None, help="API key sent as 'Authorization: Bearer KEY' (with --url)")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--server-args", default="", help="extra `ctxrec serve` flags, e.g. '--threads 2'")
    ap.add_argument("--body", default="user", help="user | history | a JSON object | a file (JSON object or JSON lines)")
    ap.add_argument("--out", default=None, help="result file (default benchmarks/results/serving/<name>.json)")
    ap.add_argument("--latencies", default=None, help="also write every successful request's latency (ms, JSON list) "
                                                      "here, to pool percentiles over several runs")
    args = ap.parse_args()
    if args.seconds is None and args.requests is None:
        args.requests = 2000
    if args.url and args.server_args:
        raise SystemExit("--server-args applies only when this script starts the server; drop it with --url")
    if args.key and not args.url:
        raise SystemExit("--key applies to --url; the server this script starts runs with --no-auth")
    model = args.model or (None if args.url else str(ROOT / "runs/bench/ml-1m/sasrec"))
    bodies = load_bodies(args.body, model, args.k)

    sys.path.insert(0, str(ROOT / "src"))
    from ctxrec.experiment import machine_description

    proc = None
    if args.url:
        target = Target(args.url, args.key)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="ctxrec-bench-"))
        port = free_port()
        assert model is not None
        proc = start_server(model, str(tmp / "events.sqlite"), port, shlex.split(args.server_args), tmp / "server.log")
        target = Target(f"http://127.0.0.1:{port}")
    try:
        load_avg = os.getloadavg()
        run_load(target, bodies, 1, None, args.warmup)
        lat, errors, wall = run_load(target, bodies, args.clients, args.seconds, args.requests)
        rss = rss_mib(proc.pid) if proc else None
        peak = hwm_mib(proc.pid) if proc else None
        try:
            metrics = target.get("/metrics")[1]
        except OSError:
            metrics = ""
        batch_sum = batch_count = None
        cache: dict[str, float] = {}
        for line in metrics.splitlines():
            if line.startswith("ctxrec_batch_size_sum"):
                batch_sum = float(line.split()[-1])
            if line.startswith("ctxrec_batch_size_count"):
                batch_count = float(line.split()[-1])
            if line.startswith("ctxrec_user_cache{"):
                cache['hit' if 'result="hit"' in line else 'miss'] = float(line.split()[-1])
        status, text = target.get("/v1/admin/model")
        info = json.loads(text) if status == 200 else {"status": status, "body": text[:200]}
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    a = np.asarray(lat) * 1000
    result = {
        "name": args.name,
        "endpoint": "POST /v1/recommend",
        "target": args.url or "ctxrec serve started by this script (--no-auth, SQLite store)",
        "body": args.body if len(args.body) < 200 else args.body[:200] + "...",
        "distinct_bodies": len(bodies),
        "k": args.k,
        "context_given": all(b'"context"' in b for b in bodies),
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
        "catalogue_size": info.get("catalogue_size"),
        "model": info,
        "server_rss_mib": rss,
        "server_peak_rss_mib": peak,
        "server_args": args.server_args,
        "command": " ".join(shlex.quote(x) for x in [".venv/bin/python", "benchmarks/serving_load.py",
                                                      *_redact(sys.argv[1:])]),
        "client": "keep-alive http.client threads in this process (the server is another process), loopback"
                  if not args.url else f"keep-alive http.client threads in this process (pid {os.getpid()})",
        "machine": machine_description(),
        "load_average_before": load_avg,
    }
    if args.latencies:
        Path(args.latencies).write_text(json.dumps([round(float(x), 4) for x in a]))
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "serving" / f"{args.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("name", "clients", "requests", "errors", "rps", "p50_ms", "p99_ms",
                                              "mean_batch_size", "user_cache_hit_rate", "server_rss_mib")}))


def _redact(argv: list[str]) -> list[str]:
    """The command as recorded, without the API key."""
    out = list(argv)
    for i, a in enumerate(out):
        if a == "--key" and i + 1 < len(out):
            out[i + 1] = "KEY"
        elif a.startswith("--key="):
            out[i] = "--key=KEY"
    return out


if __name__ == "__main__":
    main()
