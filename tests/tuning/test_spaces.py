"""Search spaces: the defaults fit their model configs, TOML edits apply, unknown keys are errors."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest

from ctxrec.errors import ConfigError
from ctxrec.tuning.spaces import DEFAULT_SPACES, Param, load_space, space_from_dict
from ctxrec.tuning.study import parse_duration


@pytest.mark.parametrize("kind", ["sasrec", "fusion", "pointwise", "ease"])
def test_default_spaces_fit_their_model_configs(kind: str) -> None:
    space, notes = load_space(kind)
    assert space.params and notes == []
    assert space is DEFAULT_SPACES[kind]


def test_toml_edits_one_field_adds_drops_and_fixes(tmp_path: Path) -> None:
    f = tmp_path / "space.toml"
    f.write_text('drop = ["mixture"]\n'
                 '[params."train.lr"]\nhigh = 3e-3\n'
                 '[params.n_heads]\nkind = "categorical"\nchoices = [1, 2]\n'
                 '[fixed]\n"train.max_epochs" = 7\n[fixed.train]\npatience = 2\n')
    space, _ = load_space("fusion", f)
    by_name = {p.name: p for p in space.params}
    assert "mixture" not in by_name and "n_heads" in by_name
    lr = by_name["train.lr"]
    assert (lr.low, lr.high, lr.log) == (1e-4, 3e-3, True)  # low and log kept from the default
    assert space.fixed == {"train.max_epochs": 7, "train.patience": 2}
    assert space.model_config({"d_model": 32}) == {"train": {"max_epochs": 7, "patience": 2}, "d_model": 32}


@pytest.mark.parametrize(("toml", "message"), [
    ("sampler = 'tpe'\n", "unknown search space key(s) ['sampler']"),
    ('[params.dropout]\nlow = 0.1\nhihg = 0.3\n', "unknown key(s) ['hihg'] in search space param 'dropout'"),
    ('[params.dropuot]\nkind = "float"\nlow = 0.1\nhigh = 0.3\n', "unknown config key 'dropuot'"),
    ('[params.new_thing]\nlow = 1\nhigh = 2\n', "is new: give its kind"),
    ('drop = ["nope"]\n', "drops 'nope', which is not searched"),
    ('[fixed]\n"train.lrr" = 0.1\n', "unknown config key train.'lrr' for TrainConfig"),
    ('[params.d_model]\nchoices = [32, "big"]\n', "d_model"),
])
def test_bad_space_files_are_rejected_with_the_bad_key(tmp_path: Path, toml: str, message: str) -> None:
    f = tmp_path / "space.toml"
    f.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_space("sasrec", f)


@pytest.mark.parametrize(("kw", "message"), [
    ({"kind": "float", "low": 2.0, "high": 1.0}, "low <= high"),
    ({"kind": "float", "low": 0.0, "high": 1.0, "log": True}, "log = true needs low > 0"),
    ({"kind": "categorical"}, "needs choices"),
    ({"kind": "categorical", "choices": (1, 2), "low": 1.0}, "takes only choices"),
    ({"kind": "int", "low": 1.5, "high": 3.0}, "whole low/high"),
    ({"kind": "float", "low": 0.0, "high": 1.0, "choices": (1,)}, "choices are for kind"),
    ({"kind": "uniform", "low": 0.0, "high": 1.0}, "kind must be"),
])
def test_param_validation(kw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Param(name="x", **kw)


def test_set_fixes_a_searched_param_and_says_so() -> None:
    space, notes = load_space("sasrec", overrides={"d_model": 16, "train.max_epochs": 2})
    assert "d_model" not in space.names()
    assert notes == ["d_model is fixed by --set to 16, so it is not searched"]
    assert space.fixed == {"d_model": 16, "train.max_epochs": 2}


def test_suggested_values_stay_in_range_and_are_reproducible() -> None:
    space = space_from_dict("sasrec", {})

    def draws(seed: int) -> list[dict]:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction="maximize")
        out = []
        for _ in range(20):
            trial = study.ask()
            out.append(space.suggest(trial))
            study.tell(trial, 0.0)
        return out

    a = draws(3)
    assert a == draws(3) and a != draws(4)
    for v in a:
        assert v["d_model"] in (32, 64, 128, 256) and 1 <= v["n_layers"] <= 3 and isinstance(v["n_layers"], int)
        assert 1e-4 <= v["train.lr"] <= 1e-2 and 0.0 <= v["dropout"] <= 0.5


@pytest.mark.parametrize(("text", "seconds"), [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("12.5", 12.5)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2d", "h", "1h-5m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_the_default_point_holds_each_default_inside_its_range() -> None:
    point, left = DEFAULT_SPACES["fusion"].default_point()
    assert left == ["use_text", "mixture"]  # "auto" is not one of the choices (True, False)
    assert point["d_model"] == 64 and point["max_len"] == 200 and point["train.batch_size"] == 128
    assert point["train.lr"] == 1e-3 and point["train.weight_decay"] == 0.0
    p = Param(name="dropout", kind="float", low=0.0, high=0.5)
    assert p.contains(0.2) and not p.contains(0.7) and not p.contains(True) and not p.contains("0.2")
    assert not Param(name="n_layers", kind="int", low=1, high=3).contains(1.5)
    assert not Param(name="use_text", kind="categorical", choices=(True, False)).contains(1)
