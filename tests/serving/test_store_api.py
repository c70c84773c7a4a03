"""The service against poison input, unhandled errors and silent 200s (issue 16, items 2-5): a bad
value is a 422 naming the field before anything is written; an unhandled error is a counted JSON 500
with a request id; a re-added item keeps its trained ID."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ctxrec.serving import ServingSettings, create_app

CTX = {"device": "tv", "daypart": "evening", "weather": "sunny"}


def _client(run: Path, store: str, **kw: Any) -> TestClient:
    return TestClient(create_app(ServingSettings(model=str(run), store=store, **kw)))


@pytest.fixture
def client(fusion_run: Path, store_url: str) -> Iterator[TestClient]:
    with _client(fusion_run, store_url) as c:
        yield c


def _loc(r: Any) -> list[str]:
    return [".".join(str(x) for x in d["loc"]) for d in r.json()["detail"]]


POISON = [
    ("/v1/items", {"item_id": "p1", "fields": {"title": "\ud800"}}, "body.fields.title"),
    ("/v1/items", {"item_id": "p\x00", "fields": {"title": "ok"}}, "body.item_id"),
    ("/v1/items", {"item_id": "p2", "fields": {"genre": ["a" * 5000]}}, "body.fields.genre"),
    ("/v1/events", {"user_id": "u01", "item_id": "i01", "context": {"device": "\ud800"}}, "body.context.device"),
    ("/v1/events", {"user_id": "nul\x00user", "item_id": "i01"}, "body.user_id"),
    ("/v1/events", {"user_id": "u01", "item_id": "i01", "context": {"\ud800": "x"}}, "body.context"),
    ("/v1/recommend", {"user_id": "u01", "text": "a\x00b"}, "body.text"),
    ("/v1/recommend", {"user_id": "u01", "filters": {"deny": ["\udfff"]}}, "body.filters.deny.0"),
    ("/v1/admin/model", {"run_dir": "/tmp/a\x00b"}, "body.run_dir"),
    ("/v1/admin/model", {"run_dir": "/tmp/" + "x" * 300}, "body.run_dir"),
    ("/v1/admin/model", {"run_dir": "~nosuchuser-ctxrec/x"}, "body.run_dir"),  # found by schemathesis: was a 500
]


def test_poison_is_a_422_and_leaves_the_service_whole(client: TestClient, fusion_run: Path) -> None:
    for path, body, field in POISON:  # json.dumps escapes lone surrogates as a client's JSON would (\\ud800)
        r = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code == 422, (path, body, r.text)
        assert any(loc.startswith(field) for loc in _loc(r)), (field, r.json())
    # nothing was written, and everything that broke before still works
    assert client.post("/v1/items", json={"item_id": "ok-1", "fields": {"title": "Koutain Deluxe"}}).status_code == 200
    assert client.delete("/v1/items/ok-1").status_code == 200
    assert client.post("/v1/admin/model", json={"run_dir": str(fusion_run)}).status_code == 200
    assert client.get("/v1/users/u01/history").status_code == 200
    assert client.get("/v1/users/nul%00user/history").status_code == 200  # a path key no write could have stored


def test_unhandled_error_is_a_counted_json_500_with_a_logged_request_id(
        fusion_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Served by a real uvicorn: before, the 500 never reached the metrics and the keep-alive
    connection was closed (the client's next request was reset)."""
    import uvicorn

    app = create_app(ServingSettings(model=str(fusion_run), store=str(tmp_path / "s.sqlite")))
    state = app.state.ctxrec

    def broken() -> Any:
        raise RuntimeError("planted failure")

    state.info = broken  # GET /v1/admin/model now fails inside the route
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with caplog.at_level(logging.ERROR, logger="ctxrec.serving"), socket.create_connection(("127.0.0.1", port)) as conn:
            status, headers, body = _http(conn, "GET /v1/admin/model")
            assert status == 500 and headers["content-type"] == "application/json"
            rid = headers["x-request-id"]
            assert f'"request_id": "{rid}"' in body
            assert headers.get("connection") != "close"
            status, _, metrics = _http(conn, "GET /metrics")  # same connection: not reset
            assert status == 200
        assert 'ctxrec_requests_total{method="GET",route="/v1/admin/model",status="500"} 1.0' in metrics
        assert 'ctxrec_errors_total{route="/v1/admin/model"} 1.0' in metrics
        assert rid in caplog.text and "planted failure" in caplog.text
    finally:
        server.should_exit = True
        t.join(10)


