"""One test per kind of bad input: each message names the file, the line and the column where there is one.

Also the reader options that fix them: ``na_values``, ``timestamp_format`` patterns, the timestamp range,
``format`` for any extension, ``title_field``. All files are generated in tmp_path.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ctxrec.context import ContextEncoder
from ctxrec.data.dataset import Columns
from ctxrec.data.readers import TITLE_COLUMN, read_dataset
from ctxrec.errors import ConfigError, DataError

BASE = {"interactions": "e.csv", "user_column": "user", "item_column": "item"}


def _write(tmp: Path, text: str | bytes, name: str = "e.csv") -> Path:
    path = tmp / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def _error(tmp: Path, text: str | bytes, **mapping: Any) -> str:
    name = mapping.get("interactions", "e.csv")
    _write(tmp, text, name)
    with pytest.raises(DataError) as info:
        read_dataset({**BASE, **mapping}, base_dir=tmp)
    return str(info.value)


def _where(tmp: Path, line: int, column: str, name: str = "e.csv") -> str:
    return f"{tmp / name}, line {line}, column {column!r}"


# ------------------------------------------------------------------------------------ file structure
def test_wrong_column_names_header_line_column_and_close_match(tmp_path: Path) -> None:
    msg = _error(tmp_path, "user,item,trip_type\na,x,FAMILY\n", context=[{"column": "TripType"}])
    assert f"{tmp_path / 'e.csv'}, line 1 (header), column 'TripType'" in msg
    assert "no such column" in msg and "did you mean 'trip_type'?" in msg


@pytest.mark.parametrize(("body", "line"), [
    ("a,x,1,2\nb,y,3\n", 2),  # the first record: pandas would silently make 'user' the index
    ("a,x,1\nb,y,3,4\n", 3),
])
def test_extra_fields(tmp_path: Path, body: str, line: int) -> None:
    msg = _error(tmp_path, "user,item,ctx\n" + body)
    assert f"{tmp_path / 'e.csv'}, line {line}, after column 'ctx'" in msg
    assert "4 fields but the header (line 1) has 3 columns" in msg and "must be quoted" in msg


def test_missing_fields(tmp_path: Path) -> None:
    msg = _error(tmp_path, "user,item,ctx\na,x,1\nb,y\n")  # pandas would pad 'ctx' with ''
    assert _where(tmp_path, 3, "ctx") in msg and "ends after 2 field(s)" in msg


def test_unclosed_quote(tmp_path: Path) -> None:
    msg = _error(tmp_path, 'user,item,note\na,x,fine\nb,y,"never closed\nc,z,ok\nd,w,ok\n')
    assert _where(tmp_path, 3, "note") in msg and "never closes" in msg


def test_quoted_multiline_value_is_not_an_error(tmp_path: Path) -> None:
    _write(tmp_path, 'user,item,note\na,x,"two\nlines"\nb,y,"say ""hi"""\n')
    data = read_dataset(BASE, base_dir=tmp_path)
    assert data.n_events == 2


def test_non_utf8_byte_names_its_line_and_column(tmp_path: Path) -> None:
    body = "user,item,city\na,x,Paris\nb,y,Montr\xe9al\n".encode("latin-1")
    msg = _error(tmp_path, body)
    assert _where(tmp_path, 3, "city") in msg and "byte 0xe9" in msg and "not valid utf-8" in msg
    assert 'encoding' in msg and "latin-1" in msg
    assert read_dataset({**BASE, "encoding": "latin-1"}, base_dir=tmp_path).n_events == 2


def test_non_utf8_byte_in_gzip_file(tmp_path: Path) -> None:
    msg = _error(tmp_path, b"user,item\na,x\nb,\xff\n", interactions="e.csv.gz")
    assert _where(tmp_path, 3, "item", "e.csv.gz") in msg and "byte 0xff" in msg


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    _write(tmp_path, "\ufeffuser,item\na,x\n".encode())
    assert read_dataset(BASE, base_dir=tmp_path).n_events == 1


def test_empty_file(tmp_path: Path) -> None:
    msg = _error(tmp_path, "")
    assert f"{tmp_path / 'e.csv'}: the file is empty" in msg and "header line" in msg
    msg = _error(tmp_path, "", interactions="e.jsonl")
    assert f"{tmp_path / 'e.jsonl'}: the file is empty" in msg and "JSON object" in msg


def test_header_only(tmp_path: Path) -> None:
    msg = _error(tmp_path, "user,item\n")
    assert f"{tmp_path / 'e.csv'}: line 1 is the header and no record follows it" in msg


def test_bad_json_line(tmp_path: Path) -> None:
    msg = _error(tmp_path, '{"user": "a", "item": "x"}\n{"user": "b", item: "y"}\n', interactions="e.jsonl")
    assert f"{tmp_path / 'e.jsonl'}, line 2: not valid JSON" in msg


