"""The service's fault scenarios (issue 16) against real ``ctxrec serve`` processes and a real
PostgreSQL 15 cluster; writes benchmarks/results/serving/faults.json.

Scenarios (each on a fresh database of one throwaway cluster, see tests/serving/pg.py):
  pg_restart   4 clients (2 posting events with ids, 2 recommending) while PostgreSQL restarts
               (``pg_ctl restart -m fast``): acknowledged events lost, requests hung, seconds to recover.
  kill9_retry  a client that resends every unacknowledged batch (same event ids) while the server is
               killed -9 twice: lost and duplicated events.
  poison       the poison inputs of tests/serving/test_store_api.py: 5xx, and whether the service
               (and a restart on the same store) works afterwards.
  replicas     2 ``ctxrec serve`` processes over one store: how long an event posted to A takes to
               change B's next answer, and whether B serves an item A deleted (after a 1 s grace).
  fuzz         schemathesis against the served OpenAPI for a bounded time: 5xx answers.
  writes       recommend throughput and p99 without and with 4 event-writer clients (closed loop: each
               posts its next event when the last is acknowledged); the readers are
               benchmarks/serving_load.py --url in its own process, the writers another process.
  writes_paced the same with the 4 writers paced at PACED_RATE events/s in all.
  writes_ingest, writes_ingest_paced
               the two above with the events posted to a second replica over the same store (an ingest
               replica), as a load balancer routing /v1/events there would; the readers' replica is A.
  writes_ingest_nice
               writes_ingest_paced with the ingest replica at a lower CPU priority (``ctxrec serve
               --nice 10``), the set-up docs/serving.md recommends where reads matter more than writes.

``--repeat R`` runs each writes scenario R times (their ratios carry about +-0.1 on shared cores): the
scenario's figures are those of the run with the median ``rps_ratio``, and ``repeats`` lists every run.

    flock /tmp/ctxrec-heavy.lock .venv/bin/python benchmarks/faults.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "serving"), str(ROOT / "benchmarks")]

import faults_load  # noqa: E402  # the writes scenarios and process helpers
from faults_load import (  # noqa: E402
    REPEAT_KEYS,
    _kill,
    writes,
    writes_ingest,
    writes_ingest_nice,
    writes_ingest_paced,
    writes_paced,
)

# the test suite's helpers, importable once the path above is set
from pg import PostgresCluster, find_pg_bin  # noqa: E402
from serving_helpers import tiny_fusion_run  # noqa: E402
from test_durability import _free_port, _start  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "serving" / "faults.json"
DEADLINE = 1.0  # --store-deadline of the pg_restart server
HUNG = DEADLINE + 2.0  # an answer slower than this counts as hung

# The documented shape of faults.json (issue 16, deliverable 6); write_result checks it.
KEYS: dict[str, list[str]] = {
    "pg_restart": ["acknowledged", "lost", "requests_during_outage", "hung_requests", "recovery_s"],
    "kill9_retry": ["acknowledged", "lost", "duplicates"],
    "poison": ["requests", "5xx", "store_ok_after"],
    "replicas": ["replicas", "propagation_p99_ms", "lost", "deleted_item_served"],
    "fuzz": ["requests", "5xx"],
    "writes": ["rps_without", "rps_with", "p99_without", "p99_with"],
    "writes_paced": ["rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s"],
    "writes_ingest": ["rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s"],
    "writes_ingest_paced": ["rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s"],
    "writes_ingest_nice": ["rps_without", "rps_with", "p99_without", "p99_with", "writer_events_per_s",
                           "writer_ack_p99_ms"],
}


def write_result(result: dict[str, Any], out: Path, *, strict: bool = True) -> None:
    """Write faults.json; every documented key must be present (a scenario may add a "note" and details).
    ``strict=False`` (a partial ``--only`` run into a new file) writes what there is."""
    missing = [f"{s}.{k}" for s, keys in KEYS.items() for k in keys if k not in result.get(s, {})]
    missing += [k for k in ("machine", "command") if k not in result]
    if missing and strict:
        raise ValueError(f"faults.json would lack {missing}; every scenario in KEYS must report its keys")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def _stored_event_ids(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM events")]


# --- pg_restart ------------------------------------------------------------------------------------


def pg_restart(run: Path, pg: PostgresCluster, tmp: Path) -> dict[str, Any]:
    url, port = pg.fresh_database(), _free_port()
    proc = _start(run, url, port, tmp / "pg_restart.log", extra=["--store-deadline", str(DEADLINE)])
    calls: list[dict[str, Any]] = []
    acked: set[str] = set()
    stop = threading.Event()

    def client(kind: int) -> None:
        n = 0
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            while not stop.is_set():
                n += 1
                eid = f"c{kind}-{n}"
                t0 = time.monotonic()
                try:
                    if kind % 2:
                        r = c.post("/v1/events", json={"user_id": f"u{kind:02d}", "item_id": "i01", "event_id": eid,
                                                       "timestamp": 1.7e9 + n})
                    else:
                        r = c.post("/v1/recommend", json={"user_id": f"u{kind:02d}", "k": 5})
                    status: int | str = r.status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                calls.append({"t0": t0, "t1": time.monotonic(), "status": status, "kind": kind})
                if kind % 2 and status == 200:
                    acked.add(eid)
                time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(2.0)
        t_down = time.monotonic()
        pg._run([str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-l", str(pg.root / "log.txt"), "-m", "fast", "-w",
                 "restart", "-o", f"-p {pg.port} -k {pg.root} -c listen_addresses=127.0.0.1 -c fsync=off"])
        t_up = time.monotonic()
        time.sleep(6.0)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        _kill(proc)
    stored = set(_stored_event_ids(url))
    failed = [c for c in calls if c["status"] != 200]
    last_fail = max((c["t1"] for c in failed if c["t0"] >= t_down - 0.5), default=t_up)
    hung = [c for c in calls if c["t1"] - c["t0"] > HUNG or not isinstance(c["status"], int)]
    statuses: dict[str, int] = {}
    for c in calls:
        statuses[str(c["status"])[:60]] = statuses.get(str(c["status"])[:60], 0) + 1
    return {"acknowledged": len(acked), "lost": len(acked - stored),
            "requests_during_outage": sum(t_down <= c["t0"] <= max(last_fail, t_up) for c in calls),
            "hung_requests": len(hung), "recovery_s": round(max(0.0, last_fail - t_up), 2),
            "outage_s": round(t_up - t_down, 2), "statuses": statuses,
            "slowest_s": round(max(c["t1"] - c["t0"] for c in calls), 2),
            "note": f"--store-deadline {DEADLINE}; hung = no answer within {HUNG} s; recovery_s = last non-200 "
                    "answer after PostgreSQL was back, minus the moment it was back"}


# --- kill9_retry -----------------------------------------------------------------------------------

BATCH = 25


def _retrying_stream(port: int, st: dict[str, Any], until: int) -> None:
    """Resend every unacknowledged batch (same event ids) until it is acknowledged (test_durability.py)."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        while len(st["acked"]) < until:
            if st["pending"] is None:
                n = st["next"]
                st["next"] += BATCH
                st["pending"] = [{"user_id": f"d{j % 97}", "item_id": "i01", "timestamp": 1.7e9 + j,
                                  "event_id": f"ev-{j}"} for j in range(n, n + BATCH)]
            try:
                r = client.post("/v1/events", json={"events": st["pending"]})
            except httpx.HTTPError:
                return  # killed mid-request: the batch may or may not be stored; it is sent again
            if r.status_code != 200:
                st["errors"].append(f"{r.status_code}: {r.text[:200]}")
                return
            st["acked"].extend(e["event_id"] for e in st["pending"])
            st["pending"] = None


