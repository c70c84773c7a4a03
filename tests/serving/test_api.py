"""The HTTP API end to end (in-process), against SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ctxrec.serving import ServingSettings, create_app
from ctxrec.serving.security import add_key_to_file

CTX = {"device": "tv", "daypart": "evening", "weather": "sunny"}


def make_client(run: Path, store: str, **kw: Any) -> TestClient:
    return TestClient(create_app(ServingSettings(model=str(run), store=store, **kw)))


@pytest.fixture
def client(fusion_run: Path, store_url: str) -> Iterator[TestClient]:
    with make_client(fusion_run, store_url) as c:
        yield c


def rec(c: TestClient, **body: Any) -> dict[str, Any]:
    r = c.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def ids(res: dict[str, Any]) -> list[str]:
    return [x["item_id"] for x in res["items"]]


def test_recommend_known_user_in_context(client: TestClient) -> None:
    res = rec(client, user_id="u00", context=CTX, k=5)
    assert len(res["items"]) == 5 and res["model_version"]
    scores = [x["score"] for x in res["items"]]
    assert scores == sorted(scores, reverse=True)


def test_event_is_reflected_in_the_users_next_recommendation(client: TestClient) -> None:
    before = ids(rec(client, user_id="u05", context=CTX, k=5))
    top = before[0]
    r = client.post("/v1/events", json={"user_id": "u05", "item_id": top, "type": "view", "context": CTX})
    assert r.status_code == 200 and r.json() == {"stored": 1, "duplicates": 0, "event_types_unknown": [],
                                  "context_unused_fields": [], "context_unknown_values": {}}
    after = ids(rec(client, user_id="u05", context=CTX, k=5))
    assert top not in after  # now seen (exclude_seen), read back from the store
    assert after != before
    # a brand-new user: cold (context-only) before, history-driven after a batch of events
    cold = ids(rec(client, user_id="new-user", context=CTX, k=5))
    batch = [{"user_id": "new-user", "item_id": i, "timestamp": 1.7e9 + n} for n, i in enumerate(cold[:3])]
    assert client.post("/v1/events", json={"events": batch}).json() == {"stored": 3, "duplicates": 0, "event_types_unknown": [],
                                  "context_unused_fields": [], "context_unknown_values": {}}
    warm = ids(rec(client, user_id="new-user", context=CTX, k=5))
    assert not set(cold[:3]) & set(warm)


def test_added_item_is_recommendable_at_once_and_retired_never_returns(client: TestClient) -> None:
    item = {"item_id": "fresh-1", "fields": {"title": "Koutain Deluxe", "description": "liki gikre tikar", "genre": "genre_1"}}
    r = client.post("/v1/items", json=item)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["fresh-1"]
    got = rec(client, user_id="u01", context=CTX, k=3, filters={"allow": ["fresh-1", "i03"]})
    assert "fresh-1" in ids(got)
    got = rec(client, user_id="u01", context=CTX, k=50, filters={"attributes": {"genre": ["genre_1"]}})
    # no items file: the trained items' own attributes (from the model) filter too, plus the added item's
    assert "fresh-1" in ids(got) and len(ids(got)) > 1
    # events on the new item are accepted and reflected
    assert client.post("/v1/events", json={"user_id": "u01", "item_id": "fresh-1"}).status_code == 200
    assert "fresh-1" not in ids(rec(client, user_id="u01", context=CTX, k=50))
    assert client.delete("/v1/items/fresh-1").status_code == 200
    for body in ({"history": ["i01"], "k": 50}, {"user_id": "u02", "k": 50, "exclude_seen": False}):
        assert "fresh-1" not in ids(rec(client, **body))
    assert client.get("/v1/items/fresh-1/similar").status_code == 404
    assert client.delete("/v1/items/nope").status_code == 404


def test_filters_and_anonymous_history(fusion_run: Path, tmp_path: Path) -> None:
    from ctxrec.models import load_model

    model = load_model(fusion_run)
    items_csv = tmp_path / "items.csv"
    items_csv.write_text("item_id,genre\n" + "\n".join(f"{i},genre_{n % 4}" for n, i in enumerate(model.item_vocab.ids)))
    with make_client(fusion_run, str(tmp_path / "s.sqlite"), items_file=str(items_csv)) as c:
        res = rec(c, history=["i01", "i02"], k=40, filters={"attributes": {"genre": ["genre_2"]}, "deny": ["i06"]})
        got = ids(res)
        assert got and all(model.item_vocab.index(i) % 4 == 2 for i in got) and "i06" not in got
        assert not {"i01", "i02"} & set(got)
        assert set(ids(rec(c, history=["i01"], k=5, filters={"allow": ["i05", "i07"]}))) == {"i05", "i07"}
        r = c.post("/v1/recommend", json={"history": ["i01", "nope"]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "history", "1"]
        ex = rec(c, user_id="u03", context=CTX, k=3, explain=True)
        assert ex["explanation"] and "view_weights" in ex["explanation"]
        txt = rec(c, text="koutain deluxe", context=CTX, k=3)
        assert len(txt["items"]) == 3


@pytest.mark.parametrize(("body", "field"), [
    ({"k": 100000}, "k"),
    ({"k": 0}, "k"),
    ({"user_id": "u1", "surprise": 1}, "surprise"),
    ({"context": {"device": ["a", "b"]}}, "context"),
    ({"history": ["i01"], "history_timestamps": [1.0, 2.0]}, "history_timestamps"),
    ({"user_id": ""}, "user_id"),
])
def test_bad_recommend_input_is_a_422_naming_the_field(client: TestClient, body: dict[str, Any], field: str) -> None:
    r = client.post("/v1/recommend", json=body)
    assert r.status_code == 422, r.text
    assert any(field in [str(x) for x in d["loc"]] for d in r.json()["detail"]), r.json()


def test_bad_events_and_limits(fusion_run: Path, tmp_path: Path) -> None:
    with make_client(fusion_run, str(tmp_path / "s.sqlite"), max_body_bytes=2000, max_events_per_request=5) as c:
        r = c.post("/v1/events", json={"events": [{"user_id": "u", "item_id": "i01"}, {"user_id": "u", "item_id": "zz"}]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", "1", "item_id"]
        r = c.post("/v1/events", json={"events": [{"user_id": "u", "item_id": "i01"}] * 6})
        assert r.status_code == 413 and r.json()["detail"][0]["loc"] == ["body", "events"]
        r = c.post("/v1/events", content=json.dumps({"events": [{"user_id": "u" * 200, "item_id": "i01"}] * 20}),
                   headers={"content-type": "application/json"})
        assert r.status_code == 413
        r = c.post("/v1/events", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422
        r = c.post("/v1/events", json={"user_id": "u", "item_id": "i01", "timestamp": "yesterday"})
        assert r.status_code == 422


def test_api_keys_scopes_and_messages(fusion_run: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    reader = add_key_to_file(keys, "reader", ["read"])
    writer = add_key_to_file(keys, "writer", ["read", "write"])
    admin = add_key_to_file(keys, "ops", ["admin"])
    assert reader not in keys.read_text()  # only hashes are stored
    with make_client(fusion_run, str(tmp_path / "s.sqlite"), keys_file=str(keys)) as c:
        r = c.post("/v1/recommend", json={"user_id": "u00"})
        assert r.status_code == 401 and "missing API key" in r.json()["detail"]
        r = c.post("/v1/recommend", json={"user_id": "u00"}, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"
        assert c.post("/v1/recommend", json={"user_id": "u00"}, headers={"X-API-Key": reader}).status_code == 200
        assert c.post("/v1/recommend", json={"user_id": "u00"},
                      headers={"Authorization": f"Bearer {reader}"}).status_code == 200
        r = c.post("/v1/events", json={"user_id": "u00", "item_id": "i01"}, headers={"X-API-Key": reader})
        assert r.status_code == 403 and "lacks the 'write' scope" in r.json()["detail"]
        assert c.post("/v1/events", json={"user_id": "u00", "item_id": "i01"}, headers={"X-API-Key": writer}).status_code == 200
        r = c.post("/v1/admin/model", json={"run_dir": str(fusion_run)}, headers={"X-API-Key": writer})
        assert r.status_code == 403
        r = c.post("/v1/admin/model", json={"run_dir": str(fusion_run)}, headers={"X-API-Key": admin})
        assert r.status_code == 200, r.text
        assert c.get("/healthz").status_code == 200  # ops probes need no key


def test_pseudonymised_user_ids_are_stored_hashed(fusion_run: Path, tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "s.sqlite"
    with make_client(fusion_run, str(db), pseudonym_secret="s3cret") as c:
        assert c.post("/v1/events", json={"user_id": "alice@example.com", "item_id": "i01"}).status_code == 200
        assert "i01" not in ids(rec(c, user_id="alice@example.com", k=40))
    users = [r[0] for r in sqlite3.connect(db).execute("SELECT user_id FROM events")]
    assert len(users) == 1 and "alice" not in users[0] and len(users[0]) == 64


def test_similar_health_ready_metrics_openapi(client: TestClient) -> None:
    r = client.get("/v1/items/i01/similar", params={"k": 4})
    assert r.status_code == 200 and len(r.json()["items"]) == 4 and "i01" not in ids(r.json())
    assert client.get("/v1/items/i01/similar", params={"k": 10**6}).status_code == 422
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    rec(client, user_id="u00", k=3)
    client.post("/v1/events", json={"user_id": "u00", "item_id": "i01"})
    text = client.get("/metrics").text
    for name in ("ctxrec_requests_total", "ctxrec_request_seconds_bucket", "ctxrec_model_info", "ctxrec_catalogue_items",
                 "ctxrec_event_lag_seconds", "ctxrec_events_unfolded 1.0"):
        assert name in text, name
    assert 'route="/v1/recommend"' in text
    spec = client.get("/openapi.json").json()
    assert {"/v1/recommend", "/v1/events", "/v1/items", "/v1/items/{item_id}", "/v1/items/{item_id}/similar",
            "/v1/admin/model", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
    assert client.options("/v1/recommend", headers={"Origin": "http://evil.example",
                                                    "Access-Control-Request-Method": "POST"}).headers.get(
        "access-control-allow-origin") is None  # CORS off by default


def test_user_states_run_on_onnx_by_default_and_answer_as_pytorch_does(fusion_run: Path, tmp_path: Path) -> None:
    answers = {}
    for runtime in ("onnx", "torch"):
        kw = {} if runtime == "onnx" else {"state_runtime": "torch"}
        with make_client(fusion_run, str(tmp_path / f"{runtime}.sqlite"), **kw) as c:
            assert c.get("/v1/admin/model").json()["state_runtime"] == runtime
            c.post("/v1/events", json={"user_id": "u00", "item_id": "i03", "event_id": "e1"})
            answers[runtime] = [rec(c, user_id=u, context=CTX, k=10) for u in ("u00", "u01", "nobody")]
    for a, b in zip(answers["onnx"], answers["torch"], strict=True):
        assert ids(a) == ids(b)
        np.testing.assert_allclose([x["score"] for x in a["items"]], [x["score"] for x in b["items"]], rtol=1e-5, atol=1e-5)


def test_model_swap_under_load_fails_no_request(fusion_run: Path, tmp_path: Path) -> None:
    from serving_helpers import tiny_fusion_run

    v2 = tiny_fusion_run(fusion_run.parent / "fusion-v2", seed=2, epochs=1)
    errors: list[str] = []
    versions: set[str] = set()
    stop = threading.Event()
    with make_client(fusion_run, str(tmp_path / "s.sqlite")) as c:
        c.post("/v1/items", json={"item_id": "kept", "fields": {"title": "kept across versions"}})
        v1 = c.get("/v1/admin/model").json()["version"]

        def load() -> None:
            while not stop.is_set():
                r = c.post("/v1/recommend", json={"user_id": "u00", "context": CTX, "k": 5})
                if r.status_code != 200:
                    errors.append(r.text)
                else:
                    versions.add(r.json()["model_version"])

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        r = c.post("/v1/admin/model", json={"run_dir": str(v2)})
        after = rec(c, user_id="u00", k=3)
        stop.set()
        for t in threads:
            t.join()
        assert r.status_code == 200, r.text
        assert r.json()["version"] != v1 and after["model_version"] == r.json()["version"]
        assert not errors
        assert "kept" in ids(rec(c, history=["i01"], k=3, filters={"allow": ["kept"]}))  # added items re-applied
        r = c.post("/v1/admin/model", json={"run_dir": "/etc"})
        assert r.status_code == 403 and r.json()["detail"][0]["loc"] == ["body", "run_dir"]


def test_event_types_reach_the_model_and_an_unseen_type_is_said(tmp_path: Path, store_url: str) -> None:
    """A model trained on two event types reads a served event's type: the same event as a "buy" and as a
    "view" gives the user different states; a type the model never saw is stored, read as unknown, and
    named in the answer (before: every served event's type was dropped)."""
    from dataclasses import replace

    from ctxrec.data.dataset import ContextField, Dataset
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models.fusion import FusionConfig, FusionRecommender
    from ctxrec.text.encoders import TextEncoderConfig
    from ctxrec.training.loop import TrainConfig

    data = simulate(SimulatorConfig(n_users=40, n_items=30, n_genres=3, events_per_user=10, seed=3))
    frame = data.interactions.copy()
    frame["event_type"] = np.where(np.arange(len(frame)) % 2 == 0, "buy", "view")
    frame["temperature"] = np.where(np.arange(len(frame)) % 3 == 0, np.nan, np.round(np.arange(len(frame)) * 0.37 - 9, 2))
    schema = replace(data.schema, context=(*data.schema.context, ContextField(name="temperature", kind="numeric")))
    data = Dataset.from_frames(frame, items=data.items, schema=schema, name="typed")
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=16, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                       train=TrainConfig(max_epochs=2, lr=1e-2, progress=False, seed=3))
    FusionRecommender(cfg).fit(data).save(tmp_path / "typed" / "model")
    with make_client(tmp_path / "typed", store_url) as c:
        item = data.interactions["item_id"].iloc[0]
        scores = {}
        for user, kind in (("fresh-a", "buy"), ("fresh-b", "view"), ("fresh-c", "share")):
            r = c.post("/v1/events", json={"user_id": user, "item_id": item, "type": kind, "timestamp": 1.7e9})
            assert r.status_code == 200, r.text
            assert r.json()["event_types_unknown"] == ([] if kind != "share" else ["share"])
            res = rec(c, user_id=user, k=5, timestamp=1.7e9 + 60)
            scores[kind] = [i["score"] for i in res["items"]]
        assert scores["buy"] != scores["view"]  # the type is read
        r = c.post("/v1/events", json={"events": [{"user_id": "x", "item_id": item}, {"user_id": "y", "item_id": item,
                                                                                      "type": "buy"}]})
        assert r.json()["event_types_unknown"] == ["interaction"]  # the default type names itself too
        # the history shows each trained event's type and context as the model reads them (before: type
        # null and context {} for every trained event, as if the model had read none)
        user = str(frame["user_id"].iloc[0])
        got = [h for h in c.get(f"/v1/users/{user}/history", params={"limit": 1000}).json()["items"]
               if h["source"] == "model"][::-1]  # oldest first
        mine = data.interactions[data.interactions["user_id"] == user].sort_values(["timestamp", "_order"])
        assert len(got) == len(mine) >= 3
        assert [h["item_id"] for h in got] == mine["item_id"].tolist()
        assert [h["type"] for h in got] == mine["event_type"].tolist()
        want = [{**{f: str(r[f]) for f in ("daypart", "device", "weather")},
                 **({} if np.isnan(r["temperature"]) else {"temperature": float(r["temperature"])})}
                for _, r in mine.iterrows()]
        assert [h["context"] for h in got] == want


