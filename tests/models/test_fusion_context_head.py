"""The fusion model's context prior (``context_head.py``): it answers requests that give nothing but a
context, follows the context there, and leaves every other answer exactly as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_fusion import context_dataset, tiny

from ctxrec.models.base import RecQuery
from ctxrec.models.fusion import FusionRecommender
from ctxrec.models.fusion import context_head as ch
from ctxrec.models.fusion.context_head import PRIOR_WEIGHTS, ContextHead, anonymous_rows, choose_prior_weight
from ctxrec.training.loop import TrainConfig

TRAIN = TrainConfig(max_epochs=4, lr=1e-2, batch_size=16, progress=False, seed=3)


@pytest.fixture(scope="module")
def pair() -> dict[bool, FusionRecommender]:
    """The same seeded model with and without the context head."""
    data = context_dataset()
    return {head: FusionRecommender(tiny(context_head=head, context_prior_weight=0.0, train=TRAIN)).fit(data)
            for head in (True, False)}


def test_the_head_leaves_training_and_every_request_with_history_unchanged(pair) -> None:
    with_head, without = pair[True], pair[False]
    def losses(m: FusionRecommender) -> list[float]:
        return [r["loss"] for r in m.fit_info["history"]]

    assert losses(with_head) == losses(without) and len(losses(without)) == TRAIN.max_epochs
    queries = [RecQuery(history=["A1", "B2"], context={"device": "tv"}),
               RecQuery(user_id="u3", context={"device": "mobile"}),
               RecQuery(history=["B4"])]
    a = with_head.score(with_head.encode_queries(queries))
    b = without.score(without.encode_queries(queries))
    np.testing.assert_array_equal(a, b)
    anon = [RecQuery(context={"device": "tv"})]
    assert not np.array_equal(with_head.score(with_head.encode_queries(anon)), without.score(without.encode_queries(anon)))


def test_anonymous_answers_follow_the_context(pair) -> None:
    """tv -> group A, mobile -> group B in the data: the context-only top 6 is that group, in order of
    the group's training counts within the context (context popularity, the best a context-only answer
    can do here)."""
    model = pair[True]
    tv, mob = model.recommend([RecQuery(context={"device": "tv"}), RecQuery(context={"device": "mobile"})], k=6,
                              explain=True)
    assert all(i.startswith("A") for i in tv.item_ids), tv.item_ids
    assert all(i.startswith("B") for i in mob.item_ids), mob.item_ids
    assert tv.explanation is not None and tv.explanation["view_weights"] == {"context_prior": 1.0}
    frame = context_dataset().interactions
    counts = frame[frame["device"] == "tv"]["item_id"].value_counts()
    top3 = set(counts.index[:3])
    assert len(top3 & set(tv.item_ids[:4])) >= 2, (tv.item_ids, counts.to_dict())


def test_anonymous_rule() -> None:
    lengths = torch.tensor([1, 2, 1, 1, 1])
    prof = torch.tensor([[0, 0], [0, 0], [3, 0], [0, 0], [0, 0]])
    utext = torch.zeros(5, 4)
    utext[3, 0] = 0.5
    has_query = torch.tensor([False, False, False, False, True])
    assert anonymous_rows(lengths, prof, utext, has_query).tolist() == [True, False, False, False, False]
    assert anonymous_rows(lengths, prof[:, :0], None, None).tolist() == [True, False, True, True, True]


def test_head_logits_by_hand_and_the_item_table_gets_no_gradient() -> None:
    torch.manual_seed(0)
    head = ContextHead([3, 4], 0, n_items=5, d_field=2, hidden=4, d_out=3, dropout=0.0)
    head.bias.copy_(torch.arange(6.0))
    with torch.no_grad():
        head.items.weight.normal_()
    table = torch.randn(6, 3, requires_grad=True)
    ids = torch.tensor([[1, 2], [0, 3]])
    out = head(ids, torch.zeros(2, 0), table)
    u = head.mlp(torch.cat([head.emb[0](ids[:, 0]), head.emb[1](ids[:, 1])], -1))
    want = u @ (table.detach() + head.items.weight).T + torch.arange(6.0)
    assert torch.isinf(out[:, 0]).all()
    torch.testing.assert_close(out[:, 1:], want[:, 1:])
    out[:, 1:].sum().backward()
    assert table.grad is None


def test_round_trip_and_added_items(pair, tmp_path) -> None:
    model = pair[True]
    q = [RecQuery(context={"device": "mobile"})]
    before = model.score(model.encode_queries(q))
    model.save(tmp_path / "m")
    loaded = FusionRecommender.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score(loaded.encode_queries(q)), before)
    loaded.add_items(pd.DataFrame({"item_id": ["C0"], "title": ["green thing"]}))
    after = loaded.score(loaded.encode_queries(q))[0]
    assert after.shape == (13,)
    np.testing.assert_allclose(after[:12] - np.log1p(-np.exp(after[12])), before[0], atol=1e-5)  # same odds
    loaded.save(tmp_path / "m2")
    assert FusionRecommender.load(tmp_path / "m2").n_items == 13


def test_a_model_saved_before_the_context_head_loads_without_one(pair, tmp_path) -> None:
    import json

    model = pair[False]
    model.save(tmp_path / "old")
    cfg_path = tmp_path / "old" / "config.json"
    saved = json.loads(cfg_path.read_text())
    del saved["config"]["context_head"]  # as written before the option existed
    cfg_path.write_text(json.dumps(saved))
    loaded = FusionRecommender.load(tmp_path / "old")
    assert loaded.net is not None and loaded.net.context_head is None and loaded.config.context_head is False
    q = [RecQuery(context={"device": "tv"})]
    np.testing.assert_array_equal(loaded.score(loaded.encode_queries(q)), model.score(model.encode_queries(q)))


def test_prior_weight_mixes_the_prior_into_answers_with_a_history(tmp_path) -> None:
    model = FusionRecommender(tiny(context_prior_weight=0.0, train=TRAIN)).fit(context_dataset())
    with_hist = [RecQuery(history=["A1", "B3"], context={"device": "tv"})]
    before = model.score(model.encode_queries(with_hist))
    prior = model.score(model.encode_queries([RecQuery(context={"device": "tv"})]))  # P_ctx of the same context
    assert model.net is not None and model.net.context_head is not None
    model.net.context_head.weight.fill_(0.3)
    after = model.score(model.encode_queries(with_hist))
    np.testing.assert_allclose(after, np.logaddexp(np.log(0.7) + before, np.log(0.3) + prior), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "m")  # the weight is part of the saved state
    loaded = FusionRecommender.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score(loaded.encode_queries(with_hist)), after)


def test_prior_weight_is_chosen_on_validation() -> None:
    head = ContextHead([2], 0, n_items=3, d_field=2, hidden=4, d_out=2, dropout=0.0)
    figures = dict(zip(PRIOR_WEIGHTS, [0.20, 0.21, 0.25, 0.25, 0.22, 0.10], strict=True))
    got = choose_prior_weight(head, None, lambda: {"ndcg@10": figures[round(float(head.weight), 4)]})
    assert got["weight"] == pytest.approx(0.1) and float(head.weight) == pytest.approx(0.1)  # a tie: the smaller weight
    assert len(got["weight_valid_ndcg@10"]) == len(PRIOR_WEIGHTS)
    assert choose_prior_weight(head, None, None)["weight"] == 0.0  # no validation cases: only anonymous requests
    assert choose_prior_weight(head, 0.2, lambda: {"ndcg@10": 0.0}) == {"weight": pytest.approx(0.2), "weight_valid_ndcg@10": {}}


def _noise_triples(n: int, n_items: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(context ids, dense, item + 1) with the item independent of the context: nothing for the head to learn."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 50, (n, 2)), np.zeros((n, 0), np.float32), rng.integers(1, n_items + 1, n))


def test_held_out_events_are_a_seeded_disjoint_share_of_the_training_events() -> None:
    train = _noise_triples(4000, 30)
    fit, hold = ch.held_out(train, seed=1)
    assert hold is not None and len(hold[2]) == int(4000 * ch.HOLDOUT) and len(fit[2]) == 4000 - len(hold[2])
    rows = {tuple(r) for r in np.column_stack([train[0], train[2]]).tolist()}
    assert {tuple(r) for r in np.column_stack([fit[0], fit[2]]).tolist()} <= rows
    again = ch.held_out(train, seed=1)[1]
    assert again is not None and all(np.array_equal(a, b) for a, b in zip(hold, again, strict=True))
    small = _noise_triples(ch.HOLDOUT_MIN * 10, 30)  # 5% of it is below the minimum: nothing held out
    assert ch.held_out(small, seed=1) == (small, None)


def test_without_validation_cases_the_fit_stops_on_held_out_events_not_after_every_epoch() -> None:
    """Nothing to learn (items independent of context): the training loss still falls epoch after epoch
    (the head memorises), so a fit that kept the lowest training loss ran all MAX_EPOCHS; on held-out
    events it stops after PATIENCE epochs without a gain."""
    n_items = 40
    head = ContextHead([50, 50], 0, n_items=n_items, d_field=8, hidden=64, d_out=8, dropout=0.0)
    table = torch.randn(n_items + 1, 8, generator=torch.Generator().manual_seed(0))
    got = ch.fit_context_head(head, table, _noise_triples(6000, n_items), None, seed=0)
    assert got["stopped_on"] == f"{int(6000 * ch.HOLDOUT)} held-out training events"
    assert got["epochs_run"] < ch.MAX_EPOCHS
    assert got["epochs_run"] == got["best_epoch"] + 1 + ch.PATIENCE
    losses = [h["loss"] for h in got["history"]]
    assert losses[-1] < losses[0]  # the training loss alone would not have stopped it
    tiny_log = ch.fit_context_head(ContextHead([50, 50], 0, n_items=n_items, d_field=8, hidden=64, d_out=8, dropout=0.0),
                                   table, _noise_triples(200, n_items), None, seed=0)
    assert tiny_log["stopped_on"] == "training loss" and tiny_log["best_valid_ndcg@10"] is None
