"""The column-mapping reader: every format, the mapping rules, and errors that name file/line/column.

All input files are generated here in tmp_path (no committed data).
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.dataset import Columns
from ctxrec.data.readers import ColumnMapping, ContextColumn, SideTable, load_mapping, read_dataset
from ctxrec.errors import ConfigError, DataError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mapping_example.toml"

EVENTS_CSV = """user,item,ts,action,stars,device,hour
u1,i1,1700000000,click,4,phone,8
u1,i2,1700000100,buy,5,phone,9
u2,i1,1700000050,click,3,,
u2,i3,1700000060,click,2,tablet,23
"""
ITEMS_CSV = """item,title,genres
i1,Kettle,kitchen|tea
i2,Mug,kitchen
i3,Teapot,
i4,Spoon,kitchen
"""


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def toml_mapping(tmp: Path, body: str, name: str = "mapping.toml") -> Path:
    return write(tmp / name, body)


BASE_TOML = """
interactions = "events.csv"
user_column = "user"
item_column = "item"
timestamp_column = "ts"
event_type_column = "action"
weight_column = "stars"

[[context]]
column = "device"

[[context]]
column = "hour"
kind = "numeric"

[items]
path = "items.csv"
id_column = "item"
text_fields = ["title", "genres"]
attribute_fields = ["genres"]
list_separator = "|"
"""


@pytest.fixture
def csv_case(tmp_path: Path) -> Path:
    write(tmp_path / "events.csv", EVENTS_CSV)
    write(tmp_path / "items.csv", ITEMS_CSV)
    return toml_mapping(tmp_path, BASE_TOML)


# ----------------------------------------------------------------------------------- happy paths
def test_csv_with_toml_mapping(csv_case: Path) -> None:
    data = read_dataset(csv_case)
    assert data.name == "mapping"
    assert (data.n_users, data.n_items, data.n_events) == (2, 4, 4)  # catalogue includes unrated i4
    inter = data.interactions
    assert inter[Columns.USER].tolist() == ["u1", "u1", "u2", "u2"]
    assert inter[Columns.ITEM].tolist() == ["i1", "i2", "i1", "i3"]
    assert inter[Columns.TIME].tolist() == [1700000000.0, 1700000100.0, 1700000050.0, 1700000060.0]
    assert inter[Columns.EVENT].tolist() == ["click", "buy", "click", "click"]
    assert inter[Columns.WEIGHT].tolist() == [4.0, 5.0, 3.0, 2.0]
    assert inter["device"].tolist() == ["phone", "phone", "<unk>", "tablet"]
    assert np.isnan(inter["hour"].iloc[2]) and inter["hour"].iloc[3] == 23.0
    assert data.schema.context_names == ("device", "hour")
    assert data.items.loc["i1", "genres"] == ["kitchen", "tea"]
    assert data.items.loc["i3", "genres"] == []
    assert data.item_text()[0] == "title: Kettle; genres: kitchen, tea"
    assert data.notes == ()
    summary = data.summary()
    assert summary["context_fields"] == ["device (categorical)", "hour (numeric)"]
    assert summary["item_attribute_fields"] == ["genres"]


def test_paths_resolve_relative_to_mapping_file(
    csv_case: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert read_dataset(csv_case, name="shop").name == "shop"
    assert read_dataset(str(csv_case)).n_events == 4


def test_tsv_gz_with_json_mapping_and_unix_ms(tmp_path: Path) -> None:
    write(tmp_path / "log.tsv.gz", "uid\tiid\tt_ms\n1\t10\t1700000000500\n1\t11\t1700000001500\n2\t10\t1700000002000\n")
    (tmp_path / "m.json").write_text(json.dumps(
        {"interactions": "log.tsv.gz", "user_column": "uid", "item_column": "iid",
         "timestamp_column": "t_ms", "timestamp_format": "unix_ms"}
    ))
    data = read_dataset(tmp_path / "m.json")
    assert data.interactions[Columns.TIME].tolist() == [1700000000.5, 1700000001.5, 1700000002.0]
    assert data.user_vocab.ids == ["1", "2"]
    assert data.schema.has_timestamps


def test_parquet_with_datetime_and_list_attributes(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    events = pa.table({
        "user": [7, 7, 8],
        "item": ["a", "b", "a"],
        "when": pa.array(
            pd.to_datetime(["2024-01-01 00:00:00", "2024-01-01 00:01:00", "2024-01-02 00:00:00"]).to_numpy()
        ),
        "temp": [20.5, None, 18.0],
        "w": [1.0, 2.0, 0.5],
    })
    pq.write_table(events, tmp_path / "events.parquet")
    items = pa.table({"id": ["a", "b"], "tags": [["x", "y"], []], "name": ["A", "B"]})
    pq.write_table(items, tmp_path / "items.parquet")
    mapping = ColumnMapping(
        interactions="events.parquet", user_column="user", item_column="item", timestamp_column="when",
        weight_column="w", context=(ContextColumn(column="temp", kind="numeric", name="temperature"),),
        items=SideTable(path="items.parquet", id_column="id", text_fields=("name",), attribute_fields=("tags",)),
    )
    data = read_dataset(mapping, base_dir=tmp_path, name="pq")
    assert data.interactions[Columns.USER].tolist() == ["7", "7", "8"]
    assert data.interactions[Columns.TIME].iloc[1] - data.interactions[Columns.TIME].iloc[0] == 60.0
    assert data.interactions[Columns.TIME].iloc[0] == pd.Timestamp("2024-01-01", tz="UTC").timestamp()
    assert np.isnan(data.interactions["temperature"].iloc[1])
    assert data.items.loc["a", "tags"] == ["x", "y"] and data.items.loc["b", "tags"] == []


def test_jsonl_gz_iso_timestamps_and_users(tmp_path: Path) -> None:
    lines = [
        {"u": 1, "i": 100, "t": "2024-03-01T10:00:00+02:00", "ctx": "home"},
        {"u": 1, "i": 101, "t": "2024-03-01T09:00:00Z", "ctx": None},
        {"u": 2, "i": 100, "t": "2024-03-02", "ctx": "work"},
    ]
    write(tmp_path / "ev.jsonl.gz", "\n".join(json.dumps(x) for x in lines) + "\n")
    write(tmp_path / "users.jsonl", '{"uid": 1, "country": "FR"}\n\n{"uid": 2, "country": "DE"}\n')
    toml_mapping(tmp_path, """
