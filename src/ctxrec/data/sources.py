"""One input file of a column mapping: read it, and say where a record sits in it.

Every problem with the file itself names the file and the line as an editor shows it (1-based, counting
the header, blank lines and the extra lines of quoted multi-line values), and the column where there is
one: an empty file, a header with no records, a record with more or fewer fields than the header, a
quote that never closes, a byte that is not valid in the file's encoding, a line that is not JSON.
Parquet files have no lines, so positions there are 1-based rows.

CSV/TSV structure is checked with Python's ``csv`` module in one pass before pandas parses the values:
pandas silently pads short records and, when the first record has one extra field, silently turns the
first column into the index.
"""

from __future__ import annotations

import array
import csv
import gzip
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

from ctxrec.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

FileFormat = Literal["auto", "csv", "tsv", "parquet", "jsonl"]
EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class Source:
    """One input file: reads it and turns a 0-based record index into ``line N`` / ``row N``."""

    def __init__(self, path: Path, fmt: FileFormat, delimiter: str | None, encoding: str) -> None:
        self.path = path
        self.fmt = detect_format(path) if fmt == "auto" else fmt
        self.sep = delimiter or ("\t" if self.fmt == "tsv" else ",")
        # A UTF-8 byte-order mark would otherwise stick to the first column's name.
        self.encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        self.encoding_name = encoding
        self._lines: array.array[int] | None = None  # first line of every data record
        self._header: list[str] = []

    def __str__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------------------------ reading
    def read(self) -> pd.DataFrame:
        """All records; CSV/TSV values as strings ('' = empty), JSONL/Parquet values as typed."""
        import pandas as pd

        if not self.path.exists():
            raise DataError(f"file {str(self.path)!r} does not exist (paths in a mapping file are relative to it)")
        try:
            if self.fmt == "parquet":
                return pd.read_parquet(self.path)
            self._check_text()
            if self.fmt == "jsonl":
                return self._read_jsonl()
            self._check_records()
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)  # "loss of data": checked above anyway
                return pd.read_csv(
                    self.path, sep=self.sep if len(self.sep) == 1 else _regex(self.sep), dtype=str,
                    keep_default_na=False, na_filter=False, index_col=False, encoding=self.encoding,
                    compression="infer", engine="c" if len(self.sep) == 1 else "python",
                )
        except DataError:
            raise
        except (ValueError, OSError, EOFError, csv.Error, pd.errors.ParserWarning) as exc:
            raise DataError(f"{self.path}: cannot read it as {self.fmt}: {exc}") from None

    def _check_text(self) -> None:
        """Empty files and undecodable bytes, each with its line."""
        with self._open_bytes() as fh:
            empty = True
            for lineno, raw in enumerate(fh, start=1):
                try:
                    text = raw.decode(self.encoding)
                except UnicodeDecodeError as exc:
                    raise DataError(self._decode_message(lineno, raw, exc)) from None
                if lineno == 1 and self.fmt != "jsonl":
                    self._header = _split_header(text, self.sep)
                empty = empty and not text.strip()
        if empty:
            what = "one JSON object per line" if self.fmt == "jsonl" else "a header line naming the columns, then one record per line"
            raise DataError(f"{self.path}: the file is empty; expected {what}")

    def _decode_message(self, lineno: int, raw: bytes, exc: UnicodeDecodeError) -> str:
        prefix = raw[: exc.start].decode(self.encoding, errors="replace")
        column = ""
        if self.fmt in ("csv", "tsv") and lineno > 1 and self._header:
            field = prefix.count(self.sep)  # approximate inside quoted values; exact in plain CSV
            if field < len(self._header):
                column = f", column {self._header[field]!r}"
        snippet = raw[max(0, exc.start - 20) : exc.end + 20].decode(self.encoding, errors="replace")
        return (
            f"{self.path}, line {lineno}{column}: byte 0x{raw[exc.start]:02x} at character {len(prefix) + 1} is not "
            f"valid {self.encoding_name} ({exc.reason}, near {snippet.strip()!r}); the file is in another encoding: "
            "set `encoding` for this file in the mapping, e.g. \"latin-1\" or \"cp1252\""
        )

    def _check_records(self) -> None:
        """Every record has as many fields as the header and every quote closes; records' first lines."""
        lines: array.array[int] = array.array("q")
        with self._open() as fh:
            if len(self.sep) > 1:  # no quoting with multi-character delimiters: one record per line
                header: list[str] | None = None
                for lineno, text in enumerate(fh, start=1):
                    if not text.strip():
                        continue
                    rec = text.rstrip("\r\n").split(self.sep)
                    if header is None:
                        header = rec
                    else:
                        self._check_width(rec, header, lineno)
                        lines.append(lineno)
                self._lines = lines
                return
            reader = csv.reader(fh, delimiter=self.sep)
            prev, header = 0, None
            pending: tuple[int, list[str]] | None = None  # checked once the next record shows it is not the last
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if not rec:
                    continue
                if header is None:
                    header = rec
                    continue
                if pending is not None:
                    self._check_width(pending[1], header, pending[0])
                pending = (start, rec)
                lines.append(start)
            if pending is not None and header is not None:
                # An unclosed quote swallows the rest of the file into the last record.
                if any("\n" in f for f in pending[1]):
                    self._check_quote(pending[0], header)
                self._check_width(pending[1], header, pending[0])
        self._lines = lines

    def _check_width(self, rec: list[str], header: list[str], line: int) -> None:
        if len(rec) > len(header):
            raise DataError(
                f"{self.path}, line {line}, after column {header[-1]!r}: {len(rec)} fields but the header (line 1) "
                f"has {len(header)} columns (extra value {rec[len(header)]!r}); a value that contains the delimiter "
                f"{self.sep!r} must be quoted, or set `delimiter` in the mapping"
            )
        if len(rec) < len(header):
            raise DataError(
                f"{self.path}, line {line}, column {header[len(rec)]!r}: the record ends after {len(rec)} field(s) but "
                f"the header (line 1) has {len(header)} columns; every record needs a value (possibly empty) per column"
            )

    def _check_quote(self, start: int, header: list[str]) -> None:
        with self._open() as fh:
            tail = "".join(line for i, line in enumerate(fh, start=1) if i >= start)
        field = _open_quote_field(tail, self.sep)
        if field is None:
            return
        column = f", column {header[field]!r}" if field < len(header) else ""
        raise DataError(
            f"{self.path}, line {start}{column}: a quoted value opens here and never closes (the file ends inside "
            "it); close the quote, or write a quote inside a quoted value as two quotes (\"\")"
        )

    def _read_jsonl(self) -> pd.DataFrame:
        import pandas as pd

        lines: array.array[int] = array.array("q")
        with self._open() as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{self.path}, line {lineno}: not valid JSON ({exc.msg} at character {exc.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(
                        f"{self.path}, line {lineno}: each line must be a JSON object, got {line.strip()[:60]!r}"
                    ) from None
                lines.append(lineno)
        self._lines = lines
        return pd.read_json(self.path, lines=True, dtype=False, encoding=self.encoding)

    def _open(self) -> io.TextIOBase:
        return io.TextIOWrapper(self._open_bytes(), encoding=self.encoding, newline="")

    def _open_bytes(self) -> BinaryIO:
        if self.path.suffix.lower() == ".gz":
            return gzip.open(self.path, "rb")  # type: ignore[return-value]  # GzipFile is a binary file object
        return open(self.path, "rb")

    # ----------------------------------------------------------------------------------- positions
    def where(self, row: int) -> str:
        """``line N`` of record ``row`` (0-based data record), or ``row N`` for Parquet."""
        if self.fmt == "parquet":
            return f"row {row + 1}"
        if self._lines is None:
            self._lines = self._record_lines()
        return f"line {self._lines[row]}" if row < len(self._lines) else f"record {row + 1}"

    def _record_lines(self) -> array.array[int]:
        """First line of every data record (for a file checked by another reader than :meth:`read`)."""
        out: array.array[int] = array.array("q")
        with self._open() as fh:
            if self.fmt == "jsonl" or len(self.sep) > 1:
                nonblank = [i for i, line in enumerate(fh, start=1) if line.strip()]
                return array.array("q", nonblank if self.fmt == "jsonl" else nonblank[1:])
            reader = csv.reader(fh, delimiter=self.sep)
            prev, header_seen = 0, False
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if not rec:
                    continue
                if header_seen:
                    out.append(start)
                header_seen = True
        return out

    def header_line(self) -> str:
        if self.fmt == "parquet":
            return "schema"
        return "line 1 (no record has this key)" if self.fmt == "jsonl" else "line 1 (header)"

    def no_records(self) -> str:
        """Message for a file that has columns but no records."""
        if self.fmt == "parquet":
            return f"{self.path}: the file has columns but no rows"
        return f"{self.path}: line 1 is the header and no record follows it; the file needs at least one record"


def detect_format(path: Path) -> FileFormat:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = EXTENSIONS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise DataError(
            f"{path}: cannot tell the file format from its name; use one of {sorted(EXTENSIONS)} (optionally + .gz) "
            "or set `format` (csv, tsv, parquet, jsonl) for this file in the mapping (any extension works then, "
            "e.g. format = \"csv\" with delimiter = \"::\" for a .dat file)"
        )
    return fmt  # type: ignore[return-value]  # the values of EXTENSIONS are FileFormat literals


def _regex(sep: str) -> str:
    import re

    return re.escape(sep)


def _split_header(text: str, sep: str) -> list[str]:
    text = text.rstrip("\r\n")
    if len(sep) > 1:
        return text.split(sep)
    return next(csv.reader([text], delimiter=sep), [])


def _open_quote_field(text: str, sep: str) -> int | None:
    """Index of the field (in the first record of ``text``) whose quote is still open at the end, or None."""
    field, quoted, at_start, opened_in = 0, False, True, 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"':
                if i + 1 < len(text) and text[i + 1] == '"':
                    i += 1
                else:
                    quoted = False
        elif ch == '"' and at_start:
            quoted, opened_in = True, field
        elif ch == sep:
            field += 1
            at_start = True
            i += 1
            continue
        elif ch == "\n":
            field, at_start = 0, True
            i += 1
            continue
        at_start = False
        i += 1
    return opened_in if quoted else None
