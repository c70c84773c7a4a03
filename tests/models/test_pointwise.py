"""PointwiseRecommender and the FM / DeepFM baselines: the contract, context sensitivity, pair scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from contract import RecommenderContract

from ctxrec.context import ContextConfig
from ctxrec.data.dataset import ContextField, Dataset, DatasetSchema
from ctxrec.errors import ConfigError
from ctxrec.evaluation.metrics import auc
from ctxrec.models.base import RecQuery
from ctxrec.models.fm import FMConfig, FMRecommender
from ctxrec.models.pointwise import PointwiseConfig, PointwiseRecommender
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig

HASH = TextEncoderConfig(model="hashing:32")
TRAIN = TrainConfig(max_epochs=15, lr=1e-2, batch_size=64, progress=False)


def tiny(**kw: object) -> PointwiseConfig:
    base: dict[str, object] = {"d_field": 8, "mlp": (16,), "dropout": 0.0, "text": HASH, "train": TRAIN}
    base.update(kw)
    return PointwiseConfig(**base)  # type: ignore[arg-type]


class TestPointwiseContract(RecommenderContract):
    batch_rtol = 1e-4

    def make_model(self) -> PointwiseRecommender:
        return PointwiseRecommender(tiny())


class TestPointwiseDCNContract(RecommenderContract):
    batch_rtol = 1e-4

    def make_model(self) -> PointwiseRecommender:
        return PointwiseRecommender(tiny(head="dcn", n_cross=1))


class TestPointwiseTargetAttentionContract(RecommenderContract):
    batch_rtol = 1e-4

    def make_model(self) -> PointwiseRecommender:
        return PointwiseRecommender(tiny(history_pooling="target"))


class TestPointwiseHistoryMatchContract(RecommenderContract):
    batch_rtol = 1e-4

    def make_model(self) -> PointwiseRecommender:
        return PointwiseRecommender(tiny(history_match=True))


class TestFMContract(RecommenderContract):
    batch_rtol = 1e-4

    def make_model(self) -> FMRecommender:
        return FMRecommender(FMConfig(d_field=8, train=TRAIN))


class TestDeepFMContract(RecommenderContract):
    batch_rtol = 1e-4

    def make_model(self) -> FMRecommender:
        return FMRecommender(FMConfig(variant="deepfm", d_field=8, mlp=(16,), dropout=0.0, train=TRAIN))


def context_dataset(n_users: int = 60, seed: int = 0) -> Dataset:
    """On device=tv users pick group A items, on mobile group B items; ``noise`` is an unrelated field."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for t in range(10):
            dev = "tv" if rng.random() < 0.5 else "mobile"
            group = "A" if dev == "tv" else "B"
            rows.append({"user_id": f"u{u}", "item_id": f"{group}{rng.integers(6)}", "timestamp": float(u * 1000 + t),
                         "device": dev, "noise": f"n{rng.integers(3)}"})
    items = pd.DataFrame({"item_id": [f"{g}{i}" for g in "AB" for i in range(6)],
                          "title": [f"{'red' if g == 'A' else 'blue'} thing {i}" for g in "AB" for i in range(6)]})
    schema = DatasetSchema(context=(ContextField(name="device"), ContextField(name="noise")), item_text_fields=("title",))
    return Dataset.from_frames(pd.DataFrame(rows), items=items, schema=schema, name="ctx")


@pytest.fixture(scope="module")
def ctx_model() -> PointwiseRecommender:
    return PointwiseRecommender(tiny(context=ContextConfig(time_features=False))).fit(context_dataset())


def test_context_changes_the_ranking_the_right_way(ctx_model: PointwiseRecommender) -> None:
    hist = ["A1", "B2", "A3"]
    tv, mobile = ctx_model.recommend([RecQuery(history=hist, context={"device": "tv"}),
                                      RecQuery(history=hist, context={"device": "mobile"})], k=4, exclude_seen=False)
    assert all(i.startswith("A") for i in tv.item_ids), tv.item_ids
    assert all(i.startswith("B") for i in mobile.item_ids), mobile.item_ids


def test_predict_proba_matches_context(ctx_model: PointwiseRecommender) -> None:
    qs = [RecQuery(user_id="u1", context={"device": "tv"}), RecQuery(user_id="u1", context={"device": "mobile"})] * 2
    p = ctx_model.predict_proba(qs, ["A2", "A2", "B4", "B4"])
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    assert p[0] > p[1] and p[3] > p[2], p
    with pytest.raises(ValueError, match="one item per query"):
        ctx_model.predict_proba(qs, ["A2"])


def test_context_blind_switch_ignores_context() -> None:
    model = PointwiseRecommender(tiny(use_context=False, train=TrainConfig(max_epochs=2, progress=False)))
    model.fit(context_dataset(n_users=10))
    tv, mobile = model.recommend([RecQuery(user_id="u1", context={"device": "tv"}),
                                  RecQuery(user_id="u1", context={"device": "mobile"})], k=12, exclude_seen=False)
    assert tv.item_ids == mobile.item_ids
    np.testing.assert_array_equal(tv.scores, mobile.scores)


