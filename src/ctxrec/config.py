"""Typed, frozen configs that round-trip through JSON and TOML.

Every component has one ``@dataclass(frozen=True, kw_only=True)`` config. ``from_dict`` validates
through pydantic, so unknown keys and wrong types are errors that name the key, and ``to_dict``
gives plain JSON values back. ``apply_overrides`` gives nanoGPT-style ``key=value`` overrides
without ``exec``.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from ctxrec.errors import ConfigError

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-JSON dict of a (nested) config dataclass; tuples become lists."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    return conv(cfg)


def _check_unknown(cls: type, data: Any, path: str) -> None:
    if not (dataclasses.is_dataclass(cls) and isinstance(data, dict)):
        return
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown config key {path}{key!r} for {cls.__name__}; known keys: {known}")
    hints = _type_hints(cls)
    for key, value in data.items():
        _check_nested(hints.get(key), value, f"{path}{key}.")


def _check_nested(tp: Any, value: Any, path: str) -> None:
    """Find dataclasses inside ``X | None``, ``tuple[X, ...]``, ``list[X]`` and ``dict[str, X]``
    hints too: pydantic silently drops unknown keys of stdlib dataclasses wherever they sit."""
    import types
    import typing

    if dataclasses.is_dataclass(tp):
        _check_unknown(tp, value, path)
        return
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        _check_nested(args[0], value, path)
    elif origin in (typing.Union, types.UnionType):
        n_dc = sum(dataclasses.is_dataclass(a) for a in args)
        for arm in args:  # with several dataclass arms the key set picks one; leave that to pydantic
            if n_dc == 1 or not dataclasses.is_dataclass(arm):
                _check_nested(arm, value, path)
    elif origin in (tuple, list) and isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            homogeneous = origin is list or (len(args) == 2 and args[1] is Ellipsis)
            elem = args[0] if homogeneous else (args[i] if i < len(args) else None)
            _check_nested(elem, v, f"{path}{i}.")
    elif origin is dict and isinstance(value, dict) and len(args) == 2:
        for k, v in value.items():
            _check_nested(args[1], v, f"{path}{k}.")


def _type_hints(cls: type) -> dict[str, Any]:
    import typing

    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict; unknown keys and wrong types raise :class:`ConfigError`."""
    import pydantic

    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} config must be a table/object, got {type(data).__name__}")
    _check_unknown(cls, data, "")
    try:
        return pydantic.TypeAdapter(cls).validate_python(data, strict=False)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"invalid {cls.__name__} config: {problems}") from None


def load_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML file into a dict, with an error that names the file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        if p.suffix == ".toml":
            return tomllib.loads(p.read_text())
        return json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot parse config file {str(p)!r}: {exc}") from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as JSON when they parse, else kept as strings)."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. train.lr=0.001)")
        key, raw = item.split("=", 1)
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
        node[parts[-1]] = value
    return out


def save_json(cfg: Any, path: str | Path) -> None:
    """Write a config dataclass as indented JSON."""
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")
