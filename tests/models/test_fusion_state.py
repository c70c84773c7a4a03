"""Fusion's cacheable user state and text queries.

``encode_state`` reads the history only, so scoring from a state computed earlier (for another request
context, alone or in another batch) gives ``score()``'s answer for the current request; a text query is
a mixture of the model's distribution and a text-match distribution that puts an item's own title on top.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.errors import QueryError, UnsupportedError
from ctxrec.models.base import RecQuery
from ctxrec.models.fusion import FusionConfig, FusionRecommender
from ctxrec.models.fusion.net import blend_text_query, text_match_log_probs
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig

DATA = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=5))


def fit(**kw: object) -> FusionRecommender:
    base: dict[str, object] = {"d_model": 16, "n_layers": 1, "max_len": 8, "dropout": 0.0,
                               "text": TextEncoderConfig(model="hashing:64"),
                               "train": TrainConfig(max_epochs=3, lr=1e-2, progress=False, seed=2)}
    base.update(kw)
    return FusionRecommender(FusionConfig(**base)).fit(DATA)  # type: ignore[arg-type]


def queries(model: FusionRecommender, ctx: dict[str, str], t: float | None, text: str | None) -> list[RecQuery]:
    """Every history path: stored histories, explicit ones with times and per-event contexts (longer than
    max_len), an empty history, an unknown user; request context, time and text as given."""
    assert model.user_vocab is not None and model.item_vocab is not None
    items, users, t0 = model.item_vocab.ids, model.user_vocab.ids, 1.7e9
    return [
        RecQuery(user_id=users[0], context=ctx, timestamp=t, text=text),
        RecQuery(user_id=users[7], context=ctx, timestamp=t),
        RecQuery(history=items[:12], history_timestamps=[t0 + 60 * i for i in range(12)],
                 history_contexts=[{"device": "tv", "daypart": "night"}] * 12, context=ctx, timestamp=t, text=text),
        RecQuery(history=[items[3]], context=ctx, timestamp=t),
        RecQuery(history=[], context=ctx, timestamp=t, text=text),
        RecQuery(user_id="never-seen", context=ctx),
    ]


@pytest.mark.parametrize("variant", [
    {"mixture": True},
    {"mixture": False},
    {"mixture": False, "use_profile": False, "temperature": 0.1},
    {"mixture": True, "use_context": False},
])
def test_scores_from_cached_states_equal_score(variant: dict[str, object]) -> None:
    model = fit(**variant)
    assert model.net is not None
    if variant.get("use_profile", True):
        assert "profile" in model.net.view_names
    if variant.get("use_context", True):
        assert "context" in model.net.view_names
    # States made for other requests (no context, no time, no text), one query at a time as a cache fills ...
    plain = model.encode_queries(queries(model, {}, None, None))
    states = np.stack([model.encode_state(plain.subset([b]))[0] for b in range(len(plain))])
    assert states.shape == (len(plain), model.config.d_model) and states.dtype == np.float32
    # ... score this request (its context, time and text) exactly as score() does.
    batch = model.encode_queries(queries(model, {"device": "mobile", "daypart": "evening"}, 1.7e9 + 9000, "great deluxe"))
    want = model.score(batch)
    np.testing.assert_allclose(model.score_from_state(states, batch), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.score_from_state(model.encode_state(batch), batch), want, rtol=1e-5, atol=1e-5)
    # The state is the history's: a different history is a different state.
    assert not np.allclose(states[0], states[1])


def test_dot_product_form_without_mixture_ranks_like_score() -> None:
    model = fit(mixture=False)
    # queries with a history (the form's domain: context-only ones get the context prior, scored exactly)
    batch = model.encode_queries(queries(model, {"device": "tv"}, 1.7e9, None)[:4])
    scores = model.score(batch)
    dots = model.user_embeddings(batch) @ model.item_embeddings().T
    # log_softmax(u . E) = u . E - logsumexp(u . E): the same order, a per-query shift
    np.testing.assert_allclose(dots - dots.max(1, keepdims=True), scores - scores.max(1, keepdims=True), atol=1e-4)
    with pytest.raises(UnsupportedError, match="mixture=true"):
        fit(mixture=True, train=TrainConfig(max_epochs=1, progress=False)).item_embeddings()


def test_text_query_blend_by_hand() -> None:
    """P = (1 - w) P_model + w softmax(cos(q, t_i) / tau), column 0 padding, rows without a query untouched."""
    rng = np.random.default_rng(0)
    q, items = rng.standard_normal((2, 5)), rng.standard_normal((4, 5))
    items[0] = 0.0  # padding row
    with np.errstate(divide="ignore"):  # column 0 (padding): log 0 = -inf
        log_p = np.log(np.array([[0, 0.2, 0.3, 0.5], [0, 0.1, 0.1, 0.8]]))
    tau, w = 0.1, 0.3
    got = blend_text_query(torch.tensor(log_p), text_match_log_probs(torch.tensor(q), torch.tensor(items), tau),
                           torch.tensor([True, False]), w).numpy()
    cos = (q[0] @ items[1:].T) / np.linalg.norm(q[0]) / np.linalg.norm(items[1:], axis=1)
    p_text = np.exp(cos / tau) / np.exp(cos / tau).sum()
    np.testing.assert_allclose(np.exp(got[0, 1:]), (1 - w) * np.exp(log_p[0, 1:]) + w * p_text, rtol=1e-6)
    np.testing.assert_allclose(got[1], log_p[1])
    assert got[0, 0] == -math.inf


def test_new_items_rank_top10_for_their_own_title() -> None:
    """Ten items added after training (titles from the catalogue's own word pool, so they share words with
    trained items) are each found in the top 10 for their title as a text query, by a known user and by an
    anonymous request; and the user's preference still orders items the text matches equally."""
    model = fit(train=TrainConfig(max_epochs=5, lr=1e-2, progress=False, seed=2))
    assert model.item_vocab is not None and model.user_vocab is not None
    words = sorted({w for t in DATA.items["title"] for w in str(t).split()})
    rng = np.random.default_rng(11)
    titles = [" ".join(rng.choice(words, 3, replace=False)) for _ in range(10)]
    new = pd.DataFrame({"item_id": [f"new{i}" for i in range(10)], "title": titles,
                        "description": ["new edition"] * 10, "genre": ["genre_1"] * 10})
    model.add_items(new)
    user = model.user_vocab.ids[3]
    for who in (None, user):
        recs = model.recommend([RecQuery(user_id=who, text=t) for t in titles], k=10)
        hits = sum(f"new{i}" in r.item_ids for i, r in enumerate(recs))
        assert hits >= 9, (who, hits, [r.item_ids[:3] for r in recs])
    # Equal text, different users: each gets the twin the model prefers for them.
    twins = pd.DataFrame({"item_id": ["twinA", "twinB"], "title": ["same words here"] * 2,
                          "description": ["x"] * 2, "genre": ["genre_0"] * 2})
    a, b = model.add_items(twins)
    q = [RecQuery(user_id=u, text="same words here") for u in model.user_vocab.ids[:20]]
    plain = model.score(model.encode_queries([RecQuery(user_id=u) for u in model.user_vocab.ids[:20]]))
    with_text = model.score(model.encode_queries(q))
    assert ((with_text[:, a] > with_text[:, b]) == (plain[:, a] > plain[:, b])).all()
    top = [r.item_ids[:2] for r in model.recommend(q, k=2, exclude_seen=False)]
    assert all(set(t) == {"twinA", "twinB"} for t in top)


