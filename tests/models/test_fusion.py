"""FusionRecommender: the contract, network properties, context sensitivity and cold start."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from contract import RecommenderContract

from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.models.base import RecQuery
from ctxrec.errors import ConfigError
from ctxrec.models.fusion import FusionConfig, FusionRecommender, contrastive_loss, mixture_nll
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig

HASH = TextEncoderConfig(model="hashing:32")


def tiny(**kw: object) -> FusionConfig:
    train = kw.pop("train", TrainConfig(max_epochs=5, lr=1e-2, progress=False))
    base = dict(d_model=16, n_layers=1, max_len=8, dropout=0.0, text=HASH, train=train)
    base.update(kw)
    return FusionConfig(**base)  # type: ignore[arg-type]


class TestFusionContract(RecommenderContract):
    # As for SASRec: the checkerboard has no order signal after a user's last history item.
    learns_groups = False
    batch_rtol = 1e-4

    def make_model(self) -> FusionRecommender:
        return FusionRecommender(tiny())


def context_dataset(n_users: int = 80, seed: int = 0) -> Dataset:
    """Two item groups; in context device=tv users pick group A items, on mobile group B items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t in range(12):
            dev = "tv" if rng.random() < 0.5 else "mobile"
            group = "A" if dev == "tv" else "B"
            rows.append({"user_id": f"u{u}", "item_id": f"{group}{rng.integers(6)}", "timestamp": float(u * 1000 + t),
                         "device": dev})
    items = pd.DataFrame({"item_id": [f"{g}{i}" for g in "AB" for i in range(6)],
                          "title": [f"{'red' if g == 'A' else 'blue'} thing {i}" for g in "AB" for i in range(6)]})
    schema = DatasetSchema(context=(ContextField(name="device"),), item_text_fields=("title",))
    return Dataset.from_frames(pd.DataFrame(rows), items=items, schema=schema, name="ctx")


@pytest.fixture(scope="module")
def ctx_model() -> FusionRecommender:
    cfg = tiny(train=TrainConfig(max_epochs=25, lr=1e-2, batch_size=16, progress=False))
    return FusionRecommender(cfg).fit(context_dataset())


def test_context_changes_the_ranking_the_right_way(ctx_model: FusionRecommender) -> None:
    hist = ["A1", "B2", "A3"]
    tv = ctx_model.recommend([RecQuery(history=hist, context={"device": "tv"})], k=3, exclude_seen=False)[0]
    mob = ctx_model.recommend([RecQuery(history=hist, context={"device": "mobile"})], k=3, exclude_seen=False)[0]
    assert all(i.startswith("A") for i in tv.item_ids), tv.item_ids
    assert all(i.startswith("B") for i in mob.item_ids), mob.item_ids


def test_context_blind_model_ignores_context() -> None:
    cfg = tiny(use_context=False, train=TrainConfig(max_epochs=2, lr=1e-2, batch_size=16, progress=False))
    model = FusionRecommender(cfg).fit(context_dataset())
    a = model.recommend([RecQuery(history=["A1"], context={"device": "tv"})], k=12, exclude_seen=False)[0]
    b = model.recommend([RecQuery(history=["A1"], context={"device": "mobile"})], k=12, exclude_seen=False)[0]
    assert a.item_ids == b.item_ids
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_cold_user_gets_context_driven_recommendations(ctx_model: FusionRecommender) -> None:
    rec = ctx_model.recommend([RecQuery(context={"device": "mobile"})], k=3)[0]
    assert all(i.startswith("B") for i in rec.item_ids), rec.item_ids


def test_explanation_has_view_weights_that_sum_to_one(ctx_model: FusionRecommender) -> None:
    rec = ctx_model.recommend([RecQuery(history=["A1"], context={"device": "tv"})], k=2, explain=True)[0]
    assert rec.explanation is not None
    weights = rec.explanation["view_weights"]
    assert set(weights) == {"sequence", "context"}
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
    for item in rec.explanation["items"]:
        assert sum(item["view_shares"].values()) == pytest.approx(1.0, abs=1e-3)


