"""Server CPU per request of ``ctxrec serve`` (one client, sequential, PostgreSQL store): what an event
costs, what a recommend costs when the user's state is cached, and what it costs right after that
user's event (the state is re-encoded). These three figures bound the ``writes`` scenario of
benchmarks/faults.py: see benchmarks/results/serving/FAULTS.md.

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/serving_costs.py

Every user of the tiny fusion model (tests/serving/serving_helpers.py) first gets ``max_history``
stored events, as in ``faults.py``'s writes scenarios. Server CPU is user + system time from /proc over
``--requests`` iterations after 100 warm-up ones. Writes benchmarks/results/serving/request_costs.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "serving"), str(ROOT / "benchmarks")]

from faults_load import MAX_HISTORY, _grow_histories, _kill, _proc_cpu_s  # noqa: E402
from pg import PostgresCluster, find_pg_bin  # noqa: E402
from serving_helpers import tiny_fusion_run  # noqa: E402
from test_durability import _free_port, _start  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "serving" / "request_costs.json"
CONTEXT = {"device": "mobile", "daypart": "evening", "weather": "sunny"}


def main() -> None:
    from ctxrec.experiment import machine_description

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--state-runtime", choices=["onnx", "torch"], default="onnx",
                    help="`ctxrec serve --state-runtime`: what re-encodes a user's state after their event")
    args = ap.parse_args()
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql-15 or set CTXREC_PG_BIN")
    tmp = Path(tempfile.mkdtemp(prefix="ctxrec-costs-"))
    run = tiny_fusion_run(tmp / "run")
    (tmp / "pg").mkdir()
    pg = PostgresCluster(bin_dir, tmp / "pg")
    pg.start()
    proc = None
    try:
        port = _free_port()
        proc = _start(run, pg.fresh_database(), port, tmp / "serve.log", extra=["--state-runtime", args.state_runtime])
        _grow_histories(port, MAX_HISTORY)
        conn = http.client.HTTPConnection("127.0.0.1", port)

        def post(path: str, body: dict[str, Any]) -> None:
            conn.request("POST", path, body=json.dumps(body).encode(), headers={"content-type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit(f"POST {path} answered {r.status}")

        def event(i: int) -> None:
            post("/v1/events", {"user_id": f"u{i % 60:02d}", "item_id": f"i{i % 40:02d}", "event_id": uuid.uuid4().hex})

        def recommend(i: int) -> None:
            post("/v1/recommend", {"user_id": f"u{i % 60:02d}", "context": CONTEXT, "k": 10})

        def measure(fn: Callable[[int], None]) -> dict[str, float]:
            for i in range(100):
                fn(i)
            assert proc is not None
            c0, w0 = _proc_cpu_s(proc.pid), time.perf_counter()
            for i in range(args.requests):
                fn(i)
            c1, w1 = _proc_cpu_s(proc.pid), time.perf_counter()
            return {"server_cpu_ms": round(1000 * (c1 - c0) / args.requests, 3),
                    "wall_ms": round(1000 * (w1 - w0) / args.requests, 3)}

        result: dict[str, Any] = {
            "event": measure(event),
            "recommend_cached_state": measure(recommend),
            "event_then_recommend": measure(lambda i: (event(i), recommend(i))),
        }
    finally:
        _kill(proc)
        pg.stop()
    result["recommend_after_event"] = {k: round(result["event_then_recommend"][k] - result["event"][k], 3)
                                       for k in ("server_cpu_ms", "wall_ms")}
    result["state_reencode_server_cpu_ms"] = round(result["recommend_after_event"]["server_cpu_ms"]
                                                   - result["recommend_cached_state"]["server_cpu_ms"], 3)
    result.update({
        "requests": args.requests, "state_runtime": args.state_runtime, "histories": f"{MAX_HISTORY} stored events for each of the 60 users",
        "model": "tiny fusion model (tests/serving/serving_helpers.tiny_fusion_run)", "store": "PostgreSQL 15",
        "command": " ".join(shlex.quote(x) for x in ["flock", "/tmp/ctxrec-heavy.lock", ".venv/bin/python",
                                                      "benchmarks/serving_costs.py", *sys.argv[1:]]),
        "machine": machine_description(),
    })
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("event", "recommend_cached_state", "recommend_after_event",
                                             "state_reencode_server_cpu_ms")}))


if __name__ == "__main__":
    main()
