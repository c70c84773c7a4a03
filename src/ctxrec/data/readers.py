"""Read your own interaction log with a declarative column mapping (TOML or JSON), no code needed.

A mapping file names the log file (CSV, TSV, Parquet or JSON Lines, optionally ``.gz``; any other
extension with ``format``), which of its columns hold the user, item, timestamp, event type, weight and
context, and optionally an items file and a users file with text and attribute fields. Paths in a
mapping file are relative to the mapping file. ``ctxrec data init FILE ...`` writes a first mapping by
inspecting the files (:mod:`ctxrec.data.infer`); see ``examples/mapping_example.toml``.

Bad input raises :class:`~ctxrec.errors.DataError` naming the file, the line (1-based, as an editor
shows it; Parquet files have no lines, so the 1-based row) and the column. Nothing is dropped
silently: every filter (duplicates, unknown items, missing timestamps) is logged and recorded in
``Dataset.notes`` with its count, the first line and the column.

Missing values: empty cells, and the tokens listed in ``na_values`` (per file, or per context column),
are missing (see :mod:`ctxrec.data.values`; an undeclared ``NULL``/``NA``/``-``/... is an error). A
missing categorical context value is stored as ``"<unk>"`` in ``Dataset.interactions`` (a missing
numeric one as NaN); the context encoder maps it to id 0, the unknown/missing id, so it is never a
category value of its own. Display titles: ``Dataset.items["title"]`` (:data:`TITLE_COLUMN`) holds the
items file's ``title_field``; models save it for the CLI and the service.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ctxrec.config import check_unknown_keys, from_dict, load_file
from ctxrec.data.dataset import Columns, ContextField, Dataset, DatasetSchema
from ctxrec.data.sources import FileFormat, Source
from ctxrec.data.values import (
    DEFAULT_MIN,
    NAMED_FORMATS,
    cells,
    default_bounds,
    fail,
    is_pattern,
    numbers,
    strings,
)
from ctxrec.data.values import timestamps as _timestamps
from ctxrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

_RESERVED = {Columns.USER, Columns.ITEM, Columns.TIME, Columns.EVENT, Columns.WEIGHT, Columns.ORDER}
TITLE_COLUMN = "title"
"""Column of ``Dataset.items`` that holds each item's display title (from the items file's ``title_field``)."""


# ------------------------------------------------------------------------------------ the mapping
@dataclass(frozen=True, kw_only=True)
class ContextColumn:
    """One context column of the log (time of day, device, location, ...)."""

    column: str
    """Column name in the interactions file."""
    kind: Literal["categorical", "numeric"] = "categorical"
    """Categorical: any value, missing = unknown. Numeric: a number or missing; anything else is an error."""
    name: str | None = None
    """Name in the dataset (default: ``column``)."""
    na_values: tuple[str, ...] | None = None
    """Missing-value tokens of this column, replacing the file's ``na_values`` for it (``[]``: none)."""

    @property
    def dataset_name(self) -> str:
        return self.name or self.column


@dataclass(frozen=True, kw_only=True)
class SideTable:
    """An items or users file: one row per id, with text and attribute fields."""

    path: str
    """Relative to the mapping file."""
    id_column: str
    text_fields: tuple[str, ...] = ()
    """Columns rendered into the entity's text (title, description, ...)."""
    attribute_fields: tuple[str, ...] = ()
    """Categorical columns; with ``list_separator`` each value is split into a list (e.g. genres)."""
    list_separator: str | None = None
    """Splits string values of ``attribute_fields`` into lists, e.g. ``"|"`` for ``Action|Comedy``."""
    title_field: str | None = None
    """Items only: the column shown as each item's title (default: the text field named ``title``, else the
    first text field; it need not be a text field)."""
    na_values: tuple[str, ...] | None = None
    """Missing-value tokens of this file, e.g. ``["NULL", "-"]``; ``[]`` says it has none."""
    format: FileFormat = "auto"
    """``auto`` picks by extension (.csv, .tsv, .parquet, .jsonl, each optionally .gz); set it for any other."""
    delimiter: str | None = None
    """CSV/TSV field separator, when it is not ``,`` / tab (may be several characters, e.g. ``"::"``)."""
    encoding: str = "utf-8"


