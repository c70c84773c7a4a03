"""Read your own interaction log with a declarative column mapping (TOML or JSON), no code needed.

A mapping file names the log file (CSV, TSV, Parquet or JSON Lines, optionally ``.gz``), which of
its columns hold the user, item, timestamp, event type, weight and context, and optionally an items
file and a users file with text and attribute fields. Paths in a mapping file are relative to the
mapping file. See ``examples/mapping_example.toml`` and ``docs/datasets.md``.

Bad input raises :class:`~ctxrec.errors.DataError` naming the file, the line (1-based, as an editor
shows it; Parquet files have no lines, so the 1-based row) and the column. Nothing is dropped
silently: every filter (duplicates, unknown items, missing timestamps) is logged and recorded in
``Dataset.notes`` with its count and reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ctxrec.config import check_unknown_keys, from_dict, load_file
from ctxrec.data.dataset import Columns, ContextField, Dataset, DatasetSchema
from ctxrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

FileFormat = Literal["auto", "csv", "tsv", "parquet", "jsonl"]
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_RESERVED = {Columns.USER, Columns.ITEM, Columns.TIME, Columns.EVENT, Columns.WEIGHT, Columns.ORDER}


# ------------------------------------------------------------------------------------ the mapping
@dataclass(frozen=True, kw_only=True)
class ContextColumn:
    """One context column of the log (time of day, device, location, ...)."""

    column: str
    """Column name in the interactions file."""
    kind: Literal["categorical", "numeric"] = "categorical"
    """Categorical: any value, empty = unknown. Numeric: a number or empty (missing); anything else is an error."""
    name: str | None = None
    """Name in the dataset (default: ``column``)."""

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
    format: FileFormat = "auto"
    """``auto`` picks by extension (.csv, .tsv, .parquet, .jsonl, each optionally .gz)."""
    delimiter: str | None = None
    """CSV/TSV field separator, when it is not ``,`` / tab."""
    encoding: str = "utf-8"


@dataclass(frozen=True, kw_only=True)
class ColumnMapping:
    """How the columns of your files map onto a ctxrec :class:`Dataset`."""

    interactions: str
    """Path of the interaction log, relative to the mapping file."""
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str | None = None
    """Without one, events keep file order and temporal splits are unavailable."""
    timestamp_format: Literal["unix_s", "unix_ms", "iso"] = "unix_s"
    """Seconds or milliseconds since 1970 (numbers), or ISO-8601 strings (naive ones are UTC)."""
    require_timestamp: bool = True
    """Drop (and report) events whose timestamp is empty; ``false`` keeps them with an unknown time."""
    event_type_column: str | None = None
    weight_column: str | None = None
    """Numeric weight per event (rating, play count); default 1."""
    context: tuple[ContextColumn, ...] = ()
    items: SideTable | None = None
    """Events whose item is not in the items file are dropped (and reported)."""
    users: SideTable | None = None
    dedupe: Literal["none", "exact", "user_item_first", "user_item_last"] = "exact"
    """``exact``: drop events identical in every mapped column; ``user_item_first/last``: keep one
    event per (user, item) pair; ``none``: keep everything."""
    format: FileFormat = "auto"
    delimiter: str | None = None
    encoding: str = "utf-8"
    name: str | None = None
    """Dataset name (default: the mapping file's stem)."""


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
    mapping = from_dict(ColumnMapping, data)
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


# ------------------------------------------------------------------------------------ file access
class _Source:
    """One input file: reads it and turns a 0-based record index into ``line N`` / ``row N``."""

    def __init__(self, path: Path, fmt: FileFormat, delimiter: str | None, encoding: str) -> None:
        self.path = path
        self.fmt = _detect_format(path) if fmt == "auto" else fmt
        self.sep = delimiter or ("\t" if self.fmt == "tsv" else ",")
        self.encoding = encoding
        self._lines: list[int] | None = None

    def __str__(self) -> str:
        return str(self.path)

    def read(self) -> pd.DataFrame:
        """All records; CSV/TSV values as strings ('' = empty), JSONL/Parquet values as typed."""
        import pandas as pd

        if not self.path.exists():
            raise DataError(f"file {str(self.path)!r} does not exist (paths in a mapping file are relative to it)")
        try:
            if self.fmt == "parquet":
                return pd.read_parquet(self.path)
            if self.fmt == "jsonl":
                return self._read_jsonl()
            return pd.read_csv(
                self.path, sep=self.sep, dtype=str, keep_default_na=False, na_filter=False,
                encoding=self.encoding, compression="infer",
            )
        except DataError:
            raise
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self.path}: not valid {self.encoding} text ({exc}); set `encoding` (e.g. \"latin-1\") in the mapping"
            ) from None
        except (ValueError, OSError, EOFError, csv.Error) as exc:  # parser errors name the line themselves
            raise DataError(f"{self.path}: cannot read it as {self.fmt}: {exc}") from None

    def _read_jsonl(self) -> pd.DataFrame:
        import pandas as pd

        try:
            return pd.read_json(self.path, lines=True, dtype=False, encoding=self.encoding)
        except ValueError:
            # Locate the bad line for the message (only on this error path).
            with self._open() as fh:
                for lineno, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{self.path}, line {lineno}: not valid JSON ({exc.msg})") from None
                    if not isinstance(obj, dict):
                        raise DataError(
                            f"{self.path}, line {lineno}: each line must be a JSON object, got {line.strip()[:60]!r}"
                        ) from None
            raise

    def _open(self) -> io.TextIOBase:
        if self.path.suffix == ".gz":
            return io.TextIOWrapper(gzip.open(self.path, "rb"), encoding=self.encoding, newline="")
        return open(self.path, encoding=self.encoding, newline="")

    def where(self, row: int) -> str:
        """``line N`` of record ``row`` (0-based data record), or ``row N`` for Parquet."""
        if self.fmt == "parquet":
            return f"row {row + 1}"
        if self._lines is None:
            self._lines = self._record_lines()
        return f"line {self._lines[row]}" if row < len(self._lines) else f"record {row + 1}"

    def _record_lines(self) -> list[int]:
        """First line of every data record, skipping the header and blank lines as pandas does."""
        out: list[int] = []
        with self._open() as fh:
            if self.fmt == "jsonl":
                return [i for i, line in enumerate(fh, start=1) if line.strip()]
            reader = csv.reader(fh, delimiter=self.sep)
            prev, header_seen = 0, False
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if not rec:
                    continue
                if not header_seen:
                    header_seen = True
                    continue
                out.append(start)
        return out

    def header_line(self) -> str:
        if self.fmt == "parquet":
            return "schema"
        return "line 1 (no record has this key)" if self.fmt == "jsonl" else "line 1 (header)"


