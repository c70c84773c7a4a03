"""The web page (GET /ui/) and its read-only endpoints; the page end to end in headless Chromium.

The browser test starts the real service (uvicorn on a free loopback port, a tiny fusion model with
an API key), drives Debian's ``chromium`` over the DevTools protocol (websocket, no webdriver) with
real mouse clicks and typing, and checks what a user sees: titles, explanation bars, a context
change that changes the request and the list, and an event that changes the history and the list.
``CTXREC_WEB_SCREENSHOT=path.png`` also saves a screenshot of the final page (docs/img/web.png).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
from fastapi.testclient import TestClient

from ctxrec.serving import ServingSettings, create_app
from ctxrec.serving.security import add_key_to_file

# ----------------------------------------------------------------------------------------- endpoints


@pytest.fixture
def keyed(fusion_run: Path, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], dict[str, str]]]:
    keys = tmp_path / "keys.json"
    read = {"X-API-Key": add_key_to_file(keys, "reader", ["read"])}
    write = {"X-API-Key": add_key_to_file(keys, "writer", ["read", "write"])}
    (tmp_path / "admin.key").write_text(add_key_to_file(keys, "admin", ["admin"]))
    app = create_app(ServingSettings(model=str(fusion_run), store=str(tmp_path / "s.sqlite"), keys_file=str(keys)))
    with TestClient(app) as c:
        yield c, read, write


def test_page_and_assets_are_served_same_origin_only(keyed: tuple[TestClient, dict[str, str], dict[str, str]]) -> None:
    c, _, _ = keyed
    r = c.get("/ui", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/ui/"
    page = c.get("/ui/")  # the page itself needs no key; every API call it makes does
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "script-src 'self'" in csp
    assert 'src="app.js"' in page.text and 'href="style.css"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from a CDN
    for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = c.get(f"/ui/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), name
        assert "http://" not in r.text and "https://" not in r.text
        assert r.headers["x-content-type-options"] == "nosniff"
    assert c.get("/ui/secrets.json").status_code == 404
    assert c.get("/ui/..%2Fapp.py").status_code == 404
    assert "/ui/" not in c.get("/openapi.json").json()["paths"]


def test_users_history_and_context_fields_endpoints(fusion_run: Path, tmp_path: Path,
                                                    keyed: tuple[TestClient, dict[str, str], dict[str, str]]) -> None:
    from ctxrec.models import load_model

    c, read, write = keyed
    model = load_model(fusion_run)
    for path in ("/v1/users", "/v1/users/u00/history", "/v1/model/context-fields"):
        assert c.get(path).status_code == 401, path  # read scope, like recommend

    assert c.get("/v1/users", headers=read).status_code == 403  # listing users needs the admin scope
    admin = {"X-API-Key": (tmp_path / "admin.key").read_text()}
    r = c.get("/v1/users", params={"limit": 5, "offset": 2}, headers=admin).json()
    assert r["total"] == len(model.user_vocab.ids) and r["offset"] == 2
    assert [u["user_id"] for u in r["users"]] == list(model.user_vocab.ids[2:7])
    assert all(u["history_length"] == len(model.known_history(2 + n)) for n, u in enumerate(r["users"]))
    assert c.get("/v1/users", params={"limit": 0}, headers=admin).status_code == 422

    f = c.get("/v1/model/context-fields", headers=read).json()
    by_name = {x["name"]: x for x in f["fields"]}
    assert set(by_name) == set(model.ctx_encoder.field_names)
    devices = sorted(model.ctx_encoder.vocabs["device"])
    assert by_name["device"] == {"name": "device", "kind": "categorical", "values": devices}
    assert f["time_features"] is True and f["kind"] == "fusion"

    h = c.get("/v1/users/u03/history", headers=read).json()
    stored = list(model.item_vocab.external(model.known_history(model.user_vocab.index("u03"))))
    assert h["known_user"] and [x["item_id"] for x in h["items"]] == stored[::-1]  # newest first
    assert all(x["source"] == "model" and x["title"] == model.item_titles.get(x["item_id"]) for x in h["items"])
    ev = {"user_id": "u03", "item_id": "i07", "type": "click", "timestamp": 1.8e9, "context": {"device": "tv"}}
    assert c.post("/v1/events", json=ev, headers=write).status_code == 200
    h = c.get("/v1/users/u03/history", params={"limit": 2}, headers=read).json()
    assert h["total"] == len(stored) + 1 and len(h["items"]) == 2
    assert h["items"][0] == {"item_id": "i07", "title": model.item_titles.get("i07"), "source": "event", "type": "click",
                             "timestamp": 1.8e9, "context": {"device": "tv"}}
    new = c.get("/v1/users/somebody%20new/history", headers=read).json()
    assert new == {"user_id": "somebody new", "known_user": False, "total": 0, "items": []}


def test_page_files_are_package_data() -> None:
    """Every file of the page matches a package-data pattern, so a wheel ships it (not only the editable install)."""
    import fnmatch
    import tomllib

    import ctxrec

    root = Path(ctxrec.__file__).parent
    pyproject = root.parents[1] / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("ctxrec is installed from a wheel here (no pyproject.toml beside it)")
    patterns = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["ctxrec"]
    files = [f.relative_to(root).as_posix() for f in (root / "serving" / "web").iterdir() if f.is_file()]
    assert {"serving/web/index.html", "serving/web/app.js", "serving/web/style.css"} <= set(files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []


# ----------------------------------------------------------------------------------------- browser
def _chromium() -> str | None:
    env = os.environ.get("CTXREC_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Server:
    """The real service under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Browser:
    """Headless Chromium driven over the DevTools protocol (one page, one websocket)."""

    def __init__(self, binary: str, profile: Path) -> None:
        self.binary, self.profile = binary, profile
        self.ids = itertools.count(1)
        self.exceptions: list[str] = []
        self.stack = contextlib.ExitStack()
        self.ws: Any = None

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def _start(self) -> None:
        from websockets.sync.client import connect

        proc = subprocess.Popen(
            [self.binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-proxy-server",
             "--disable-extensions", "--disable-dev-shm-usage", "--window-size=1280,860", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.stack.callback(self._stop, proc)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                dead = proc.poll() is not None and proc.stderr is not None
                err = proc.stderr.read().decode(errors="replace")[-2000:] if dead and proc.stderr else ""
                raise RuntimeError(f"chromium did not open its DevTools port: {err}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with httpx.Client(trust_env=False) as h:
            while True:
                pages = [t for t in h.get(f"http://127.0.0.1:{port}/json/list").json() if t.get("type") == "page"]
                if pages:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium opened no page target")
                time.sleep(0.05)
        self.ws = self.stack.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30))
        self.send("Runtime.enable")
        self.send("Page.enable")

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        i = next(self.ids)
        self.ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("method") == "Runtime.exceptionThrown":
                d = msg["params"]["exceptionDetails"]
                self.exceptions.append(d.get("exception", {}).get("description") or d.get("text", ""))
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expr: str) -> Any:
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr!r} raised {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr: str, what: str, timeout: float = 45) -> Any:
        """Poll a JS expression until it is truthy (a generous limit for a slow shared CI machine)."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.js(expr)
            if v:
                return v
            if time.monotonic() > deadline:
                status = self.js("document.getElementById('status').textContent")
                raise AssertionError(f"timed out waiting for {what}; page status: {status!r}")
            time.sleep(0.05)

    def settle(self, renders: int, what: str) -> None:
        """Wait until the list was drawn again (after ``renders`` draws) and no request is in flight."""
        self.wait(f"Number(document.getElementById('recs').dataset.renders) > {renders}"
                  " && document.body.dataset.inflight === '0'", what)

    def renders(self) -> int:
        return int(self.js("Number(document.getElementById('recs').dataset.renders)"))

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href !== 'about:blank'", f"{url} to load")

    def click(self, selector: str) -> None:
        """A real mouse click at the element's centre."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                      " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        assert box, f"no element {selector!r} to click"
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Focus, select all, and type ``text`` as keyboard input."""
        self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); e.focus(); e.select(); }})()")
        self.send("Input.insertText", text=text)

    def choose(self, selector: str, value: str) -> None:
        """Set a <select> (or date-time input) and fire its change event, as picking a value does
        (native pickers are not drawn headless)."""
        ok = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                     f" if (e.options && ![...e.options].some(o => o.value === {json.dumps(value)})) return false;"
                     f" e.focus(); e.value = {json.dumps(value)}; e.dispatchEvent(new Event('change', {{bubbles: true}}));"
                     " return true; })()")
        assert ok, f"{selector} has no option {value!r}"

    def screenshot(self, path: Path) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=800, deviceScaleFactor=1, mobile=False)
        bottom = self.js("Math.ceil(document.querySelector('main').getBoundingClientRect().bottom + scrollY)")
        h = min(int(bottom), 2000)
        self.send("Emulation.setDeviceMetricsOverride", width=1280, height=h, deviceScaleFactor=1, mobile=False)
        self.js("window.scrollTo(0, 0)")
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


RECS = "[...document.querySelectorAll('#recs > li.rec')]"


def _page_list(b: Browser) -> list[dict[str, Any]]:
    return b.js(f"{RECS}.map(li => ({{id: li.dataset.itemId, score: Number(li.dataset.score),"
                " title: li.querySelector('.title').textContent, bars: li.querySelectorAll('.bar').length}))")


def _last_request(b: Browser) -> dict[str, Any]:
    text = b.js("document.getElementById('last-request').textContent")
    assert text.startswith("POST /v1/recommend\n"), text
    return json.loads(text.split("\n", 1)[1])


def test_page_end_to_end_in_headless_chromium(fusion_run: Path, tmp_path: Path) -> None:
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (set CTXREC_CHROMIUM, or install Debian's chromium: .ci/run does)")
    from ctxrec.models import load_model

    model = load_model(fusion_run)
    titles = model.item_titles
    keys = tmp_path / "keys.json"
    key = add_key_to_file(keys, "web", ["read", "write", "admin"])  # admin: the user picker lists users
    app = create_app(ServingSettings(model=str(fusion_run), store=str(tmp_path / "s.sqlite"), keys_file=str(keys)))
    profile = Path(tempfile.mkdtemp(prefix="ctxrec-chromium-", dir=tmp_path))
    with Server(app) as srv, Browser(binary, profile) as b, httpx.Client(base_url=srv.url, trust_env=False) as api:
        b.goto(f"{srv.url}/ui/")
        # No key yet: the page says so instead of failing silently.
        b.wait("document.getElementById('status').textContent.includes('API key')", "the missing-key message")
        assert b.js("document.getElementById('status').className") == "error"

        b.type("#api-key", key)
        b.click("#save-key")
        b.wait("document.body.dataset.ready === '1'", "users and context fields to load")
        assert b.js("sessionStorage.getItem('ctxrec.apiKey')") == key
        users = b.js("[...document.querySelectorAll('#user-select option')].map(o => o.value).filter(Boolean)")
        assert users[:3] == list(model.user_vocab.ids[:3])
        fields = b.js("[...document.querySelectorAll('#context-fields [data-field]')].map(e => e.dataset.field)")
        assert fields == model.ctx_encoder.field_names
        b.wait(f"{RECS}.length > 0", "the cold-start list for a new visitor")

        # Pick a known user and a context; the list renders with titles, scores and explanation bars.
        n = b.renders()
        b.choose("#user-select", "u05")
        b.settle(n, "the list for u05")
        b.choose("#ctx-device", "tv")
        b.choose("#ctx-daypart", "evening")
        b.type("#extra-context", "weather=rainy")
        n = b.renders()
        b.click("#recommend")
        b.settle(n, "the list in context")
        first = _page_list(b)
        req1 = _last_request(b)
        assert req1["user_id"] == "u05"
        assert req1["context"] == {"device": "tv", "daypart": "evening", "weather": "rainy"}
        assert len(first) == 10 and all(x["title"] == (titles.get(x["id"]) or x["id"]) and x["title"] for x in first)
        assert all(x["bars"] > 0 for x in first)  # per-item view shares
        groups = b.js("[...document.querySelectorAll('#view-weights .bars')].map(g => g.dataset.group)")
        assert "view_weights" in groups
        server = api.post("/v1/recommend", json=req1, headers={"X-API-Key": key}).json()
        # The page shows what the API answers for the request it shows.
        assert [x["id"] for x in first] == [x["item_id"] for x in server["items"]]
        history0 = b.js("[...document.querySelectorAll('#history li')].map(li => li.dataset.itemId)")
        stored = list(model.item_vocab.external(model.known_history(model.user_vocab.index("u05"))))
        assert history0 == stored[::-1]

        # Changing the context changes the request and the list (re-fetched on change).
        n = b.renders()
        b.choose("#ctx-device", "mobile")
        b.settle(n, "the list after the context change")
        req2 = _last_request(b)
        assert req2 == {**req1, "context": {**req1["context"], "device": "mobile"}}
        second = _page_list(b)
        assert [(x["id"], x["score"]) for x in second] != [(x["id"], x["score"]) for x in first]
        server = api.post("/v1/recommend", json=req2, headers={"X-API-Key": key}).json()
        assert [x["id"] for x in second] == [x["item_id"] for x in server["items"]]

        # "I used this" on the top item: stored as an event; history and the next list change.
        top = second[0]["id"]
        n = b.renders()
        b.click("#recs > li.rec:first-child button.use")
        b.settle(n, "the list after the event")
        assert "now reflects" in b.js("document.getElementById('status').textContent")
        assert b.js("document.querySelector('#history li').dataset.itemId") == top
        assert b.js("document.querySelector('#history li').className") == "event"
        third = _page_list(b)
        assert top not in [x["id"] for x in third] and third != second

        # Typing an item id adds an event too; an unknown id is refused with the API's message.
        typed = third[2]["id"]
        b.type("#event-item", typed)
        n = b.renders()
        b.click("#add-event")
        b.settle(n, "the list after the typed event")
        assert b.js("document.querySelector('#history li').dataset.itemId") == typed
        assert typed not in [x["id"] for x in _page_list(b)]
        b.type("#event-item", "no-such-item")
        b.click("#add-event")
        b.wait("document.getElementById('status').textContent.includes('unknown item id')", "the unknown-item error")
        hist = api.get("/v1/users/u05/history", headers={"X-API-Key": key}).json()
        assert [x["item_id"] for x in hist["items"][:2]] == [typed, top]
        assert hist["items"][1]["context"] == {"device": "mobile", "daypart": "evening", "weather": "rainy"}

        # The key survives a reload of the tab (sessionStorage), the page comes back as it was.
        b.goto(f"{srv.url}/ui/")
        b.wait("document.body.dataset.ready === '1'", "the reloaded page")
        assert b.js("document.getElementById('api-key').value") == key
        b.choose("#user-select", "u05")
        b.choose("#ctx-device", "mobile")
        b.choose("#ctx-daypart", "evening")
        b.type("#extra-context", "weather=rainy")
        n = b.renders()
        b.click("#recommend")
        b.settle(n, "the list after the reload")
        assert _last_request(b) == req2
        server = api.post("/v1/recommend", json=req2, headers={"X-API-Key": key}).json()
        assert [x["id"] for x in _page_list(b)] == [x["item_id"] for x in server["items"]]
        assert not {typed, top} & {x["id"] for x in _page_list(b)}
        hist_ids = b.js("[...document.querySelectorAll('#history li')].map(li => li.dataset.itemId)")
        assert hist_ids[:2] == [typed, top]
        shot = os.environ.get("CTXREC_WEB_SCREENSHOT")
        if shot:  # the README figure: u05 after the two events, in context
            b.screenshot(Path(shot))

        # Text from the catalogue is shown as text, never parsed as HTML.
        evil = "<img src=x onerror=\"window.__pwned = 1\">Bold <b>title</b>"
        r = api.post("/v1/items", json={"item_id": "x-html", "fields": {"title": evil}}, headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        b.type("#event-item", "x-html")
        n = b.renders()
        b.click("#add-event")
        b.settle(n, "the list after the HTML-titled event")
        assert b.js("document.querySelector('#history li').textContent").startswith(evil)
        assert b.js("document.querySelectorAll('#history img, #history b, #recs img').length") == 0
        assert b.js("window.__pwned === undefined")

        # A chosen time goes out as the request timestamp (the browser's local time).
        n = b.renders()
        b.choose("#ctx-time", "2026-11-28T20:30")
        b.settle(n, "the list at the chosen time")
        assert _last_request(b)["timestamp"] == b.js("new Date('2026-11-28T20:30').getTime() / 1000")

        # A service that went away is reported as such.
        srv.stop()
        b.click("#recommend")
        b.wait("document.getElementById('status').textContent.includes('did not answer')", "the no-answer message")

        # Nothing threw in the page.
        assert not b.exceptions, b.exceptions
