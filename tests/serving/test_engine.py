"""The scoring engine: cached user state and micro-batches give exactly the model's answers (SASRec and
context-aware fusion); new events and catalogue changes invalidate the cache; the HNSW path agrees with
exact scoring on a small catalogue."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.models.base import RecQuery
from ctxrec.models.sasrec import SASRecConfig, SASRecRecommender
from ctxrec.serving import engine
from ctxrec.serving.index import HNSWIndex, recall_at_k
from ctxrec.serving.settings import ServingSettings
from ctxrec.serving.store import EventStore
from ctxrec.training.loop import TrainConfig


@pytest.fixture(scope="module")
def sasrec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=3))
    m = SASRecRecommender(SASRecConfig(d_model=16, n_layers=1, max_len=16, train=TrainConfig(max_epochs=2, progress=False)))
    out = tmp_path_factory.mktemp("sasrec") / "run"
    m.fit(data).save(out / "model")
    return out


def req(user: str | None = None, history: list[str] | None = None, k: int = 5, context: dict | None = None,  # type: ignore[type-arg]
        timestamp: float | None = None, text: str | None = None) -> engine.RecRequest:
    return engine.RecRequest(user_id=user, history=history, history_timestamps=None,
                             context={"device": "tv"} if context is None else context,
                             timestamp=time.time() if timestamp is None else timestamp, k=k, exclude_seen=True,
                             attributes={}, allow=None, deny=[], text=text, explain=False)


def ids(res: dict) -> list[str]:  # type: ignore[type-arg]
    return [x["item_id"] for x in res["items"]]


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_cached_batched_answers_equal_the_models(sasrec_run: Path, tmp_path: Path, index: str) -> None:
    store = EventStore(str(tmp_path / "s.sqlite"))
    h = engine.load_handle(sasrec_run, ServingSettings(model=str(sasrec_run), index=index), store)  # type: ignore[arg-type]
    assert h.stateful and (h.index is not None) == (index == "hnsw")
    model = h.model
    users = model.user_vocab.ids[:12]
    expected = [r.item_ids for r in model.recommend([RecQuery(user_id=u) for u in users], k=5)]
    batched = engine.recommend_batch(h, [req(u) for u in users], store, 200)
    assert [ids(r) for r in batched] == expected
    single = [engine.recommend_batch(h, [req(u)], store, 200)[0] for u in users]  # now from the cache
    assert [ids(r) for r in single] == expected and h.cache_hits >= len(users)
    for a, b in zip(batched, single, strict=True):
        np.testing.assert_allclose([x["score"] for x in a["items"]], [x["score"] for x in b["items"]], rtol=1e-5)
    # a new event changes the user's state: recomputed, and the model agrees on the extended history
    top = expected[0][0]
    store.add_events([(users[0], top, "view", time.time(), {})])
    after = ids(engine.recommend_batch(h, [req(users[0])], store, 200)[0])
    hist = [*model.item_vocab.external(model.known_history(model.user_vocab.index(users[0]))), top]
    assert after == model.recommend([RecQuery(history=hist)], k=5)[0].item_ids
    # anonymous history and a cold user (popularity fallback) take the model's own path
    anon = ids(engine.recommend_batch(h, [req(history=["i01", "i02"])], store, 200)[0])
    assert anon == model.recommend([RecQuery(history=["i01", "i02"])], k=5)[0].item_ids
    cold = ids(engine.recommend_batch(h, [req("nobody")], store, 200)[0])
    assert cold == model.recommend([RecQuery(user_id="nobody")], k=5)[0].item_ids
    store.close()


def test_hnsw_recall_on_clustered_vectors() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((50, 16)).astype(np.float32)
    items = centres[rng.integers(0, 50, 5000)] + 0.3 * rng.standard_normal((5000, 16)).astype(np.float32)
    queries = rng.standard_normal((200, 16)).astype(np.float32)
    exact = np.argsort(-(queries @ items.T), axis=1)[:, :10]
    approx, _ = HNSWIndex(items, m=16, ef_construction=100, ef_search=256).search(queries, 10)
    assert recall_at_k(approx, exact) >= 0.95


@pytest.fixture(scope="module")
def fusion_dot_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ctxrec.models.fusion import FusionConfig, FusionRecommender
    from ctxrec.text.encoders import TextEncoderConfig

    data = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=4))
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=16, dropout=0.0, mixture=False,
                       text=TextEncoderConfig(model="hashing:32"), train=TrainConfig(max_epochs=3, lr=1e-2, progress=False))
    out = tmp_path_factory.mktemp("fusion") / "run"
    FusionRecommender(cfg).fit(data).save(out / "model")
    return out


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_fusion_user_state_cache_answers_like_the_model_in_every_context(fusion_dot_run: Path, tmp_path: Path,
                                                                         index: str) -> None:
    """Fusion's state (the Transformer over the history) is cached per user and history version; each
    request's context, time and text are applied on top, so cached answers equal the model's for any
    context. New events and added items drop the stale states."""
    store = EventStore(str(tmp_path / "s.sqlite"))
    h = engine.load_handle(fusion_dot_run, ServingSettings(model=str(fusion_dot_run), index=index), store)  # type: ignore[arg-type]
    assert h.stateful and (h.index is not None) == (index == "hnsw")  # mixture=false: a dot-product form
    model = h.model
    users = model.user_vocab.ids[:8]  # type: ignore[union-attr]
    t = 1.7e9
    for ctx in ({"device": "tv", "daypart": "morning"}, {"device": "mobile", "weather": "rainy"}, {}):
        want = [r.item_ids for r in model.recommend([RecQuery(user_id=u, context=ctx, timestamp=t) for u in users], k=5)]
        got = [ids(r) for r in engine.recommend_batch(h, [req(u, context=ctx, timestamp=t) for u in users], store, 200)]
        if index == "exact":
            assert got == want, ctx
        else:  # approximate retrieval: the top items agree
            assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(got, want, strict=True)]) >= 0.8
    assert h.cache_misses == len(users) and h.cache_hits == 2 * len(users)  # one state per user, reused
    # a text query is scored exactly from the cached state, as the model scores it
    text = model.item_titles.get(model.item_vocab.ids[5]) or "great"  # type: ignore[union-attr]
    want_t = model.recommend([RecQuery(user_id=users[1], context={"device": "tv"}, timestamp=t, text=text)], k=5)[0]
    assert ids(engine.recommend_batch(h, [req(users[1], timestamp=t, text=text)], store, 200)[0]) == want_t.item_ids
    # a new event: the user's state is recomputed from the extended history
    store.add_events([(users[0], model.item_vocab.ids[0], "view", t + 1, {"device": "tv"})])  # type: ignore[union-attr]
    misses = h.cache_misses
    after = ids(engine.recommend_batch(h, [req(users[0], timestamp=t + 2)], store, 200)[0])
    assert h.cache_misses == misses + 1
    qb = model.encode_queries([RecQuery(user_id=users[0], context={"device": "tv"}, timestamp=t + 2)],
                              new_events=[store.user_events(users[0], 200)])
    exact = model.item_vocab.external(model.recommend_indices(qb, 5)[0][0])  # type: ignore[union-attr]
    if index == "exact":
        assert after == exact
    # a catalogue change empties the cache (an added item may sit in a cached history)
    assert len(h.user_cache)
    engine.add_items(h, [("brand-new", {"title": "a brand new thing"})])
    assert not h.user_cache and h.index is None
    store.close()
