"""Private by default: one keyed HMAC for train, retrain and serve; user listing needs admin; a user
can be erased from the store, the cache and every answer."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ctxrec.serving import ServingSettings, create_app
from ctxrec.serving.security import add_key_to_file, pseudonymise

CTX = {"device": "tv", "daypart": "evening", "weather": "sunny"}
SECRET = "s3cret-pepper"


def _sim() -> Any:
    from ctxrec.data.synthetic import SimulatorConfig, simulate

    return simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1))


def _store_text(db: Path) -> str:
    """Every value of every table of the store, as one string."""
    with contextlib.closing(sqlite3.connect(db)) as c:
        tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for t in tables for row in c.execute(f"SELECT * FROM {t}"))


def test_train_retrain_and_serve_share_the_pseudonyms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: training kept raw ids, so with a secret every trained user was served as a cold start."""
    from ctxrec.experiment import ExperimentConfig, run_experiment
    from ctxrec.models import load_model
    from ctxrec.serving.lifecycle import retrain

    monkeypatch.setenv("CTXREC_PSEUDONYM_SECRET", SECRET)
    data = _sim()
    cfg = ExperimentConfig(dataset="synthetic", model="fusion", ks=(10,), model_config={
        "d_model": 16, "n_layers": 1, "max_len": 16, "dropout": 0.0, "text": {"model": "hashing:32"},
        "train": {"max_epochs": 1, "lr": 1e-2, "progress": False, "seed": 1}})
    run = tmp_path / "run"
    run_experiment(cfg, run, data=data)
    users = set(load_model(run).user_vocab.ids)
    assert "u05" not in users and pseudonymise("u05", SECRET) in users
    db = tmp_path / "s.sqlite"
    with TestClient(create_app(ServingSettings(model=str(run), store=str(db)))) as c:
        assert c.get("/v1/users/u05/history").json()["known_user"]  # the raw id from the request is known
        assert c.post("/v1/events", json={"user_id": "u05", "item_id": "i03", "timestamp": 1.9e9}).status_code == 200
        assert c.post("/v1/events", json={"user_id": "u05", "item_id": "i04", "timestamp": 1.9e9 + 1}).status_code == 200
    assert "u05" not in _store_text(db)
    report = retrain(run, str(db), tmp_path / "run-v2", epochs=1, data=_sim())
    assert report["events_used"] == 2 and report["held_out"] == 1
    users2 = set(load_model(tmp_path / "run-v2").user_vocab.ids)
    assert users2 == users  # the store's (pseudonymised) user joined their trained self, no raw id came back


def test_listing_users_needs_the_admin_scope(fusion_run: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    read = {"X-API-Key": add_key_to_file(keys, "reader", ["read", "write"])}
    admin = {"X-API-Key": add_key_to_file(keys, "admin", ["admin"])}
    settings = ServingSettings(model=str(fusion_run), store=str(tmp_path / "s.sqlite"), keys_file=str(keys))
    with TestClient(create_app(settings)) as c:
        assert c.get("/v1/users", headers=read).status_code == 403
        assert c.get("/v1/users", headers=admin).status_code == 200
        assert c.delete("/v1/users/u01", headers=read).status_code == 403


@pytest.mark.parametrize("secret", [None, SECRET])
def test_erasing_a_user_leaves_nothing_of_them(fusion_run: Path, tmp_path: Path, secret: str | None) -> None:
    db = tmp_path / "s.sqlite"
    with TestClient(create_app(ServingSettings(model=str(fusion_run), store=str(db), pseudonym_secret=secret))) as c:
        body = {"user_id": "u05", "context": CTX, "k": 10}
        cold = c.post("/v1/recommend", json={**body, "user_id": "never-seen"}).json()["items"]
        events = [{"user_id": "u05", "item_id": i, "timestamp": 1.9e9 + n, "context": {"device": "tv"}, "event_id": f"x{n}"}
                  for n, i in enumerate(["i01", "i02", "i03"])]
        assert c.post("/v1/events", json={"events": events}).status_code == 200
        warm = c.post("/v1/recommend", json=body).json()["items"]
        assert warm != cold
        assert "u05" in [u["user_id"] for u in c.get("/v1/users", params={"limit": 1000}).json()["users"]] or secret
        r = c.delete("/v1/users/u05")
        assert r.status_code == 200 and r.json()["events_deleted"] == 3
        # no answer knows them: recommendations are a stranger's, no history, not listed
        assert _same(c.post("/v1/recommend", json=body).json()["items"], cold)
        h = c.get("/v1/users/u05/history").json()
        assert h["known_user"] is False and h["items"] == []
        listed = [u["user_id"] for u in c.get("/v1/users", params={"limit": 1000}).json()["users"]]
        assert pseudonymise("u05", secret) not in listed  # (with a secret, this model's raw "u05" is someone else)
        text = _store_text(db)
        for needle in ("u05", pseudonymise("u05", SECRET)):
            assert needle not in text
        # a re-sent old event id is stored again (the erased event is gone, not remembered)
        assert c.post("/v1/events", json=events[0]).json() == {"stored": 1, "duplicates": 0, "event_types_unknown": [],
                                  "context_unused_fields": [], "context_unknown_values": {}}
    with TestClient(create_app(ServingSettings(model=str(fusion_run), store=str(db), pseudonym_secret=secret))) as c:
        c.delete("/v1/users/u05")
        assert _same(c.post("/v1/recommend", json=body).json()["items"], cold)  # after a restart as well


def _same(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    return [x["item_id"] for x in a] == [x["item_id"] for x in b] and all(
        abs(x["score"] - y["score"]) < 1e-4 for x, y in zip(a, b, strict=True))