def test_causal_masking_and_bos() -> None:
    model = FusionRecommender(tiny()).fit(context_dataset(n_users=10))
    net = model.net
    assert net is not None
    table = net.item_table()
    seq = torch.tensor([[-1, 3, 5, 7]])
    other = torch.tensor([[-1, 3, 9, 7]])
    z = torch.zeros(1, 4, dtype=torch.long)
    ci = torch.zeros(1, 4, len(model.ctx_encoder.field_names), dtype=torch.long)
    cd = torch.zeros(1, 4, model.ctx_encoder.n_dense)
    with torch.no_grad():
        a, b = net.encode(seq, z, ci, cd, table), net.encode(other, z, ci, cd, table)
    torch.testing.assert_close(a[:, :2], b[:, :2])
    assert not torch.allclose(a[:, 2:], b[:, 2:])


@pytest.mark.parametrize("switch", ["use_id", "use_text", "mixture", "use_attributes"])
def test_ablation_switches_train_and_score(switch: str) -> None:
    model = FusionRecommender(tiny(**{switch: False}, train=TrainConfig(max_epochs=1, progress=False)))
    model.fit(context_dataset(n_users=10))
    recs = model.recommend([RecQuery(history=["A1"], context={"device": "tv"})], k=5)
    assert len(recs[0].item_ids) == 5 and np.isfinite(recs[0].scores).all()


def test_sampled_loss_matches_the_full_loss_setting() -> None:
    model = FusionRecommender(tiny(loss="sampled", n_negatives=8,
                                   train=TrainConfig(max_epochs=25, lr=1e-2, batch_size=16, progress=False)))
    model.fit(context_dataset())
    rec = model.recommend([RecQuery(history=["A1"], context={"device": "tv"})], k=3, exclude_seen=False)[0]
    assert sum(i.startswith("A") for i in rec.item_ids) >= 2, rec.item_ids


def test_text_only_item_vectors_exist_for_items_without_id() -> None:
    """With IDs off, two items with the same text get the same vector: text alone represents items."""
    cfg = tiny(use_id=False, use_attributes=False, train=TrainConfig(max_epochs=1, progress=False))
    model = FusionRecommender(cfg).fit(context_dataset(n_users=10))
    assert model.net is not None
    table = model.net.item_table()
    assert torch.count_nonzero(table[1:].abs().sum(-1)) == table.shape[0] - 1


@pytest.mark.parametrize("variant", [{"text_adapter": "mlp"}, {"text_adapter": "moe", "n_experts": 3}, {"temperature": 0.1},
                                     {"label_smoothing": 0.1}, {"contrastive": 0.3, "dropout": 0.1}])
def test_adapter_and_cosine_variants_learn_and_round_trip(variant: dict, tmp_path) -> None:
    cfg = tiny(**variant, train=TrainConfig(max_epochs=25, lr=1e-2, batch_size=16, progress=False))
    model = FusionRecommender(cfg).fit(context_dataset())
    q = [RecQuery(history=["A1", "A2"], context={"device": "tv"})]
    rec = model.recommend(q, k=3, exclude_seen=False)[0]
    assert sum(i.startswith("A") for i in rec.item_ids) >= 2, rec.item_ids
    model.save(tmp_path / "m")
    again = FusionRecommender.load(tmp_path / "m").recommend(q, k=3, exclude_seen=False)[0]
    assert again.item_ids == rec.item_ids
    np.testing.assert_allclose(again.scores, rec.scores, rtol=1e-5)


def _vectors_dataset(seed: int = 0) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Users stay within one of two groups; only the precomputed vectors say which group an item is in
    (items have no text and IDs are off), so only the extra modality can tell the groups apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(60):
        g = "AB"[u % 2]
        for t in range(10):
            rows.append({"user_id": f"u{u}", "item_id": f"{g}{rng.integers(6)}", "timestamp": float(u * 100 + t)})
    ids = [f"{g}{i}" for g in "AB" for i in range(6)]
    vecs = {i: (np.array([1.0, 0.0]) if i[0] == "A" else np.array([0.0, 1.0])) + rng.normal(0, 0.05, 2) for i in ids}
    items = pd.DataFrame({"item_id": ids})
    return Dataset.from_frames(pd.DataFrame(rows), items=items, schema=DatasetSchema(), name="vec"), vecs


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_precomputed_item_vectors_are_a_modality(fmt: str, tmp_path) -> None:
    data, vecs = _vectors_dataset()
    ids = list(vecs)
    if fmt == "parquet":
        path = tmp_path / "v.parquet"
        pd.DataFrame({"item_id": ids, "vector": [v.astype(np.float32) for v in vecs.values()]}).to_parquet(path)
    else:
        path = tmp_path / "v.npz"
        np.savez(path, ids=np.array(ids), vectors=np.stack(list(vecs.values())))
    cfg = tiny(use_id=False, use_text=False, item_vectors=str(path),
               train=TrainConfig(max_epochs=30, lr=1e-2, batch_size=16, progress=False))
    model = FusionRecommender(cfg).fit(data)
    for g in "AB":
        rec = model.recommend([RecQuery(history=[f"{g}0", f"{g}1", f"{g}2"])], k=3)[0]
        assert all(i.startswith(g) for i in rec.item_ids), (g, rec.item_ids)
    model.save(tmp_path / "m")  # the vectors travel with the model: the file is not needed to load it
    path.unlink()
    assert FusionRecommender.load(tmp_path / "m").recommend([RecQuery(history=["A0"])], k=3)[0].item_ids[0].startswith("A")