@dataclass(frozen=True, kw_only=True)
class ColumnMapping:
    """How the columns of your files map onto a ctxrec :class:`Dataset`."""

    interactions: str
    """Path of the interaction log, relative to the mapping file."""
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str | None = None
    """Without one, events are ordered only by the file (see ``order``) and temporal splits are unavailable."""
    timestamp_format: str = "unix_s"
    """``unix_s`` / ``unix_ms`` (numbers since 1970), ``iso`` (ISO-8601; naive ones are UTC), or a strptime
    pattern such as ``"%d/%m/%Y %H:%M:%S"`` (naive ones are UTC)."""
    timestamp_min: str = DEFAULT_MIN
    """Earliest plausible timestamp (an ISO date); earlier ones are errors (a unit mix-up, a typo)."""
    timestamp_max: str | None = None
    """Latest plausible timestamp (an ISO date); default one year from now."""
    require_timestamp: bool = True
    """Drop (and report) events whose timestamp is missing; ``false`` keeps them with an unknown time."""
    order: Literal["time", "file"] = "time"
    """``"file"``: the file lists each user's events in the order they happened, so leave-one-out may use it
    where timestamps are missing or equal. ``"time"``: it may not (it refuses; use ``split = "random"``)."""
    event_type_column: str | None = None
    weight_column: str | None = None
    """Numeric weight per event (rating, play count); default 1."""
    context: tuple[ContextColumn, ...] = ()
    na_values: tuple[str, ...] | None = None
    """Missing-value tokens of the interactions file, e.g. ``["NULL"]``; ``[]`` says it has none."""
    items: SideTable | None = None
    """Events whose item is not in the items file are dropped (and reported)."""
    users: SideTable | None = None
    dedupe: Literal["none", "exact", "user_item_first", "user_item_last"] = "exact"
    """``exact``: drop events identical in every mapped column; ``user_item_first/last``: keep one
    event per (user, item) pair; ``none``: keep everything."""
    repeat_consumption: bool | None = None
    """Whether users take items again (plays, re-orders, one item rated in several contexts): then items a
    user has are still recommended and evaluated. Default: true when, after ``dedupe``, some user has an
    item more than once (said in the notes), else false."""
    format: FileFormat = "auto"
    delimiter: str | None = None
    encoding: str = "utf-8"
    name: str | None = None
    """Dataset name (default: the mapping file's stem)."""

    def timestamp_bounds(self) -> tuple[float, float]:
        """``(timestamp_min, timestamp_max)`` in unix seconds."""
        _, hi = default_bounds()
        return (_parse_bound(self.timestamp_min, "timestamp_min"),
                hi if self.timestamp_max is None else _parse_bound(self.timestamp_max, "timestamp_max"))


