"""``use_text="auto"`` / ``mixture="auto"``: pilots on validation decide, and the fitted model is concrete."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from test_fusion import HASH, context_dataset

from ctxrec.data.dataset import Dataset, DatasetSchema
from ctxrec.data.splits import make_split
from ctxrec.errors import ConfigError
from ctxrec.models.fusion import FusionConfig, FusionRecommender
from ctxrec.models.fusion.auto import AUTO_MARGIN, COLD_SETTINGS, WARM_SETTINGS, choose
from ctxrec.training.loop import TrainConfig


def _cfg(**kw: object) -> FusionConfig:
    base: dict = {"d_model": 16, "n_layers": 1, "max_len": 8, "dropout": 0.0, "text": HASH, "auto_epochs": 2,
                  "train": TrainConfig(max_epochs=4, lr=1e-2, batch_size=16, progress=False)}
    return FusionConfig(**{**base, **kw})


def test_pilots_say_what_they_run_when_progress_is_on(capsys: pytest.CaptureFixture[str]) -> None:
    """A user's terminal stayed silent for minutes while the pilots trained (``ctxrec train`` on
    ml-latest-small): each pilot now says what it runs and what it scored."""
    sp = make_split(context_dataset(), "leave-one-out")
    FusionRecommender(_cfg(train=TrainConfig(max_epochs=1, lr=1e-2, batch_size=16, progress=True))).fit(
        sp.train, valid=sp.valid)
    err = capsys.readouterr().err
    assert "auto: pilot 1 of up to 3, 2 epochs with use_text=false, mixture=false (deciding use_text, mixture" in err
    assert err.count("auto: pilot 3: validation ndcg@10 ") == 1


def test_defaults_are_auto_and_bad_values_are_refused() -> None:
    cfg = FusionConfig()
    assert cfg.use_text == "auto" and cfg.mixture == "auto"
    with pytest.raises(ConfigError, match="mixture must be true, false or \"auto\""):
        FusionConfig(mixture="sometimes")  # type: ignore[arg-type]  # the wrong value under test
    with pytest.raises(ConfigError, match="fit it first"):
        _ = cfg.mixture_on


def test_pilots_on_validation_decide_and_the_fitted_model_is_concrete(tmp_path: Path) -> None:
    sp = make_split(context_dataset(), "leave-one-out")
    model = FusionRecommender(_cfg()).fit(sp.train, valid=sp.valid)
    auto = model.fit_info["auto"]
    assert auto["fields"] == ["use_text", "mixture"]
    pilots = auto["pilots"]
    # one field at a time, cheapest first: neither, then text, then the mixture on top of the text choice
    assert [(p["use_text"], p["mixture"]) for p in pilots[:2]] == [(False, False), (True, False)]
    def leads(a: dict, b: dict) -> bool:  # pilot a beats b by more than the margin
        return b["valid"] < a["valid"] - AUTO_MARGIN * abs(a["valid"])

    text = leads(pilots[1], pilots[0])
    assert (pilots[2]["use_text"], pilots[2]["mixture"]) == (text, True) and len(pilots) == 3
    kept = pilots[1] if text else pilots[0]
    mixture = leads(pilots[2], kept)
    assert auto["chosen"] == {"use_text": text, "mixture": mixture}
    assert auto["margin"] == AUTO_MARGIN
    assert model.config.use_text is auto["chosen"]["use_text"] and model.config.mixture is auto["chosen"]["mixture"]
    assert model.fit_info["epochs_run"] == 4  # the full run after the pilots, not a pilot
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert isinstance(saved["config"]["use_text"], bool) and isinstance(saved["config"]["mixture"], bool)
    again = FusionRecommender.load(tmp_path / "m")
    assert again.config.mixture == model.config.mixture and again.config.use_text == model.config.use_text


def test_a_costlier_pilot_must_lead_by_the_margin() -> None:
    # ml-100k's default-flags pilots (benchmarks/results/ml-100k/fusion-default.json), in cost order
    pilots = [{"use_text": False, "mixture": False, "valid": 0.034405}, {"use_text": True, "mixture": False, "valid": 0.057807},
              {"use_text": False, "mixture": True, "valid": 0.034757}, {"use_text": True, "mixture": True, "valid": 0.058005}]
    assert choose(pilots) == 1  # text without the mixture: the mixture's +0.3% is inside the 1% margin
    pilots[3]["valid"] = 0.0586  # +1.4%: now the mixture pays for itself
    assert choose(pilots) == 3
    assert choose([{"valid": 0.05}, {"valid": 0.05}]) == 0  # a tie goes to the cheaper


def test_no_item_text_means_no_text_pilot() -> None:
    frame = pd.DataFrame([{"user_id": f"u{u}", "item_id": f"i{(u + t) % 7}", "timestamp": float(t)}
                          for u in range(30) for t in range(8)])
    sp = make_split(Dataset.from_frames(frame, schema=DatasetSchema(), name="no-text"), "leave-one-out")
    model = FusionRecommender(_cfg(mixture=False)).fit(sp.train, valid=sp.valid)
    assert model.fit_info["auto"]["chosen"] == {"use_text": False}
    assert model.fit_info["auto"]["pilots"] == []
    assert model.config.use_text is False


def test_without_validation_auto_takes_true_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ctxrec.models.fusion.auto"):
        model = FusionRecommender(_cfg(train=TrainConfig(max_epochs=1, progress=False))).fit(context_dataset())
    assert model.config.use_text is True and model.config.mixture is True
    assert "decided on validation cases" in caplog.text and "use_text=auto" in caplog.text


def test_a_time_budget_bounds_pilots_and_full_run_together() -> None:
    sp = make_split(context_dataset(), "leave-one-out")
    cfg = _cfg(train=TrainConfig(max_epochs=4, lr=1e-2, batch_size=16, progress=False, max_seconds=400.0))
    model = FusionRecommender(cfg).fit(sp.train, valid=sp.valid)
    auto = model.fit_info["auto"]
    # the full run gets the budget less what the pilots spent (each pilot had a quarter of it / 4)
    assert model.config.train.max_seconds == pytest.approx(400.0 - auto["seconds"], abs=0.01)
    assert all(p["stopped_by"] == "max_epochs" for p in auto["pilots"])  # 100 s each is plenty here


def _catalogue(cold_items: int) -> Dataset:
    """30 users over items i0-i6, plus ``cold_items`` catalogue items with text and no events."""
    frame = pd.DataFrame([{"user_id": f"u{u}", "item_id": f"i{(u + t) % 7}", "timestamp": float(t)}
                          for u in range(30) for t in range(8)])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(7 + cold_items)],
                          "title": [f"item number {k}" for k in range(7 + cold_items)]})
    return Dataset.from_frames(frame, items=items, schema=DatasetSchema(item_text_fields=("title",)), name="catalogue")


@pytest.mark.parametrize(("cold_items", "want"), [(0, WARM_SETTINGS), (2, COLD_SETTINGS)])
def test_cold_start_settings_follow_the_catalogues_items_without_events(cold_items: int, want: dict,
                                                                        tmp_path: Path) -> None:
    """``id_dropout``, ``temperature`` and ``cold_ids`` ``"auto"`` (the defaults): the cold-start settings where
    items must be ranked from their content (2 of 9 items without events), the warm ones where every item has
    events; the fitted and the saved model are concrete."""
    defaults = FusionConfig()
    assert (defaults.id_dropout, defaults.temperature, defaults.cold_ids) == ("auto", "auto", "auto")
    assert COLD_SETTINGS == {"id_dropout": 0.8, "temperature": 0.07, "cold_ids": "neighbours"}
    model = FusionRecommender(_cfg(use_text=True, mixture=False)).fit(_catalogue(cold_items))
    assert {k: getattr(model.config, k) for k in want} == want
    report = model.fit_info["auto"]["cold_start"]
    assert {k: report[k] for k in want} == want
    assert report["cold_items"] == cold_items and report["catalogue"] == 7 + cold_items
    assert f"{cold_items} of {7 + cold_items} catalogue items" in report["why"]
    model.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert {k: saved[k] for k in want} == want
    loaded = FusionRecommender.load(tmp_path / "m")
    assert (loaded.config.id_dropout_value, loaded.config.temperature_value) == (want["id_dropout"], want["temperature"])
    assert loaded.recommend(["u1"], k=5)[0].item_ids == model.recommend(["u1"], k=5)[0].item_ids


def test_a_cold_start_setting_given_is_kept() -> None:
    """Only the fields left at "auto" are decided: a user's value is never overridden."""
    model = FusionRecommender(_cfg(use_text=True, mixture=False, temperature=None)).fit(_catalogue(2))
    assert (model.config.id_dropout, model.config.temperature, model.config.cold_ids) == (0.8, None, "neighbours")
    assert "temperature" not in model.fit_info["auto"]["cold_start"]