def test_item_vectors_file_errors_name_the_problem(tmp_path) -> None:
    data, _ = _vectors_dataset()
    bad = tmp_path / "v.parquet"
    pd.DataFrame({"item": ["A0"], "vector": [np.zeros(2, np.float32)]}).to_parquet(bad)
    with pytest.raises(ValueError, match="item_id"):
        FusionRecommender(tiny(item_vectors=str(bad))).fit(data)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        FusionRecommender(tiny(item_vectors=str(tmp_path / "nope.parquet"))).fit(data)


def test_context_as_text_gives_unseen_values_a_meaningful_vector(tmp_path) -> None:
    """Trained on device in {tv, mobile}; a request from "smart tv" (never seen) leans to the tv items,
    one from "mobile phone" to the mobile items: the rendered context's text vector carries the value."""
    from ctxrec.context import ContextConfig

    cfg = tiny(context=ContextConfig(as_text=True), context_dropout=0.0,
               train=TrainConfig(max_epochs=25, lr=1e-2, batch_size=16, progress=False))
    model = FusionRecommender(cfg).fit(context_dataset())
    n_known = len(model.ctx_texts)

    def share_a(device: str) -> float:
        recs = model.recommend([RecQuery(history=h, context={"device": device})
                                for h in (["A1", "B2"], ["B1", "A2"], ["A3"])], k=6, exclude_seen=False)
        return float(np.mean([i.startswith("A") for r in recs for i in r.item_ids]))

    assert share_a("smart tv") > share_a("mobile phone") + 0.3
    assert len(model.ctx_texts) == n_known + 2  # the two new renderings were encoded and kept
    model.save(tmp_path / "m")
    again = FusionRecommender.load(tmp_path / "m")
    assert again.ctx_texts == model.ctx_texts
    q = [RecQuery(history=["A1"], context={"device": "smart tv"})]
    np.testing.assert_allclose(again.recommend(q, k=3)[0].scores, model.recommend(q, k=3)[0].scores, rtol=1e-5)


def test_item_table_cache_follows_weight_changes() -> None:
    """Served requests reuse the item table until a weight changes; while fitting it is never reused
    (fused optimiser steps update weights without bumping tensor versions, so a cache would go stale)."""
    model = FusionRecommender(tiny(train=TrainConfig(max_epochs=1, progress=False))).fit(context_dataset(n_users=10))
    assert model.net is not None and model.net.id_emb is not None
    t1 = model._eval_item_table()
    assert model._eval_item_table() is t1
    with torch.no_grad():
        model.net.id_emb.weight.add_(1.0)
    t2 = model._eval_item_table()
    assert not torch.equal(t1, t2)
    model._fitting = True
    assert model._eval_item_table() is not model._eval_item_table()


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_items_without_training_events_are_not_trained_as_negatives(loss: str) -> None:
    """Catalogue items with no events (new stock) are left out of the training softmax by default; as
    negatives they would be pushed down at every step and lose the ranking their text deserves."""
    base = context_dataset(n_users=60)
    items = pd.concat([base.items.reset_index(),
                       pd.DataFrame({"item_id": ["A9", "B9"], "title": ["red thing deluxe", "blue thing deluxe"]})], ignore_index=True)
    events = base.interactions[["user_id", "item_id", "timestamp", "device"]]
    data = Dataset.from_frames(events, items=items, schema=base.schema, name="ctx+cold")
    assert data.n_items == 14

    def cold_rank(unseen_negatives: bool) -> float:
        cfg = tiny(use_id=True, id_dropout=0.3, unseen_negatives=unseen_negatives, loss=loss, n_negatives=8,
                   train=TrainConfig(max_epochs=20, lr=1e-2, batch_size=16, progress=False))
        model = FusionRecommender(cfg).fit(data)
        ranks = []
        for hist, dev, cold in ((["A1", "A3"], "tv", "A9"), (["B1", "B4"], "mobile", "B9")):
            rec = model.recommend([RecQuery(history=hist, context={"device": dev})], k=14, exclude_seen=False)[0]
            ranks.append(rec.item_ids.index(cold))
        return float(np.mean(ranks))

    with_, without = cold_rank(False), cold_rank(True)
    assert with_ + 2 <= without


