"""The writes scenarios of benchmarks/faults.py (reads under writes: readers and event writers in their
own processes against real ``ctxrec serve`` replicas over PostgreSQL) and the process helpers every
scenario uses (killing a server with its workers, CPU accounting from /proc)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests" / "serving")]

from pg import PostgresCluster  # noqa: E402
from test_durability import _free_port, _start  # noqa: E402

from ctxrec.serving.settings import ServingSettings  # noqa: E402


def _kill(proc: subprocess.Popen[bytes] | None) -> None:
    """Kill a server and the worker processes of ``--workers N`` (they would outlive a killed parent)."""
    if proc is not None and proc.poll() is None:
        kids = _children(proc.pid)
        proc.kill()
        proc.wait()
        for pid in kids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc/<pid>/task/*/children)."""
    try:
        kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() if (t / "children").exists()
                for c in (t / "children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def _writer(port: int, stop_at: float, idx: int, counter: Any, rate: float | None = None,
            latencies: list[float] | None = None) -> None:
    """One event-writer client (run in its own process with the others): closed loop (the next event
    as soon as the last is acknowledged), or paced at ``rate`` events/s (a missed slot is not made up).
    A keep-alive ``http.client`` connection, as the readers' clients use: httpx cost about 0.7 ms of
    CPU per event on these shared cores, CPU the server under test then lacks."""
    import http.client

    n = 0
    next_at = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    while time.monotonic() < stop_at:
        if rate:
            next_at = max(next_at + 1.0 / rate, time.monotonic() - 1.0 / rate)
            time.sleep(max(0.0, next_at - time.monotonic()))
        n += 1
        body = json.dumps({"user_id": f"u{(idx * 7 + n) % 60:02d}", "item_id": f"i{n % 40:02d}",
                           "event_id": f"w{idx}-{n}"})
        try:
            t0 = time.monotonic()
            conn.request("POST", "/v1/events", body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                if latencies is not None:
                    latencies.append(time.monotonic() - t0)
                with counter.get_lock():
                    counter.value += 1
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.close()


def _writers(port: int, seconds: float, n: int, counter: Any, rate: float | None = None,
             latency_out: str | None = None) -> None:
    """``n`` writer threads in this process; ``latency_out``: a JSON file of each acknowledged event's
    seconds from request to answer (list.append is atomic, so the threads share one list)."""
    stop_at = time.monotonic() + seconds
    lat: list[float] = []
    threads = [threading.Thread(target=_writer, args=(port, stop_at, i, counter, rate / n if rate else None, lat))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if latency_out:
        Path(latency_out).write_text(json.dumps(lat))


def _cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)


def _proc_cpu_s(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of a process and its children (``serve --workers N`` forks N)."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # a child that exited between the listing and the read
        return 0.0
    own = (float(f[11]) + float(f[12])) / os.sysconf("SC_CLK_TCK")
    if not children:
        return own
    return own + sum(_proc_cpu_s(k, children=False) for k in _children(pid))


def _grow_histories(port: int, per_user: int, users: int = 60, items: int = 40) -> int:
    """Give every user of the tiny model ``per_user`` stored events (the service reads at most its
    ``max_history``), so that every phase of ``writes`` reads full-length histories: the readers-alone
    phase is then the steady state the writers' phase is compared with, not a store of short histories."""
    n = 0
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
        for u in range(users):
            evs = [{"user_id": f"u{u:02d}", "item_id": f"i{(u + j) % items:02d}", "event_id": f"grow-{u}-{j}"}
                   for j in range(per_user)]
            r = c.post("/v1/events", json={"events": evs})
            r.raise_for_status()
            n += int(r.json()["stored"])
    return n


def _readers(port: int, run: Path, seconds: float, clients: int, out: Path, server_pid: int) -> dict[str, Any]:
    """serving_load.py --url in its own process; adds the machine's CPU use, the server's CPU share and the
    raw latencies (``lat_ms``, to pool percentiles over windows)."""
    b0, t0, s0, w0 = *_cpu(), _proc_cpu_s(server_pid), time.monotonic()
    lat_file = out.with_suffix(".lat.json")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serving_load.py"), "--name", out.stem, "--url",
           f"http://127.0.0.1:{port}", "--model", str(run), "--clients", str(clients), "--seconds", str(seconds),
           "--warmup", "50", "--out", str(out), "--latencies", str(lat_file)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 300)
    b1, t1, s1, w1 = *_cpu(), _proc_cpu_s(server_pid), time.monotonic()
    res = dict(json.loads(out.read_text()))
    res["lat_ms"] = json.loads(lat_file.read_text())
    res["machine_cpu_busy"] = round((b1 - b0) / (t1 - t0), 3)
    res["server_cores_used"] = round((s1 - s0) / (w1 - w0), 2)
    res["server_cpu_s"], res["window_s"] = s1 - s0, w1 - w0
    return res


def _pooled(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """One condition's windows together: requests over seconds, percentiles over every latency."""
    lat = np.concatenate([np.asarray(w["lat_ms"], np.float64) for w in windows])
    ok = sum(len(w["lat_ms"]) for w in windows)
    wall = sum(float(w["seconds"]) for w in windows)
    return {"rps": round(ok / wall, 1) if wall else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
            "errors": sum(int(w["errors"]) for w in windows),
            "machine_cpu_busy": round(float(np.mean([w["machine_cpu_busy"] for w in windows])), 3),
            "server_cores_used": round(sum(w["server_cpu_s"] for w in windows) / sum(w["window_s"] for w in windows), 2),
            "server_cpu_ms_per_read": round(1000 * sum(w["server_cpu_s"] for w in windows) / max(ok, 1), 3),
            "window_rps": [w["rps"] for w in windows]}


SERVE_ARGS: list[str] = []
"""Extra ``ctxrec serve`` flags of every replica the writes scenarios start (faults.py --state-runtime)."""

WINDOWS = 3
"""Windows per condition in the writes scenarios: readers alone and readers with writers alternate
(alone, with, with, alone, alone, with), so a slower period of a shared machine lands on both conditions
instead of on one phase (one 20 s phase each gave ratios from 0.61x to 1.09x for the same code)."""


def writes(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 12.0, readers: int = 4,
           writers: int = 4, rate: float | None = None, workers: int = 1, ingest: bool = False,
           ingest_nice: int = 0, windows: int = WINDOWS) -> dict[str, Any]:
    """Readers alone against readers with the writers (closed loop, or paced at ``rate`` events/s in all),
    in ``windows`` windows of ``seconds`` each per condition, alternating (:data:`WINDOWS`); each
    figure pools its condition's windows. Every user's history is first grown to the service's
    max_history, so all windows read histories of one length. ``workers``: ``ctxrec serve --workers N``.
    ``ingest``: a second replica over the same store takes the writers' events (running throughout), as
    a load balancer that routes ``/v1/events`` to its own replica would (docs/serving.md, "Reads under
    writes"); ``ingest_nice``: that replica runs ``ctxrec serve --nice N``, a lower CPU priority."""
    url, port = pg.fresh_database(), _free_port()
    proc = _start(run, url, port, tmp / "writes.log", extra=[*SERVE_ARGS, *(["--workers", str(workers)] if workers > 1 else [])])
    ingest_proc = None
    write_port = port
    alone: list[dict[str, Any]] = []
    with_: list[dict[str, Any]] = []
    events = cpu = span = ingest_cpu = 0.0
    acks: list[float] = []
    cache = {"hit": 0.0, "miss": 0.0}
    try:
        if ingest:
            write_port = _free_port()
            ingest_proc = _start(run, url, write_port, tmp / "writes_ingest.log",
                                 extra=[*SERVE_ARGS, *(["--nice", str(ingest_nice)] if ingest_nice else [])])
        grown = _grow_histories(write_port, MAX_HISTORY)
        for i in range(2 * windows):
            writing = (i % 4) in (1, 2)  # alone, with, with, alone, ...
            out = tmp / f"writes_{'with' if writing else 'without'}_{i}.json"
            if not writing:
                alone.append(_readers(port, run, seconds, readers, out, proc.pid))
                continue
            counter = multiprocessing.Value("i", 0)
            lat_file = tmp / f"writes_latency_{i}.json"
            wp = multiprocessing.Process(target=_writers, args=(write_port, seconds + 8, writers, counter, rate,
                                                                str(lat_file)))
            wp.start()
            assert wp.pid is not None
            time.sleep(2.0)  # writers at full speed before the readers start
            ig0 = _proc_cpu_s(ingest_proc.pid) if ingest_proc is not None else 0.0
            cache0 = _cache_counts(port)
            e0, c0, t0 = counter.value, _proc_cpu_s(wp.pid), time.monotonic()
            with_.append(_readers(port, run, seconds, readers, out, proc.pid))
            e1, c1, t1 = counter.value, _proc_cpu_s(wp.pid), time.monotonic()
            ig1 = _proc_cpu_s(ingest_proc.pid) if ingest_proc is not None else 0.0
            cache1 = _cache_counts(port)
            wp.join()
            events, cpu, span, ingest_cpu = events + e1 - e0, cpu + c1 - c0, span + t1 - t0, ingest_cpu + ig1 - ig0
            for k in cache:
                cache[k] += cache1.get(k, 0) - cache0.get(k, 0)
            acks.extend(json.loads(lat_file.read_text()))
    finally:
        _kill(proc)
        _kill(ingest_proc)
    without, with_p = _pooled(alone), _pooled(with_)
    ack_ms = np.asarray(acks or [float("nan")]) * 1000
    where = (f"readers on replica A (`ctxrec serve --workers {workers}`), the writers' events on replica B "
             f"(`ctxrec serve{f' --nice {ingest_nice}' if ingest_nice else ''}`, the same PostgreSQL store); "
             "server_cores_used_*: replica A only. "
             if ingest else f"`ctxrec serve --workers {workers}`; ")
    return {"rps_without": without["rps"], "rps_with": with_p["rps"], "p99_without": without["p99_ms"],
            "p99_with": with_p["p99_ms"], "p50_without": without["p50_ms"], "p50_with": with_p["p50_ms"],
            "rps_ratio": round(with_p["rps"] / without["rps"], 3) if without["rps"] else None,
            "p99_ratio": round(with_p["p99_ms"] / without["p99_ms"], 3) if without["p99_ms"] else None,
            "window_rps_without": without["window_rps"], "window_rps_with": with_p["window_rps"],
            "errors_without": without["errors"], "errors_with": with_p["errors"],
            "writer_events_per_s": round(events / span, 1) if span else 0.0,
            "writer_cores_used": round(cpu / span, 2) if span else 0.0,
            "writer_ack_p50_ms": round(float(np.percentile(ack_ms, 50)), 2),
            "writer_ack_p99_ms": round(float(np.percentile(ack_ms, 99)), 2),
            "machine_cpu_busy_without": without["machine_cpu_busy"], "machine_cpu_busy_with": with_p["machine_cpu_busy"],
            "server_cores_used_without": without["server_cores_used"],
            "server_cores_used_with": with_p["server_cores_used"],
            "server_cpu_ms_per_read_without": without["server_cpu_ms_per_read"],
            "server_cpu_ms_per_read_with": with_p["server_cpu_ms_per_read"],
            "readers": readers, "writers": writers, "seconds": seconds, "windows": windows,
            "store": "PostgreSQL 15", "server_workers": workers,
            "serve_args": " ".join(SERVE_ARGS) or None,
            "writers_paced_at": rate, "events_grown_first": grown, "ingest_replica": ingest,
            **({"ingest_replica_nice": ingest_nice} if ingest else {}),
            **({"ingest_replica_cores_used": round(ingest_cpu / span, 2)} if ingest and span else {}),
            "reader_cache_with": cache,
            "note": where + "before the first window every user's history is grown "
                    f"to the service's max_history ({MAX_HISTORY} events, events_grown_first in all), so all "
                    f"windows read full-length histories. {windows} windows of {seconds:g} s per condition, "
                    "alternating (alone, with, with, alone, ...); each figure pools its condition's windows "
                    "(requests over seconds; percentiles over every latency). "
                    "readers: benchmarks/serving_load.py --url (own process, POST /v1/recommend with context); "
                    f"writers: {writers} httpx clients posting single events with ids "
                    + (f"paced at {rate:g} events/s in all" if rate else "in a closed loop") + " (another process, "
                    "started 2 s before each with-window; writer_events_per_s and writer_cores_used over the "
                    "readers' windows). server_cores_used_*: the server's processes together. On 2 shared cores "
                    "the client processes and PostgreSQL take CPU from the server: see machine_cpu_busy_* "
                    "(1.0 = both cores busy, other workers' jobs included) and server_cores_used_*"}


PACED_RATE = 352.0
"""events/s of ``writes_paced``: what the closed-loop writers reached before events got cheaper (the
first faults.json figure), so that row loads the server with the events the old figure did."""


MAX_HISTORY = next(f.default for f in dataclasses.fields(ServingSettings) if f.name == "max_history")
"""The most stored events a request reads per user (the service's default)."""


def writes_paced(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 12.0, workers: int = 1,
                 windows: int = WINDOWS) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, rate=PACED_RATE, workers=workers, windows=windows)


def writes_ingest(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 12.0, workers: int = 1,
                  windows: int = WINDOWS) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, workers=workers, ingest=True, windows=windows)


def writes_ingest_paced(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 12.0, workers: int = 1,
                        windows: int = WINDOWS) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, rate=PACED_RATE, workers=workers, ingest=True, windows=windows)


REPEAT_KEYS = ["rps_without", "rps_with", "rps_ratio", "p99_without", "p99_with", "p99_ratio",
               "writer_events_per_s", "writer_ack_p99_ms"]
"""What ``repeats`` keeps of each run of a writes scenario."""


INGEST_NICE = 10
"""``ctxrec serve --nice`` of the ingest replica in ``writes_ingest_nice`` (docs/serving.md, "Reads under
writes"): the readers' replica keeps the CPU when both want it, the ingest replica takes what is left."""


def writes_ingest_nice(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 12.0, workers: int = 1,
                       windows: int = WINDOWS) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, rate=PACED_RATE, workers=workers, ingest=True, ingest_nice=INGEST_NICE,
                  windows=windows)


def _cache_counts(port: int) -> dict[str, float]:
    """The reader replica's user-state cache counters (hit, miss) from /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ctxrec_user_cache{"):
            out[line.split('result="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out
