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
    """serving_load.py --url in its own process; adds the machine's CPU use and the server's CPU share."""
    b0, t0, s0, w0 = *_cpu(), _proc_cpu_s(server_pid), time.monotonic()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "serving_load.py"), "--name", out.stem, "--url",
           f"http://127.0.0.1:{port}", "--model", str(run), "--clients", str(clients), "--seconds", str(seconds),
           "--warmup", "50", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=seconds + 300)
    b1, t1, s1, w1 = *_cpu(), _proc_cpu_s(server_pid), time.monotonic()
    res = dict(json.loads(out.read_text()))
    res["machine_cpu_busy"] = round((b1 - b0) / (t1 - t0), 3)
    res["server_cores_used"] = round((s1 - s0) / (w1 - w0), 2)
    return res


SERVE_ARGS: list[str] = []
"""Extra ``ctxrec serve`` flags of every replica the writes scenarios start (faults.py --state-runtime)."""


def writes(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 20.0, readers: int = 4,
           writers: int = 4, rate: float | None = None, workers: int = 1, ingest: bool = False,
           ingest_nice: int = 0) -> dict[str, Any]:
    """Readers alone, readers with the writers (closed loop, or paced at ``rate`` events/s in all),
    then readers alone again. Every user's history is first grown to the service's max_history, so
    all three phases read histories of one length and the drop measures the writers' interference
    (the after phase checks it). ``workers``: ``ctxrec serve --workers N``. ``ingest``: a second
    replica over the same store takes the writers' events (running in every phase), as a load balancer
    that routes ``/v1/events`` to its own replica would (docs/serving.md, "Reads under writes");
    ``ingest_nice``: that replica runs ``ctxrec serve --nice N``, a lower CPU priority than the readers'."""
    url, port = pg.fresh_database(), _free_port()
    proc = _start(run, url, port, tmp / "writes.log", extra=[*SERVE_ARGS, *(["--workers", str(workers)] if workers > 1 else [])])
    ingest_proc = None
    write_port = port
    try:
        if ingest:
            write_port = _free_port()
            ingest_proc = _start(run, url, write_port, tmp / "writes_ingest.log",
                                 extra=[*SERVE_ARGS, *(["--nice", str(ingest_nice)] if ingest_nice else [])])
        grown = _grow_histories(write_port, MAX_HISTORY)
        without = _readers(port, run, seconds, readers, tmp / "writes_without.json", proc.pid)
        counter = multiprocessing.Value("i", 0)
        lat_file = tmp / "writes_latency.json"
        wp = multiprocessing.Process(target=_writers, args=(write_port, seconds + 10, writers, counter, rate,
                                                            str(lat_file)))
        wp.start()
        assert wp.pid is not None
        time.sleep(2.0)  # writers at full speed before the readers start
        ig0 = _proc_cpu_s(ingest_proc.pid) if ingest_proc is not None else 0.0
        cache0 = _cache_counts(port)
        e0, c0, t0 = counter.value, _proc_cpu_s(wp.pid), time.monotonic()
        with_ = _readers(port, run, seconds, readers, tmp / "writes_with.json", proc.pid)
        e1, c1, t1 = counter.value, _proc_cpu_s(wp.pid), time.monotonic()
        ig1 = _proc_cpu_s(ingest_proc.pid) if ingest_proc is not None else 0.0
        cache1 = _cache_counts(port)
        wp.join()
        ack_ms = np.asarray(json.loads(lat_file.read_text()) or [float("nan")]) * 1000
        after = _readers(port, run, seconds, readers, tmp / "writes_after.json", proc.pid)
    finally:
        _kill(proc)
        _kill(ingest_proc)
    where = (f"readers on replica A (`ctxrec serve --workers {workers}`), the writers' events on replica B "
             f"(`ctxrec serve{f' --nice {ingest_nice}' if ingest_nice else ''}`, the same PostgreSQL store); "
             "server_cores_used_*: replica A only. "
             if ingest else f"`ctxrec serve --workers {workers}`; ")
    return {"rps_without": without["rps"], "rps_with": with_["rps"], "p99_without": without["p99_ms"],
            "p99_with": with_["p99_ms"], "p50_without": without["p50_ms"], "p50_with": with_["p50_ms"],
            "rps_ratio": round(with_["rps"] / without["rps"], 3) if without["rps"] else None,
            "p99_ratio": round(with_["p99_ms"] / without["p99_ms"], 3) if without["p99_ms"] else None,
            "rps_without_after": after["rps"], "p99_without_after": after["p99_ms"],
            "errors_without": without["errors"], "errors_with": with_["errors"],
            "writer_events_per_s": round((e1 - e0) / (t1 - t0), 1),
            "writer_cores_used": round((c1 - c0) / (t1 - t0), 2),
            "writer_ack_p50_ms": round(float(np.percentile(ack_ms, 50)), 2),
            "writer_ack_p99_ms": round(float(np.percentile(ack_ms, 99)), 2),
            "machine_cpu_busy_without": without["machine_cpu_busy"], "machine_cpu_busy_with": with_["machine_cpu_busy"],
            "server_cores_used_without": without["server_cores_used"],
            "server_cores_used_with": with_["server_cores_used"], "readers": readers, "writers": writers,
            "seconds": seconds, "store": "PostgreSQL 15", "server_workers": workers,
            "serve_args": " ".join(SERVE_ARGS) or None,
            "writers_paced_at": rate, "events_grown_first": grown, "ingest_replica": ingest,
            **({"ingest_replica_nice": ingest_nice} if ingest else {}),
            **({"ingest_replica_cores_used": round((ig1 - ig0) / (t1 - t0), 2)} if ingest else {}),
            "reader_cache_with": {k: cache1.get(k, 0) - cache0.get(k, 0) for k in ("hit", "miss")},
            "note": where + "before the first phase every user's history is grown "
                    f"to the service's max_history ({MAX_HISTORY} events, events_grown_first in all), so all "
                    "phases read full-length histories. "
                    "readers: benchmarks/serving_load.py --url (own process, POST /v1/recommend with context); "
                    f"writers: {writers} httpx clients posting single events with ids "
                    + (f"paced at {rate:g} events/s in all" if rate else "in a closed loop") + " (another process; "
                    "writer_events_per_s and writer_cores_used over the readers' phase). *_without_after: readers "
                    "alone again after the writers stopped. server_cores_used_*: the server's processes together. "
                    "On 2 shared cores the "
                    "client processes and PostgreSQL take CPU from the server: see machine_cpu_busy_* (1.0 = both "
                    "cores busy, other workers' jobs included) and server_cores_used_*"}