def test_id_scale_rescales_only_the_id_part_at_inference(tmp_path) -> None:
    """``set_inference(id_scale=...)`` moves warm item vectors towards their text part without retraining; the cached
    item table follows, a saved model keeps the scale, and out-of-range scales are refused."""
    from ctxrec.errors import ConfigError
    from ctxrec.models import load_model

    model = FusionRecommender(tiny(use_id=True, train=TrainConfig(max_epochs=2, lr=1e-2, batch_size=16, progress=False)))
    model.fit(context_dataset(n_users=20))
    net = model.net
    assert net is not None and net.id_emb is not None
    q = [RecQuery(history=["A1", "B2"], context={"device": "tv"})]
    before = model.recommend(q, k=12, exclude_seen=False)[0]
    full = model._eval_item_table().clone()
    id_part = (net.id_emb.weight * net.has_id).detach()
    assert id_part.abs().sum() > 0
    model.set_inference(id_scale=0.5)
    half = model._eval_item_table()
    torch.testing.assert_close(half, full - 0.5 * id_part, atol=1e-5, rtol=0)
    after = model.recommend(q, k=12, exclude_seen=False)[0]
    assert not np.allclose(before.scores, after.scores)  # the cache did not serve the old table
    net.train()
    assert net.cfg.id_scale == 0.5 and model.config.id_scale == 0.5
    net.eval()
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config.id_scale == 0.5
    np.testing.assert_allclose(again.recommend(q, k=12, exclude_seen=False)[0].scores, after.scores, atol=1e-5)
    with pytest.raises(ConfigError, match="id_scale"):
        model.set_inference(id_scale=1.5)
    with pytest.raises(ConfigError, match="id_dropout"):
        tiny(id_dropout=1.0)


def test_cold_ids_borrow_the_id_part_of_text_neighbours(tmp_path) -> None:
    """``cold_ids="neighbours"``: an item without an ID embedding gets the similarity-weighted ID part of
    the warm items whose text is closest; with one neighbour and the same text as A1 it becomes A1's
    vector. Training tables never include it; the switch travels with a saved model."""
    from ctxrec.errors import ConfigError
    from ctxrec.models import load_model

    model = FusionRecommender(tiny(use_id=True, train=TrainConfig(max_epochs=2, lr=1e-2, batch_size=16, progress=False)))
    model.fit(context_dataset(n_users=20))
    net = model.net
    assert net is not None and net.id_emb is not None
    new = int(model.add_items(pd.DataFrame({"item_id": ["A1-again"], "title": ["red thing 1"]}))[0]) + 1
    a1 = model.item_vocab.index("A1") + 1
    plain = model._eval_item_table().clone()
    id_a1 = (net.id_emb.weight[a1] * net.has_id[a1]).detach()
    torch.testing.assert_close(plain[new], plain[a1] - id_a1, atol=1e-5, rtol=0)  # text only: no ID part
    model.set_inference(cold_ids="neighbours", cold_id_neighbours=1)
    borrowed = model._eval_item_table()
    torch.testing.assert_close(borrowed[new], plain[a1], atol=1e-5, rtol=0)
    torch.testing.assert_close(borrowed[:new], plain[:new], atol=1e-6, rtol=0)  # warm items unchanged
    assert net._neighbours()[1] is net._neighbours()[1]  # the search is cached until has_id / text change
    model.set_inference(cold_id_neighbours=3)  # a convex mix of three warm ID parts
    ids = (net.id_emb.weight * net.has_id).detach()
    w = torch.linalg.lstsq(ids[1:new].T, (model._eval_item_table()[new] - plain[new]).unsqueeze(1)).solution.squeeze(1)
    assert int((w.abs() > 1e-3).sum()) == 3 and float(w.sum()) == pytest.approx(1.0, abs=1e-3) and bool((w > -1e-3).all())
    with torch.no_grad():
        net.train()
        torch.testing.assert_close(net.item_table()[new], plain[new], atol=1e-5, rtol=0)
        net.eval()
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.config.cold_ids == "neighbours" and again.config.cold_id_neighbours == 3
    with pytest.raises(ConfigError, match="cold_ids"):
        model.set_inference(cold_ids="nearest")
    with pytest.raises(ConfigError, match="refit"):
        model.set_inference(d_model=8)


