"""Column values of a mapped file: strings, missing-value tokens, numbers and timestamps.

Every bad value raises :class:`~ctxrec.errors.DataError` naming the file, the line (or Parquet row), the
column and the value, and says how to fix it.

Missing values: an empty cell (or JSON ``null`` / Parquet null) is always missing. Tokens such as
``NULL`` or ``NA`` are missing only when the mapping lists them in ``na_values``; while a file (or
column) declares no ``na_values`` at all, a cell holding one of :data:`SUSPECT_NA` is an error, so a
``NULL`` never becomes a category value by accident. ``na_values = []`` says the file has none (keep
such cells as values).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from ctxrec.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from ctxrec.data.sources import Source

SUSPECT_NA = ("NULL", "null", "Null", "NA", "N/A", "n/a", "#N/A", "NaN", "nan", "None", "-", "?", "\\N")
"""Cells that usually mean "missing" (``\\N``: a MySQL or PostgreSQL dump's NULL); an error until the mapping
says what they are (``na_values``)."""

UNIX_FORMATS = ("unix_s", "unix_ms")
NAMED_FORMATS = ("unix_s", "unix_ms", "iso")


def fail(src: Source, mask: np.ndarray, column: str, what: str, values: pd.Series | None = None) -> None:
    """Raise for the first row in ``mask`` (0-based record positions), counting the others."""
    bad = np.flatnonzero(mask)
    if not len(bad):
        return
    row = int(bad[0])
    shown = f" {values.iloc[row]!r}" if values is not None else ""
    more = f" ({len(bad) - 1} more row(s) have the same problem)" if len(bad) > 1 else ""
    raise DataError(f"{src}, {src.where(row)}, column {column!r}: {what}{shown}{more}")


def strings(s: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Values as stripped strings (integral floats from JSON as ``"3"``), and the mask of empty/null ones."""
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


def cells(src: Source, s: pd.Series, column: str, na_values: Sequence[str] | None) -> tuple[pd.Series, np.ndarray]:
    """:func:`strings` with the mapping's missing-value tokens applied (``None`` = none declared: suspect
    tokens are errors)."""
    text, missing = strings(s)
    if na_values is None:
        suspect = text.isin(SUSPECT_NA).to_numpy() & ~missing
        if suspect.any():
            token = text.iloc[int(np.flatnonzero(suspect)[0])]
            fail(
                src, suspect, column,
                f"{token!r} looks like a missing-value token; say what it is in the mapping: "
                f"na_values = [{_toml(token)}] (for this file, or on a context column) makes it missing, "
                "na_values = [] keeps such cells as values. The cell:", text,
            )
    elif len(na_values):
        missing = missing | text.isin(list(na_values)).to_numpy()
    return text, missing


def numbers(src: Source, s: pd.Series, column: str, *, allow_empty: bool, na_values: Sequence[str] | None) -> np.ndarray:
    """Float64 values (NaN = missing); non-numbers, and missing ones unless ``allow_empty``, are errors."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(s.dtype):
        fail(src, np.ones(len(s), bool), column, "expected a number, got a boolean", s)
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = s.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(vals)
    else:
        text, missing = cells(src, s, column, na_values)
        vals = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        fail(src, np.isnan(vals) & ~missing, column, "not a number:", text)
    if not allow_empty:
        fail(src, missing, column, "empty or missing value; every row needs a number here")
    return vals


# ------------------------------------------------------------------------------------- timestamps
def is_pattern(fmt: str) -> bool:
    """A strptime pattern (``%d/%m/%Y %H:%M``) rather than one of :data:`NAMED_FORMATS`."""
    return "%" in fmt


def timestamps(
    src: Source, s: pd.Series, column: str, fmt: str, *, na_values: Sequence[str] | None,
    bounds: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (float64) and the mask of missing timestamps; unparseable values and values outside
    ``bounds`` (unix seconds, inclusive) are errors."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        dt = pd.to_datetime(s, utc=True)
        missing = dt.isna().to_numpy()
        secs = (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
        _check_range(src, column, secs, missing, s, "the file's datetime", bounds)
        return secs, missing
    if fmt in UNIX_FORMATS:
        unit = "seconds" if fmt == "unix_s" else "milliseconds"
        if pd.api.types.is_bool_dtype(s.dtype):
            fail(src, np.ones(len(s), bool), column, f"expected unix {unit}, got a boolean", s)
        if pd.api.types.is_numeric_dtype(s.dtype):
            raw = s.to_numpy(dtype="float64", na_value=np.nan)
            missing = np.isnan(raw)
            text = s.astype(str)
        else:
            text, missing = cells(src, s, column, na_values)
            raw = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            fail(
                src, np.isnan(raw) & ~missing, column,
                f"cannot parse timestamp as unix {unit} (timestamp_format={fmt!r}){_suggest(text[~missing])}; the value:",
                text,
            )
        secs = raw / 1000.0 if fmt == "unix_ms" else raw
        _check_range(src, column, secs, missing, text, fmt, bounds)
        return secs, missing
    text, missing = cells(src, s, column, na_values)
    if pd.api.types.is_numeric_dtype(s.dtype):
        fail(src, ~missing, column, f"timestamp_format is {fmt!r} but the value is a number (use unix_s or unix_ms):", text)
    values = text.where(~missing, None)
    if is_pattern(fmt):
        dt = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
        what = f"cannot parse timestamp with timestamp_format={fmt!r}"
    else:
        dt = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")
        what = "cannot parse timestamp as an ISO-8601 date/time (timestamp_format=\"iso\", e.g. 2024-05-01T13:45:00Z)"
    bad = dt.isna().to_numpy() & ~missing
    if bad.any():
        fail(src, bad, column, f"{what}{_suggest(text[~missing], exclude=fmt)}; the value:", text)
    secs = (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
    _check_range(src, column, secs, missing, text, fmt, bounds)
    return secs, missing


def _check_range(
    src: Source, column: str, secs: np.ndarray, missing: np.ndarray, shown: pd.Series, fmt: str,
    bounds: tuple[float, float],
) -> None:
    lo, hi = bounds
    out = ~missing & ~((secs >= lo) & (secs <= hi))
    if not out.any():
        return
    row = int(np.flatnonzero(out)[0])
    value = float(secs[row])
    hint = "fix the value, or widen timestamp_min / timestamp_max in the mapping if such dates are real"
    if fmt == "unix_s" and lo <= value / 1000 <= hi:
        hint = "it looks like milliseconds: set timestamp_format = \"unix_ms\""
    elif fmt == "unix_ms" and lo <= value * 1000 <= hi:
        hint = "it looks like seconds: set timestamp_format = \"unix_s\""
    fail(
        src, out, column,
        f"timestamp {shown.iloc[row]!r} is {_as_date(value)}, outside the plausible range "
        f"{_as_date(lo)[:10]} .. {_as_date(hi)[:10]} (timestamp_min .. timestamp_max); {hint}",
    )


def _as_date(secs: float) -> str:
    if not np.isfinite(secs):
        return "not a finite time"
    if secs < -62_135_596_800:
        return "before year 1"
    if secs > 253_402_300_799:
        return "after year 9999"
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _suggest(values: pd.Series, exclude: str | None = None) -> str:
    guess = guess_time_format(values.head(2000).tolist())
    if guess is None or guess[0] == exclude:
        return ""
    return f"; the values look like {guess[1]}: set timestamp_format = {_toml(guess[0])}"


def _toml(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------ format guessing
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(
    r"^(?P<a>\d{1,4})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<c>\d{2,4})"
    r"(?:(?P<tsep>[ T])(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?(?:\s*(?P<ampm>[AaPp][Mm]))?)?$"
)
DEFAULT_MIN = "1990-01-01"


def default_bounds() -> tuple[float, float]:
    """The default plausible range in unix seconds: 1990-01-01 to one year from now."""
    lo = datetime(1990, 1, 1, tzinfo=UTC).timestamp()
    return lo, datetime.now(UTC).timestamp() + 365 * 86_400.0


def guess_time_format(values: Sequence[str]) -> tuple[str, str] | None:
    """``(timestamp_format, why)`` for sample values (strings, missing ones left out), or None.

    Unix seconds or milliseconds by magnitude, ISO-8601, and day-first / month-first / year-first dates
    with an optional time (``25/12/2023 18:30:00``, ``12.25.23 6:30 PM``): the day is the part above 12
    somewhere in the sample; when no value decides, day-first is guessed and the reason says so.
    """
    vals = [str(v).strip() for v in values if str(v).strip()]
    if not vals:
        return None
    nums = _as_numbers(vals)
    if nums is not None:
        lo, hi = default_bounds()
        if np.all((nums >= lo) & (nums <= hi)):
            return "unix_s", f"unix seconds ({_as_date(float(nums.min()))[:10]} .. {_as_date(float(nums.max()))[:10]})"
        if np.all((nums / 1000 >= lo) & (nums / 1000 <= hi)):
            return "unix_ms", (f"unix milliseconds ({_as_date(float(nums.min()) / 1000)[:10]} .. "
                               f"{_as_date(float(nums.max()) / 1000)[:10]})")
        return None
    if all(_ISO.match(v) for v in vals):
        return "iso", "ISO-8601 dates (YYYY-MM-DD...)"
    matches = [_DATE.match(v) for v in vals]
    if not all(matches):
        return None
    first = matches[0]
    assert first is not None
    a = [int(m["a"]) for m in matches if m]
    b = [int(m["b"]) for m in matches if m]
    year_first = len(first["a"]) == 4
    if year_first:
        order, why = ("%Y", "%m", "%d"), "year-first dates"
    elif max(a) > 12 and max(b) <= 12:
        order, why = ("%d", "%m", "%Y"), f"day-first dates (a first part up to {max(a)} is a day)"
    elif max(b) > 12 and max(a) <= 12:
        order, why = ("%m", "%d", "%Y"), f"month-first dates (a second part up to {max(b)} is a day)"
    elif max(a) <= 12 and max(b) <= 12:
        order, why = ("%d", "%m", "%Y"), "dates with no part above 12, so day-first is a guess: check it"
    else:
        return None
    if not year_first and len(first["c"]) == 2:
        order = (order[0], order[1], "%y")
    sep = first["sep"]
    pattern = sep.join(order)
    if first["h"] is not None:
        hour = "%I" if first["ampm"] else "%H"
        pattern += f"{first['tsep']}{hour}:%M" + (":%S" if first["s"] is not None else "")
        if first["ampm"]:
            pattern += " %p" if " " in first.string[first.end("m"):] else "%p"
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(vals), format=pattern, errors="coerce")
    misfits = int(parsed.isna().sum())
    if misfits:
        why += f"; {misfits} of {len(vals)} sample values do not fit it"
    return pattern, why + f", like {first.string!r}"


def _as_numbers(vals: list[str]) -> np.ndarray | None:
    try:
        return np.asarray([float(v) for v in vals], dtype=np.float64)
    except ValueError:
        return None