def test_fit_labelled_learns_and_stops_on_auc() -> None:
    data = context_dataset(n_users=40)
    rng = np.random.default_rng(0)
    pos = data.interactions[["user_id", "item_id", "device", "noise"]].assign(label=1.0)
    neg = pos.assign(item_id=[f"{'B' if d == 'tv' else 'A'}{rng.integers(6)}" for d in pos["device"]], label=0.0)
    table = pd.concat([pos, neg], ignore_index=True).sample(frac=1.0, random_state=0).reset_index(drop=True)
    table["exclude_item"] = table["item_id"]  # exercises the leave-own-row-out path
    cut = len(table) * 8 // 10
    train, valid = table.iloc[:cut], table.iloc[cut:].drop(columns="exclude_item")
    cfg = tiny(history_pooling="target", train=TrainConfig(max_epochs=8, lr=1e-2, batch_size=128, patience=3,
                                                     valid_metric="auc", progress=False))
    model = PointwiseRecommender(cfg).fit_labelled(data, train, valid)
    assert model.fit_info["best_valid"] > 0.95
    p = model.predict_table(valid)
    assert auc(valid["label"].to_numpy(), p) == pytest.approx(model.fit_info["best_valid"])


def test_bad_head_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="head"):
        PointwiseConfig(head="xgboost")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="variant"):
        FMConfig(variant="ffm")  # type: ignore[arg-type]


def test_table_l2_shrinks_rows_no_batch_uses() -> None:
    """``emb_l2_scope="table"`` penalises whole tables (FuxiCTR's embedding_regularizer): rows that no
    training instance touches (the unknown-user row 0) decay too; the batch scope leaves them alone."""
    data = context_dataset(n_users=10)

    def unused_row_norm(scope: str) -> float:
        cfg = tiny(use_history=False, use_text=False, init_std=0.5, emb_l2=0.05, emb_l2_scope=scope,
                   train=TrainConfig(max_epochs=3, lr=5e-2, batch_size=64, progress=False))
        model = PointwiseRecommender(cfg).fit(data)
        assert model.net is not None and model.net.user_emb is not None
        return float(model.net.user_emb.weight[0].detach().norm())

    assert unused_row_norm("table") < 0.5 * unused_row_norm("batch")
    with pytest.raises(ConfigError, match="emb_l2_scope"):
        tiny(emb_l2_scope="rows")


def test_history_match_field_counts_the_candidate_in_the_history() -> None:
    """The catalogue path (scatter counts) and the pair path (equality counts) give the same logits."""
    model = PointwiseRecommender(tiny(history_match=True, history_pooling="target",
                                      train=TrainConfig(max_epochs=1, progress=False)))
    model.fit(context_dataset(n_users=10))
    net = model.net
    assert net is not None and net.match_emb is not None
    hist = torch.tensor([[0, 3, 3, 5], [1, 1, 1, 1]])
    q = {"users": torch.tensor([1, 2]), "hist": hist, "prof": torch.zeros(2, 0, dtype=torch.long),
         "ci": torch.zeros(2, len(net.ctx_emb), dtype=torch.long), "cd": torch.zeros(2, net.spec.n_dense)}
    net.eval()
    with torch.no_grad():
        full = net.all_logits(q)  # (2, V); column j = item j + 1
        for item in (1, 3, 5, 7):
            pair = net.pair_logits(q, torch.tensor([item, item]))
            torch.testing.assert_close(pair, full[:, item - 1], rtol=1e-5, atol=1e-5)
        counts = torch.tensor([[0, 2, 1, 0], [4, 0, 0, 0]])  # items 1, 3, 5, 7
        edges = torch.tensor([1, 2, 3, 5, 10])
        assert torch.bucketize(counts, edges, right=True).tolist() == [[0, 2, 1, 0], [3, 0, 0, 0]]


def test_reading_data_with_another_models_encoders_is_refused_not_ignored() -> None:
    """``fit(encoders_from=...)`` is a fusion/sasrec ability (``ctxrec retrain``); a pointwise model grows its
    user table with new users, so it says so instead of silently fitting its own encoders."""
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.errors import UnsupportedError

    data = simulate(SimulatorConfig(n_users=10, n_items=8, n_genres=2, events_per_user=4, seed=0))
    with pytest.raises(UnsupportedError, match="cannot read data with the encoders"):
        PointwiseRecommender(tiny()).fit(data, encoders_from=PointwiseRecommender(tiny()))


@pytest.mark.parametrize("kind", ["pointwise", "fm"])
def test_length_pool_is_refused_where_there_are_no_sequences(kind: str) -> None:
    """train.length_pool batches sequences by length; these models train on single events, so a value other
    than 1 would be silently ignored: it is an error naming the field, before any data loads."""
    from ctxrec.config import apply_overrides
    from ctxrec.models import build_model

    with pytest.raises(ConfigError, match=r"train\.length_pool=16 groups training sequences"):
        build_model(kind, apply_overrides({}, ["train.length_pool=16"]))