def test_seen_items_are_left_out_by_default_unless_the_models_users_repeat_items(tmp_path: Path, store_url: str) -> None:
    """``exclude_seen`` omitted: a model whose data has repeat_consumption (plays, re-orders) recommends items the
    user had, as its evaluation ranked them; any other model leaves them out. Explicit values win."""
    from dataclasses import replace

    from ctxrec.data.dataset import Dataset
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models.fusion import FusionConfig, FusionRecommender
    from ctxrec.text.encoders import TextEncoderConfig
    from ctxrec.training.loop import TrainConfig

    sim = simulate(SimulatorConfig(n_users=30, n_items=20, n_genres=3, events_per_user=8, seed=4))
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=16, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                       train=TrainConfig(max_epochs=1, lr=1e-2, progress=False, seed=4))
    user = str(sim.interactions["user_id"].iloc[0])
    seen = set(sim.interactions.loc[sim.interactions["user_id"] == user, "item_id"])
    for repeats in (True, False):
        data = Dataset.from_frames(sim.interactions.drop(columns=["_order"]), items=sim.items,
                                   schema=replace(sim.schema, repeat_consumption=repeats), name="again")
        FusionRecommender(cfg).fit(data).save(tmp_path / f"r{repeats}" / "model")
        with make_client(tmp_path / f"r{repeats}", store_url) as c:
            got = {i["item_id"] for i in rec(c, user_id=user, k=20)["items"]}
            assert (seen <= got) if repeats else not (seen & got)
            assert not seen & {i["item_id"] for i in rec(c, user_id=user, k=20, exclude_seen=True)["items"]}
            assert seen <= {i["item_id"] for i in rec(c, user_id=user, k=20, exclude_seen=False)["items"]}


def test_what_the_model_cannot_read_of_an_event_is_said(client: TestClient) -> None:
    """An event's context field the serving model does not read, and a value it never saw, are stored and said
    in the answer (before: a 200 with nothing said, while the same context in a recommend is a 422 or said)."""
    r = client.post("/v1/events", json={"events": [
        {"user_id": "u01", "item_id": "i01", "context": {"colour": "red", "device": "toaster", "daypart": "evening"}},
        {"user_id": "u02", "item_id": "i02", "context": {"device": "tv", "weather": "hail"}}]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["stored"] == 2
    assert got["context_unused_fields"] == ["colour"]
    assert got["context_unknown_values"] == {"device": ["toaster"], "weather": ["hail"]}
    clean = client.post("/v1/events", json={"user_id": "u03", "item_id": "i03", "context": CTX}).json()
    assert clean["context_unused_fields"] == [] and clean["context_unknown_values"] == {}