PACED_RATE = 352.0
"""events/s of ``writes_paced``: what the closed-loop writers reached before events got cheaper (the
first faults.json figure), so that row loads the server with the events the old figure did."""


MAX_HISTORY = next(f.default for f in dataclasses.fields(ServingSettings) if f.name == "max_history")
"""The most stored events a request reads per user (the service's default)."""


def writes_paced(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 20.0, workers: int = 1) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, rate=PACED_RATE, workers=workers)


def writes_ingest(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 20.0, workers: int = 1) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, workers=workers, ingest=True)


def writes_ingest_paced(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 20.0, workers: int = 1
                        ) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, rate=PACED_RATE, workers=workers, ingest=True)


REPEAT_KEYS = ["rps_without", "rps_with", "rps_ratio", "p99_without", "p99_with", "p99_ratio",
               "writer_events_per_s", "writer_ack_p99_ms"]
"""What ``repeats`` keeps of each run of a writes scenario."""


INGEST_NICE = 10
"""``ctxrec serve --nice`` of the ingest replica in ``writes_ingest_nice`` (docs/serving.md, "Reads under
writes"): the readers' replica keeps the CPU when both want it, the ingest replica takes what is left."""


def writes_ingest_nice(run: Path, pg: PostgresCluster, tmp: Path, seconds: float = 20.0, workers: int = 1
                       ) -> dict[str, Any]:
    return writes(run, pg, tmp, seconds, rate=PACED_RATE, workers=workers, ingest=True, ingest_nice=INGEST_NICE)


def _cache_counts(port: int) -> dict[str, float]:
    """The reader replica's user-state cache counters (hit, miss) from /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ctxrec_user_cache{"):
            out[line.split('result="', 1)[1].split('"', 1)[0]] = float(line.rsplit(" ", 1)[1])
    return out
