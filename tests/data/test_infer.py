"""``ctxrec data init``: known answers on generated files of each layout, then the reader on what it wrote."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from ctxrec.data.dataset import Dataset
from ctxrec.data.infer import infer_mapping
from ctxrec.data.readers import read_dataset
from ctxrec.data.splits import make_split
from ctxrec.data.synthetic import SimulatorConfig, simulate, write_raw_log
from ctxrec.errors import DataError

CONTEXT = [{"column": c, "kind": "categorical"} for c in ("daypart", "device", "weather")]
ITEMS = {"id_column": "itemID", "text_fields": ["name", "description"], "attribute_fields": ["genre"],
         "title_field": "name"}


@pytest.fixture(scope="module")
def sim() -> Dataset:
    return simulate(SimulatorConfig(n_users=60, n_items=50, n_genres=4, events_per_user=12, seed=5))


def _init(paths: dict[str, Path], *names: str) -> tuple[dict[str, Any], list[str], Path]:
    files = [paths[n] for n in names]
    mapping = files[0].parent / "mapping.toml"
    guess = infer_mapping(files, mapping_path=mapping)
    mapping.write_text(guess.toml)
    return tomllib.loads(guess.toml), guess.lines, mapping


def _expected(fmt: str, ts_format: str | None, *, items: bool, na: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"interactions": f"events.{fmt}", "name": "events", "user_column": "userID",
                           "item_column": "itemID", "weight_column": "rating", "dedupe": "exact", "context": CONTEXT}
    if na:
        out["na_values"] = ["NULL"]
    if ts_format is not None:
        out |= {"timestamp_column": "DateTime", "timestamp_format": ts_format}
    if items:
        out["items"] = {"path": f"items.{fmt}", **ITEMS}
    return out


@pytest.mark.parametrize(("fmt", "timestamps", "expected_format"), [
    ("csv", "day-first", "%d/%m/%Y %H:%M:%S"),
    ("csv", "month-first", "%m/%d/%Y %H:%M"),
    ("csv", "unix_ms", "unix_ms"),
    ("tsv", "unix_s", "unix_s"),
    ("jsonl", "iso", "iso"),
    ("parquet", "unix_s", "unix_s"),
])
def test_events_and_items_layouts(sim: Dataset, tmp_path: Path, fmt: str, timestamps: str, expected_format: str) -> None:
    paths = write_raw_log(sim, tmp_path, fmt=fmt, timestamps=timestamps)  # type: ignore[arg-type]  # parametrized literals
    mapping, lines, path = _init(paths, "events", "items")
    assert mapping == _expected(fmt, expected_format, items=True)
    printed = "\n".join(lines)
    assert "'NULL' in" in printed and "cells of 'weather'" in printed
    assert f"timestamp_format = {expected_format!r}" in printed
    data = read_dataset(path)  # the reader takes what init wrote, as written
    assert (data.n_users, data.n_events) == (sim.n_users, sim.n_events)
    assert data.interactions["timestamp"].notna().all()
    assert (data.interactions["weather"] == "<unk>").any() and "NULL" not in set(data.interactions["weather"])
    assert data.items.loc[sim.item_vocab.ids[0], "title"] == sim.items["title"].iloc[0]
    # Timestamps agree with the simulator's (to the second; the month-first style has minutes).
    tol = 60 if timestamps == "month-first" else 1
    got = data.interactions.sort_values(["user_id", "item_id"])["timestamp"].to_numpy()
    want = sim.interactions.sort_values(["user_id", "item_id"])["timestamp"].to_numpy()
    assert abs(got - want).max() < tol


def test_events_only_csv(sim: Dataset, tmp_path: Path) -> None:
    paths = write_raw_log(sim, tmp_path, timestamps="unix_s", null_token=None, items=False)
    mapping, _, path = _init(paths, "events")
    assert mapping == _expected("csv", "unix_s", items=False, na=False)
    assert "# na_values = []" in path.read_text()
    assert read_dataset(path).n_events == sim.n_events


def test_no_timestamp_column_sorted_by_item(sim: Dataset, tmp_path: Path) -> None:
    paths = write_raw_log(sim, tmp_path, timestamps="none", order="item", items=False)
    mapping, lines, path = _init(paths, "events")
    assert mapping == _expected("csv", None, items=False)
    assert "order" not in mapping
    printed = "\n".join(lines)
    assert "sorted by 'itemID'" in printed and 'split = "random"' in printed
    data = read_dataset(path)
    with pytest.raises(DataError, match='order = "file"'):
        make_split(data, "leave-one-out")
    assert len(make_split(data, "random").test) == sim.n_users


def test_no_timestamp_column_in_event_order(sim: Dataset, tmp_path: Path) -> None:
    paths = write_raw_log(sim, tmp_path, timestamps="none", items=False)
    mapping, lines, path = _init(paths, "events")
    assert "order" not in mapping and "# order = \"file\"" in path.read_text()
    assert "uncomment order = \"file\"" in "\n".join(lines)


def test_unknown_extension_semicolons_and_latin1(tmp_path: Path) -> None:
    rows = [f"u{u};m{(u * 7 + k) % 40};{1_600_000_000 + 3600 * k};Montr\xe9al" for u in range(30) for k in range(8)]
    (tmp_path / "log.dat").write_bytes(("user;movie;time;city\n" + "\n".join(rows) + "\n").encode("latin-1"))
    mapping, _, path = _init({"events": tmp_path / "log.dat"}, "events")
    assert (mapping["format"], mapping["delimiter"], mapping["encoding"]) == ("csv", ";", "cp1252")
    assert (mapping["user_column"], mapping["item_column"], mapping["timestamp_column"]) == ("user", "movie", "time")
    assert "city" not in str(mapping.get("context"))  # one value only
    data = read_dataset(path)
    assert data.n_events == 240


def test_side_file_matching_users_and_list_attributes(tmp_path: Path) -> None:
    ev = pd.DataFrame({"customer_id": [f"c{i % 25}" for i in range(300)], "sku": [f"p{i % 30}" for i in range(300)],
                       "created": pd.date_range("2023-01-01", periods=300, freq="h").strftime("%Y-%m-%d %H:%M:%S")})
    ev.to_csv(tmp_path / "orders.csv", index=False)
    pd.DataFrame({"sku": [f"p{i}" for i in range(30)], "tags": ["a|b", "b", "c|a"] * 10,
                  "blurb": [f"a fine product number {i} for you" for i in range(30)]}).to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame({"id": [f"c{i}" for i in range(25)], "country": ["FR", "DE", "ES", "IT", "PT"] * 5}).to_csv(
        tmp_path / "c.csv", index=False)
    mapping, _, path = _init({"e": tmp_path / "orders.csv", "p": tmp_path / "p.csv", "c": tmp_path / "c.csv"}, "e", "p", "c")
    assert mapping["timestamp_format"] == "iso"
    assert mapping["items"] == {"path": "p.csv", "id_column": "sku", "text_fields": ["blurb"],
                                "attribute_fields": ["tags"], "list_separator": "|", "title_field": "blurb"}
    assert mapping["users"] == {"path": "c.csv", "id_column": "id", "text_fields": [], "attribute_fields": ["country"]}
    data = read_dataset(path)
    assert data.items.loc["p0", "tags"] == ["a", "b"] and data.users.loc["c1", "country"] == "DE"


def test_cli_data_init_writes_a_mapping_the_reader_loads(sim: Dataset, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxrec.cli import app

    paths = write_raw_log(sim, tmp_path / "poi")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "init", "poi/events.csv", "poi/items.csv", "-o", "my.toml"])
    assert result.exit_code == 0, result.output
    assert "timestamp_format = '%d/%m/%Y %H:%M:%S'" in result.output and "wrote my.toml" in result.output
    data = read_dataset(tmp_path / "my.toml")  # paths in the mapping are relative to it
    assert data.n_events == sim.n_events and paths["events"].exists()
    again = runner.invoke(app, ["data", "init", "poi/events.csv", "-o", "my.toml"])
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    assert runner.invoke(app, ["data", "init", "poi/nothere.csv", "-o", "x.toml"]).exit_code == 2
    assert not (tmp_path / "x.toml").exists()


def _podcast_log(tmp_path: Path) -> tuple[Path, Path]:
    """A log whose item-named column is a 3-value context ("place") beside the real item ("podcast")."""
    rows = [{"listener": f"u{u}", "podcast": f"p{(u * 7 + k) % 60:02d}", "when": f"{1 + k % 28:02d}.03.2025 10:00",
             "place": ("home", "work", "gym")[k % 3]} for u in range(40) for k in range(10)]
    log = tmp_path / "plays.tsv"
    pd.DataFrame(rows).to_csv(log, sep="\t", index=False)
    cat = tmp_path / "podcasts.tsv"
    pd.DataFrame({"podcast": [f"p{i:02d}" for i in range(60)], "name": [f"Show {i}" for i in range(60)]}).to_csv(
        cat, sep="\t", index=False)
    return log, cat


def test_item_column_is_the_one_the_catalogue_names_not_a_context_named_like_an_item(tmp_path: Path) -> None:
    log, cat = _podcast_log(tmp_path)
    guess = infer_mapping([log, cat], mapping_path=tmp_path / "m.toml")
    mapping = tomllib.loads(guess.toml)
    assert mapping["item_column"] == "podcast"
    assert any("ids of podcasts.tsv's unique column 'podcast'" in line for line in guess.lines)
    assert {"column": "place", "kind": "categorical"} in mapping["context"]
    # without the catalogue: "place" (3 values) loses to the 60-value column although its name says item
    alone = tomllib.loads(infer_mapping([log], mapping_path=tmp_path / "m2.toml").toml)
    assert alone["item_column"] == "podcast"


def test_a_context_named_like_a_type_links_and_dump_nulls(tmp_path: Path) -> None:
    """Seen on InCarMusic's export: "RoadType" was taken for the event type (so it left the context),
    ``\\N`` (a MySQL/PostgreSQL dump's NULL) read as a value, and file paths and image URLs were rendered
    into the item text."""
    log = pd.DataFrame({"UserID": [f"{1000 + u}" for u in range(30) for _ in range(6)],
                        "ItemID": [f"{(u * 5 + k) % 40}" for u in range(30) for k in range(6)],
                        "RoadType": [("city", "highway", "serpentine", "NA")[k % 4] for _ in range(30) for k in range(6)]})
    log.to_csv(tmp_path / "ratings.csv", index=False)
    tracks = pd.DataFrame({"id": [str(i) for i in range(40)],
                           "album": ["\\N"] * 40,
                           "title": [f"Song number {i} of the road" for i in range(40)],
                           "mp3url": [f"Music/Pop/Artist {i} - Song {i}.mp3" for i in range(40)],
                           "imageurl": ["img/music.jpg"] * 10 + [f"http://cdn.example.com/c/{i}/cover.jpg" for i in range(30)],
                           "genre": [("pop", "rock", "\\N", "jazz")[i % 4] for i in range(40)]})
    tracks.to_csv(tmp_path / "tracks.csv", index=False)
    guess = infer_mapping([tmp_path / "ratings.csv", tmp_path / "tracks.csv"], mapping_path=tmp_path / "m.toml")
    mapping = tomllib.loads(guess.toml)
    assert "event_type_column" not in mapping
    assert {"column": "RoadType", "kind": "categorical"} in mapping["context"]
    assert mapping["items"]["na_values"] == ["\\N"]
    assert mapping["items"]["text_fields"] == ["title"] and mapping["items"]["attribute_fields"] == ["genre"]
    said = "\n".join(guess.lines)
    assert "'mp3url': not used (URLs or file paths" in said and "'imageurl': not used (URLs or file paths" in said
    assert "'album': not used (no values" in said
    (tmp_path / "m.toml").write_text(guess.toml)
    data = read_dataset(tmp_path / "m.toml")
    assert data.items["genre"].isna().sum() == 10  # the \N cells are missing, not a genre


@pytest.mark.parametrize(("column", "is_type"), [("type", True), ("event_type", True), ("action", True),
                                                 ("Kind", True), ("RoadType", False), ("device_type", False)])
def test_event_type_is_named_so_not_any_type(tmp_path: Path, column: str, is_type: bool) -> None:
    log = pd.DataFrame({"user": [f"u{u}" for u in range(20) for _ in range(5)],
                        "item": [f"i{(u + k) % 30}" for u in range(20) for k in range(5)],
                        column: [("a", "b", "c")[k % 3] for _ in range(20) for k in range(5)]})
    log.to_csv(tmp_path / "log.csv", index=False)
    mapping = tomllib.loads(infer_mapping([tmp_path / "log.csv"], mapping_path=tmp_path / "m.toml").toml)
    assert (mapping.get("event_type_column") == column) is is_type


def test_a_column_named_like_a_time_holding_categories_is_a_context(tmp_path: Path) -> None:
    """DePaulMovie's "Time" is Weekday/Weekend: it was taken for the timestamp, and the mapping written
    failed in `data info` ("cannot parse timestamp ... 'Weekday'"). A time-named column of many unparseable
    values still asks for a strptime pattern."""
    n = 200
    log = pd.DataFrame({"userid": [f"u{i % 20}" for i in range(n)], "itemid": [f"m{i % 30}" for i in range(n)],
                        "Time": [("Weekday", "Weekend", "NA")[i % 3] for i in range(n)]})
    log.to_csv(tmp_path / "r.csv", index=False)
    guess = infer_mapping([tmp_path / "r.csv"], mapping_path=tmp_path / "m.toml")
    mapping = tomllib.loads(guess.toml)
    assert "timestamp_column" not in mapping and {"column": "Time", "kind": "categorical"} in mapping["context"]
    assert any("'Time' is named like a time, but its 2 values" in line for line in guess.lines)
    log["Time"] = [f"day {i} at noon" for i in range(n)]
    log.to_csv(tmp_path / "r.csv", index=False)
    guess = infer_mapping([tmp_path / "r.csv"], mapping_path=tmp_path / "m.toml")
    assert any("the format of values like 'day 0 at noon' is unknown" in line for line in guess.lines)
