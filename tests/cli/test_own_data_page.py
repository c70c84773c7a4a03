"""docs/own-data.md runs as written: its marked commands, in order, on the log its first command generates.

A fenced block right after an HTML comment marker is executed:

* ``<!-- test: run -->``: each line is a command that must succeed (``ctxrec ...`` through the CLI app,
  ``python ...`` with this interpreter);
* ``<!-- test: fails -->``: each line must fail with an error message;
* ``<!-- test: edit FILE -->``: each ``key = value`` line replaces that top-level key of FILE (the "edit it"
  step);
* ``<!-- test: serve -->``: the server is started (on a free port), and each ``<!-- test: request -->``
  curl line is sent to it.

Training runs with tiny epochs (``train.max_epochs=N`` becomes 1); nothing else of a command changes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxrec.cli import app

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own-data.md"
_BLOCK = re.compile(r"<!-- test: (run|fails|edit [^ ]+|serve|request) -->\n```\w*\n(.*?)\n```", re.DOTALL)


def page_steps(text: str) -> list[tuple[str, list[str]]]:
    """``(marker, lines)`` of every marked block, in page order."""
    return [(m.group(1), [ln for ln in m.group(2).splitlines() if ln.strip()]) for m in _BLOCK.finditer(text)]


def test_the_page_has_the_whole_cli_path() -> None:
    text = PAGE.read_text()
    commands = " ".join(" ".join(lines) for _, lines in page_steps(text))
    for step in ("ctxrec data init", "ctxrec data info --mapping", "ctxrec train --mapping", "ctxrec evaluate",
                 "ctxrec recommend", " -c ", "ctxrec serve"):
        assert step in commands, step
    assert len(page_steps(text)) == text.count("<!-- test:"), "a marker is not followed by a fenced block"


def _tiny(command: str) -> str:
    return re.sub(r"train\.max_epochs=\d+", "train.max_epochs=1 --set train.progress=false", command)


def _cli(command: str) -> tuple[int, str]:
    argv = shlex.split(_tiny(command))
    assert argv[0] == "ctxrec", command
    res = CliRunner().invoke(app, argv[1:])
    return res.exit_code, res.output


def _edit(path: Path, lines: list[str]) -> None:
    """Replace (or add) the top-level ``key = value`` lines of a TOML file."""
    text = path.read_text()
    for line in lines:
        key = line.split("=", 1)[0].strip()
        pattern = re.compile(rf"^{re.escape(key)}\s*=.*$", re.MULTILINE)
        head, sep, tables = text.partition("\n[")  # top-level keys come before the first table
        head = pattern.sub(line, head) if pattern.search(head) else head + "\n" + line
        text = head + sep + tables
    path.write_text(text)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(line: str, port: int) -> dict:
    """Send a ``curl -s localhost:8000/PATH -H ... -d JSON`` line of the page to the test server."""
    import httpx

    argv = shlex.split(line)
    assert argv[0] == "curl"
    url = next(a for a in argv[1:] if a.startswith("localhost:8000/"))
    body = json.loads(argv[argv.index("-d") + 1])
    r = httpx.post(f"http://127.0.0.1:{port}/{url.split('/', 1)[1]}", json=body, timeout=60)
    assert r.status_code == 200, r.text
    payload: dict = r.json()
    return payload


def test_the_own_data_page_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CTXREC_CACHE", str(tmp_path / "cache"))
    server: subprocess.Popen[bytes] | None = None
    port = _free_port()
    outputs: dict[str, str] = {}
    try:
        for marker, lines in page_steps(PAGE.read_text()):
            for line in lines:
                if marker == "run" and line.startswith("python "):
                    subprocess.run([sys.executable, *shlex.split(line)[1:]], check=True, cwd=tmp_path)
                elif marker == "run":
                    code, out = _cli(line)
                    assert code == 0, f"{line}\n{out}"
                    outputs[line] = out
                elif marker == "fails":
                    code, out = _cli(line)
                    assert code == 2 and "error: " in out, f"{line} should fail with an error\n{out}"
                    outputs[line] = out
                elif marker.startswith("edit "):
                    _edit(tmp_path / marker.split(" ", 1)[1], [line])
                elif marker == "serve":
                    argv = [sys.executable, "-m", "ctxrec", *shlex.split(line)[1:], "--port", str(port)]
                    with open(tmp_path / "serve.log", "wb") as log:
                        server = subprocess.Popen(argv, cwd=tmp_path, env=os.environ.copy(), stderr=log)
                    _wait_ready(server, port, tmp_path / "serve.log")
                else:  # request
                    payload = _request(line, port)
                    assert 1 <= len(payload["items"]) <= 5
                    outputs[line] = json.dumps(payload)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    _check_outputs(outputs, tmp_path)


def _wait_ready(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"ctxrec serve exited: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError("ctxrec serve did not become ready in 120 s")


def _check_outputs(outputs: dict[str, str], folder: Path) -> None:
    """What the page says each step shows."""
    info = next(v for k, v in outputs.items() if k.startswith("ctxrec data info"))
    assert "context schema:" in info and re.search(r"weather\s+categorical\s+4 values \(", info), info
    assert "% missing" in info and "order" in info and "test targets" in info
    assert (folder / "mapping.toml").read_text().count('name = "trips"') == 1
    for run in ("runs/trips-ctxpop", "runs/trips-fusion"):
        record = json.loads((folder / run / "data.json").read_text())
        assert {f["role"] for f in record["files"]} == {"interactions", "items"}
        assert (folder / run / "mapping.toml").is_file()
    assert "ndcg@10" in next(v for k, v in outputs.items() if k.startswith("ctxrec evaluate")).lower()
    foggy = next(v for k, v in outputs.items() if "weather=foggy" in k)
    assert "weather='foggy' was never seen in training; scored as unknown" in foggy
    wrong = next(v for k, v in outputs.items() if "Weather=sunny" in k)
    assert "did you mean 'weather'" in wrong and "daypart, device, weather" in wrong
