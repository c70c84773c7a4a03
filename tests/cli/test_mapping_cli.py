"""Your own data through the CLI: --mapping on every command that reads data, the run folder's data record
(mapping copy + SHA-256 of each file read), refusals when a file changed, request-context checks, and no
half-written folder after a failure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.data.synthetic import SimulatorConfig, simulate, write_raw_log

MAPPING = """\
interactions = "events.csv"
name = "mylog"
user_column = "userID"
item_column = "itemID"
timestamp_column = "DateTime"
timestamp_format = "%d/%m/%Y %H:%M:%S"
na_values = ["NULL"]

[[context]]
column = "daypart"

[[context]]
column = "device"

[[context]]
column = "weather"

[items]
path = "items.csv"
id_column = "itemID"
text_fields = ["name", "description"]
attribute_fields = ["genre"]
title_field = "name"
"""


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args))
    return res.exit_code, res.output


def write_log(folder: Path, **kw: object) -> Path:
    """A small public-style log (day-first dates, NULL weather cells) and its mapping; returns the mapping."""
    write_raw_log(simulate(SimulatorConfig(n_users=60, n_items=30, n_genres=4, events_per_user=8, seed=5)), folder, **kw)
    path = folder / "mapping.toml"
    path.write_text(MAPPING)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(mapping, run folder) of a context_popularity model trained through --mapping."""
    folder = tmp_path_factory.mktemp("log")
    mapping = write_log(folder)
    run = folder / "runs" / "ctxpop"
    code, out = invoke("train", "--mapping", str(mapping), "--model", "context_popularity", "-o", str(run))
    assert code == 0, out
    return mapping, run


def test_train_records_the_mapping_and_the_checksum_of_every_file(trained: tuple[Path, Path]) -> None:
    import hashlib

    mapping, run = trained
    assert (run / "mapping.toml").read_text() == MAPPING
    record = json.loads((run / "data.json").read_text())
    assert record["name"] == "mylog" and record["mapping_source"] == str(mapping.resolve())
    by_role = {f["role"]: f for f in record["files"]}
    assert set(by_role) == {"interactions", "items"}
    for role, name in (("interactions", "events.csv"), ("items", "items.csv")):
        path = mapping.parent / name
        assert by_role[role]["path"] == str(path.resolve())
        assert by_role[role]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["dataset"] == "mylog" and cfg["mapping"] == str(mapping.resolve())


def test_evaluate_finds_the_data_again(trained: tuple[Path, Path]) -> None:
    _, run = trained
    code, out = invoke("evaluate", str(run))
    assert code == 0, out
    ndcg = json.loads((run / "metrics.json").read_text())["metrics"]["ndcg@10"]
    assert f"{ndcg:.4f}" in out


def test_evaluate_and_retrain_refuse_when_a_file_changed(tmp_path: Path) -> None:
    from ctxrec.serving.store import EventStore

    mapping = write_log(tmp_path)
    run = tmp_path / "run"
    assert invoke("train", "--mapping", str(mapping), "--model", "popularity", "-o", str(run))[0] == 0
    EventStore(str(tmp_path / "events.sqlite")).close()
    code, out = invoke("retrain", "--model", str(run), "--store", str(tmp_path / "events.sqlite"), "-o",
                       str(tmp_path / "v2"))
    assert code == 0, out
    assert json.loads((tmp_path / "v2" / "data.json").read_text()) == json.loads((run / "data.json").read_text())

    events = tmp_path / "events.csv"
    original = events.read_text()
    events.write_text(original + original.splitlines()[-1] + "\n")
    code, out = invoke("evaluate", str(run))
    flat = " ".join(out.split())
    assert code == 2 and "interactions file" in flat and str(events.resolve()) in flat and "changed since run" in flat
    assert "--mapping" in flat  # the way out
    code, out = invoke("retrain", "--model", str(run), "--store", str(tmp_path / "events.sqlite"), "-o",
                       str(tmp_path / "v3"))
    assert code == 2 and "changed since run" in " ".join(out.split())
    assert not (tmp_path / "v3").exists() and not list(tmp_path.glob(".v3*"))  # nothing half-written
    code, out = invoke("evaluate", str(run), "--mapping", str(mapping))  # the data as it is now
    assert code == 0, out
    events.write_text(original)
    assert invoke("evaluate", str(tmp_path / "v2"))[0] == 0  # the retrained run records the same files
    (tmp_path / "items.csv").unlink()
    code, out = invoke("evaluate", str(tmp_path / "v2"))
    assert code == 2 and "items file" in out and "is missing" in " ".join(out.split())


