"""Guess a column mapping by looking at the files: what ``ctxrec data init FILE [FILE ...]`` writes.

The first file is the event log; further files are items or users tables, matched to the log by the
overlap of their id column with the log's item or user ids. From a sample of each file (the first
:data:`SAMPLE_ROWS` records) it guesses the user, item, timestamp, weight and event-type columns, the
timestamp format (unix seconds or milliseconds, ISO, day-/month-/year-first date patterns),
missing-value tokens, context candidates (low-cardinality columns of the log), and the text fields
(long strings) and attributes (few distinct values, or ``a|b|c`` lists) of the side tables.

Every guess comes with its reason, both printed and written as a comment next to the key, so the user
can check it, edit the file and run ``ctxrec data info``. The mapping written is validated with the
reader's own rules before it is returned.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctxrec.data.readers import mapping_from_dict
from ctxrec.data.sources import EXTENSIONS, detect_format
from ctxrec.data.values import SUSPECT_NA, guess_time_format, strings
from ctxrec.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 100_000
MAX_CONTEXT_VALUES = 50
"""A log column with at most this many distinct values (and few per row) is a context candidate."""

_USER = ("user", "uid", "customer", "visitor", "member", "reviewer", "client", "account", "listener", "person")
_ITEM = ("item", "iid", "product", "movie", "artist", "song", "track", "poi", "place", "venue", "hotel",
         "business", "asin", "book", "isbn", "app", "restaurant", "article", "video", "game", "sku", "film")
_TIME = ("timestamp", "time", "date", "ts", "created", "when", "epoch")
_WEIGHT = ("rating", "score", "stars", "weight", "count", "plays", "playcount", "clicks", "quantity", "qty",
           "listens", "value")
_EVENT = ("event", "eventtype", "action", "behavior", "behaviour", "interaction")
_EVENT_EXACT = ("type", "kind")
"""Names that say event type only alone: "RoadType" or "device_type" is a context, not the event's type."""
_TITLE = ("title", "name", "label", "headline")
_SEPARATORS = ("|", ";")


@dataclass
class Inference:
    """The mapping text (TOML with comments) and what was guessed, one line per guess."""

    toml: str
    lines: list[str] = field(default_factory=list)


@dataclass
class _Table:
    """A sample of one file as strings, with how to read it."""

    path: Path
    fmt: str
    delimiter: str | None
    encoding: str
    frame: pd.DataFrame
    notes: list[str]

    def text(self, col: str) -> tuple[pd.Series, np.ndarray]:
        return strings(self.frame[col])