def kill9_retry(run: Path, pg: PostgresCluster, tmp: Path, total: int = 4000) -> dict[str, Any]:
    url = pg.fresh_database()
    st: dict[str, Any] = {"acked": [], "pending": None, "next": 0, "errors": []}
    for round_ in range(3):  # two kills mid-stream, then a server that sees the stream to the end
        port = _free_port()
        proc = _start(run, url, port, tmp / "kill9.log")
        t = threading.Thread(target=_retrying_stream, args=(port, st, total))
        t.start()
        if round_ < 2:
            goal = total * (round_ + 1) // 3
            while len(st["acked"]) < goal and t.is_alive():
                time.sleep(0.002)
            os.kill(proc.pid, signal.SIGKILL)
        t.join()
        _kill(proc)
    rows = _stored_event_ids(url)
    return {"acknowledged": len(st["acked"]), "lost": len(set(st["acked"]) - set(rows)),
            "duplicates": len(rows) - len(set(rows)), "stored": len(rows), "kills": 2, "errors": st["errors"][:5]}


# --- poison ----------------------------------------------------------------------------------------


def poison(run: Path, pg: PostgresCluster, tmp: Path) -> dict[str, Any]:
    from test_store_api import POISON  # the poison inputs of the regression test

    url, port = pg.fresh_database(), _free_port()
    proc = _start(run, url, port, tmp / "poison.log")
    answers: list[int] = []
    checks: dict[str, int] = {}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for path, body, _field in POISON:  # json.dumps escapes lone surrogates as a client's JSON would
                answers.append(c.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
                               .status_code)
            checks["item_add"] = c.post("/v1/items", json={"item_id": "ok-1", "fields": {"title": "Koutain"}}).status_code
            checks["item_delete"] = c.delete("/v1/items/ok-1").status_code
            checks["model_swap"] = c.post("/v1/admin/model", json={"run_dir": str(run)}).status_code
            checks["event"] = c.post("/v1/events", json={"user_id": "u01", "item_id": "i01"}).status_code
            checks["history"] = c.get("/v1/users/u01/history").status_code
            checks["recommend"] = c.post("/v1/recommend", json={"user_id": "u01", "k": 5}).status_code
    finally:
        _kill(proc)
    port = _free_port()
    try:  # the issue: after a poisoned write, `ctxrec serve` could not start on the same store
        proc = _start(run, url, port, tmp / "poison.log")
        checks["restart_ready"] = 200
        checks["recommend_after_restart"] = httpx.post(f"http://127.0.0.1:{port}/v1/recommend",
                                                       json={"user_id": "u01", "k": 5}, timeout=10).status_code
    except RuntimeError:
        checks["restart_ready"] = 0
    finally:
        _kill(proc)
    return {"requests": len(answers), "5xx": sum(a >= 500 for a in answers),
            "store_ok_after": all(v == 200 for v in checks.values()),
            "statuses": sorted(set(answers)), "checks_after": checks}