def test_evaluate_a_model_folder_saved_from_the_library(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from ctxrec.models import load_model

    mapping, run = trained
    load_model(run).save(tmp_path / "saved")
    code, out = invoke("evaluate", str(tmp_path / "saved"))
    flat = " ".join(out.split())
    assert code == 2 and "model folder saved from the library" in flat and "pass --mapping FILE" in flat
    code, out = invoke("evaluate", str(tmp_path / "saved"), "--mapping", str(mapping))
    assert code == 0 and "ndcg@10" in out.lower(), out


def test_an_experiment_file_names_the_mapping_relative_to_itself(trained: tuple[Path, Path], tmp_path: Path) -> None:
    mapping, _ = trained
    exp = mapping.parent / "exp" / "popularity.toml"
    exp.parent.mkdir(exist_ok=True)
    exp.write_text('mapping = "../mapping.toml"\nmodel = "popularity"\n')
    code, out = invoke("train", str(exp), "-o", str(tmp_path / "run"))
    assert code == 0, out
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mapping"] == str(mapping.resolve())
    # a mapping passed where an experiment file goes: the error says what to do, and nothing is written
    code, out = invoke("train", str(mapping), "--model", "popularity", "-o", str(tmp_path / "wrong"))
    assert code == 2 and f"--mapping {mapping}" in " ".join(out.split())
    code, out = invoke("train", "--mapping", str(mapping), "--dataset", "synthetic", "-o", str(tmp_path / "wrong"))
    assert code == 2 and "not both" in out
    assert not (tmp_path / "wrong").exists()


def test_a_failed_train_on_a_mapping_leaves_no_folder(tmp_path: Path) -> None:
    mapping = write_log(tmp_path)
    (tmp_path / "events.csv").write_text("userID,itemID,DateTime\n")  # header only
    code, out = invoke("train", "--mapping", str(mapping), "--model", "popularity", "-o", str(tmp_path / "run"))
    assert code == 2 and "events.csv" in out
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_a_failed_export_leaves_no_folder(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = trained
    code, out = invoke("export", "--model", str(run), "-o", str(tmp_path / "export"))
    assert code == 2 and "context_popularity" in out  # no ONNX graph for this kind
    assert list(tmp_path.iterdir()) == []


def test_recommend_checks_the_request_context(trained: tuple[Path, Path], tmp_path: Path) -> None:
    mapping, run = trained
    code, out = invoke("recommend", str(run), "--user", "u01", "-c", "Weather=sunny")
    assert code == 2
    assert "unknown context field 'Weather' (did you mean 'weather'?)" in out and "daypart, device, weather" in out
    code, out = invoke("recommend", str(run), "--user", "u01", "-c", "weather=zzz", "-c", "device=tv", "--json")
    assert code == 0, out
    assert "weather='zzz' was never seen in training; scored as unknown; known values: " in out
    code, cased = invoke("recommend", str(run), "--user", "u01", "-c", "weather=Sunny", "-k", "2")
    assert code == 0 and "weather='Sunny' was never seen in training; scored as unknown (did you mean 'sunny'?)" in cased
    payload = json.loads(out[out.index("{"):])
    assert payload["context_used"] is True and payload["context_unknown_values"] == {"weather": "zzz"}
    assert all(payload["titles"])  # the items file's title_field
    # a model that ignores context says so
    blind = tmp_path / "pop"
    assert invoke("train", "--mapping", str(mapping), "--model", "popularity", "-o", str(blind))[0] == 0
    code, out = invoke("recommend", str(blind), "--user", "u01", "-c", "device=tv")
    assert code == 0 and "popularity models ignore request context; device was not used" in " ".join(out.split())
    code, out = invoke("recommend", str(blind), "--user", "nobody-here", "--json")  # not silent: said, and in the JSON
    assert code == 0 and "'nobody-here' is not in the model's training data" in " ".join(out.split())
    assert json.loads(out[out.index("{"):])["known_user"] is False


def test_recommend_titles_from_a_mapping(trained: tuple[Path, Path]) -> None:
    import pandas as pd

    mapping, run = trained
    names = pd.read_csv(mapping.parent / "items.csv", index_col="itemID")["name"]
    code, out = invoke("recommend", str(run), "--user", "u01", "--mapping", str(mapping), "--json")
    assert code == 0, out
    payload = json.loads(out)
    assert payload["titles"] == [names[i] for i in payload["items"]]


def test_data_info_reports_schema_order_and_target_support(tmp_path: Path) -> None:
    mapping = write_log(tmp_path)
    code, out = invoke("data", "info", "--mapping", str(mapping))
    assert code == 0, out
    assert re.search(r"weather\s+categorical\s+4 values \(.*\); \d+% missing", out), out
    assert re.search(r"order\s+time \(timestamps\)", out)
    assert re.search(r"targets\s+\d+\.\d% of the 60 leave-one-out test targets", out)
    assert re.search(r"repeats\s+no: items a user has are left out", out) and "notes: none" in out

    # no timestamps, each user's events sorted by item: the order is the file's only if the mapping says so
    sorted_log = tmp_path / "sorted"
    write_log(sorted_log, timestamps="none", order="item")
    text = MAPPING.replace('timestamp_column = "DateTime"\ntimestamp_format = "%d/%m/%Y %H:%M:%S"\n', "")
    (sorted_log / "mapping.toml").write_text(text)
    code, out = invoke("data", "info", "--mapping", str(sorted_log / "mapping.toml"))
    flat = " ".join(out.split())
    assert code == 0 and "leave-one-out cannot split this data" in flat and 'order = "file"' in flat
    (sorted_log / "mapping.toml").write_text('order = "file"\n' + text)
    code, out = invoke("data", "info", "--mapping", str(sorted_log / "mapping.toml"))
    assert code == 0 and re.search(r"order\s+file \(no timestamps", out), out


def test_data_info_needs_a_name_or_a_mapping(tmp_path: Path) -> None:
    code, out = invoke("data", "info")
    assert code == 2 and "--mapping FILE" in out
    mapping = write_log(tmp_path)
    code, out = invoke("data", "info", str(mapping))
    assert code == 2 and f"--mapping {mapping}" in " ".join(out.split())


def test_config_show_lists_every_field_with_type_default_and_doc() -> None:
    import dataclasses

    from ctxrec.config import nested_configs
    from ctxrec.models import get_model_class

    code, out = invoke("config", "show", "sasrec")
    assert code == 0, out
    cls = get_model_class("sasrec").config_class
    names = [ln.split()[0] for ln in out.splitlines()[1:]]
    nested = nested_configs(cls)
    expected = [f.name for f in dataclasses.fields(cls) if f.name not in nested]
    expected += [f"{k}.{f.name}" for k, sub in nested.items() for f in dataclasses.fields(sub)]
    assert sorted(names) == sorted(expected)
    line = next(ln for ln in out.splitlines() if ln.split()[0] == "train.max_epochs")
    assert re.search(r"train\.max_epochs\s+int\s+\d+", line)
    popularity = invoke("config", "show", "popularity")[1]
    assert re.search(r"window_days\s+float \| None\s+None\s+Count only events in the last", popularity)
    code, out = invoke("config", "show", "sasrek")
    assert code == 2 and "unknown model kind 'sasrek'" in out


def test_the_example_mapping_works_as_its_header_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/mapping_example.toml advertises `ctxrec data info --mapping ...`: run it on the files it shows."""
    example = Path(__file__).resolve().parents[2] / "examples" / "mapping_example.toml"
    text = example.read_text()
    (tmp_path / example.name).write_text(text)
    shown = [ln[1:].rstrip() for ln in text.splitlines() if ln.startswith("#   u1,")]  # events | items columns
    header = next(ln[1:] for ln in text.splitlines() if ln.startswith("#   user,"))
    cut = header.index("item,name")
    (tmp_path / "events.csv").write_text("\n".join(ln[:cut].strip() for ln in [header, *shown]) + "\n")
    (tmp_path / "items.csv").write_text("\n".join(ln[cut:].strip() for ln in [header, *shown]) + "\n")
    command = next(ln.split("#", 1)[1].strip() for ln in text.splitlines() if "ctxrec data info --mapping" in ln)
    monkeypatch.chdir(tmp_path)
    code, out = invoke(*command.split()[1:])
    assert code == 0, out
    assert re.search(r"name\s+my-shop", out) and re.search(r"device\s+categorical\s+1 value \(phone\); 50% missing", out)