def _detect_format(path: Path) -> FileFormat:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = _EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the file format from its name; use one of {sorted(_EXTENSIONS)} (optionally + .gz) "
            "or set `format` (csv, tsv, parquet, jsonl) in the mapping"
        )
    return fmt  # type: ignore[return-value]


# ---------------------------------------------------------------------------------- value parsing
def _require_columns(src: _Source, df: pd.DataFrame, needed: dict[str, str]) -> None:
    """``needed`` maps column name -> role (for the message)."""
    for col, role in needed.items():
        if col not in df.columns:
            raise DataError(
                f"{src}, {src.header_line()}: column {col!r} ({role}) is missing; the file has columns "
                f"{list(map(str, df.columns))} - fix the column name in the mapping or the file"
            )


def _strings(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Values as stripped strings (integral floats from JSON as ``"3"``), and the mask of empty/missing ones."""
    import pandas as pd

    missing = s.isna().to_numpy()
    if pd.api.types.is_float_dtype(s.dtype):
        vals = s.to_numpy(dtype="float64")
        ok = ~missing
        if np.all(np.mod(vals[ok], 1) == 0):
            out = pd.Series(np.where(missing, "", pd.array(s, dtype="Int64").astype(str)), index=s.index)
        else:
            out = s.astype(str).where(~missing, "")
    elif pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        out = s.astype(str).where(~missing, "")
    else:
        out = s.astype("string").fillna("").str.strip().astype(str)
    missing = missing | (out == "").to_numpy()
    return out, missing


def _fail(src: _Source, mask: np.ndarray, column: str, what: str, values: pd.Series | None = None) -> None:
    """Raise for the first row in ``mask`` (0-based record positions), counting the others."""
    bad = np.flatnonzero(mask)
    if not len(bad):
        return
    row = int(bad[0])
    shown = f" {values.iloc[row]!r}" if values is not None else ""
    more = f" ({len(bad) - 1} more row(s) have the same problem)" if len(bad) > 1 else ""
    raise DataError(f"{src}, {src.where(row)}, column {column!r}: {what}{shown}{more}")


def _numbers(src: _Source, s: pd.Series, column: str, *, allow_empty: bool) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_bool_dtype(s.dtype):
        _fail(src, np.ones(len(s), bool), column, "expected a number, got a boolean", s)
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(vals)
    else:
        text, missing = _strings(s)
        vals = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        _fail(src, np.isnan(vals) & ~missing, column, "not a number:", text)
    if not allow_empty:
        _fail(src, missing, column, "empty value; every row needs a number here")
    return vals


def _timestamps(src: _Source, s: pd.Series, column: str, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (float64) and the mask of empty timestamps; unparseable values are errors."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        dt = pd.to_datetime(s, utc=True)
        missing = dt.isna().to_numpy()
        secs = (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
        return secs, missing
    if fmt in ("unix_s", "unix_ms"):
        unit = "seconds" if fmt == "unix_s" else "milliseconds"
        if pd.api.types.is_bool_dtype(s.dtype):
            _fail(src, np.ones(len(s), bool), column, f"expected unix {unit}, got a boolean", s)
        if pd.api.types.is_numeric_dtype(s.dtype):
            secs = s.to_numpy(dtype="float64", na_value=np.nan)
            missing = np.isnan(secs)
        else:
            text, missing = _strings(s)
            secs = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            _fail(
                src, np.isnan(secs) & ~missing, column,
                f"cannot parse timestamp as unix {unit} (timestamp_format={fmt!r}; use \"iso\" for dates):", text,
            )
        return (secs / 1000.0 if fmt == "unix_ms" else secs), missing
    text, missing = _strings(s)
    if pd.api.types.is_numeric_dtype(s.dtype):
        what = "timestamp_format is \"iso\" but the value is a number (use unix_s or unix_ms):"
        _fail(src, ~missing, column, what, text)
    dt = pd.to_datetime(text.where(~missing, None), format="ISO8601", utc=True, errors="coerce")
    _fail(
        src, dt.isna().to_numpy() & ~missing, column,
        "cannot parse timestamp as an ISO-8601 date/time (timestamp_format=\"iso\", e.g. 2024-05-01T13:45:00Z):", text,
    )
    secs = (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
    return secs, missing


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
        cfg = mapping if isinstance(mapping, ColumnMapping) else mapping_from_dict(mapping)
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        default_name = "custom"
    name = name or cfg.name or default_name
    notes: list[str] = []

    items = _read_side(base, cfg.items, Columns.ITEM, "item") if cfg.items else None
    users = _read_side(base, cfg.users, Columns.USER, "user") if cfg.users else None

    src = _Source(base / cfg.interactions, cfg.format, cfg.delimiter, cfg.encoding)
    raw = src.read().reset_index(drop=True)
    needed = {cfg.user_column: "user id", cfg.item_column: "item id"}
    for col, role in (
        (cfg.timestamp_column, "timestamp"), (cfg.event_type_column, "event type"), (cfg.weight_column, "weight"),
    ):
        if col is not None:
            needed[col] = role
    needed.update({c.column: f"{c.kind} context" for c in cfg.context})
    _require_columns(src, raw, needed)
    if raw.empty:
        raise DataError(f"{src}: the interaction file has no rows")

    import pandas as pd

    n = len(raw)
    df = pd.DataFrame(index=pd.RangeIndex(n))
    for col, canon, role in ((cfg.user_column, Columns.USER, "user"), (cfg.item_column, Columns.ITEM, "item")):
        vals, missing = _strings(raw[col])
        _fail(src, missing, col, f"empty {role} id; every event needs one")
        df[canon] = vals
    df[Columns.ORDER] = np.arange(n, dtype=np.int64)  # original record position: error lines, tie-breaks

    keep = np.ones(n, dtype=bool)
    if cfg.timestamp_column is not None:
        secs, missing = _timestamps(src, raw[cfg.timestamp_column], cfg.timestamp_column, cfg.timestamp_format)
        df[Columns.TIME] = secs
        if missing.any():
            first = src.where(int(np.flatnonzero(missing)[0]))
            if cfg.require_timestamp:
                keep &= ~missing
                _note(notes, f"dropped {int(missing.sum()):,} event(s) with an empty timestamp in column "
                      f"{cfg.timestamp_column!r} of {src} (first at {first}); require_timestamp = true", drop=True)
            else:
                _note(notes, f"{int(missing.sum()):,} event(s) have no timestamp in column {cfg.timestamp_column!r} "
                      f"of {src} (first at {first}); kept because require_timestamp = false, so events are "
                      "ordered by file position", drop=False)
    if cfg.event_type_column is not None:
        vals, missing = _strings(raw[cfg.event_type_column])
        _fail(src, missing, cfg.event_type_column, "empty event type")
        df[Columns.EVENT] = vals
    if cfg.weight_column is not None:
        df[Columns.WEIGHT] = _numbers(src, raw[cfg.weight_column], cfg.weight_column, allow_empty=False)
    for c in cfg.context:
        s = raw[c.column]
        if c.kind == "numeric":
            df[c.dataset_name] = _numbers(src, s, c.column, allow_empty=True)
        else:
            vals, missing = _strings(s)
            df[c.dataset_name] = vals.where(~missing, None)

    if items is not None and cfg.items is not None:
        known = df[Columns.ITEM].isin(items.index).to_numpy()
        unknown = keep & ~known
        if unknown.any():
            first = int(np.flatnonzero(unknown)[0])
            example = f"{df[Columns.ITEM].iloc[first]!r} at {src.where(first)} of {src}, ..."
            _note(notes, f"dropped {int(unknown.sum()):,} event(s) whose item is not in the items file "
                  f"{str(base / cfg.items.path)!r} ({example})", drop=True)
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
    )
    return Dataset.from_frames(
        df.reset_index(drop=True), items=items, users=users, schema=schema, name=name, notes=tuple(notes),
    )


def _note(notes: list[str], text: str, *, drop: bool) -> None:
    notes.append(text)
    (logger.warning if drop else logger.info)("%s", text)


def _read_side(base: Path, spec: SideTable, canon: str, kind: str) -> pd.DataFrame:
    """An items/users table indexed by ``canon`` with the declared fields; ids must be unique and non-empty."""
    import pandas as pd

    src = _Source(base / spec.path, spec.format, spec.delimiter, spec.encoding)
    raw = src.read().reset_index(drop=True)
    needed = {spec.id_column: f"{kind} id"}
    needed.update({f: f"{kind} text field" for f in spec.text_fields})
    needed.update({f: f"{kind} attribute field" for f in spec.attribute_fields})
    _require_columns(src, raw, needed)
    ids, missing = _strings(raw[spec.id_column])
    _fail(src, missing, spec.id_column, f"empty {kind} id")
    dup = ids.duplicated().to_numpy()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero((ids == ids.iloc[row]).to_numpy())[0])
        raise DataError(
            f"{src}, {src.where(row)}, column {spec.id_column!r}: {kind} id {ids.iloc[row]!r} is listed again "
            f"(first at {src.where(first)}); each {kind} needs exactly one row"
        )
    out = pd.DataFrame(index=pd.Index(ids.to_numpy(), name=canon))
    fields = list(dict.fromkeys([*spec.text_fields, *spec.attribute_fields]))
    for f in fields:
        col = raw[f]
        if f in spec.attribute_fields and spec.list_separator is not None:
            out[f] = _split_lists(col, spec.list_separator).to_numpy()
        elif col.dtype == object and col.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            out[f] = _split_lists(col, None).to_numpy()  # JSONL / Parquet arrays
        else:
            vals, empty = _strings(col)
            out[f] = vals.where(~empty, np.nan).to_numpy()
    return out


def _split_lists(col: pd.Series, sep: str | None) -> pd.Series:
    """Each value as a list of non-empty stripped strings: strings split on ``sep``, list values kept,
    empty/missing -> ``[]``. Vectorised (explode + groupby), items files can be large."""
    import pandas as pd

    col = col.reset_index(drop=True)
    is_list = col.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).to_numpy() if col.dtype == object else None
    if is_list is not None and is_list.any():  # JSONL/Parquet arrays, maybe mixed with plain strings
        text, empty = _strings(col.where(~is_list, None))
        scalar = text.where(~empty, None)
        scalar = scalar.str.split(sep) if sep is not None else scalar.map(lambda v: [v], na_action="ignore")
        parts = col.where(is_list, scalar)
    else:
        text, empty = _strings(col)
        parts = text.where(~empty, None)
        parts = parts.str.split(sep) if sep is not None else parts.map(lambda v: [v], na_action="ignore")
    flat = parts.explode().dropna().astype(str).str.strip()
    flat = flat[flat != ""]
    grouped = flat.groupby(level=0, sort=True).agg(list)
    out = pd.Series([[] for _ in range(len(col))], dtype=object)
    out.iloc[grouped.index.to_numpy()] = grouped.to_numpy()
    return out


__all__ = ["ColumnMapping", "ContextColumn", "SideTable", "load_mapping", "mapping_from_dict", "read_dataset"]