def _http(conn: socket.socket, line: str) -> tuple[int, dict[str, str], str]:
    conn.sendall(f"{line} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (x.split(":", 1) for x in lines[1:])}
    n = int(headers["content-length"])
    while len(rest) < n:
        rest += conn.recv(65536)
    return int(lines[0].split()[1]), headers, rest.decode()


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/items", {"item_id": "empty"}, "body.fields"),
    ("/v1/items", {"item_id": "empty", "fields": {}}, "body.fields"),
    ("/v1/recommend", {"user_id": "u01", "k": True}, "body.k"),
    ("/v1/recommend", {"user_id": "u01", "k": 2.0}, "body.k"),
    ("/v1/recommend", {"user_id": "u01", "timestamp": 1e308}, "body.timestamp"),
    ("/v1/recommend", {"history": ["i01"], "history_timestamps": [-1e308]}, "body.history_timestamps.0"),
    ("/v1/events", {"user_id": "u01", "item_id": "i01", "timestamp": -1e308}, "body.timestamp"),
    ("/v1/events", {"user_id": "u01", "item_id": "i01", "timestamp": 1.7e12}, "body.timestamp"),  # milliseconds
    ("/v1/recommend", {"user_id": "u01", "filters": {"attributes": {"colour": ["red"]}}}, "body.filters.attributes.colour"),
])
def test_former_silent_200s_are_422s_naming_the_field(client: TestClient, path: str, body: dict[str, Any],
                                                      field: str) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert any(loc.startswith(field) for loc in _loc(r)), (field, r.json())


@pytest.mark.parametrize(("path", "body", "locs"), [
    ("/v1/events", {"user_id": "u01", "item_id": 5}, ["body.item_id"]),
    ("/v1/events", {"user_id": "u01"}, ["body.item_id"]),
    ("/v1/events", {"user_id": "u01", "item_id": "i01", "colour": "red"}, ["body.colour"]),
    ("/v1/events", {"events": [{"user_id": "u01", "item_id": 5}]}, ["body.events.0.item_id"]),
    ("/v1/events", {"events": []}, ["body.events"]),
    ("/v1/events", [{"user_id": "u01", "item_id": "i01"}], ["body"]),
    ("/v1/items", {"item_id": "x"}, ["body.fields"]),
    ("/v1/items", {"items": [{"item_id": 3, "fields": {"title": "a"}}]}, ["body.items.0.item_id"]),
])
def test_a_422_names_the_fields_of_the_form_sent_only(client: TestClient, path: str, body: Any, locs: list[str]) -> None:
    """One event or ``{"events": [...]}``: a bad single event was answered with the batch form's errors
    too ("events: Field required", "user_id: Extra inputs are not permitted"), and every location
    carried the schema's class name (``body.EventIn.item_id``)."""
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert _loc(r) == locs, r.json()


def test_attribute_filters_use_the_models_own_attributes(client: TestClient) -> None:
    from ctxrec.data.synthetic import SimulatorConfig, simulate

    items = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1)).items
    got = client.post("/v1/recommend", json={"user_id": "u01", "k": 40, "exclude_seen": False,
                                             "filters": {"attributes": {"genre": ["genre_2"]}}}).json()["items"]
    assert {x["item_id"] for x in got} == set(items.index[items["genre"] == "genre_2"])


def test_a_re_added_item_keeps_its_trained_id(fusion_run: Path, tmp_path: Path) -> None:
    from ctxrec.data.synthetic import SimulatorConfig, simulate

    items = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1)).items
    db = str(tmp_path / "s.sqlite")
    body = {"user_id": "u07", "context": CTX, "k": 40, "exclude_seen": False}

    def scores(c: TestClient) -> dict[str, float]:
        return {x["item_id"]: x["score"] for x in c.post("/v1/recommend", json=body).json()["items"]}

    with _client(fusion_run, db) as c:
        before = scores(c)
        item = max(before, key=before.__getitem__)
        assert c.delete(f"/v1/items/{item}").status_code == 200
        assert item not in scores(c)
        fields = {k: v for k, v in items.loc[item].items() if isinstance(v, str)}  # the same fields as in training
        assert c.post("/v1/items", json={"item_id": item, "fields": fields}).status_code == 200
        after = scores(c)
    assert after[item] == pytest.approx(before[item], abs=1e-4)
    with _client(fusion_run, db) as c:  # and across a restart (the store replays the re-add)
        assert scores(c)[item] == pytest.approx(before[item], abs=1e-4)