def infer_mapping(paths: Sequence[str | Path], *, mapping_path: str | Path) -> Inference:
    """Inspect ``paths`` (the event log first) and write a mapping that will live at ``mapping_path``."""
    if not paths:
        raise DataError("give at least the event log file (then any items/users files)")
    base = Path(mapping_path).resolve().parent
    tables = [_sample(Path(p)) for p in paths]
    events = tables[0]
    lines: list[str] = []
    out: list[str] = [
        "# Column mapping written by `ctxrec data init` from a sample of each file. Every guess says why;",
        "# check them, edit, then run `ctxrec data info --mapping THIS_FILE`. Unknown keys are errors.",
        "",
    ]

    def say(text: str) -> None:
        lines.append(text)

    rel = _rel(events.path, base)
    say(f"event log: {events.path} ({events.fmt}, {len(events.frame):,} records sampled)")
    out += [f"interactions = {_q(rel)}", f"name = {_q(_stem(events.path))}"]
    out += _file_keys(events, say)
    used: set[str] = set()
    cols = [str(c) for c in events.frame.columns]

    user = _pick(events, cols, _USER, used, "user")
    item = _linked(events, [c for c in cols if c != user[0]], tables[1:]) or \
        _pick(events, [c for c in cols if c != user[0]], _ITEM, used, "item")
    for key, (col, why) in (("user_column", user), ("item_column", item)):
        say(f"{key} = {col!r}: {why}")
        out.append(f"{key} = {_q(col)}  # {why}")
        used.add(col)

    ts_col, ts_fmt, ts_why = _timestamp(events, [c for c in cols if c not in used], say)
    if ts_col is not None:
        used.add(ts_col)
        say(f"timestamp_column = {ts_col!r}, timestamp_format = {ts_fmt!r}: {ts_why}")
        out += [f"timestamp_column = {_q(ts_col)}", f"timestamp_format = {_q(ts_fmt or 'unix_s')}  # {ts_why}"]
    else:
        why = _order_hint(events, user[0], item[0])
        say(f"no timestamp column: {why}")
        out += [f"# No timestamp column. {why}", "# order = \"file\""]

    for key, hints, test, what in (
        ("weight_column", _WEIGHT, _is_numeric, "numeric"),
        ("event_type_column", _EVENT, lambda t, c: _distinct(t, c) <= 20, "at most 20 distinct values"),
    ):
        exact = _EVENT_EXACT if hints is _EVENT else ()
        found = next((c for c in cols if c not in used and (_named(c, hints) or _norm(c) in exact) and test(events, c)),
                     None)
        if found is not None:
            used.add(found)
            say(f"{key} = {found!r}: its name, and {what}")
            out.append(f"{key} = {_q(found)}  # its name, and {what}")

    out += ["dedupe = \"exact\"  # drop events identical in every mapped column (\"none\" keeps them)", ""]
    out += _context(events, [c for c in cols if c not in used], say)

    item_ids = set(events.text(item[0])[0])
    user_ids = set(events.text(user[0])[0])
    for side in tables[1:]:
        out += _side(side, item_ids, user_ids, base, say)
    text = "\n".join(out).rstrip() + "\n"
    mapping_from_dict(tomllib.loads(text))  # what we write must be a valid mapping
    return Inference(toml=text, lines=lines)


# ------------------------------------------------------------------------------------ the sample
def _sample(path: Path) -> _Table:
    import pandas as pd

    if not path.exists():
        raise DataError(f"file {str(path)!r} does not exist")
    notes: list[str] = []
    try:
        fmt: str = detect_format(path)
    except DataError:
        fmt = "csv"
        notes.append(f"extension {path.suffix!r} is not one ctxrec knows, so format = \"csv\" is set")
    delimiter = None
    encoding = "utf-8"
    if fmt in ("csv", "tsv"):
        head, encoding = _head(path)
        if encoding != "utf-8":
            notes.append(f"not valid UTF-8, so encoding = {encoding!r} is set (check accented characters)")
        delimiter = _sniff(head)
        if delimiter == ("\t" if fmt == "tsv" else ","):
            delimiter = None
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path).head(SAMPLE_ROWS)
        elif fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False, nrows=SAMPLE_ROWS)
        else:
            sep = delimiter or ("\t" if fmt == "tsv" else ",")
            frame = pd.read_csv(
                path, sep=sep if len(sep) == 1 else re.escape(sep), dtype=str, keep_default_na=False,
                na_filter=False, nrows=SAMPLE_ROWS, encoding="utf-8-sig" if encoding == "utf-8" else encoding,
                engine="c" if len(sep) == 1 else "python", index_col=False,
            )
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read it as {fmt} to inspect it: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: no records to inspect (an empty file, or a header only)")
    return _Table(path, fmt, delimiter, encoding, frame, notes)


def _head(path: Path) -> tuple[list[str], str]:
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read(1 << 20)
    for enc in ("utf-8", "cp1252", "latin-1"):
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as exc:
            if enc == "utf-8" and exc.start > len(raw) - 4:  # a character cut by the 1 MiB window
                text = raw[: exc.start].decode(enc)
            else:
                continue
        return [ln for ln in text.splitlines()[:50] if ln.strip()], enc
    return [], "latin-1"


def _sniff(lines: list[str]) -> str:
    """The delimiter that splits the header into the most fields, the same number on every line."""
    best, width = ",", 1
    for sep in ("::", "\t", ",", ";", "|"):
        counts = {ln.count(sep) for ln in lines[:20] if ln}
        if len(counts) == 1 and (n := counts.pop() + 1) > width:
            best, width = sep, n
    return best


