"""Config dicts: validation with errors that name the key, JSON/TOML round trips, overrides."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from ctxrec.config import (
    apply_overrides,
    check_unknown_keys,
    from_dict,
    load_file,
    parse_kv,
    save_json,
    to_dict,
)
from ctxrec.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine"] = "constant"


@dataclass(frozen=True, kw_only=True)
class Train:
    seed: int = 0
    name: str = "run"
    layers: tuple[int, ...] = (64, 32)
    shuffle: bool = True
    max_len: int | None = None
    optim: Optim = field(default_factory=Optim)


CUSTOM = Train(seed=3, name="big", layers=(128,), shuffle=False, max_len=50, optim=Optim(lr=0.01, schedule="cosine"))


def test_defaults_from_an_empty_dict() -> None:
    assert from_dict(Train, {}) == Train()


def test_to_dict_gives_plain_json_values() -> None:
    d = to_dict(CUSTOM)
    assert d == {
        "seed": 3,
        "name": "big",
        "layers": [128],
        "shuffle": False,
        "max_len": 50,
        "optim": {"lr": 0.01, "betas": [0.9, 0.999], "schedule": "cosine"},
    }
    assert json.loads(json.dumps(d)) == d


def test_dict_round_trip() -> None:
    assert from_dict(Train, to_dict(CUSTOM)) == CUSTOM
    assert from_dict(Train, to_dict(Train())) == Train()


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.json"
    save_json(CUSTOM, path)
    assert from_dict(Train, load_file(path)) == CUSTOM


def test_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text(
        'seed = 3\nname = "big"\nlayers = [128]\nshuffle = false\nmax_len = 50\n\n'
        '[optim]\nlr = 0.01\nbetas = [0.9, 0.999]\nschedule = "cosine"\n'
    )
    assert load_file(path) == to_dict(CUSTOM)
    assert from_dict(Train, load_file(path)) == CUSTOM


def test_partial_nested_table_keeps_other_defaults() -> None:
    cfg = from_dict(Train, {"optim": {"lr": 0.5}})
    assert cfg.optim == Optim(lr=0.5) and cfg.seed == 0


def test_unknown_keys_name_the_key() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'sede' for Train; known keys: layers, max_len, name"):
        from_dict(Train, {"sede": 1})
    with pytest.raises(ConfigError, match=r"unknown config key optim\.'learning_rate' for Optim.*lr"):
        from_dict(Train, {"optim": {"learning_rate": 1.0}})


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"seed": "three"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"name": 5}, "name"),
        ({"layers": ["a"]}, "layers.0"),
        ({"max_len": "long"}, "max_len"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"optim": {"schedule": "linear"}}, "optim.schedule"),
        ({"optim": {"betas": [0.9]}}, "optim.betas"),
        ({"optim": 3}, "optim"),
    ],
)
def test_wrong_types_name_the_key(data: dict, where: str) -> None:
    with pytest.raises(ConfigError, match=rf"invalid Train config: .*{where}") as exc:
        from_dict(Train, data)
    assert "got " in str(exc.value)


def test_non_dict_config_is_an_error() -> None:
    with pytest.raises(ConfigError, match="must be a table/object, got list"):
        from_dict(Train, [1, 2])  # type: ignore[arg-type]


def test_lax_numbers_are_accepted() -> None:
    cfg = from_dict(Train, {"seed": 2.0, "optim": {"lr": 1}})
    assert cfg.seed == 2 and isinstance(cfg.seed, int) and cfg.optim.lr == 1.0


def test_load_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"cannot parse config file .*bad.json"):
        load_file(bad)
    bad_toml = tmp_path / "bad.toml"
    bad_toml.write_text("a = = 1")
    with pytest.raises(ConfigError, match=r"cannot parse config file .*bad.toml"):
        load_file(bad_toml)


def test_apply_overrides() -> None:
    base = to_dict(Train())
    out = apply_overrides(
        base,
        ["seed=7", "name=hello world", "optim.lr=0.05", "layers=[8, 4]", "shuffle=false", "optim.schedule=cosine"],
    )
    assert base == to_dict(Train())  # the input is not modified
    cfg = from_dict(Train, out)
    assert cfg == Train(seed=7, name="hello world", layers=(8, 4), shuffle=False, optim=Optim(lr=0.05, schedule="cosine"))
    assert apply_overrides({}, ["a.b.c=1"]) == {"a": {"b": {"c": 1}}}
    assert apply_overrides({}, ["x=a=b"]) == {"x": "a=b"}  # split on the first '='
    assert apply_overrides({}, ["x="]) == {"x": ""}


def test_override_errors() -> None:
    with pytest.raises(ConfigError, match="'seed' must look like key=value"):
        apply_overrides({}, ["seed"])
    with pytest.raises(ConfigError, match="'seed' is not a table"):
        apply_overrides({"seed": 1}, ["seed.x=2"])
    with pytest.raises(ConfigError, match=r"unknown config key optim.'lrr'"):
        from_dict(Train, apply_overrides(to_dict(Train()), ["optim.lrr=0.1"]))
    with pytest.raises(ConfigError, match="override '=3' must look like key=value"):
        apply_overrides({}, ["=3"])


def test_parse_kv_types_values_unless_asked_for_strings() -> None:
    pairs = ["n=2", "x=0.5", "on=true", "off=null", "ids=[1, 2]", "device=mobile", "q=a=b", "empty="]
    assert parse_kv(pairs) == {"n": 2, "x": 0.5, "on": True, "off": None, "ids": [1, 2], "device": "mobile",
                               "q": "a=b", "empty": ""}
    # request context: "2" is a category name, "true" a value like any other
    assert parse_kv(pairs, strings=True) == {"n": "2", "x": "0.5", "on": "true", "off": "null", "ids": "[1, 2]",
                                             "device": "mobile", "q": "a=b", "empty": ""}
    assert parse_kv(["a=1", "a=2"]) == {"a": 2}  # the last one wins, as with overrides
    with pytest.raises(ConfigError, match=r"context 'mobile' must look like key=value \(e.g. device=mobile\)"):
        parse_kv(["mobile"], what="context", example="device=mobile", strings=True)


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    optional: Optim | None = None
    stages: tuple[Optim, ...] = ()
    named: dict[str, Optim] | None = None


def test_unknown_keys_inside_optional_tuple_and_dict_fields() -> None:
    # pydantic drops unknown keys of stdlib dataclasses silently; ctxrec must not.
    with pytest.raises(ConfigError, match=r"unknown config key optional\.'lrr' for Optim"):
        from_dict(Pipeline, {"optional": {"lrr": 1.0}})
    with pytest.raises(ConfigError, match=r"unknown config key stages\[1\]\.'momentum' for Optim"):
        from_dict(Pipeline, {"stages": [{"lr": 0.1}, {"momentum": 0.9}]})
    with pytest.raises(ConfigError, match=r"unknown config key named\.fast\.'b' for Optim"):
        from_dict(Pipeline, {"named": {"fast": {"b": 1}}})
    cfg = from_dict(Pipeline, {"optional": {"lr": 0.2}, "stages": [{"schedule": "cosine"}], "named": {"x": {}}})
    assert cfg == Pipeline(optional=Optim(lr=0.2), stages=(Optim(schedule="cosine"),), named={"x": Optim()})
    assert from_dict(Pipeline, to_dict(cfg)) == cfg
    assert from_dict(Pipeline, {"optional": None}) == Pipeline()


def test_check_unknown_keys_names_the_kind_of_file_and_the_path() -> None:
    with pytest.raises(ConfigError, match=r"unknown mapping key stages\[0\]\.'lrr' for Optim; known keys: betas, lr, schedule"):
        check_unknown_keys(Pipeline, {"stages": [{"lrr": 1}]}, what="mapping")
    check_unknown_keys(Pipeline, {"stages": [{"lr": 1}], "named": {"a": {"betas": [1, 2]}}})  # all known: no error


def test_none_spelled_as_a_word_gets_the_null_hint() -> None:
    """``--set temperature=none`` reaches the config as the string "none": the error says to write null."""
    from ctxrec.models.fusion import FusionConfig

    with pytest.raises(ConfigError, match="write null"):
        from_dict(FusionConfig, {"temperature": "none"})
    assert from_dict(FusionConfig, {"temperature": None}).temperature is None