interactions = "ev.jsonl.gz"
user_column = "u"
item_column = "i"
timestamp_column = "t"
timestamp_format = "iso"
context = [{column = "ctx"}]
[users]
path = "users.jsonl"
id_column = "uid"
attribute_fields = ["country"]
""")
    data = read_dataset(tmp_path / "mapping.toml")
    inter = data.interactions
    # u1: 08:00Z (the +02:00 one) before 09:00Z, so the file order is swapped by time.
    assert inter[Columns.ITEM].tolist() == ["100", "101", "100"]
    assert inter["ctx"].tolist() == ["home", "<unk>", "work"]
    assert data.users.loc["2", "country"] == "DE"
    assert data.summary()["user_fields"] == ["country"]


def test_filters_are_logged_and_noted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "events.csv", (
        "user,item,ts\n"
        "u1,i1,1700000100\n"
        "u1,i1,1700000100\n"     # line 3: exact duplicate of line 2
        "u1,i9,1700000101\n"     # line 4: i9 is not in the items file
        "u2,i2,\n"               # line 5: empty timestamp
        "u2,i1,1700000103\n"
    ))
    write(tmp_path / "items.csv", "item,title\ni1,A\ni2,B\n")
    toml_mapping(tmp_path, """
interactions = "events.csv"
user_column = "user"
item_column = "item"
timestamp_column = "ts"
[items]
path = "items.csv"
id_column = "item"
text_fields = ["title"]
""")
    with caplog.at_level(logging.WARNING, logger="ctxrec.data.readers"):
        data = read_dataset(tmp_path / "mapping.toml")
    assert data.n_events == 2
    notes = "\n".join(data.notes)
    assert "dropped 1 event(s) with a missing timestamp" in notes and "line 5" in notes
    assert "dropped 1 event(s) whose item is not in the items file" in notes and f"'i9' at {tmp_path / 'events.csv'}, line 4, column 'item'" in notes
    assert "dropped 1 exact duplicate event(s)" in notes and "line 3" in notes
    assert len(data.notes) == 3
    assert [r.getMessage() for r in caplog.records] == list(data.notes)


def test_missing_timestamps_can_be_kept(tmp_path: Path) -> None:
    write(tmp_path / "e.csv", "user,item,ts\na,x,1700000005\na,y,\n")
    data = read_dataset(
        {"interactions": "e.csv", "user_column": "user", "item_column": "item", "timestamp_column": "ts",
         "require_timestamp": False},
        base_dir=tmp_path,
    )
    assert data.n_events == 2 and "kept because require_timestamp = false" in data.notes[0]


@pytest.mark.parametrize(("policy", "expected"), [
    ("none", ["x", "y", "x"]),
    ("exact", ["x", "y", "x"]),
    ("user_item_first", ["x", "y"]),
    ("user_item_last", ["y", "x"]),
])
def test_dedupe_policies(tmp_path: Path, policy: str, expected: list[str]) -> None:
    write(tmp_path / "e.csv", "user,item,ts\na,x,1700000001\na,y,1700000002\na,x,1700000003\n")
    data = read_dataset(
        {"interactions": "e.csv", "user_column": "user", "item_column": "item", "timestamp_column": "ts",
         "dedupe": policy},
        base_dir=tmp_path,
    )
    assert data.item_vocab.external(data.sequences()[0]) == expected
    if policy.startswith("user_item"):
        assert "dropped 1 repeated (user, item) event(s)" in data.notes[0]


@pytest.mark.parametrize(("pairs", "setting", "repeats", "noted"), [
    ("ax ay ax bx", None, True, True),  # a takes x again: repeats, said
    ("ax ay bx", None, False, False),
    ("ax ay ax", False, False, False),  # the mapping's word wins, and needs no note
    ("ax ay", True, True, False),
])
def test_repeat_consumption_follows_the_log_unless_the_mapping_says(tmp_path: Path, pairs: str, setting: bool | None,
                                                                    repeats: bool, noted: bool) -> None:
    """A log where users take an item again (plays, one track rated in several contexts) must keep seen items
    in recommendations and evaluation: else a held-out item the user had is excluded, unreachable, and
    every metric reads 0 (InCarMusic from a mapping: test NDCG@10 0.0000 before)."""
    rows = [f"{p[0]},{p[1]},{1_700_000_000 + i}" for i, p in enumerate(pairs.split())]
    write(tmp_path / "e.csv", "user,item,ts\n" + "\n".join(rows) + "\n")
    mapping: dict[str, object] = {"interactions": "e.csv", "user_column": "user", "item_column": "item",
                                  "timestamp_column": "ts"}
    if setting is not None:
        mapping["repeat_consumption"] = setting
    data = read_dataset(mapping, base_dir=tmp_path)
    assert data.schema.repeat_consumption is repeats
    assert any("repeat a (user, item) pair" in n and "repeat_consumption = true" in n for n in data.notes) is noted


def test_example_mapping_reads_the_files_it_describes(tmp_path: Path) -> None:
    mapping = load_mapping(EXAMPLE)
    assert mapping.items is not None and mapping.items.list_separator == "|"
    assert [c.kind for c in mapping.context] == ["categorical", "numeric"]
    (tmp_path / "mapping_example.toml").write_text(EXAMPLE.read_text())
    write(tmp_path / "events.csv", (  # the files its header comment shows
        "user,item,ts,action,stars,device,hour\n"
        "u1,i9,2024-05-01T08:00:00Z,click,,phone,8\n"
        "u1,i8,2024-05-01T08:05:00Z,buy,5,NULL,8\n"
    ))
    write(tmp_path / "items.csv", "item,name,tags,price\ni9,Blue kettle,kitchen|tea,19.5\ni8,Mug,,3\n")
    for line in ("u1,i8,2024-05-01T08:05:00Z,buy,5,NULL,8", "i9,Blue kettle,kitchen|tea,19.5"):
        assert line in EXAMPLE.read_text()
    data = read_dataset(tmp_path / "mapping_example.toml")
    assert data.name == "my-shop" and data.n_events == 2
    assert data.items.loc["i9", "tags"] == ["kitchen", "tea"]
    assert data.interactions["device"].tolist() == ["phone", "<unk>"]  # NULL is in na_values
    assert data.items.loc["i9", "title"] == "Blue kettle"  # title_field = "name"


# ------------------------------------------------------------------------------------- errors
def _err(mapping: Path) -> str:
    with pytest.raises(DataError) as info:
        read_dataset(mapping)
    return str(info.value)


def test_error_missing_required_column(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV.replace("stars", "rating"))
    msg = _err(csv_case)
    assert str(tmp_path / "events.csv") in msg and "line 1 (header)" in msg and "'stars'" in msg and "weight" in msg


def test_error_missing_column_in_items_file(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "items.csv", ITEMS_CSV.replace("title", "name"))
    msg = _err(csv_case)
    assert str(tmp_path / "items.csv") in msg and "line 1 (header)" in msg and "'title'" in msg


def test_error_unparseable_timestamp(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV.replace("1700000060", "yesterday"))
    msg = _err(csv_case)
    assert f"{tmp_path / 'events.csv'}, line 5, column 'ts'" in msg and "'yesterday'" in msg


def test_error_unparseable_iso_timestamp(tmp_path: Path) -> None:
    write(tmp_path / "e.csv", "u,i,t\na,b,2024-01-01\na,c,2024-13-45\na,d,nope\n")
    with pytest.raises(DataError, match=r"e\.csv, line 3, column 't'.*'2024-13-45'.*1 more row"):
        read_dataset({"interactions": "e.csv", "user_column": "u", "item_column": "i", "timestamp_column": "t",
                      "timestamp_format": "iso"}, base_dir=tmp_path)


def test_error_empty_user_id(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV.replace("u2,i3", ",i3"))
    msg = _err(csv_case)
    assert f"{tmp_path / 'events.csv'}, line 5, column 'user'" in msg and "empty user id" in msg


def test_error_non_numeric_context(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV.replace("phone,9", "phone,nine"))
    msg = _err(csv_case)
    assert f"{tmp_path / 'events.csv'}, line 3, column 'hour'" in msg and "'nine'" in msg


def test_error_non_numeric_weight(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "events.csv", EVENTS_CSV.replace("click,4", "click,lots"))
    assert "line 2, column 'stars'" in _err(csv_case)


def test_error_line_numbers_count_multiline_fields_and_blank_lines(tmp_path: Path) -> None:
    write(tmp_path / "e.csv", 'u,i,note,t\n\na,b,"two\nlines",1700000000\na,c,x,bad\n')
    with pytest.raises(DataError, match=r"e\.csv, line 5, column 't'"):
        read_dataset({"interactions": "e.csv", "user_column": "u", "item_column": "i", "timestamp_column": "t"},
                     base_dir=tmp_path)


def test_error_parquet_names_row(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    pq.write_table(pa.table({"u": ["a", "", "c"], "i": ["x", "y", "z"]}), tmp_path / "e.parquet")
    with pytest.raises(DataError, match=r"e\.parquet, row 2, column 'u': empty user id"):
        read_dataset({"interactions": "e.parquet", "user_column": "u", "item_column": "i"}, base_dir=tmp_path)


def test_error_jsonl_null_id_and_bad_line(tmp_path: Path) -> None:
    write(tmp_path / "e.jsonl", '{"u": "a", "i": 1}\n\n{"u": null, "i": 2}\n')
    with pytest.raises(DataError, match=r"e\.jsonl, line 3, column 'u': empty user id"):
        read_dataset({"interactions": "e.jsonl", "user_column": "u", "item_column": "i"}, base_dir=tmp_path)
    write(tmp_path / "e.jsonl", '{"u": "a", "i": 1}\n{"u": "b", i: 2}\n')
    with pytest.raises(DataError, match=r"e\.jsonl, line 2: not valid JSON"):
        read_dataset({"interactions": "e.jsonl", "user_column": "u", "item_column": "i"}, base_dir=tmp_path)


def test_error_duplicate_item_in_items_file(csv_case: Path, tmp_path: Path) -> None:
    write(tmp_path / "items.csv", ITEMS_CSV + "i2,Other mug,\n")
    msg = _err(csv_case)
    assert f"{tmp_path / 'items.csv'}, line 6, column 'item'" in msg and "first at line 3" in msg


def test_error_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    write(tmp_path / "e.txt", "u,i\na,b\n")
    with pytest.raises(DataError, match=r"e\.txt.*set `format`"):
        read_dataset({"interactions": "e.txt", "user_column": "u", "item_column": "i"}, base_dir=tmp_path)
    assert read_dataset({"interactions": "e.txt", "user_column": "u", "item_column": "i", "format": "csv"},
                        base_dir=tmp_path).n_events == 1
    with pytest.raises(DataError, match=r"nothere\.csv.*does not exist"):
        read_dataset({"interactions": "nothere.csv"}, base_dir=tmp_path)


@pytest.mark.parametrize(("extra", "match"), [
    ('colour = "red"\n', r"unknown mapping key 'colour'"),
    ('[items]\npath = "items.csv"\nid_column = "item"\ntitle = "x"\n', r"unknown mapping key items\.'title'"),
    ('[[context]]\ncolumn = "device"\ntype = "numeric"\n', r"unknown mapping key context\[0\]\.'type'"),
    ('[[context]]\ncolumn = "device"\nkind = "ordinal"\n', r"context\.0\.kind"),
    ('[[context]]\ncolumn = "device"\nname = "timestamp"\n', r"clash"),
    ('timestamp_format = "dd/mm/yyyy"\n', r"timestamp_format"),
])
def test_mapping_validation(tmp_path: Path, extra: str, match: str) -> None:
    path = toml_mapping(tmp_path, 'interactions = "events.csv"\n' + extra)  # top-level key first, then tables
    with pytest.raises(ConfigError, match=match) as info:
        read_dataset(path)
    assert str(path) in str(info.value)
