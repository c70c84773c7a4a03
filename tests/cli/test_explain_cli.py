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


def test_the_request_time_is_now_by_default_and_can_be_given_or_left_unknown(model_dir: tuple[Path, str]) -> None:
    """The CLI scores a request as the service does: at the current time unless --time says otherwise."""
    import json
    import time

    path, user = model_dir

    def ask(*extra: str) -> dict:
        res = CliRunner().invoke(app, ["recommend", str(path), "--user", user, "-c", "device=tv", "-k", "3",
                                       "--explain", "--json", *extra])
        assert res.exit_code == 0, res.output
        return json.loads(res.output)

    now = ask()
    assert abs(now["request_time"] - time.time()) < 60 and "time" in now["explanation"]["context_attribution"]
    given = ask("--time", "2026-12-06T08:30")
    assert given["request_time"] == 1796545800.0 and "time" in given["explanation"]["context_attribution"]
    assert ask("--time", "1796545800")["request_time"] == 1796545800.0
    assert ask("--time", "2026-12-06T09:30+01:00")["request_time"] == 1796545800.0
    unknown = ask("--time", "none")
    assert unknown["request_time"] is None and "time" not in unknown["explanation"]["context_attribution"]
    # one field sent and time: both removed at once is its own figure
    assert isinstance(given["explanation"]["context_all_fields"], float)


@pytest.mark.parametrize(("value", "message"), [("teatime", "is not 'now', 'none', unix seconds or an ISO date-time"),
                                                ("-5", "outside the plausible range"), ("1e308", "outside the plausible range"),
                                                ("nan", "outside the plausible range")])
def test_a_bad_time_is_one_line_naming_it(model_dir: tuple[Path, str], value: str, message: str) -> None:
    path, user = model_dir
    res = CliRunner().invoke(app, ["recommend", str(path), "--user", user, "--time", value])
    assert res.exit_code == 2 and message in res.output and value in res.output, res.output
