"""Item and user text from table fields, rendered column-wise (no per-row pandas objects).

The default format is ``"title: Kettle; genres: kitchen, tea; brand: Acme"``: one ``field: value``
piece per non-empty field, list-valued fields joined with ``", "``. A template string with
``{field}`` placeholders (``"{title} by {brand}"``) overrides it; a placeholder that names no column
is an error naming the field and the available columns.

Value formatting (same for both forms): ``None``/NaN/NA/NaT and empty lists become ``""`` (and the
default form skips the field); whitespace is stripped; integral floats print without ``.0``
(``1995.0`` -> ``"1995"``, since a column with missing years is float); list, tuple and array
values (parquet list columns) are joined with ``list_sep``, dropping missing elements.
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "TextTables",
    "TextTemplateConfig",
    "format_column",
    "item_texts",
    "render_item_texts",
    "render_texts",
    "render_user_texts",
    "user_texts",
]


@dataclass(frozen=True, kw_only=True)
class TextTemplateConfig:
    """How item (or user) text is built from table fields."""

    fields: tuple[str, ...] | None = None
    """Fields of the default ``"field: value; ..."`` form; None = the dataset schema's text fields."""
    template: str | None = None
    """A ``str.format`` template with ``{field}`` placeholders; overrides ``fields`` when set."""
    sep: str = "; "
    """Between ``field: value`` pieces of the default form."""
    list_sep: str = ", "
    """Between the elements of a list-valued field."""


# ---------------------------------------------------------------------------------------- values
def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float):
        return math.isnan(v)
    try:
        import pandas as pd

        return v is pd.NA or v is pd.NaT
    except ImportError:  # pragma: no cover
        return False


def _fmt_scalar(v: Any) -> str:
    if _is_missing(v):
        return ""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f.is_integer() and abs(f) < 1e15:
            return str(int(f))
        return str(f)
    return str(v).strip()


def _fmt_value(v: Any, list_sep: str) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        parts = (_fmt_scalar(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v))
        return list_sep.join(p for p in parts if p)
    return _fmt_scalar(v)


def format_column(values: pd.Series, *, list_sep: str = ", ") -> np.ndarray:
    """One formatted string per value of ``values``: object array of ``str`` (``""`` for missing).

    Typed columns (strings, integers, floats, categories) are formatted with array operations;
    only mixed ``object`` columns (lists, mixed types) fall back to a per-value comprehension.
    """
    import pandas as pd

    s = values
    n = len(s)
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype):
        cats = format_column(pd.Series(dt.categories), list_sep=list_sep)
        codes = s.cat.codes.to_numpy()
        out = np.where(codes >= 0, cats[np.clip(codes, 0, None)] if len(cats) else "", "")
        return out.astype(object)
    if pd.api.types.is_bool_dtype(dt) or pd.api.types.is_integer_dtype(dt):
        return s.astype("string").fillna("").to_numpy(dtype=object)
    if pd.api.types.is_float_dtype(dt):
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
        out = np.full(n, "", dtype=object)
        ok = ~np.isnan(arr)
        integral = ok & np.isfinite(arr) & (np.abs(arr) < 1e15)
        integral[integral] = arr[integral] == np.round(arr[integral])
        if integral.any():
            out[integral] = arr[integral].astype(np.int64).astype(str).astype(object)
        rest = ok & ~integral
        if rest.any():
            out[rest] = [str(x) for x in arr[rest].tolist()]
        return out
    if pd.api.types.is_datetime64_any_dtype(dt) or pd.api.types.is_timedelta64_dtype(dt):
        return s.astype("string").fillna("").to_numpy(dtype=object)
    if pd.api.types.is_string_dtype(dt) and pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        return s.astype("string").fillna("").str.strip().to_numpy(dtype=object)
    return np.array([_fmt_value(v, list_sep) for v in s.tolist()] if n else [], dtype=object)


# -------------------------------------------------------------------------------------- rendering
def _available(frame: pd.DataFrame) -> list[str]:
    names = [str(c) for c in frame.columns]
    if frame.index.name is not None and str(frame.index.name) not in names:
        names.append(str(frame.index.name))
    return names


def _column(frame: pd.DataFrame, name: str, list_sep: str, memo: dict[str, np.ndarray]) -> np.ndarray:
    import pandas as pd

    if name not in memo:
        if name in frame.columns:
            col = frame[name]
            if isinstance(col, pd.DataFrame):  # duplicated column label
                raise ConfigError(f"text field {name!r} names {col.shape[1]} columns; rename the duplicates")
        else:
            col = pd.Series(frame.index, index=frame.index)
        memo[name] = format_column(col, list_sep=list_sep)
    return memo[name]


def _parse_template(
    template: str, available: list[str], kind: str
) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(
            f"{kind} text template {template!r} is malformed: {exc} (write literal braces as {{{{ }}}})"
        ) from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ConfigError(
                f"{kind} text template {template!r} has a positional placeholder {{{field}}}; "
                f"name a field instead, one of: {', '.join(available)}"
            )
        if root not in available:
            raise ConfigError(
                f"{kind} text template {template!r} uses field {root!r}, which is not a column; "
                f"available: {', '.join(available) or '(none)'}"
            )
    return parsed