def test_cold_items_take_text_without_a_pilot_and_neighbours_need_text() -> None:
    """With cold items, ``use_text="auto"`` is true without a pilot (validation targets are nearly all warm,
    and the cold items have nothing but their content); with text switched off the neighbours, found by
    text, cannot work, so ``cold_ids`` is "none" and the report says why."""
    sp = make_split(_catalogue(2), "leave-one-out")
    model = FusionRecommender(_cfg(mixture=False)).fit(sp.train, valid=sp.valid)
    cold = model.fit_info["auto"]["cold_start"]
    assert model.config.use_text is True and cold["use_text"] is True and model.fit_info["auto"]["pilots"] == []
    assert "use_text=true: the cold items' text" in cold["why"] and model.config.cold_ids == "neighbours"
    no_text = FusionRecommender(_cfg(use_text=False, mixture=False)).fit(_catalogue(2))
    assert no_text.config.cold_ids == "none"
    assert "cold_ids=none: neighbours are found by item text, and use_text is false" in no_text.fit_info["auto"]["cold_start"]["why"]


def test_above_the_training_neighbour_limit_dropped_ids_train_as_none_and_the_report_says_so(monkeypatch) -> None:
    """The all-items neighbour search of training is skipped on a huge catalogue; that is said, not silent."""
    from ctxrec.models.fusion import net

    cfg = _cfg(use_text=True, mixture=False, train=TrainConfig(max_epochs=1, progress=False))
    small = FusionRecommender(cfg).fit(_catalogue(2))
    assert "trains as none" not in small.fit_info["auto"]["cold_start"]["why"]
    assert small.net is not None and small.net._nb_cache.get(True) is not None  # trained with neighbours
    monkeypatch.setattr(net, "TRAIN_NEIGHBOURS_MAX_ITEMS", 5)
    big = FusionRecommender(cfg).fit(_catalogue(2))
    assert "above 5 items a dropped ID part trains as none" in big.fit_info["auto"]["cold_start"]["why"]
    assert big.net is not None and big.net._nb_cache.get(True) is None and big.config.cold_ids == "neighbours"