def cold_target_dataset(n_users: int = 60, seed: int = 0) -> Dataset:
    """As ``context_dataset``, but for a third of the users the last two events are new items (A9/B9, in
    the catalogue with text, never in training under leave-one-out): validation and test then hold cases
    whose target has no training events, at a known rate."""
    base = context_dataset(n_users=n_users, seed=seed)
    ev = base.interactions[["user_id", "item_id", "timestamp", "device"]].copy()
    for u in range(0, n_users, 3):
        rows = ev.index[ev["user_id"] == f"u{u}"][-2:]
        ev.loc[rows, "item_id"] = [("A9" if d == "tv" else "B9") for d in ev.loc[rows, "device"]]
    items = pd.concat([base.items.reset_index(),
                       pd.DataFrame({"item_id": ["A9", "B9"], "title": ["red thing deluxe", "blue thing deluxe"]})], ignore_index=True)
    return Dataset.from_frames(ev, items=items, schema=base.schema, name="ctx+new")


def test_cold_prior_is_fitted_on_validation_and_lifts_new_items(tmp_path) -> None:
    """Items without training events are never targets in training, so the model under-predicts them;
    ``cold_prior="fit"`` fits one log-prior offset on validation (expected = observed cold-target rate),
    which lowers the validation NLL and ranks the new items higher on the test cases that want them."""
    from ctxrec.data.splits import leave_one_out
    from ctxrec.models import load_model

    data = cold_target_dataset()
    split = leave_one_out(data)
    train_cfg = TrainConfig(max_epochs=15, lr=1e-2, batch_size=16, progress=False)
    fitted = FusionRecommender(tiny(use_id=True, cold_prior="fit", train=train_cfg)).fit(split.train, valid=split.valid)
    plain = FusionRecommender(tiny(use_id=True, train=train_cfg)).fit(split.train, valid=split.valid)  # default: none
    info = fitted.fit_info["cold_prior"]
    assert info["cold_items"] == 2 and info["cold_target_cases"] == 20
    assert info["bias"] > 0.5  # never a training target: the model under-predicts new items
    assert "cold_prior" not in plain.fit_info and float(plain.net.cold_bias) == 0.0

    def nll(model: FusionRecommender, cases) -> float:  # type: ignore[no-untyped-def]
        from ctxrec.models.base import QueryBatch

        lp = model._score(QueryBatch.from_evalset(cases))
        return float(-np.mean([lp[i, t[0]] for i, t in enumerate(cases.targets)]))

    # Same weights with the offset at 0 vs fitted: the fitted offset is the validation likelihood's optimum.
    b = float(fitted.net.cold_bias)
    nll_fit = nll(fitted, split.valid)
    for other in (0.0, b - 0.5, b + 0.5):
        fitted.net.cold_bias.fill_(other)
        assert nll(fitted, split.valid) > nll_fit
    fitted.net.cold_bias.fill_(b)

    test_ids = [data.item_vocab.ids[t[0]] for t in split.test.targets]
    cases = [i for i, t in enumerate(test_ids) if t in ("A9", "B9")]
    assert len(cases) == 20

    def mean_rank(model: FusionRecommender) -> float:
        ranks = []
        for i in cases:
            hist = [data.item_vocab.ids[j] for j in split.test.histories[i]]
            q = RecQuery(history=hist, context={"device": "tv" if test_ids[i] == "A9" else "mobile"})
            ranks.append(model.recommend([q], k=data.n_items, exclude_seen=False)[0].item_ids.index(test_ids[i]))
        return float(np.mean(ranks))

    assert mean_rank(fitted) + 1 <= mean_rank(plain)
    fitted.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert float(again.net.cold_bias) == pytest.approx(b)
    q = [RecQuery(history=["A1", "B2"], context={"device": "tv"})]
    np.testing.assert_allclose(again.recommend(q, k=5, exclude_seen=False)[0].scores,
                               fitted.recommend(q, k=5, exclude_seen=False)[0].scores, atol=1e-5)


