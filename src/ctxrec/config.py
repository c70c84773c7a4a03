"""Typed, frozen configs that round-trip through JSON and TOML.

Every component has one ``@dataclass(frozen=True, kw_only=True)`` config. ``from_dict`` validates
through pydantic, so unknown keys and wrong types are errors that name the key, and ``to_dict``
gives plain JSON values back. ``parse_kv`` is the one ``key=value`` parser (``--set`` overrides
through ``apply_overrides``, ``-c`` request context); ``check_unknown_keys`` the one unknown-key check.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from ctxrec.errors import ConfigError

T = TypeVar("T")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys: ``{"train": {"lr": 1}}`` and ``{"train.lr": 1}`` both become ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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


def check_unknown_keys(cls: type, data: Any, *, what: str = "config", path: str = "") -> None:
    """Raise :class:`ConfigError` for a key of ``data`` that is no field of the dataclass ``cls``, at every
    level: nested dataclasses, also inside ``X | None``, ``tuple[X, ...]``, ``list[X]`` and ``dict[str, X]``
    (pydantic silently drops unknown keys of stdlib dataclasses wherever they sit).

    The one unknown-key check of ctxrec (configs and mapping files); ``what`` names the kind of file in
    the message ("unknown mapping key context[0].'type' for ContextColumn; known keys: ...")."""
    if not (dataclasses.is_dataclass(cls) and isinstance(data, dict)):
        return
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown {what} key {path}{key!r} for {cls.__name__}; known keys: {known}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        _check_nested(hints.get(key), value, what, f"{path}{key}")


def _check_nested(tp: Any, value: Any, what: str, path: str) -> None:
    """Look for dataclasses inside the type hint ``tp`` of the value at ``path``."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        check_unknown_keys(tp, value, what=what, path=f"{path}.")
        return
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        _check_nested(args[0], value, what, path)
    elif origin in (typing.Union, types.UnionType):
        n_dc = sum(dataclasses.is_dataclass(a) for a in args)
        for arm in args:  # with several dataclass arms the key set picks one; leave that to pydantic
            if n_dc == 1 or not dataclasses.is_dataclass(arm):
                _check_nested(arm, value, what, path)
    elif origin in (tuple, list) and isinstance(value, (list, tuple)):
        homogeneous = origin is list or (len(args) == 2 and args[1] is Ellipsis)
        for i, v in enumerate(value):
            elem = args[0] if homogeneous else (args[i] if i < len(args) else None)
            _check_nested(elem, v, what, f"{path}[{i}]")
    elif origin is dict and isinstance(value, dict) and len(args) == 2:
        for k, v in value.items():
            _check_nested(args[1], v, what, f"{path}.{k}")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict; unknown keys and wrong types raise :class:`ConfigError`."""
    import pydantic

    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} config must be a table/object, got {type(data).__name__}")
    check_unknown_keys(cls, data)
    try:
        return pydantic.TypeAdapter(cls).validate_python(data, strict=False)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        if any(isinstance(e.get("input"), str) and e["input"].lower() == "none" for e in exc.errors()):
            problems += "; for no value write null (key=null on the command line, null in JSON; TOML has no null: use --set key=null)"
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


def parse_value(raw: str) -> Any:
    """A ``key=value`` value as a JSON scalar, list or table when it parses as one ("0.1", "true",
    "[8, 4]"), else the string itself ("mobile", "hello world")."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_kv(pairs: Sequence[str], *, what: str = "override", example: str = "train.lr=0.001",
             strings: bool = False) -> dict[str, Any]:
    """The one ``key=value`` parser (config overrides, request context): ``{key: value}`` in order.

    Values go through :func:`parse_value` unless ``strings`` is set, which keeps every value the
    string given (request context: "2" is a category name, not the number 2). Splits on the first
    ``=``; a pair without one is a :class:`ConfigError` naming it, ``what`` and ``example``."""
    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r} must look like key=value (e.g. {example})")
        out[key.strip()] = raw if strings else parse_value(raw)
    return out


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply dotted ``a.b=value`` overrides (nanoGPT style, without ``exec``) to a copy of ``data``;
    values as :func:`parse_kv` reads them. Later overrides of the same key win."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        ((key, value),) = parse_kv([item]).items()
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
        node[parts[-1]] = value
    return out


def save_json(cfg: Any, path: str | Path) -> None:
    """Write a config dataclass as indented JSON."""
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


# ------------------------------------------------------------------------------ documentation
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal right under a field) of a dataclass and its dataclass bases,
    each as one line. Shared by ``ctxrec config show`` and the docs site's config tables (docs/hooks.py)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0]
        assert isinstance(body, ast.ClassDef)
        for stmt, nxt in zip(body.body, body.body[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(nxt.value.value).split())
    return docs


def nested_configs(cls: type) -> dict[str, type]:
    """``field -> config dataclass`` for the fields of ``cls`` that hold one (train, text, context, ...)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        for t in (hints[f.name], *typing.get_args(hints[f.name])):
            if isinstance(t, type) and dataclasses.is_dataclass(t):
                out[f.name] = t
    return out


def describe_config(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted field, type, default, first sentence of its docstring)`` for every field of a config
    dataclass, nested configs expanded in place (the names ``--set`` takes)."""
    docs, nested = field_docs(cls), nested_configs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.name in nested:
            rows += describe_config(nested[f.name], f"{prefix}{f.name}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        type_ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        doc = docs.get(f.name, "")
        first = doc.split(". ")[0].rstrip(".") + "." if doc else ""
        rows.append((prefix + f.name, str(type_), default, first))
    return rows