def _parse_bound(value: str, key: str) -> float:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{key} = {value!r} is not an ISO date such as \"1990-01-01\"") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read and validate a TOML/JSON mapping file; unknown keys and bad values are :class:`ConfigError`."""
    data = load_file(path)
    try:
        return mapping_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"mapping file {str(path)!r}: {exc}") from None


def mapping_from_dict(data: dict[str, Any]) -> ColumnMapping:
    """Validate a mapping given as a dict (as parsed from TOML/JSON)."""
    check_unknown_keys(ColumnMapping, data, what="mapping")
    return _validate(from_dict(ColumnMapping, data))


def _validate(mapping: ColumnMapping) -> ColumnMapping:
    """Checks across fields (also for a :class:`ColumnMapping` built in Python)."""
    fmt = mapping.timestamp_format
    if fmt not in NAMED_FORMATS and not is_pattern(fmt):
        raise ConfigError(
            f"timestamp_format = {fmt!r} is neither one of {list(NAMED_FORMATS)} nor a strptime pattern; write "
            "dates as a pattern with % codes, e.g. \"%d/%m/%Y %H:%M:%S\" for 25/12/2023 18:30:00"
        )
    lo, hi = mapping.timestamp_bounds()
    if not lo < hi:
        raise ConfigError(f"timestamp_min ({mapping.timestamp_min}) must be before timestamp_max ({mapping.timestamp_max})")
    if mapping.users is not None and mapping.users.title_field is not None:
        raise ConfigError("title_field is for the items file (titles shown next to recommended items), not [users]")
    names = [c.dataset_name for c in mapping.context]
    clash = sorted(set(names) & _RESERVED)
    if clash:
        raise ConfigError(
            f"context column name(s) {clash} clash with ctxrec's own columns {sorted(_RESERVED)}; "
            "rename them with the context entry's `name` key"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"context names {dup} are listed more than once; give each a distinct `name`")
    return mapping


# ------------------------------------------------------------------------------------ the reader
def read_dataset(
    mapping: str | Path | ColumnMapping | dict[str, Any],
    *,
    name: str | None = None,
    base_dir: str | Path | None = None,
) -> Dataset:
    """Read a dataset described by a mapping file (TOML/JSON), a dict or a :class:`ColumnMapping`.

    Paths in the mapping resolve relative to the mapping file, or to ``base_dir`` (default: the
    current directory) when the mapping is given as an object.
    """
    if isinstance(mapping, (str, Path)):
        mpath = Path(mapping).expanduser()
        cfg = load_mapping(mpath)
        base = mpath.parent
        default_name = mpath.stem
    else:
        cfg = _validate(mapping if isinstance(mapping, ColumnMapping) else mapping_from_dict(mapping))
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        default_name = "custom"
    name = name or cfg.name or default_name
    notes: list[str] = []

    items = _read_side(base, cfg.items, Columns.ITEM, "item") if cfg.items else None
    users = _read_side(base, cfg.users, Columns.USER, "user") if cfg.users else None

    src = Source(base / cfg.interactions, cfg.format, cfg.delimiter, cfg.encoding)
    raw = src.read().reset_index(drop=True)
    needed = {cfg.user_column: "user id", cfg.item_column: "item id"}
    optional = (
        (cfg.timestamp_column, "timestamp"), (cfg.event_type_column, "event type"), (cfg.weight_column, "weight"),
    )
    needed.update({col: role for col, role in optional if col is not None})
    needed.update({c.column: f"{c.kind} context" for c in cfg.context})
    _require_columns(src, raw, needed)
    if raw.empty:
        raise DataError(src.no_records())

    import pandas as pd

    n = len(raw)
    na = cfg.na_values
    df = pd.DataFrame(index=pd.RangeIndex(n))
    for col, canon, role in ((cfg.user_column, Columns.USER, "user"), (cfg.item_column, Columns.ITEM, "item")):
        vals, missing = cells(src, raw[col], col, na)
        _fail_missing(src, vals, missing, col, f"{role} id", "every event needs one")
        df[canon] = vals
    df[Columns.ORDER] = np.arange(n, dtype=np.int64)  # original record position: error lines, tie-breaks

    keep = np.ones(n, dtype=bool)
    if cfg.timestamp_column is not None:
        col = cfg.timestamp_column
        secs, missing = _timestamps(src, raw[col], col, cfg.timestamp_format, na_values=na,
                                    bounds=cfg.timestamp_bounds())
        df[Columns.TIME] = secs
        if missing.any():
            at = src.where(int(np.flatnonzero(missing)[0]))
            if cfg.require_timestamp:
                keep &= ~missing
                _note(notes, f"dropped {int(missing.sum()):,} event(s) with a missing timestamp in column {col!r} "
                      f"of {src} (first at {at}); require_timestamp = true", drop=True)
            else:
                _note(notes, f"{int(missing.sum()):,} event(s) have no timestamp in column {col!r} of {src} "
                      f"(first at {at}); kept because require_timestamp = false, so events are "
                      "ordered by file position", drop=False)
    if cfg.event_type_column is not None:
        vals, missing = cells(src, raw[cfg.event_type_column], cfg.event_type_column, na)
        _fail_missing(src, vals, missing, cfg.event_type_column, "event type", "every event needs one")
        df[Columns.EVENT] = vals
    if cfg.weight_column is not None:
        df[Columns.WEIGHT] = numbers(src, raw[cfg.weight_column], cfg.weight_column, allow_empty=False, na_values=na)
    for c in cfg.context:
        s = raw[c.column]
        c_na = na if c.na_values is None else c.na_values
        if c.kind == "numeric":
            df[c.dataset_name] = numbers(src, s, c.column, allow_empty=True, na_values=c_na)
        else:
            vals, missing = cells(src, s, c.column, c_na)
            df[c.dataset_name] = vals.where(~missing, None)  # Dataset.from_frames stores None as "<unk>"

    if items is not None and cfg.items is not None:
        known = df[Columns.ITEM].isin(items.index).to_numpy()
        unknown = keep & ~known
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            example = f"{df[Columns.ITEM].iloc[first]!r} at {src}, {src.where(first)}, column {cfg.item_column!r}"
            _note(notes, f"dropped {int(unknown.sum()):,} event(s) whose item is not in the items file "
                  f"{str(base / cfg.items.path)!r} (first: {example})", drop=True)
        keep &= known

    df = df[keep]
    subset = [c for c in df.columns if c != Columns.ORDER]
    if cfg.dedupe != "none" and len(df):
        if cfg.dedupe == "exact":
            dup = df.duplicated(subset=subset, keep="first")
            why = "exact duplicate event(s) (identical in every mapped column; dedupe = \"exact\")"
        else:
            which = "first" if cfg.dedupe == "user_item_first" else "last"
            # "first"/"last" in event order: by time where known, then file order.
            by = [Columns.TIME, Columns.ORDER] if Columns.TIME in df else [Columns.ORDER]
            ordered = df.sort_values(by, kind="stable")
            dup = ordered.duplicated(subset=[Columns.USER, Columns.ITEM], keep=which).reindex(df.index)
            why = f"repeated (user, item) event(s), keeping the {which} (dedupe = {cfg.dedupe!r})"
        if dup.any():
            first = int(df.loc[dup.to_numpy(), Columns.ORDER].iloc[0])
            _note(notes, f"dropped {int(dup.sum()):,} {why} in {src} (first at {src.where(first)})", drop=True)
            df = df[~dup.to_numpy()]
    if df.empty:
        raise DataError(f"{src}: no events left after filtering: {'; '.join(notes)}")

    repeats = cfg.repeat_consumption
    if repeats is None:
        again = df.duplicated(subset=[Columns.USER, Columns.ITEM])
        repeats = bool(again.any())
        if repeats:  # else a held-out item the user had is excluded from the ranking: unreachable, scored 0
            _note(notes, f"{int(again.sum()):,} event(s) repeat a (user, item) pair of {src} "
                  f"({df.loc[again.to_numpy(), Columns.USER].nunique():,} users): repeat_consumption = true, so items "
                  "a user has stay in recommendations and evaluation; set repeat_consumption = false in the mapping to "
                  "leave them out, or dedupe = \"user_item_last\" to keep one event per pair", drop=False)

    if users is not None and cfg.users is not None:
        absent = ~df[Columns.USER].isin(users.index)
        if absent.any():
            _note(notes, f"{int(absent.sum()):,} event(s) have a user that is not in the users file "
                  f"{str(base / cfg.users.path)!r} (kept, without user fields)", drop=False)

    schema = DatasetSchema(
        context=tuple(ContextField(name=c.dataset_name, kind=c.kind) for c in cfg.context),
        item_text_fields=cfg.items.text_fields if cfg.items else (),
        item_attribute_fields=cfg.items.attribute_fields if cfg.items else (),
        user_text_fields=cfg.users.text_fields if cfg.users else (),
        user_attribute_fields=cfg.users.attribute_fields if cfg.users else (),
        has_timestamps=cfg.timestamp_column is not None,
        order=cfg.order,
        repeat_consumption=repeats,
    )
    return Dataset.from_frames(
        df.reset_index(drop=True), items=items, users=users, schema=schema, name=name, notes=tuple(notes),
    )


def _require_columns(src: Source, df: pd.DataFrame, needed: dict[str, str]) -> None:
    """``needed`` maps column name -> role (for the message)."""
    have = list(map(str, df.columns))
    for col, role in needed.items():
        if col not in df.columns:
            close = difflib.get_close_matches(col, have, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DataError(
                f"{src}, {src.header_line()}, column {col!r} ({role}): no such column; {hint}the file has columns "
                f"{have} - fix the column name in the mapping or the file"
            )


def _fail_missing(src: Source, text: pd.Series, missing: np.ndarray, column: str, what: str, why: str) -> None:
    fail(src, missing & (text == "").to_numpy(), column, f"empty {what}; {why}")
    fail(src, missing, column, f"missing {what} (a token listed in na_values); {why}:", text)


def _note(notes: list[str], text: str, *, drop: bool) -> None:
    notes.append(text)
    (logger.warning if drop else logger.info)("%s", text)


def _read_side(base: Path, spec: SideTable, canon: str, kind: str) -> pd.DataFrame:
    """An items/users table indexed by ``canon`` with the declared fields (and the items' display title as
    :data:`TITLE_COLUMN`); ids must be unique and non-empty."""
    import pandas as pd

    src = Source(base / spec.path, spec.format, spec.delimiter, spec.encoding)
    raw = src.read().reset_index(drop=True)
    fields = list(dict.fromkeys([*spec.text_fields, *spec.attribute_fields]))
    title = _title_source(spec, fields) if kind == "item" else None
    needed = {spec.id_column: f"{kind} id"}
    needed.update(dict.fromkeys(spec.text_fields, f"{kind} text field"))
    needed.update(dict.fromkeys(spec.attribute_fields, f"{kind} attribute field"))
    if title is not None:
        needed.setdefault(title, "title_field")
    _require_columns(src, raw, needed)
    if raw.empty:
        raise DataError(src.no_records())
    ids, missing = cells(src, raw[spec.id_column], spec.id_column, spec.na_values)
    _fail_missing(src, ids, missing, spec.id_column, f"{kind} id", f"every {kind} needs one")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise DataError(
            f"{src}, {src.where(row)}, column {spec.id_column!r}: {kind} id {ids.iloc[row]!r} is listed again "
            f"(first at {src.where(first)}); each {kind} needs exactly one row"
        )
    out = pd.DataFrame(index=pd.Index(ids.to_numpy(), name=canon))
    for f in fields:
        col = raw[f]
        is_list = col.dtype == object and col.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any()
        if not is_list:  # missing-value tokens of plain cells (JSONL / Parquet arrays are lists already)
            _, empty = cells(src, col, f, spec.na_values)
            col = col.where(~empty, None)
        if f in spec.attribute_fields and spec.list_separator is not None:
            out[f] = _split_lists(col, spec.list_separator).to_numpy()
        elif is_list:
            out[f] = _split_lists(col, None).to_numpy()
        else:
            vals, empty = strings(col)
            out[f] = vals.where(~empty, np.nan).to_numpy()
    if title is not None and title not in out.columns:
        vals, empty = cells(src, raw[title], title, spec.na_values)
        out[TITLE_COLUMN] = vals.where(~empty, np.nan).to_numpy()
    elif title is not None and title != TITLE_COLUMN:
        out[TITLE_COLUMN] = out[title].map(lambda v: ", ".join(v) if isinstance(v, list) else v)
    return out


def _title_source(spec: SideTable, fields: list[str]) -> str | None:
    """The items column shown as the title: ``title_field``, else a text field named ``title``, else the first."""
    title = spec.title_field
    if title is None:
        title = TITLE_COLUMN if TITLE_COLUMN in spec.text_fields else (spec.text_fields[0] if spec.text_fields else None)
    if title is not None and title != TITLE_COLUMN and TITLE_COLUMN in fields:
        raise ConfigError(
            f"items file {spec.path!r}: title_field = {title!r}, but the field {TITLE_COLUMN!r} is also declared and "
            f"the dataset shows titles from a column named {TITLE_COLUMN!r}; set title_field = {TITLE_COLUMN!r} "
            f"or leave {TITLE_COLUMN!r} out of text_fields/attribute_fields"
        )
    return title


def _split_lists(col: pd.Series, sep: str | None) -> pd.Series:
    """Each value as a list of non-empty stripped strings: strings split on ``sep``, list values kept,
    empty/missing -> ``[]``. Vectorised (explode + groupby), items files can be large."""
    import pandas as pd

    col = col.reset_index(drop=True)
    is_list = col.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).to_numpy() if col.dtype == object else None
    if is_list is not None and is_list.any():  # JSONL/Parquet arrays, maybe mixed with plain strings
        text, empty = strings(col.where(~is_list, None))
        scalar = text.where(~empty, None)
        scalar = scalar.str.split(sep) if sep is not None else scalar.map(lambda v: [v], na_action="ignore")
        parts = col.where(is_list, scalar)
    else:
        text, empty = strings(col)
        parts = text.where(~empty, None)
        parts = parts.str.split(sep) if sep is not None else parts.map(lambda v: [v], na_action="ignore")
    flat = parts.explode().dropna().astype(str).str.strip()
    flat = flat[flat != ""]
    grouped = flat.groupby(level=0, sort=True).agg(list)
    out = pd.Series([[] for _ in range(len(col))], dtype=object)
    out.iloc[grouped.index.to_numpy()] = grouped.to_numpy()
    return out


__all__ = ["ColumnMapping", "ContextColumn", "SideTable", "load_mapping", "mapping_from_dict", "read_dataset"]