def test_item_vector_parts_start_on_one_scale() -> None:
    """ID, attribute and profile embeddings start on one small scale (at torch's N(0, 1) default the
    attribute part of an item vector was ~sqrt(d) long and swamped the ID, the text and the positions)."""
    from ctxrec.models.fusion import FusionNet, NetSpec

    spec = NetSpec(n_items=50, text_dim=0, n_attr_ids=10, attr_width=3, ctx_cardinalities=[], n_dense=0,
                   profile_cardinalities=[5], user_text_dim=0, n_event_types=0)
    net = FusionNet(spec, FusionConfig(d_model=64))
    assert net.id_emb is not None and net.attr_emb is not None
    with torch.no_grad():
        id_norm = float(net.id_emb.weight[1:].norm(dim=1).mean())
        assert float(net.attr_emb.weight[1:].norm(dim=1).mean()) < 2 * id_norm
        assert float(net.profile_emb[0].weight.norm(dim=1).mean()) < 2 * id_norm
        assert float(net.attr_emb.weight[0].abs().sum()) == 0.0  # padding attribute stays zero


def test_label_smoothing_matches_torch_cross_entropy_without_the_padding_column() -> None:
    """One view: the loss is torch's label-smoothed CE over the real columns (padding 0 and excluded
    columns are outside the softmax, so they get no smoothing mass either)."""
    g = torch.Generator().manual_seed(0)
    vecs, table = torch.randn(5, 1, 4, generator=g), torch.randn(7, 4, generator=g)
    table[0] = 0.0
    targets = torch.tensor([1, 2, 3, 5, 6])
    log_w = torch.zeros(5, 1)
    logits = vecs[:, 0] @ table.T
    for eps in (0.0, 0.2):
        want = torch.nn.functional.cross_entropy(logits[:, 1:], targets - 1, label_smoothing=eps)
        torch.testing.assert_close(mixture_nll(vecs, log_w, table, targets, mixture=True, label_smoothing=eps), want)
        torch.testing.assert_close(mixture_nll(vecs, log_w, table, targets, mixture=False, label_smoothing=eps), want)
    exclude = torch.zeros(7, dtype=torch.bool)
    exclude[4] = True  # column 4 is never a target here
    keep = [1, 2, 3, 5, 6]
    want = torch.nn.functional.cross_entropy(logits[:, keep], torch.tensor([0, 1, 2, 3, 4]), label_smoothing=0.2)
    got = mixture_nll(vecs, log_w, table, targets, mixture=True, exclude=exclude, label_smoothing=0.2)
    torch.testing.assert_close(got, want)


def test_label_smoothing_of_a_mixture_by_hand() -> None:
    """Two views: (1 - eps) * -log P(target) + eps * mean_v -log P(v), P = sum_j w_j softmax_j."""
    g = torch.Generator().manual_seed(1)
    vecs, table = torch.randn(3, 2, 4, generator=g), torch.randn(5, 4, generator=g)
    log_w = torch.log_softmax(torch.randn(3, 2, generator=g), -1)
    targets = torch.tensor([1, 4, 2])
    probs = (log_w.exp().unsqueeze(-1) * torch.softmax(torch.einsum("njd,vd->njv", vecs, table)[..., 1:], -1)).sum(1)
    nll = -probs[torch.arange(3), targets - 1].log().mean()
    want = 0.7 * nll + 0.3 * -probs.log().mean()
    torch.testing.assert_close(mixture_nll(vecs, log_w, table, targets, mixture=True, label_smoothing=0.3), want)


def test_contrastive_loss_known_answers() -> None:
    """Twins identical and the pairs orthogonal: each row's softmax is over its twin (cos 1) and two
    orthogonal states (cos 0), so the loss is -log(e^(1/t) / (e^(1/t) + 2))."""
    z = torch.eye(2) * 3.0
    t = 0.5
    want = -np.log(np.exp(1 / t) / (np.exp(1 / t) + 2))
    assert float(contrastive_loss(z, z.clone(), t)) == pytest.approx(want, rel=1e-6)
    # swapping the twins of one pair makes every positive wrong: the loss grows
    assert float(contrastive_loss(z, z.flip(0), t)) > want + 1.0


@pytest.mark.parametrize("bad", [{"label_smoothing": 1.0}, {"label_smoothing": -0.1}, {"contrastive": -1.0},
                                 {"contrastive_temperature": 0.0}])
def test_regulariser_settings_are_checked(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        tiny(**bad)


def test_label_smoothing_refuses_the_sampled_loss() -> None:
    with pytest.raises(ConfigError, match="label_smoothing"):
        FusionRecommender(tiny(loss="sampled", label_smoothing=0.1)).fit(context_dataset(n_users=5))