def _file_keys(t: _Table, say: Callable[[str], None]) -> list[str]:
    """``format`` / ``delimiter`` / ``encoding`` / ``na_values`` keys of one file, with reasons."""
    out: list[str] = []
    for note in t.notes:
        say(f"  {t.path.name}: {note}")
    if t.path.suffix.lower() not in EXTENSIONS and not (t.path.suffix.lower() == ".gz"
                                                         and Path(t.path.stem).suffix.lower() in EXTENSIONS):
        out.append(f"format = {_q(t.fmt)}  # the extension does not say")
    if t.delimiter is not None:
        say(f"  {t.path.name}: fields are separated by {t.delimiter!r}")
        out.append(f"delimiter = {_q(t.delimiter)}  # splits the header and the first lines evenly")
    if t.encoding != "utf-8":
        out.append(f"encoding = {_q(t.encoding)}  # the file is not valid UTF-8")
    found: dict[str, list[str]] = {}
    for col in t.frame.columns:
        text, _ = t.text(str(col))
        counts = text[text.isin(SUSPECT_NA)].value_counts()
        for token, n in counts.items():
            found.setdefault(str(token), []).append(f"{n:,} of {len(text):,} cells of {str(col)!r}")
    if found:
        why = "; ".join(f"{tok!r} in {', '.join(where)}" for tok, where in found.items())
        say(f"  {t.path.name}: missing-value tokens: {why}")
        out.append(f"na_values = [{', '.join(_q(tok) for tok in found)}]  # missing, not values: {why}")
    else:
        out.append("# na_values = []  # no NULL/NA/-/? cells seen; empty cells are missing anyway")
    return out


# --------------------------------------------------------------------------------- column roles
def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _named(col: str, hints: Sequence[str]) -> bool:
    n = _norm(col)
    return any(n == h or n == h + "id" or n == h + "s" or n.startswith(h) or n.endswith(h) for h in hints)


_LOCATOR = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+|.*[/\\][^/\\]*\.[A-Za-z0-9]{2,5}")


def _is_locator(value: str) -> bool:
    """A URL, or a path to a file ("img/cover.jpg", "Music/Blues/Artist - Title.mp3"): a link to content,
    not a description of it."""
    return _LOCATOR.fullmatch(value.strip()) is not None


def _distinct(t: _Table, col: str) -> int:
    text, missing = t.text(col)
    return int(text[~missing & ~text.isin(SUSPECT_NA).to_numpy()].nunique())


def _is_numeric(t: _Table, col: str) -> bool:
    import pandas as pd

    text, missing = t.text(col)
    keep = ~missing & ~text.isin(SUSPECT_NA).to_numpy()
    return bool(keep.any()) and bool(pd.to_numeric(text[keep], errors="coerce").notna().all())


def _linked(t: _Table, cols: list[str], others: Sequence[_Table]) -> tuple[str, str] | None:
    """The item column by the strongest evidence: its values are the unique ids of another file (the
    catalogue), at least 90% of them found there."""
    for c in cols:
        values = set(t.text(c)[0])
        if len(values) < 2:
            continue
        for other in others:
            for oc in (str(x) for x in other.frame.columns):
                ids, _ = other.text(oc)
                if ids.is_unique and len(values & set(ids)) >= 0.9 * len(values):
                    return c, (f"its {len(values):,} distinct values are ids of {other.path.name}'s unique column "
                               f"{oc!r}")
    return None