# ------------------------------------------------------------------------------------------ values
def test_unknown_item_is_dropped_and_reported_with_file_line_column(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write(tmp_path, "user,item\na,x\na,nope\nb,x\n")
    _write(tmp_path, "id,name\nx,Kettle\n", "items.csv")
    with caplog.at_level(logging.WARNING, logger="ctxrec.data.readers"):
        data = read_dataset({**BASE, "items": {"path": "items.csv", "id_column": "id"}}, base_dir=tmp_path)
    assert data.n_events == 2
    assert "dropped 1 event(s) whose item is not in the items file" in data.notes[0]
    assert f"'nope' at {_where(tmp_path, 3, 'item')}" in data.notes[0]
    assert caplog.records[0].getMessage() == data.notes[0]


def test_empty_id(tmp_path: Path) -> None:
    msg = _error(tmp_path, "user,item\na,x\n,y\n")
    assert _where(tmp_path, 3, "user") in msg and "empty user id" in msg


def test_non_numeric_weight(tmp_path: Path) -> None:
    msg = _error(tmp_path, "user,item,stars\na,x,4\nb,y,four\n", weight_column="stars")
    assert _where(tmp_path, 3, "stars") in msg and "not a number: 'four'" in msg


@pytest.mark.parametrize(("value", "fmt", "hint"), [
    ("1e20", "unix_s", "widen timestamp_min / timestamp_max"),
    ("-1e11", "unix_s", "before year 1"),
    ("1700000000000", "unix_s", 'looks like milliseconds: set timestamp_format = "unix_ms"'),
    ("1700000000", "unix_ms", 'looks like seconds: set timestamp_format = "unix_s"'),
    ("1e20", "unix_ms", "after year 9999"),
    ("86400", "unix_s", "1970-01-02"),
])
def test_out_of_range_unix_timestamp(tmp_path: Path, value: str, fmt: str, hint: str) -> None:
    ok = "1700000000" if fmt == "unix_s" else "1700000000000"
    msg = _error(tmp_path, f"user,item,ts\na,x,{ok}\na,y,{value}\n", timestamp_column="ts", timestamp_format=fmt)
    assert _where(tmp_path, 3, "ts") in msg and "outside the plausible range 1990-01-01" in msg
    assert hint in msg and repr(value) in msg


def test_timestamp_range_is_configurable(tmp_path: Path) -> None:
    _write(tmp_path, "user,item,ts\na,x,86400\na,y,172800\n")
    mapping = {**BASE, "timestamp_column": "ts", "timestamp_min": "1970-01-01"}
    assert read_dataset(mapping, base_dir=tmp_path).interactions[Columns.TIME].tolist() == [86400.0, 172800.0]
    msg = _error(tmp_path, "user,item,ts\na,x,2024-06-01\n", timestamp_column="ts", timestamp_format="iso",
                 timestamp_max="2020-01-01")
    assert _where(tmp_path, 2, "ts") in msg and "2020-01-01" in msg
    with pytest.raises(ConfigError, match="timestamp_min"):
        read_dataset({**BASE, "timestamp_min": "the nineties"}, base_dir=tmp_path)


@pytest.mark.parametrize("fmt", ["unix_s", "iso"])
def test_day_first_date_without_timestamp_format(tmp_path: Path, fmt: str) -> None:
    text = "user,item,ts\na,x,12/05/2017 10:00:00\na,y,25/05/2017 18:30:00\n"
    msg = _error(tmp_path, text, timestamp_column="ts", timestamp_format=fmt)
    assert _where(tmp_path, 2, "ts") in msg and "day-first dates" in msg
    assert 'set timestamp_format = "%d/%m/%Y %H:%M:%S"' in msg


def test_day_first_pattern_reads_dates_as_utc(tmp_path: Path) -> None:
    _write(tmp_path, "user,item,ts\na,x,12/05/2017 10:00:00\na,y,25/05/2017 18:30:00\n")
    data = read_dataset({**BASE, "timestamp_column": "ts", "timestamp_format": "%d/%m/%Y %H:%M:%S"}, base_dir=tmp_path)
    assert data.interactions[Columns.TIME].tolist() == [1494583200.0, 1495737000.0]  # 2017-05-12 10:00 UTC, ...
    msg = _error(tmp_path, "user,item,ts\na,x,12/05/2017 10:00:00\na,y,2017-05-25\n", timestamp_column="ts",
                 timestamp_format="%d/%m/%Y %H:%M:%S")
    assert _where(tmp_path, 3, "ts") in msg and "'2017-05-25'" in msg


def test_null_tokens_are_errors_until_declared(tmp_path: Path) -> None:
    text = "user,item,weather,mood\na,x,sunny,NULL\nb,y,NULL,happy\nc,z,rainy,NULL\n"
    msg = _error(tmp_path, text, context=[{"column": "weather"}, {"column": "mood"}])
    assert _where(tmp_path, 3, "weather") in msg and "'NULL' looks like a missing-value token" in msg
    assert 'na_values = ["NULL"]' in msg and "na_values = []" in msg

    data = read_dataset({**BASE, "na_values": ["NULL"], "context": [{"column": "weather"}, {"column": "mood"}]},
                        base_dir=tmp_path)
    assert data.interactions["weather"].tolist() == ["sunny", "<unk>", "rainy"]
    # Downstream a missing value is the unknown id 0, never a category of its own.
    enc = ContextEncoder().fit(data)
    ids, _ = enc.encode([{"weather": "<unk>"}, {"weather": "NULL"}, {"weather": "sunny"}])
    assert ids[0, 0] == 0 and ids[1, 0] == 0 and ids[2, 0] > 0
    assert enc.cardinalities[0] == 3  # unknown + sunny + rainy


def test_na_values_per_column_replace_the_files(tmp_path: Path) -> None:
    _write(tmp_path, "user,item,region,mood\na,x,NA,-\nb,y,EU,happy\n")
    data = read_dataset({**BASE, "na_values": ["-"], "context": [{"column": "region", "na_values": []},
                                                                 {"column": "mood"}]}, base_dir=tmp_path)
    assert data.interactions["region"].tolist() == ["NA", "EU"]  # North America, declared a value
    assert data.interactions["mood"].tolist() == ["<unk>", "happy"]


def test_na_tokens_in_numeric_and_id_columns(tmp_path: Path) -> None:
    _write(tmp_path, "user,item,temp,stars\na,x,NULL,4\nb,y,21.5,NULL\n")
    mapping = {**BASE, "na_values": ["NULL"], "context": [{"column": "temp", "kind": "numeric"}]}
    data = read_dataset(mapping, base_dir=tmp_path)
    assert np.isnan(data.interactions["temp"].iloc[0]) and data.interactions["temp"].iloc[1] == 21.5
    with pytest.raises(DataError, match=r"line 3, column 'stars': empty or missing value"):
        read_dataset({**mapping, "weight_column": "stars"}, base_dir=tmp_path)
    msg = _error(tmp_path, "user,item\na,x\nNULL,y\n", na_values=["NULL"])
    assert _where(tmp_path, 3, "user") in msg and "missing user id (a token listed in na_values)" in msg


# ----------------------------------------------------------------------------------- file options
def test_any_extension_with_format_and_a_multi_character_delimiter(tmp_path: Path) -> None:
    _write(tmp_path, "user::item::ts\n1::10::978300760\n1::11::978302109\n2::10::978301968\n", "ratings.dat")
    mapping = {**BASE, "interactions": "ratings.dat", "format": "csv", "delimiter": "::", "timestamp_column": "ts"}
    data = read_dataset(mapping, base_dir=tmp_path)
    assert data.n_events == 3 and data.interactions[Columns.ITEM].tolist() == ["10", "11", "10"]
    _write(tmp_path, "user::item::ts\n1::10::978300760\n1::11::97830x109::9\n", "ratings.dat")
    with pytest.raises(DataError, match=r"ratings\.dat, line 3, after column 'ts': 4 fields"):
        read_dataset(mapping, base_dir=tmp_path)
    with pytest.raises(DataError, match=r"ratings\.dat: cannot tell the file format.*format = \"csv\""):
        read_dataset({**mapping, "format": "auto"}, base_dir=tmp_path)


@pytest.mark.parametrize(("items", "title_field", "expected"), [
    ("id,name,plot\nx,Kettle,Boils water\n", None, "Kettle"),          # first text field
    ("id,plot,title\nx,Boils water,Kettle\n", None, "Kettle"),         # a text field named title
    ("id,plot,label\nx,Boils water,Kettle\n", "label", "Kettle"),      # not a text field at all
])
def test_title_field(tmp_path: Path, items: str, title_field: str | None, expected: str) -> None:
    _write(tmp_path, "user,item\na,x\n")
    _write(tmp_path, items, "items.csv")
    text = [c for c in items.split("\n", maxsplit=1)[0].split(",")[1:] if c != "label"]
    side: dict[str, Any] = {"path": "items.csv", "id_column": "id", "text_fields": text}
    if title_field:
        side["title_field"] = title_field
    data = read_dataset({**BASE, "items": side}, base_dir=tmp_path)
    assert data.items.loc["x", TITLE_COLUMN] == expected
    assert "label" not in data.item_text()[0]  # the title column is for display, not the item text

    from ctxrec.models.popularity import PopularityRecommender

    assert PopularityRecommender().fit(data).item_titles == {"x": expected}


def test_title_field_that_would_shadow_a_title_column_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, "user,item\na,x\n")
    _write(tmp_path, "id,name,title\nx,Kettle,K\n", "items.csv")
    with pytest.raises(ConfigError, match=r"title_field = 'name'.*'title' is also declared"):
        read_dataset({**BASE, "items": {"path": "items.csv", "id_column": "id", "text_fields": ["name", "title"],
                                        "title_field": "name"}}, base_dir=tmp_path)
