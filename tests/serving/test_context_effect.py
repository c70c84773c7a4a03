"""Known answer through the HTTP API: the request context changes the answer, as the data predicts.

A pointwise model is trained on the seeded simulator with only the context effect planted (no user
taste, no sequence, no popularity skew): each (daypart, device) cell draws ~99% of its events from its
own preferred genre (``context_strength`` 6, so e^6 = 403 times the weight of another genre). Asked
with no user and no history, the service can only answer from the context, so its top item must be of
the cell's preferred genre, and two cells with different preferred genres must get different items.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ctxrec.data.synthetic import DAYPARTS, DEVICES, SimulatedTruth, SimulatorConfig, simulate_with_truth
from ctxrec.models.pointwise import PointwiseConfig, PointwiseRecommender
from ctxrec.serving import ServingSettings, create_app
from ctxrec.training.loop import TrainConfig

DAY0 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
HOUR = {"night": 2, "morning": 8, "afternoon": 14, "evening": 20}  # an hour inside each daypart (UTC)


@pytest.fixture(scope="module")
def context_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulatedTruth]:
    data, truth = simulate_with_truth(SimulatorConfig(
        n_users=120, n_items=24, n_genres=3, events_per_user=10, context_strength=6.0, user_strength=0.0,
        sequential_strength=0.0, popularity_alpha=0.0, seed=5))
    cfg = PointwiseConfig(d_field=8, mlp=(32,), dropout=0.0, use_text=False, use_history=False,
                          train=TrainConfig(max_epochs=3, lr=1e-2, progress=False, seed=1))
    out = tmp_path_factory.mktemp("context") / "run"
    PointwiseRecommender(cfg).fit(data).save(out / "model")
    return out, truth


@pytest.fixture(scope="module")
def client(context_run: tuple[Path, SimulatedTruth], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    store = str(tmp_path_factory.mktemp("context-store") / "events.sqlite")
    with TestClient(create_app(ServingSettings(model=str(context_run[0]), store=store))) as c:
        yield c


def top_items(c: TestClient, daypart: str, device: str, k: int = 3) -> list[str]:
    body: dict[str, Any] = {"context": {"daypart": daypart, "device": device, "weather": "sunny"},
                            "timestamp": DAY0 + HOUR[daypart] * 3600, "k": k}
    r = c.post("/v1/recommend", json=body)
    assert r.status_code == 200, r.text
    return [x["item_id"] for x in r.json()["items"]]


def genre(truth: SimulatedTruth, item_id: str) -> int:
    return int(truth.item_genre[int(item_id[1:])])  # ids are i00..i23: the dense index is the number


def test_two_contexts_get_their_own_genres_top_items(client: TestClient, context_run: tuple[Path, SimulatedTruth]) -> None:
    """Morning on a desktop prefers one genre and an evening on the TV another (the seeded table:
    genres 1 and 2); each answer's top 3 are of its own cell's genre, so the answers differ."""
    truth = context_run[1]
    a, b = ("morning", "desktop"), ("evening", "tv")
    assert truth.preferred_genre(*a) != truth.preferred_genre(*b)  # the seeded table makes these differ
    top_a, top_b = top_items(client, *a), top_items(client, *b)
    assert [genre(truth, i) for i in top_a] == [truth.preferred_genre(*a)] * 3, top_a
    assert [genre(truth, i) for i in top_b] == [truth.preferred_genre(*b)] * 3, top_b
    assert not set(top_a) & set(top_b)


def test_top_item_follows_the_context_in_every_cell(client: TestClient, context_run: tuple[Path, SimulatedTruth]) -> None:
    """Over the 12 (daypart, device) cells the top item is of the cell's preferred genre in at least
    10 (measured: 11; chance would give about 4 of 12, one genre in three)."""
    truth = context_run[1]
    cells = [(d, v) for d in DAYPARTS for v in DEVICES]
    right = np.array([genre(truth, top_items(client, d, v, k=1)[0]) == truth.preferred_genre(d, v) for d, v in cells])
    assert right.sum() >= 10, dict(zip(cells, right.tolist(), strict=True))


def test_unknown_context_key_is_a_422_naming_the_known_fields(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"context": {"Daypart": "morning"}, "k": 3})
    assert r.status_code == 422, r.text
    text = r.text
    assert "Daypart" in text and "daypart" in text and "device" in text  # the bad key, a hint, the known fields


def test_unseen_value_is_reported_and_counted(client: TestClient) -> None:
    r = client.post("/v1/recommend", json={"context": {"daypart": "morning", "device": "fridge"}, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["context_used"] is True
    assert body["context_unknown_values"] == {"device": "fridge"}
    metrics = client.get("/metrics").text
    assert 'ctxrec_context_unknown_values_total{field="device"} 1.0' in metrics
    known = client.post("/v1/recommend", json={"context": {"daypart": "morning", "device": "tv"}, "k": 3}).json()
    assert known["context_unknown_values"] == {}


def test_context_fields_endpoint_is_the_models_schema(client: TestClient) -> None:
    info = client.get("/v1/model/context-fields").json()
    names = {f["name"]: f for f in info["fields"]}
    assert info["context_used"] is True
    assert set(DEVICES) <= set(names["device"]["values"]) and set(DAYPARTS) <= set(names["daypart"]["values"])


def test_a_context_blind_model_says_so(tmp_path: Path) -> None:
    from ctxrec.data.synthetic import simulate
    from ctxrec.models.popularity import PopularityRecommender

    PopularityRecommender().fit(simulate(SimulatorConfig(n_users=30, n_items=12, seed=2))).save(tmp_path / "pop")
    with TestClient(create_app(ServingSettings(model=str(tmp_path / "pop"), store=str(tmp_path / "s.sqlite")))) as c:
        body = c.post("/v1/recommend", json={"context": {"device": "tv"}, "k": 3}).json()
        assert body["context_used"] is False and body["context_unused_fields"] == ["device"]
        assert c.get("/v1/model/context-fields").json()["context_used"] is False
