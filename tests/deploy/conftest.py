"""Tiny models trained in seconds on the synthetic simulator, and their ONNX exports (shared per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxrec.data.dataset import Dataset
from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.models.fusion import FusionConfig, FusionRecommender
from ctxrec.models.sasrec import SASRecConfig, SASRecRecommender
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig

TRAIN = TrainConfig(max_epochs=3, lr=1e-2, batch_size=32, progress=False)


@pytest.fixture(scope="session")
def synth() -> Dataset:
    return simulate(SimulatorConfig(n_users=80, n_items=40, n_genres=4, events_per_user=10, seed=3))


@pytest.fixture(scope="session")
def sasrec(synth: Dataset) -> SASRecRecommender:
    cfg = SASRecConfig(d_model=16, n_layers=1, max_len=12, dropout=0.0, train=TRAIN)
    return SASRecRecommender(cfg).fit(synth)


@pytest.fixture(scope="session")
def fusion(synth: Dataset) -> FusionRecommender:
    """Text (hashing), attributes, per-event and request context (fields + time features): every input."""
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=8, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                       train=TRAIN)
    return FusionRecommender(cfg).fit(synth)


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory, sasrec: SASRecRecommender,
            fusion: FusionRecommender) -> dict[str, Path]:
    """Export folders: sasrec/fusion x fp32/int8."""
    from ctxrec.deploy.export import ExportConfig, export_model

    root = tmp_path_factory.mktemp("exports")
    out = {}
    for name, model in (("sasrec", sasrec), ("fusion", fusion)):
        for q in ("none", "int8"):
            d = root / f"{name}-{q}"
            export_model(model, d, ExportConfig(quantize=q))
            out[f"{name}-{q}"] = d
    return out
