"""Explanations: occlusion attribution over request-context fields (any scorer) and past events (fusion).

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


def test_history_attribution_is_the_score_drop_without_the_event(model_and_data) -> None:
    """Without per-event contexts or times, removing an event's token is the same as asking again with
    that event left out of the history: each attribution is that drop of the list's mean log P."""
    from ctxrec.models.attribution import list_score

    model, data = model_and_data
    hist = [data.item_vocab.ids[i] for i in (3, 17, 8, 40, 22)]
    ctx = {"daypart": "night", "device": "tv"}
    (rec,) = model.recommend([RecQuery(history=hist, context=ctx)], k=5, explain=True)
    top = model.item_vocab.lookup(rec.item_ids)[None, :]

    def list_logp(h: list[str]) -> float:
        return float(list_score(model.score(model.encode_queries([RecQuery(history=h, context=ctx)])), top)[0])

    full = list_logp(hist)
    events = rec.explanation["history_attribution"]
    assert sorted(e["position"] for e in events) == list(range(len(hist)))
    for e in events:
        want = full - list_logp(hist[: e["position"]] + hist[e["position"] + 1 :])
        assert e["attribution"] == pytest.approx(want, abs=1e-4), e


class _DeviceScorer:
    """Item 0 scores 2 when the request says device=tv, 0 otherwise; item 1 always 1 (a known answer)."""

    def score(self, batch) -> np.ndarray:  # type: ignore[no-untyped-def]  # any QueryBatch
        tv = np.array([c.get("device") == "tv" for c in batch.contexts], dtype=np.float64)
        return np.stack([2.0 * tv, np.ones(len(tv))], 1)


def test_context_attribution_of_any_scorer_by_hand() -> None:
    """The generic occlusion needs only ``score``: for the list [item 0] a tv request loses 2 without its
    device field and nothing without weather; a field a query did not send gets no entry."""
    from ctxrec.models.attribution import context_attribution
    from ctxrec.queries import QueryBatch

    batch = QueryBatch(users=np.array([-1, -1]), histories=[np.zeros(0, np.int64)] * 2,
                       history_times=[np.zeros(0)] * 2, contexts=[{"device": "tv", "weather": "rain"}, {"device": "pc"}],
                       timestamps=np.array([np.nan, np.nan]))
    got = context_attribution(_DeviceScorer(), batch, np.array([[0], [0]]))
    assert got == [{"device": 2.0, "weather": 0.0}, {"device": 0.0}]
    both = context_attribution(_DeviceScorer(), batch, np.array([[0, 1], [1, -1]]), fields=["device"])
    assert both == [{"device": 1.0}, {"device": 0.0}]  # mean over the list; -1 = no item


class _PairScorer:
    """Item 0 scores 1 for device=tv plus 1 for weather=rain plus 1 for a request time (a known answer)."""

    def score(self, batch) -> np.ndarray:  # type: ignore[no-untyped-def]  # any QueryBatch
        s = np.array([(c.get("device") == "tv") + (c.get("weather") == "rain") for c in batch.contexts], np.float64)
        return np.stack([s + np.isfinite(batch.timestamps), np.zeros(len(s))], 1)


def test_all_fields_drop_removes_every_sent_field_at_once_by_hand() -> None:
    from ctxrec.models.attribution import all_fields_drop
    from ctxrec.queries import QueryBatch

    batch = QueryBatch(users=np.array([-1, -1, -1]), histories=[np.zeros(0, np.int64)] * 3,
                       history_times=[np.zeros(0)] * 3,
                       contexts=[{"device": "tv", "weather": "rain"}, {"device": "pc"}, {}],
                       timestamps=np.array([1.0e9, np.nan, np.nan]))
    top = np.array([[0], [0], [0]])
    assert all_fields_drop(_PairScorer(), batch, top, ["device", "weather", "time"]) == [3.0, 0.0, None]
    assert all_fields_drop(_PairScorer(), batch, top, ["device"]) == [1.0, 0.0, None]
    assert all_fields_drop(_PairScorer(), batch, top, ["time"]) == [1.0, None, None]


def test_the_context_view_note_says_when_its_weight_is_not_the_fields() -> None:
    """A context view the gate leans on, with fields that move the list little (or none sent), is said
    to be a prior; one whose fields move the list, or with a small weight, gets no note."""
    from ctxrec.models.attribution import context_view_note, format_explanation

    prior = {"view_weights": {"sequence": 0.16, "context": 0.84}, "context_attribution": {"device": -0.0007},
             "context_all_fields": -0.0007}
    (line,) = context_view_note(prior)
    assert "0.84 of the weight" in line and "-0.0007" in line and "a prior" in line
    assert line in format_explanation(prior)
    assert "sent no context field" in context_view_note({"view_weights": {"context": 0.9}, "context_attribution": {}})[0]
    assert context_view_note({**prior, "context_all_fields": 0.2}) == []
    assert context_view_note({**prior, "view_weights": {"sequence": 0.6, "context": 0.4}}) == []
    assert context_view_note({"view_weights": {"sequence": 1.0}}) == []
    two = {**prior, "context_attribution": {"device": 0.1, "time": 0.05}, "context_all_fields": 0.16}
    assert "(all of them)" in format_explanation(two) and "note:" not in format_explanation(two)