def test_text_query_to_a_model_without_item_text_is_an_error() -> None:
    model = fit(use_text=False, train=TrainConfig(max_epochs=1, progress=False))
    with pytest.raises(QueryError, match="no item text"):
        model.recommend([RecQuery(history=[], text="anything")], k=3)


def test_length_groups_sort_and_bound_the_padding() -> None:
    from ctxrec.models.layers import length_groups

    lengths = [199, 3, 40, 0, 42, 180, 5, 41]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert groups == [[3, 1, 6], [2, 7, 4], [5, 0]]
    for g in groups:
        assert max(lengths[i] for i in g) <= 1.25 * min(lengths[i] for i in g) + 8


def test_lexical_vectors_are_fitted_saved_and_given_to_new_items(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``lexical_dim``: the item table gets n-gram vectors of each item's text; the saved model holds the
    encoder (no pickle) and scores the same after loading; an item added later gets its vector from the
    same n-grams and projection, in the loaded model as in the fitted one."""
    model = fit(lexical_dim=8)
    assert model.lexical is not None and model.net is not None and model.spec is not None
    assert model.spec.extra_dim == model.lexical.dim == 8
    table = model.net.extra_vectors[1:].numpy()
    np.testing.assert_allclose(np.linalg.norm(table, axis=1), 1.0, rtol=1e-5)
    model.save(tmp_path / "m")
    loaded = FusionRecommender.load(tmp_path / "m")
    assert loaded.lexical is not None
    q = [RecQuery(user_id=u) for u in model.user_vocab.ids[:5]]  # type: ignore[union-attr]
    np.testing.assert_allclose(loaded.score(loaded.encode_queries(q)), model.score(model.encode_queries(q)), rtol=1e-5)
    new = pd.DataFrame({"item_id": ["new0"], "title": [str(DATA.items["title"].iloc[0])],
                        "description": ["new edition"], "genre": ["genre_1"]})
    for m in (model, loaded):
        (row,) = m.add_items(new)
        got = m.net.extra_vectors[row + 1].numpy()  # type: ignore[union-attr]
        assert np.linalg.norm(got) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(model.net.extra_vectors[-1].numpy(), loaded.net.extra_vectors[-1].numpy())  # type: ignore[union-attr]
    with pytest.raises(Exception, match="lexical_dim must be >= 0"):
        FusionConfig(lexical_dim=-1)


def test_states_in_bounded_chunks_equal_the_full_sequence_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scoring path encodes histories through ``state_chunks`` (length groups of bounded size, the last
    block at the predicting position): the states equal the full-sequence encoder's output at that position."""
    from ctxrec.models import layers
    from ctxrec.models.fusion.batches import history_tensors

    model = fit()
    assert model.net is not None
    batch = model.encode_queries(queries(model, {}, None, None))
    monkeypatch.setattr(layers, "STATE_TOKENS", 30)  # a few histories of different lengths per forward
    got = model._state_tensor(batch)
    net = model.net.eval()
    with torch.no_grad():
        x = history_tensors(model, batch)
        h = net.encode(x["inp"], x["ev"], x["ci"], x["cd"], net.item_table())  # (B, T, D)
        want = h[torch.arange(h.shape[0]), x["len"] - 1]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
