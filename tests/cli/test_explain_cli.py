"""`ctxrec recommend --explain` prints a readable table; `--explain-plot` writes bar charts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.models.fusion import FusionConfig, FusionRecommender
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.training.loop import TrainConfig


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = simulate(SimulatorConfig(n_users=40, n_items=30, events_per_user=8, seed=2))
    cfg = FusionConfig(d_model=16, n_layers=1, max_len=10, text=TextEncoderConfig(model="hashing:16"),
                       train=TrainConfig(max_epochs=2, progress=False))
    out = tmp_path_factory.mktemp("m") / "fusion"
    FusionRecommender(cfg).fit(data).save(out)
    return out, data.user_vocab.ids[3]


def test_explain_table_and_plot(model_dir: tuple[Path, str], tmp_path: Path) -> None:
    path, user = model_dir
    png = tmp_path / "why.png"
    res = CliRunner().invoke(app, ["recommend", str(path), "--user", user, "-c", "daypart=evening",
                                   "-c", "device=tv", "-k", "3", "--explain", "--explain-plot", str(png)])
    assert res.exit_code == 0, res.output
    for part in ("view weights", "request context", "daypart", "device", "past events", "explanation plot"):
        assert part in res.output, res.output
    assert png.read_bytes()[:4] == b"\x89PNG"
