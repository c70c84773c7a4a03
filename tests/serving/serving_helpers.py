"""Helpers shared by the service tests (a module name no other test folder uses)."""

from __future__ import annotations

from pathlib import Path


def tiny_fusion_run(out: Path, *, seed: int = 1, epochs: int = 3) -> Path:
    from ctxrec.data.synthetic import SimulatorConfig, simulate
    from ctxrec.models.fusion import FusionConfig, FusionRecommender
    from ctxrec.text.encoders import TextEncoderConfig
    from ctxrec.training.loop import TrainConfig

    data = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=seed))
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=16, dropout=0.0, text=TextEncoderConfig(model="hashing:32"),
                       train=TrainConfig(max_epochs=epochs, lr=1e-2, progress=False, seed=seed))
    model = FusionRecommender(cfg).fit(data)
    model.save(out / "model")
    return out