def render_texts(
    frame: pd.DataFrame,
    fields: Sequence[str] = (),
    template: str | None = None,
    *,
    sep: str = "; ",
    list_sep: str = ", ",
    missing: Literal["error", "skip"] = "error",
    kind: str = "item",
) -> list[str]:
    """One text per row of ``frame``, in row order.

    With ``template=None`` the default ``"field: value; ..."`` form over ``fields`` is used;
    ``missing="skip"`` drops fields that are not columns instead of raising (what
    :meth:`Dataset.item_text` does for schema fields that a catalogue lacks). The index name counts as
    a field too (e.g. ``{item_id}``).
    """
    n = len(frame)
    available = _available(frame)
    memo: dict[str, np.ndarray] = {}
    if template is not None:
        parsed = _parse_template(template, available, kind)
        simple = all(
            spec == "" and conv is None and (f is None or f in available) for _, f, spec, conv in parsed
        )
        if simple:
            out = np.full(n, "", dtype=object)
            for literal, f, _, _ in parsed:
                if literal:
                    out = out + literal
                if f is not None:
                    out = out + _column(frame, f, list_sep, memo)
            return out.tolist()
        # Format specs, conversions or attribute access: str.format per row on the formatted strings.
        roots = sorted({f.split(".", 1)[0].split("[", 1)[0] for _, f, _, _ in parsed if f is not None})
        cols = [_column(frame, r, list_sep, memo) for r in roots]
        try:
            return [
                template.format_map(dict(zip(roots, row, strict=True))) for row in zip(*cols, strict=True)
            ]
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            raise ConfigError(
                f"{kind} text template {template!r} cannot be applied to the field values: {exc}"
            ) from None

    wanted: list[str] = []
    for f in fields:
        if f in available:
            wanted.append(f)
        elif missing == "error":
            raise ConfigError(
                f"{kind} text field {f!r} is not a column; available: {', '.join(available) or '(none)'}"
            )
    out = np.full(n, "", dtype=object)
    for f in wanted:
        v = _column(frame, f, list_sep, memo)
        has = v != ""
        if not has.any():
            continue
        piece = np.where(has, f"{f}: " + v, "")
        out = np.where(out == "", piece, np.where(has, out + sep + piece, out))
    return out.tolist()


def render_item_texts(
    items: pd.DataFrame,
    fields: Sequence[str] = (),
    template: str | None = None,
    *,
    sep: str = "; ",
    list_sep: str = ", ",
    missing: Literal["error", "skip"] = "error",
) -> list[str]:
    """Item texts, one per row of ``items`` (see :func:`render_texts`)."""
    return render_texts(items, fields, template, sep=sep, list_sep=list_sep, missing=missing, kind="item")


def render_user_texts(
    users: pd.DataFrame,
    fields: Sequence[str] = (),
    template: str | None = None,
    *,
    sep: str = "; ",
    list_sep: str = ", ",
    missing: Literal["error", "skip"] = "error",
) -> list[str]:
    """User texts (profiles, review lists), one per row of ``users`` (see :func:`render_texts`)."""
    return render_texts(users, fields, template, sep=sep, list_sep=list_sep, missing=missing, kind="user")


# ---------------------------------------------------------------------------------- dataset views
class _Ids(Protocol):
    @property
    def ids(self) -> Sequence[str]: ...


class _TextSchema(Protocol):
    @property
    def item_text_fields(self) -> tuple[str, ...]: ...

    @property
    def user_text_fields(self) -> tuple[str, ...]: ...


class TextTables(Protocol):
    """What :func:`item_texts` and :func:`user_texts` read; a :class:`ctxrec.data.dataset.Dataset` is one.
    A protocol, so that this text layer needs nothing from the data layer above it."""

    @property
    def items(self) -> pd.DataFrame: ...

    @property
    def users(self) -> pd.DataFrame | None: ...

    @property
    def item_vocab(self) -> _Ids: ...

    @property
    def user_vocab(self) -> _Ids: ...

    @property
    def schema(self) -> _TextSchema: ...


def item_texts(dataset: TextTables, cfg: TextTemplateConfig | None = None) -> list[str]:
    """One text per catalogue item, aligned with ``dataset.item_vocab`` (dense item index order).

    Schema fields that the items table lacks are skipped; fields named in ``cfg.fields`` must exist.
    """
    cfg = cfg or TextTemplateConfig()
    items = dataset.items.reindex(dataset.item_vocab.ids)
    fields, missing = _fields(cfg, dataset.schema.item_text_fields)
    return render_texts(
        items, fields, cfg.template, sep=cfg.sep, list_sep=cfg.list_sep, missing=missing, kind="item"
    )


def user_texts(dataset: TextTables, cfg: TextTemplateConfig | None = None) -> list[str]:
    """One text per user, aligned with ``dataset.user_vocab``; users without a row get ``""``."""
    import pandas as pd

    cfg = cfg or TextTemplateConfig()
    ids = dataset.user_vocab.ids
    if dataset.users is None:
        users = pd.DataFrame(index=pd.Index(ids, name="user_id"))
    else:
        users = dataset.users.reindex(ids)
    fields, missing = _fields(cfg, dataset.schema.user_text_fields)
    return render_texts(
        users, fields, cfg.template, sep=cfg.sep, list_sep=cfg.list_sep, missing=missing, kind="user"
    )


def _fields(
    cfg: TextTemplateConfig, schema_fields: tuple[str, ...]
) -> tuple[tuple[str, ...], Literal["error", "skip"]]:
    if cfg.fields is None:
        return schema_fields, "skip"
    return cfg.fields, "error"
