"""A real ``ctxrec serve`` over a real PostgreSQL that is restarted (``pg_ctl restart -m fast``) in
the middle of a stream of events and recommendations, then stopped before a SIGTERM.

Before the fix, the first requests after the restart returned 500, then every request touching the
store hung (a lock taken before ``conn.cursor()`` raised was never released), /healthz stayed 200
and SIGTERM did not stop the process in 30 s."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pg import PostgresCluster, find_pg_bin
from test_durability import _free_port, _start

DEADLINE = 1.0
HUNG = DEADLINE + 2.0  # an answer slower than this counts as hung


def test_postgres_restart_gives_quick_503s_loses_nothing_and_recovers(fusion_run: Path, tmp_path: Path) -> None:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    (tmp_path / "pg").mkdir()
    pg = PostgresCluster(bin_dir, tmp_path / "pg")
    pg.start()
    port, log = _free_port(), tmp_path / "serve.log"
    proc = None
    try:
        url = pg.fresh_database()
        proc = _start(fusion_run, url, port, log, extra=["--store-deadline", str(DEADLINE)])
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
                        status, retry = r.status_code, r.headers.get("retry-after")
                    except httpx.HTTPError as exc:
                        status, retry = repr(exc), None
                    t1 = time.monotonic()
                    calls.append({"t0": t0, "t1": t1, "status": status, "retry": retry, "kind": kind})
                    if kind % 2 and status == 200:
                        acked.add(eid)
                    time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        t_down = time.monotonic()
        pg._run([str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-l", str(pg.root / "log.txt"), "-m", "fast", "-w", "restart", "-o",
                 f"-p {pg.port} -k {pg.root} -c listen_addresses=127.0.0.1 -c fsync=off"])
        t_up = time.monotonic()
        time.sleep(6.0)
        stop.set()
        for t in threads:
            t.join(15)
        assert not any(t.is_alive() for t in threads)

        hung = [c for c in calls if c["t1"] - c["t0"] > HUNG or not isinstance(c["status"], int)]
        assert not hung, hung[:5]
        bad = [c for c in calls if c["status"] not in (200, 503)]
        assert not bad, bad[:5]
        unavailable = [c for c in calls if c["status"] == 503]
        assert all(c["retry"] for c in unavailable)
        assert all(t_down - 0.5 <= c["t0"] <= t_up + 5.0 for c in unavailable), "503s outside the outage"
        last_503 = max((c["t1"] for c in unavailable), default=t_up)
        assert last_503 - t_up <= 5.0  # recovered within 5 s of PostgreSQL being back
        for kind in range(4):  # and every client is answered again after it
            assert any(c["kind"] == kind and c["status"] == 200 and c["t0"] > last_503 for c in calls), kind

        import psycopg

        with psycopg.connect(url) as conn:
            stored = [r[0] for r in conn.execute("SELECT event_id FROM events")]
        during = [c for c in calls if t_down <= c["t0"] <= last_503]
        print(f"pg_restart: acknowledged={len(acked)} lost={len(acked - set(stored))} requests_during_outage={len(during)} "
              f"503={len(unavailable)} hung={len(hung)} slowest_s={max(c['t1'] - c['t0'] for c in calls):.2f} "
              f"recovery_s={max(0.0, last_503 - t_up):.2f} outage_s={t_up - t_down:.2f}")
        assert acked and acked <= set(stored), f"{len(acked - set(stored))} acknowledged events lost"
        assert len(stored) == len(set(stored))

        # SIGTERM while the store is down: drain and exit within 10 s
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        pg._run([str(pg.bin / "pg_ctl"), "-D", str(pg.data), "-m", "fast", "-w", "stop"])
        r = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert r.status_code == 503
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200  # alive: calls end in time
        inflight = [threading.Thread(target=_quiet_post, args=(port, k)) for k in range(4)]
        for t in inflight:
            t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        assert time.monotonic() - t0 < 10
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        pg.stop()


def _quiet_post(port: int, k: int) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{port}/v1/events", json={"user_id": f"u{k}", "item_id": "i01"}, timeout=15)
