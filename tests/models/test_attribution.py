"""Explanations: occlusion attribution over request-context fields and past events (fusion model).

On the simulator, ``daypart`` and ``device`` carry a planted effect and ``weather`` is a distractor:
removing a planted field must move the recommended list more than removing the noise field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctxrec.data.synthetic import DAYPARTS, DEVICES, WEATHERS, SimulatorConfig, simulate
from ctxrec.models.attribution import format_explanation, plot_explanation
from ctxrec.models.base import RecQuery
from ctxrec.models.fusion import FusionConfig, FusionRecommender
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig


@pytest.fixture(scope="module")
def model_and_data():
    data = simulate(SimulatorConfig(n_users=150, n_items=80, events_per_user=15, context_strength=4.0,
                                    sequential_strength=0.0, seed=3))
    cfg = FusionConfig(d_model=32, n_layers=1, max_len=20, dropout=0.1, text=TextEncoderConfig(model="hashing:32"),
                       train=TrainConfig(max_epochs=12, lr=5e-3, batch_size=32, progress=False))
    return FusionRecommender(cfg).fit(data), data


def test_planted_context_field_gets_more_attribution_than_noise(model_and_data) -> None:
    model, data = model_and_data
    rng = np.random.default_rng(0)
    users = data.user_vocab.ids[:30]
    queries = [RecQuery(user_id=u, context={"daypart": DAYPARTS[rng.integers(4)], "device": DEVICES[rng.integers(3)],
                                            "weather": WEATHERS[rng.integers(4)]}) for u in users]
    recs = model.recommend(queries, k=10, explain=True)
    attr = {f: np.array([abs(r.explanation["context_attribution"][f]) for r in recs]) for f in ("daypart", "device", "weather")}
    for planted in ("daypart", "device"):
        assert attr[planted].mean() > 2 * attr["weather"].mean(), {k: v.mean() for k, v in attr.items()}
    # existing keys are kept
    assert set(recs[0].explanation) >= {"view_weights", "items", "context_attribution", "history_attribution"}


def test_history_attribution_lists_recent_events(model_and_data, tmp_path: Path) -> None:
    model, data = model_and_data
    user = data.user_vocab.ids[5]
    hist = list(model.item_vocab.external(model.known_history(data.user_vocab.get(user))))
    (rec,) = model.recommend([RecQuery(user_id=user, context={"daypart": "night", "device": "tv"})], k=5, explain=True)
    events = rec.explanation["history_attribution"]
    assert 0 < len(events) <= 20 and len(events) == min(20, len(hist))
    assert all(hist[e["position"]] == e["item_id"] for e in events)
    assert [e["attribution"] for e in events] == sorted((e["attribution"] for e in events), reverse=True)
    text = format_explanation(rec.explanation)
    assert "view weights" in text and "request context" in text and "past events" in text
    png = plot_explanation(rec.explanation, tmp_path / "why.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_anonymous_query_without_context_still_explains(model_and_data) -> None:
    model, _ = model_and_data
    (rec,) = model.recommend([RecQuery()], k=3, explain=True)
    assert rec.explanation["context_attribution"] == {} and rec.explanation["history_attribution"] == []