# --- replicas --------------------------------------------------------------------------------------


def replicas(run: Path, pg: PostgresCluster, tmp: Path, trials: int = 20) -> dict[str, Any]:
    """Two replicas over one store. Propagation: post an event for a fresh user to A, then ask B for that
    user's recommendations every 10 ms until the answer differs from B's answer before the event."""
    url = pg.fresh_database()
    ports = [_free_port(), _free_port()]
    procs = [_start(run, url, p, tmp / f"replica{i}.log") for i, p in enumerate(ports)]
    a, b = (httpx.Client(base_url=f"http://127.0.0.1:{p}", timeout=10) for p in ports)
    delays: list[float] = []
    never = 0
    acked: list[str] = []
    served_deleted = checks_deleted = 0
    item_add_seen_by_b = None
    try:
        items = json.loads((run / "model" / "vocab" / "items.json").read_text())["ids"]
        for n in range(trials):
            user = f"replica-user-{n}"
            body = {"user_id": user, "k": 10, "exclude_seen": False}
            before = b.post("/v1/recommend", json=body).json()["items"]
            eid = f"rep-{n}"
            r = a.post("/v1/events", json={"user_id": user, "item_id": items[n % len(items)], "event_id": eid})
            t_ack = time.monotonic()
            if r.status_code == 200:
                acked.append(eid)
            while True:
                now = b.post("/v1/recommend", json=body).json()["items"]
                if now != before:
                    delays.append(time.monotonic() - t_ack)
                    break
                if time.monotonic() - t_ack > 2.0:
                    never += 1
                    break
                time.sleep(0.01)
        # item add on A: how long until B knows it (polled every 10 ms, up to 2 s)?
        a.post("/v1/items", json={"item_id": "replica-new", "fields": {"title": "Replica Propagation Test"}})
        add_ms = _poll_ms(lambda: b.get("/v1/items/replica-new/similar", params={"k": 1}).status_code == 200)
        item_add_seen_by_b = add_ms is not None and add_ms <= 1000
        # delete on A: how long until B drops it; then, after a 1 s grace, does B ever serve it?
        victim = items[0]
        assert a.delete(f"/v1/items/{victim}").status_code == 200
        delete_ms = _poll_ms(lambda: b.get(f"/v1/items/{victim}/similar", params={"k": 1}).status_code != 200)
        time.sleep(1.0)
        users = json.loads((run / "model" / "vocab" / "users.json").read_text())["ids"]
        for u in users[:30]:
            got = b.post("/v1/recommend", json={"user_id": u, "k": 40, "exclude_seen": False}).json()["items"]
            checks_deleted += 1
            served_deleted += any(x["item_id"] == victim for x in got)
    finally:
        a.close()
        b.close()
        for p in procs:
            _kill(p)
    stored = set(_stored_event_ids(url))
    d = np.asarray(delays) * 1000
    measurable = never == 0 and len(delays) == trials
    note = ("2 `ctxrec serve` processes over one PostgreSQL database. Events are read from the store per request "
            "(propagation_* = time from A's acknowledgement to B's changed answer); item adds/deletes and promoted "
            "models reach B through the store's change-version poll (serving/sync.py, sync_interval 0.2 s).")
    return {"replicas": 2,
            "propagation_p99_ms": round(float(np.percentile(d, 99)), 1) if measurable else None,
            "propagation_p50_ms": round(float(np.percentile(d, 50)), 1) if len(d) else None,
            "events_propagated": f"{len(delays)}/{trials} within 2 s",
            "lost": len(set(acked) - stored), "acknowledged": len(acked),
            "deleted_item_served": served_deleted, "deleted_item_checks": checks_deleted,
            "item_add_seen_by_b_after_1s": item_add_seen_by_b, "item_add_propagation_ms": add_ms,
            "item_delete_propagation_ms": delete_ms, "note": note}