def _pick(t: _Table, cols: list[str], hints: Sequence[str], used: set[str], role: str) -> tuple[str, str]:
    """The user or item column: by name, else the first free column with many distinct values. A named
    column with as few values as a context field loses to a free column with many more (``place`` with
    3 values beside ``podcast`` with 60 is a context, not the item)."""
    free = [c for c in cols if c not in used]
    widest = max(free, key=lambda c: _distinct(t, c), default=None)
    for c in free:
        if _named(c, hints):
            d = _distinct(t, c)
            if d <= MAX_CONTEXT_VALUES and widest is not None and _distinct(t, widest) > 10 * d:
                continue
            return c, f"its name says {role}; {d:,} distinct values in {len(t.frame):,} records"
    for c in free:
        d = _distinct(t, c)
        if d > 1 and guess_time_format(t.text(c)[0].head(500).tolist()) is None:
            return c, (f"no column is named like a {role} id, so the first free column with repeated ids "
                       f"({d:,} distinct in {len(t.frame):,} records) - check it")
    raise DataError(f"{t.path}: cannot find a {role} column among {cols}; name it in the mapping yourself")


def _timestamp(t: _Table, cols: list[str], say: Callable[[str], None]) -> tuple[str | None, str | None, str]:
    """A column named like a time whose values parse, else any column of dates (not bare numbers). A
    column named like a time that holds a few categories ("Weekday", "morning") is a context."""
    named = [c for c in cols if _named(c, _TIME)]
    for c in named + [c for c in cols if c not in named]:
        text, missing = t.text(c)
        sample = text[~missing & ~text.isin(SUSPECT_NA).to_numpy()].head(2000).tolist()
        guess = guess_time_format(sample)
        if guess is None:
            if c in named and sample and _distinct(t, c) <= min(MAX_CONTEXT_VALUES, max(2, len(t.frame) // 10)):
                say(f"{c!r} is named like a time, but its {_distinct(t, c)} values (such as {sample[0]!r}) are "
                    "categories, not timestamps: a context column")
                continue
            if c in named and sample:
                return c, None, (f"named like a time, but the format of values like {sample[0]!r} is unknown: "
                                 "write a strptime pattern such as \"%d/%m/%Y %H:%M\"")
            continue
        if c not in named and guess[0] in ("unix_s", "unix_ms"):
            continue  # bare numbers in an unnamed column are not evidence of time
        return c, guess[0], ("its name, and " if c in named else "") + guess[1]
    return None, None, ""


def _order_hint(t: _Table, user: str, item: str) -> str:
    """Whether the file seems to list each user's events sorted by item id (not the order they happened)."""
    users, _ = t.text(user)
    items, _ = t.text(item)
    key = items.astype(float) if _is_numeric(t, item) else items
    frame = t.frame.assign(_u=users.to_numpy(), _k=key.to_numpy())
    sizes = frame.groupby("_u", sort=False)["_k"].size()
    long = sizes[sizes >= 3].index
    if len(long) >= 5:
        grouped = frame[frame["_u"].isin(long)].groupby("_u", sort=False)["_k"]
        sorted_share = float(grouped.apply(lambda s: s.is_monotonic_increasing).mean())
        if sorted_share > 0.8:
            return (f"The file lists {sorted_share:.0%} of the users' events sorted by {item!r}, which is not the "
                    "order they happened: leave order unset and train with split = \"random\".")
    return ("Leave-one-out needs the order the events happened: if the file lists each user's events in "
            "that order, uncomment order = \"file\"; otherwise train with split = \"random\".")


def _context(t: _Table, cols: list[str], say: Callable[[str], None]) -> list[str]:
    """``[[context]]`` entries for low-cardinality columns; other columns commented out with the reason."""
    out: list[str] = []
    n = len(t.frame)
    limit = min(MAX_CONTEXT_VALUES, max(2, n // 10))
    for c in cols:
        d = _distinct(t, c)
        if d <= 1:
            say(f"column {c!r}: one value only, not context")
            out.append(f"# column {c!r}: one value only (not useful as context)")
            continue
        if d <= limit:
            kind = "categorical"
            why = f"{d} distinct values in {n:,} records"
            say(f"context {c!r} ({kind}): {why}")
            out += ["[[context]]", f"column = {_q(c)}  # {why}", f"kind = {_q(kind)}", ""]
        elif _is_numeric(t, c):
            say(f"column {c!r}: numeric with {d:,} distinct values; commented out as a numeric context candidate")
            out += [f"# [[context]]  # numeric, {d:,} distinct values: uncomment if it describes the situation",
                    f"# column = {_q(c)}", "# kind = \"numeric\"", ""]
        else:
            say(f"column {c!r}: {d:,} distinct values, too many for context; not used")
            out.append(f"# column {c!r}: {d:,} distinct values, too many for a context field; not used")
    return out


def _side(t: _Table, item_ids: set[str], user_ids: set[str], base: Path, say: Callable[[str], None]) -> list[str]:
    """An ``[items]`` or ``[users]`` table: the id column with the largest overlap decides which."""
    best: tuple[float, str, str] = (0.0, "", "")
    for c in map(str, t.frame.columns):
        text, missing = t.text(c)
        vals = text[~missing]
        if not len(vals) or vals.duplicated().any():
            continue
        s = set(vals)
        for kind, ids in (("items", item_ids), ("users", user_ids)):
            share = len(s & ids) / max(len(ids), 1)
            if share > best[0]:
                best = (share, kind, c)
    share, kind, id_col = best
    if not kind:
        say(f"{t.path}: no column with unique values matches the log's item or user ids; not used")
        return [f"# {_rel(t.path, base)}: no unique column matches the log's item or user ids, so it is not used"]
    say(f"{kind} file: {t.path} (id column {id_col!r} holds {share:.0%} of the log's {kind[:-1]} ids)")
    out = [f"[{kind}]", f"path = {_q(_rel(t.path, base))}",
           f"id_column = {_q(id_col)}  # unique, and holds {share:.0%} of the log's {kind[:-1]} ids"]
    out += _file_keys(t, say)
    text_fields: list[str] = []
    attributes: list[str] = []
    separator: str | None = None
    n = len(t.frame)
    for c in (str(c) for c in t.frame.columns if str(c) != id_col):
        text, missing = t.text(c)
        vals = text[~missing & ~text.isin(SUSPECT_NA).to_numpy()]
        if not len(vals):
            say(f"  column {c!r}: not used (no values, only missing cells)")
            continue
        d = int(vals.nunique())
        if float(vals.map(_is_locator).mean()) >= 0.8:
            say(f"  column {c!r}: not used (URLs or file paths; add it to text_fields if its words describe the "
                f"{kind[:-1]})")
            continue
        sep = next((s for s in _SEPARATORS if vals.str.contains(s, regex=False).mean() >= 0.1), None)
        long = float(vals.str.len().mean()) >= 15 or float(vals.str.contains(" ").mean()) >= 0.5
        if sep is not None and separator in (None, sep) and not float(vals.str.contains(" ").mean()) >= 0.5:
            separator = sep
            attributes.append(c)
            say(f"  attribute {c!r}: lists separated by {sep!r}")
        elif long and d > n // 2 and not _is_numeric(t, c):
            text_fields.append(c)
            say(f"  text field {c!r}: long strings (mean {float(vals.str.len().mean()):.0f} characters)")
        elif 1 < d <= max(2, n // 2):
            attributes.append(c)
            say(f"  attribute {c!r}: {d:,} distinct values in {n:,} rows")
        else:
            say(f"  column {c!r}: not used ({d:,} distinct values, {'numbers' if _is_numeric(t, c) else 'short strings'})")
    out.append(f"text_fields = [{', '.join(map(_q, text_fields))}]  # long strings: rendered into the {kind[:-1]} text")
    out.append(f"attribute_fields = [{', '.join(map(_q, attributes))}]  # few distinct values (or lists)")
    if separator is not None:
        out.append(f"list_separator = {_q(separator)}")
    if kind == "items" and text_fields:
        title = next((c for c in text_fields if _named(c, _TITLE)), text_fields[0])
        say(f"  title_field = {title!r}: shown next to recommended items")
        out.append(f"title_field = {_q(title)}  # shown next to recommended items")
    return [*out, ""]


# ----------------------------------------------------------------------------------------- text
def _q(s: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML)."""
    return json.dumps(s, ensure_ascii=False)


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base)).as_posix()


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name.removesuffix(suffix)
    return name or path.stem