def test_cold_ids_auto_cannot_be_set_on_a_fitted_model() -> None:
    model = FusionRecommender(_cfg(use_text=True, mixture=False)).fit(_catalogue(0))
    with pytest.raises(ConfigError, match=r'cold_ids="auto" is decided .* set "none" or "neighbours"'):
        model.set_inference(cold_ids="auto")
    model.set_inference(cold_ids="neighbours")
    assert model.config.cold_ids == "neighbours"


@pytest.mark.parametrize(("field", "bad", "message"), [
    *[("id_dropout", b, 'id_dropout must be in \\[0, 1\\) or "auto"') for b in ("sometimes", 1.0, -0.1, True)],
    *[("temperature", b, 'temperature must be > 0 .* or "auto"') for b in (0, -0.1, "hot", True)],
])
def test_bad_cold_start_values_are_refused(field: str, bad: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FusionConfig(**{field: bad})  # type: ignore[arg-type]  # the wrong value under test
    with pytest.raises(ConfigError, match="fit it first"):
        _ = getattr(FusionConfig(), f"{field}_value")


def test_one_view_takes_no_mixture_pilot() -> None:
    """Without context fields, timestamps or user fields the net has one view, where the mixture is one
    softmax: ``mixture="auto"`` is false without a pilot (a pilot would measure noise at 2x the cost) and
    the report says why; the text pilot still runs."""
    frame = pd.DataFrame([{"user_id": f"u{u}", "item_id": f"i{(u + t) % 7}"} for u in range(30) for t in range(8)])
    items = pd.DataFrame({"item_id": [f"i{k}" for k in range(7)], "title": [f"item number {k}" for k in range(7)]})
    data = Dataset.from_frames(frame, items=items, schema=DatasetSchema(item_text_fields=("title",)), name="one-view")
    sp = make_split(data, "leave-one-out")
    model = FusionRecommender(_cfg()).fit(sp.train, valid=sp.valid)
    auto = model.fit_info["auto"]
    assert model.fit_info["views"] == ["sequence"] and model.config.mixture is False
    assert [(p["use_text"], p["mixture"]) for p in auto["pilots"]] == [(False, False), (True, False)]
    assert "mixture: the model has one view" in auto["why"]
    ctx_split = make_split(context_dataset(), "leave-one-out")
    with_views = FusionRecommender(_cfg()).fit(ctx_split.train, valid=ctx_split.valid)
    assert len(with_views.fit_info["auto"]["pilots"]) == 3 and "why" not in with_views.fit_info["auto"]