def _poll_ms(done: Callable[[], bool], limit_s: float = 2.0) -> float | None:
    """Milliseconds until ``done()`` holds, polled every 10 ms (None if not within ``limit_s``)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 <= limit_s:
        if done():
            return round((time.monotonic() - t0) * 1000, 1)
        time.sleep(0.01)
    return None


# --- fuzz ------------------------------------------------------------------------------------------


def fuzz(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 60.0) -> dict[str, Any]:
    import schemathesis

    url, port = pg.fresh_database(), _free_port()
    proc = _start(run, url, port, tmp / "fuzz.log")
    base = f"http://127.0.0.1:{port}"
    statuses: dict[int, int] = {}
    errors: list[str] = []
    server_errors: list[str] = []
    try:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        stop_at = time.monotonic() + seconds
        per_op = seconds / max(1, len(operations))
        rounds = 0
        while time.monotonic() < stop_at:  # round-robin over the operations until the time is spent
            for op in operations:
                op_stop = min(stop_at, time.monotonic() + per_op)

                call = _fuzz_test(op, base, op_stop, statuses, errors, server_errors)
                _until(call, op_stop)
                if time.monotonic() > stop_at:
                    break
            rounds += 1
    finally:
        _kill(proc)
    return {"requests": sum(statuses.values()) + len(errors), "5xx": sum(v for s, v in statuses.items() if s >= 500),
            "transport_errors": len(errors), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "operations": len(operations), "seconds": seconds, "rounds": rounds,
            "examples_5xx": server_errors[:5], "causes_5xx_in_server_log": _exception_lines(tmp / "fuzz.log"), "tool": f"schemathesis {schemathesis.__version__} (from_url, live server)"}


def _exception_lines(log: Path) -> list[str]:
    """The distinct last lines of the tracebacks in a server log (what the 5xx were)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return sorted({ln.strip()[:200] for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception): ", ln.strip())})


def _fuzz_test(op: Any, base: str, op_stop: float, statuses: dict[int, int], errors: list[str],
               server_errors: list[str]) -> Callable[[], None]:
    """A hypothesis test of one operation that calls the live server and records each status."""
    from hypothesis import HealthCheck, given, settings

    @given(case=op.as_strategy())
    @settings(max_examples=25, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        if time.monotonic() > op_stop:
            return
        try:
            r = case.call(base_url=base, timeout=10)
        except Exception as exc:  # noqa: BLE001 - a transport error is counted, not fatal
            errors.append(repr(exc)[:200])
            return
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        if r.status_code >= 500:
            server_errors.append(f"{case.method} {case.formatted_path}: {r.status_code} {r.text[:150]}")

    return call  # type: ignore[no-any-return]  # hypothesis' @given erases the signature


def _until(call: Callable[[], None], stop_at: float) -> None:
    """Run a hypothesis test repeatedly until ``stop_at`` (one run stops at max_examples or on time)."""
    while time.monotonic() < stop_at:
        call()


# --- writes ----------------------------------------------------------------------------------------


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "pg_restart": pg_restart, "kill9_retry": kill9_retry, "poison": poison, "replicas": replicas, "fuzz": fuzz,
    "writes": writes, "writes_paced": writes_paced, "writes_ingest": writes_ingest,
    "writes_ingest_paced": writes_ingest_paced, "writes_ingest_nice": writes_ingest_nice}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="run folder to serve (default: a tiny fusion model trained here "
                                                  "on the simulator, as the tests use)")
    ap.add_argument("--only", default=None, help="comma-separated scenarios (the result keeps the others' old figures)")
    ap.add_argument("--fuzz-seconds", type=float, default=60.0)
    ap.add_argument("--writes-seconds", type=float, default=12.0, help="seconds of each readers' window of the "
                                                                      "writes scenarios")
    ap.add_argument("--windows", type=int, default=faults_load.WINDOWS,
                    help="readers' windows per condition (alone / with writers, alternating) of the writes scenarios")
    ap.add_argument("--workers", type=int, default=1, help="`ctxrec serve --workers N` of the writes scenarios")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each writes scenario (the median run is kept)")
    ap.add_argument("--state-runtime", choices=["onnx", "torch"], default=None,
                    help="`ctxrec serve --state-runtime` of the writes scenarios' replicas (default: serve's own)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    if args.windows < 1:
        raise SystemExit(f"--windows must be >= 1, got {args.windows}")
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    if args.state_runtime:
        faults_load.SERVE_ARGS[:] = ["--state-runtime", args.state_runtime]
    from ctxrec.experiment import machine_description

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries (initdb, pg_ctl) not found: install postgresql-15 or set CTXREC_PG_BIN")
    only = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"--only {unknown}: known scenarios are {list(SCENARIOS)}")
    tmp = Path(tempfile.mkdtemp(prefix="ctxrec-faults-"))
    run = Path(args.model) if args.model else tiny_fusion_run(tmp / "runs" / "fusion-v1")
    (tmp / "pg").mkdir()
    pg = PostgresCluster(bin_dir, tmp / "pg")
    pg.start()
    out = Path(args.out)
    command = " ".join(shlex.quote(x) for x in ["flock", "/tmp/ctxrec-heavy.lock", ".venv/bin/python",
                                                 "benchmarks/faults.py", *sys.argv[1:]])
    result: dict[str, Any] = json.loads(out.read_text()) if args.only and out.exists() else {}
    try:
        for name in only:
            t0 = time.monotonic()
            writes_kw = {"seconds": args.writes_seconds, "workers": args.workers, "windows": args.windows}
            kw: dict[str, Any] = {"fuzz": {"seconds": args.fuzz_seconds},
                                  **{w: writes_kw for w in SCENARIOS if w.startswith("writes")}}.get(name, {})
            if name.startswith("writes") and args.repeat > 1:
                runs = sorted((SCENARIOS[name](run, pg, tmp, **kw) for _ in range(args.repeat)),
                              key=lambda r: r["rps_ratio"])
                res = {**runs[len(runs) // 2], "repeats": [{k: r[k] for k in REPEAT_KEYS} for r in runs]}
            else:
                res = SCENARIOS[name](run, pg, tmp, **kw)
            result[name] = {**res, "wall_s": round(time.monotonic() - t0, 1), "command": command}
            print(name, json.dumps({k: result[name].get(k) for k in KEYS[name]}), flush=True)
    finally:
        pg.stop()
    result["model"] = str(args.model or "tiny fusion model (tests/serving/serving_helpers.tiny_fusion_run: simulator, "
                                        "60 users, 40 items, d_model 16, hashing text encoder)")
    result["store"] = "PostgreSQL 15 (a throwaway cluster, fsync=off) for every scenario"
    result["machine"] = {**machine_description(), "load_average_at_end": os.getloadavg()}
    if not args.only or "command" not in result:  # a partial run records its command in its scenarios only
        result["command"] = command
    write_result(result, out, strict=not args.only)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
