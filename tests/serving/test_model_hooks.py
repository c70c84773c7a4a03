"""Model-side serving hooks: add_items (fusion encodes text; ID-only models refuse) and the dot-product form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.errors import UnsupportedError
from ctxrec.models import load_model
from ctxrec.models.base import RecQuery
from ctxrec.models.fusion import FusionConfig, FusionRecommender
from ctxrec.models.sasrec import SASRecConfig, SASRecRecommender
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig


@pytest.fixture(scope="module")
def sim_data():  # type: ignore[no-untyped-def]
    return simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1))


@pytest.fixture(scope="module")
def fusion(sim_data) -> FusionRecommender:  # type: ignore[no-untyped-def]
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=8, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                       train=TrainConfig(max_epochs=2, lr=1e-2, progress=False))
    return FusionRecommender(cfg).fit(sim_data)


def test_fusion_add_items_makes_new_items_recommendable(fusion: FusionRecommender, sim_data, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = fusion.n_items
    row = sim_data.items.iloc[0]
    new = pd.DataFrame([{**row.to_dict(), "item_id": "new-1", "title": "brand new " + str(row.get("title", ""))}])
    idx = fusion.add_items(new)
    assert idx.tolist() == [n] and fusion.n_items == n + 1
    assert float(fusion.net.has_id[n + 1, 0]) == 0.0  # type: ignore[union-attr]
    assert fusion.net.text_vectors[n + 1].abs().sum() > 0  # type: ignore[union-attr]
    rec = fusion.recommend([RecQuery(context={"device": "tv"})], k=3, candidates=["new-1", sim_data.item_vocab.ids[1]])[0]
    assert "new-1" in rec.item_ids and np.isfinite(rec.scores).all()
    again = fusion.add_items(new)  # re-adding updates in place
    assert again.tolist() == [n] and fusion.n_items == n + 1
    fusion.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.n_items == n + 1
    a = fusion.recommend([RecQuery(history=["new-1"])], k=5, exclude_seen=False)[0]
    b = loaded.recommend([RecQuery(history=["new-1"])], k=5, exclude_seen=False)[0]
    assert a.item_ids == b.item_ids


def test_id_only_model_refuses_add_items_clearly(sim_data) -> None:  # type: ignore[no-untyped-def]
    m = SASRecRecommender(SASRecConfig(d_model=8, n_layers=1, max_len=8, train=TrainConfig(max_epochs=1, progress=False)))
    m.fit(sim_data)
    with pytest.raises(UnsupportedError, match="cannot recommend items added after training"):
        m.add_items(pd.DataFrame({"item_id": ["x"]}))
    q = m.encode_queries([RecQuery(history=sim_data.item_vocab.ids[:3])])
    scores = m.user_embeddings(q) @ m.item_embeddings().T
    np.testing.assert_allclose(scores, m.score(q), rtol=1e-4, atol=1e-5)
