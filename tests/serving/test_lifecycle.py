"""ctxrec retrain: stored events folded into a new version from the current weights, evaluated on
held-out new events, promotion decided and recorded; CLI key creation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.data.dataset import Dataset
from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.models.base import RecQuery
from ctxrec.models.popularity import PopularityRecommender
from ctxrec.serving.lifecycle import evaluate_cases, retrain, should_promote
from ctxrec.serving.store import EventStore

ITEMS = [f"i{j:02d}" for j in range(12)]


def popularity_by(order: list[str]) -> PopularityRecommender:
    """A popularity model over ITEMS ranking them in ``order`` (the first item has 12 events, the
    next 11, ...): a model whose every ranking is known by hand."""
    rows = [{"user_id": f"u{n}", "item_id": item, "timestamp": 1.7e9 + n}
            for rank, item in enumerate(order) for n in range(len(order) - rank)]
    data = Dataset.from_frames(pd.DataFrame(rows), items=pd.DataFrame({"item_id": ITEMS}), name="by-hand")
    return PopularityRecommender().fit(data)


# Three held-out events: a new user's first event (i03), a user with history [i00] (next: i01), and one
# more new user's first event (i11).
CASES = [RecQuery(history=[]), RecQuery(history=["i00"]), RecQuery(history=[])]
TARGETS = ["i03", "i01", "i11"]


def test_held_out_events_are_scored_by_hand() -> None:
    """Popularity order i00, i01, ...: i03 ranks 4th (NDCG 1/log2 5), i01 first once i00 is seen
    (NDCG 1), i11 12th, outside the top 10 (NDCG 0)."""
    got = evaluate_cases(popularity_by(ITEMS), CASES, TARGETS)
    assert got["cases"] == 3
    assert got["hr@10"] == pytest.approx(2 / 3)
    assert got["ndcg@10"] == pytest.approx((1 / math.log2(5) + 1.0 + 0.0) / 3)


def test_promotion_rule_promotes_a_better_candidate_and_not_a_worse_one() -> None:
    """Current: the order above (NDCG@10 0.4769). Better candidate: i11 and i03 first (i01 then 3rd
    after i00 is seen): (1/log2 3 + 1/log2 4 + 1) / 3 = 0.8770. Worse: the reverse order, where i03
    ranks 9th, i01 11th and i11 first: (1/log2 10 + 0 + 1) / 3 = 0.4337."""
    current = evaluate_cases(popularity_by(ITEMS), CASES, TARGETS)
    better = evaluate_cases(popularity_by(["i11", "i03", *[i for i in ITEMS if i not in ("i11", "i03")]]), CASES, TARGETS)
    worse = evaluate_cases(popularity_by(ITEMS[::-1]), CASES, TARGETS)
    assert current["ndcg@10"] == pytest.approx(0.4769, abs=1e-4)
    assert better["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4) + 1.0) / 3)
    assert worse["ndcg@10"] == pytest.approx((1 / math.log2(10) + 0.0 + 1.0) / 3)
    assert should_promote(current, better)
    assert not should_promote(current, worse)
    assert should_promote(current, current)  # a tie keeps the newer model (it has folded in more events)
    # tolerance: a candidate up to `tolerance` below the current one is still promoted, not further
    gap = current["ndcg@10"] - worse["ndcg@10"]  # 0.0432
    assert should_promote(current, worse, tolerance=gap + 1e-9)
    assert not should_promote(current, worse, tolerance=gap - 1e-3)
    # no held-out events: nothing to compare, the candidate is promoted
    assert should_promote(current, {"hr@10": math.nan, "ndcg@10": math.nan, "cases": 0})


def test_retrain_folds_events_warm_start_and_records_the_decision(fusion_run: Path, tmp_path: Path) -> None:
    data = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1))
    store = EventStore(str(tmp_path / "s.sqlite"))
    rows = [(f"u{u:02d}", f"i{(u + j) % 40:02d}", "view", 1.9e9 + u * 100 + j, {"device": "tv"}) for u in range(20) for j in range(3)]
    rows.append(("brand-new", "i05", "view", 1.9e9, {}))
    rows.append(("brand-new", "zz-unknown", "view", 1.9e9 + 1, {}))
    rows.append(("u00", "added-1", "view", 1.9e9 - 1, {}))  # an item added through the API is in the catalogue
    store.add_events(rows)
    store.put_items([("added-1", {"title": "Koutain Deluxe", "genre": "genre_1"})])
    store.close()
    out = tmp_path / "fusion-v2"
    report = retrain(fusion_run, str(tmp_path / "s.sqlite"), out, epochs=1, data=data)
    assert report["training"] == "refit" or report["training"] == "warm-start"
    assert report["events_dropped_unknown_item"] == 1  # zz-unknown is in no catalogue
    assert report["held_out"] == 21 and report["candidate"]["cases"] == 21 and report["events_used"] == 62
    # the decision recorded is the promotion rule applied to the figures recorded beside it
    assert report["promoted"] is should_promote(report["current"], report["candidate"], report["tolerance"])
    assert report["current"]["cases"] == report["candidate"]["cases"] == 21
    saved = json.loads((out / "serving.json").read_text())
    assert saved["event_watermark"] == len(rows) and saved["version"] == report["version"]
    assert (out / "model" / "config.json").exists() and not (out / "checkpoints").exists()
    assert report["training"] == "warm-start"


def test_cli_new_key_prints_once_and_stores_only_the_hash(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    res = CliRunner().invoke(app, ["serve", "--model", "x", "--keys", str(keys), "--new-key", "web", "--scopes", "read,write"])
    assert res.exit_code == 0, res.output
    key = res.output.strip()
    assert key.startswith("ctx_") and key not in keys.read_text()
    assert json.loads(keys.read_text())["keys"][0]["scopes"] == ["read", "write"]
    res = CliRunner().invoke(app, ["serve", "--model", "x", "--keys", str(keys), "--new-key", "bad", "--scopes", "root"])
    assert res.exit_code == 2


def test_retrain_warm_starts_when_the_events_bring_what_training_never_saw(tmp_path: Path) -> None:
    """A fusion model trained on a log without timestamps (a survey, as DePaulMovie) and served events
    that carry timestamps, a context value and an event type it never saw. Before, the new version fitted
    its own encoders on the combined data: time features and a larger context vocabulary changed the
    weights' shapes, and retrain refit from scratch, without validation, for train.max_epochs (200 epochs,
    174 s, on DePaulMovie instead of 3). Now it reads them with the current encoders and warm-starts."""
    from dataclasses import replace

    from ctxrec.models import load_model
    from ctxrec.models.fusion import FusionConfig, FusionRecommender
    from ctxrec.text.encoders import TextEncoderConfig
    from ctxrec.training.loop import TrainConfig

    sim = simulate(SimulatorConfig(n_users=40, n_items=30, n_genres=3, events_per_user=8, seed=2))
    frame = sim.interactions.drop(columns=["timestamp", "_order"])
    frame["event_type"] = ["buy" if n % 2 else "view" for n in range(len(frame))]
    data = Dataset.from_frames(frame, items=sim.items, schema=replace(sim.schema, has_timestamps=False, order="file"),
                               name="survey")
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=16, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                       train=TrainConfig(max_epochs=2, lr=1e-2, progress=False, seed=2))
    current = FusionRecommender(cfg).fit(data)
    current.save(tmp_path / "run" / "model")
    assert not current.ctx_encoder.use_time
    store = EventStore(str(tmp_path / "s.sqlite"))
    store.add_events([(f"u{u:02d}", f"i{(u + j) % 30:02d}", "share" if j else "buy", 1.9e9 + 60 * j,
                       {"device": "watch" if j else "tv", "daypart": "evening"}) for u in range(10) for j in range(3)])
    store.close()
    report = retrain(tmp_path / "run", str(tmp_path / "s.sqlite"), tmp_path / "v2", epochs=1, data=data)
    assert report["training"] == "warm-start", report["training"]
    new = load_model(tmp_path / "v2")
    assert len(json.loads((tmp_path / "v2" / "history.json").read_text())) == 1  # the one epoch asked for
    assert new.ctx_encoder.to_dict() == current.ctx_encoder.to_dict() and new.event_types == current.event_types
    assert "watch" not in new.ctx_encoder.vocabs["device"]  # unknown to this version, as when served
