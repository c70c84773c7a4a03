"""The model registry: every kind resolves, and every kind has a contract test class.

A new model is "done" only when tests/models/test_<something>.py has a ``Test*`` class that inherits
:class:`contract.RecommenderContract` and builds that kind; this file fails until it does.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from functools import cache
from pathlib import Path

import pytest
from contract import RecommenderContract

from ctxrec.config import from_dict, to_dict
from ctxrec.errors import ConfigError
from ctxrec.models import MODELS, build_model, get_model_class, load_model
from ctxrec.models.base import Recommender

HERE = Path(__file__).parent
KINDS = sorted(MODELS)


@cache
def contract_classes() -> tuple[dict[str, list[str]], dict[str, str]]:
    """``kind -> ["module.Class", ...]`` over tests/models/test_*.py, and ``module -> import error``."""
    found: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for path in sorted(HERE.glob("test_*.py")):
        name = path.stem
        try:
            module = sys.modules.get(name) or importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 -- report, so one broken module does not hide the others' classes
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        for obj in list(vars(module).values()):
            if not (isinstance(obj, type) and issubclass(obj, RecommenderContract)):
                continue
            if obj is RecommenderContract or not obj.__name__.startswith("Test"):
                continue  # pytest only collects Test* classes
            if obj.make_model is RecommenderContract.make_model:
                errors[f"{name}.{obj.__name__}"] = "does not define make_model()"
                continue
            try:
                kind = type(obj().make_model()).kind
            except Exception as exc:  # noqa: BLE001 -- report every class that fails, not only the first
                errors[f"{name}.{obj.__name__}"] = f"make_model() failed: {type(exc).__name__}: {exc}"
                continue
            found.setdefault(kind, []).append(f"{name}.{obj.__name__}")
    return found, errors


@pytest.mark.parametrize("kind", KINDS)
def test_kind_imports_and_matches_its_key(kind: str) -> None:
    cls = get_model_class(kind)
    assert issubclass(cls, Recommender)
    assert cls.kind == kind, f"MODELS[{kind!r}] is {cls.__name__}, whose kind is {cls.kind!r}"
    cfg_cls = cls.config_class
    assert dataclasses.is_dataclass(cfg_cls), f"{cls.__name__}.config_class must be a dataclass"
    params = cfg_cls.__dataclass_params__  # type: ignore[attr-defined]
    assert params.frozen, f"{cfg_cls.__name__} must be frozen"
    assert all(f.kw_only for f in dataclasses.fields(cfg_cls)), f"{cfg_cls.__name__} must be kw_only"
    default = cfg_cls()
    assert from_dict(cfg_cls, json.loads(json.dumps(to_dict(default)))) == default
    model = build_model(kind)
    assert type(model) is cls and model.config == default and not model.is_fitted


@pytest.mark.parametrize("kind", KINDS)
def test_kind_has_a_contract_test_class(kind: str) -> None:
    found, errors = contract_classes()
    assert kind in found, (
        f"model kind {kind!r} is registered in ctxrec.models.MODELS but no Test* class in "
        f"tests/models/test_*.py inherits RecommenderContract and builds it; add one "
        f"(see tests/models/contract.py). Problems while looking: {errors or 'none'}"
    )


def test_contract_classes_build_registered_kinds() -> None:
    found, _ = contract_classes()
    unknown = {k: v for k, v in found.items() if k not in MODELS}
    assert not unknown, f"contract test classes build unregistered kinds: {unknown}"


def test_contract_finder_sees_this_packages_models() -> None:
    found, _ = contract_classes()
    assert "test_popularity.TestPopularityContract" in found.get("popularity", [])
    assert "test_ease.TestEASEContract" in found.get("ease", [])


def test_unknown_kind_and_config_key_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown model kind 'nope'.*popularity"):
        get_model_class("nope")
    with pytest.raises(ConfigError, match="no_such_key"):
        build_model("popularity", {"no_such_key": 1})
    with pytest.raises(FileNotFoundError, match=r"no config.json"):
        load_model(tmp_path)
