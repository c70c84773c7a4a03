"""Built-in datasets: published counts on the real files, and the missing-file / download paths.

Real-data tests are marked ``data`` (CTXREC_DATA); the download tests build their own files in
tmp_path and never touch a real host (a closed localhost port proves the offline failure path).
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from ctxrec.data import download as dl
from ctxrec.data.dataset import Columns, Dataset
from ctxrec.data.datasets import DATASETS, dataset_info, load_dataset
from ctxrec.data.splits import leave_one_out
from ctxrec.errors import DatasetNotFoundError

# name -> (users that appear, items that appear, catalogue, events): the published figures.
COUNTS = {
    "ml-1m": (6_040, 3_416, 3_416, 999_611),
    "ml-100k": (943, 1_682, 1_682, 100_000),
    "amazon-scientific": (8_442, 4_385, 4_385, 59_427),
    "amazon-beauty": (22_363, 12_101, 12_101, 198_502),
    "amazon-sports": (35_598, 18_357, 18_357, 296_337),
    "amazon-toys": (19_412, 11_924, 11_924, 167_597),
    "lastfm": (1_090, 3_646, 3_646, 52_551),
    "ml-latest-small": (610, 9_724, 9_742, 100_836),
    "frappe": (957, 4_082, 4_082, 96_203),
    "incarmusic": (42, 139, 139, 4_012),
    "depaulmovie": (97, 79, 79, 5_043),
}


@pytest.fixture(scope="module")
def loaded(data_dir: Path) -> Callable[[str], Dataset]:
    """Each dataset loaded once per module."""
    cache: dict[str, Dataset] = {}

    def get(name: str) -> Dataset:
        if name not in cache:
            cache[name] = load_dataset(name, data_dir)
        return cache[name]

    return get


def test_registry_lists_every_dataset() -> None:
    assert sorted(DATASETS) == sorted([*COUNTS, "synthetic"])  # synthetic is generated, not counted


def test_synthetic_needs_no_files(tmp_path) -> None:
    data = load_dataset("synthetic", tmp_path / "empty")
    assert data.n_events > 0 and "daypart" in data.schema.context_names


@pytest.mark.data
@pytest.mark.parametrize("name", list(COUNTS))
def test_published_counts(loaded: Callable[[str], Dataset], name: str) -> None:
    data = loaded(name)
    s = data.summary()
    assert (s["users"], s["items"], s["catalogue"], s["events"]) == COUNTS[name]
    assert s["name"] == name
    assert data.n_users == COUNTS[name][0]
    assert len(data.item_idx) == len(data.user_idx) == COUNTS[name][3]
    assert (data.item_idx >= 0).all() and (data.user_idx >= 0).all()


@pytest.mark.data
def test_amazon_scientific_leave_one_out_reproduces_unisrec_split(
    loaded: Callable[[str], Dataset], data_dir: Path
) -> None:
    data = loaded("amazon-scientific")
    folder = data_dir / "amazon-scientific-unisrec"

    def read(name: str, **kw: object) -> pd.DataFrame:
        return pd.read_csv(folder / name, sep="\t", dtype=str, keep_default_na=False, **kw)

    asins = read("Scientific.item2index", header=None)[0].tolist()
    reviewers = read("Scientific.user2index", header=None)[0].tolist()
    assert data.item_vocab.ids == asins  # dense item index == UniSRec item index
    split = leave_one_out(data)
    for evalset, part in ((split.valid, "valid"), (split.test, "test")):
        given = read(f"Scientific.{part}.inter")
        given.columns = ["u", "hist", "target"]
        given.index = [reviewers[int(u)] for u in given["u"]]
        ours = pd.DataFrame(
            {
                "target": [str(t[0]) for t in evalset.targets],
                "hist": [" ".join(map(str, h[-50:])) for h in evalset.histories],  # UniSRec keeps the last 50
                "full": [len(h) for h in evalset.histories],
            },
            index=data.user_vocab.external(evalset.users),
        )
        assert len(ours) == len(given) == 8_442
        given = given.loc[ours.index]
        assert (ours["target"] == given["target"]).all()
        assert (ours["hist"] == given["hist"]).all()
        # Untruncated wherever UniSRec did not truncate (all but 3 users per part).
        assert (ours["full"] > 50).sum() == 3
    assert data.item_text()[0].startswith("text: ")
    # brand and category path parsed from the text: every item has a brand; the path always has its top level
    assert data.schema.item_attribute_fields == ("brand", "category")
    assert data.items["brand"].notna().mean() > 0.99 and data.items["category"].notna().mean() > 0.95
    assert data.items["category"].dropna().str.startswith("Industrial & Scientific").all()


def test_scientific_text_parsing_reads_from_the_right() -> None:
    """Made-up strings in the UniSRec layout: a ". " inside the title must not shift brand or category."""
    from ctxrec.data.datasets import _scientific_attributes

    assert _scientific_attributes("Bolt Kit 4 pcs. Industrial & Scientific Fasteners Bolts. Acme. ") == (
        "Acme", "Industrial & Scientific Fasteners Bolts")
    assert _scientific_attributes("No. 2 Pencil. Ver. 3. Industrial & Scientific Office. Pencil Co.") == (
        "Pencil Co", "Industrial & Scientific Office")
    assert _scientific_attributes("Gadget. Not a category. Brandless") == ("Brandless", None)
    assert _scientific_attributes("just a title") == (None, None)


@pytest.mark.data
def test_s3rec_attributes_and_order(loaded: Callable[[str], Dataset], data_dir: Path) -> None:
    beauty = loaded("amazon-beauty")
    assert beauty.items.loc["4", "attributes"] == ["1", "2", "3"]
    assert all(isinstance(v, list) for v in beauty.items["attributes"])
    first = (data_dir / "amazon-s3rec" / "Beauty.txt").read_text().split("\n", 1)[0].split()
    seq = beauty.sequences()[beauty.user_vocab.index(first[0])]
    assert beauty.item_vocab.external(seq) == first[1:]
    lastfm = loaded("lastfm")
    tags = lastfm.items.loc["1", "attributes"]
    assert len(tags) == len(set(tags)) > 0  # repeated tag ids kept once
    split = leave_one_out(lastfm)
    assert len(split.test) == 1_090
    assert not beauty.schema.has_timestamps and beauty.summary()["events_with_timestamp"] == 0


@pytest.mark.data
def test_context_datasets(loaded: Callable[[str], Dataset]) -> None:
    frappe = loaded("frappe")
    inter = frappe.interactions
    assert inter[Columns.WEIGHT].astype("float64").sum() == 7_824_276
    cards = {c: inter[c].nunique() for c in frappe.schema.context_names}
    assert cards == {"daytime": 7, "weekday": 7, "isweekend": 2, "homework": 3, "cost": 2, "weather": 9,
                     "country": 80, "city": 233}
    assert frappe.items["name"].notna().sum() == 3_532
    assert frappe.summary()["item_text_fields"] == ["name", "category", "description"]
    assert frappe.summary()["events_with_timestamp"] == 0
    # Repeat use is the point of the context datasets: their evaluation keeps seen items by default.
    assert all(loaded(n).schema.repeat_consumption for n in ("frappe", "incarmusic", "depaulmovie"))
    assert not loaded("ml-100k").schema.repeat_consumption

    music = loaded("incarmusic")
    ctx = music.interactions[list(music.schema.context_names)]
    assert len(music.schema.context) == 8
    assert int((ctx == "<unk>").all(axis=1).sum()) == 1_003
    assert int((ctx != "<unk>").sum(axis=1).max()) == 1
    assert music.items.loc["248", "genre"] == "Blues music"
    assert sorted(music.interactions[Columns.WEIGHT].unique().tolist()) == [0, 1, 2, 3, 4, 5]

    movie = loaded("depaulmovie")
    for c, known in (("Time", {"Weekend": 1_845, "Weekday": 1_750}), ("Location", {"Cinema": 1_963, "Home": 1_632})):
        counts = movie.interactions[c].value_counts().to_dict()
        assert counts == {**known, "<unk>": 1_448}
    assert movie.item_text()[0].startswith("imdb_id: tt")


@pytest.mark.data
def test_movielens_fields(loaded: Callable[[str], Dataset], data_dir: Path) -> None:
    small = loaded("ml-latest-small")
    assert small.items.loc["1", "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert small.items["tags"].map(len).gt(0).sum() > 1_000
    assert small.summary()["events_with_timestamp"] == 100_836
    info = dataset_info("ml-100k", data_dir)
    assert (info["users"], info["items"], info["events"]) == (943, 1_682, 100_000)
    assert info["user_fields"] == ["age", "gender", "occupation"]


# ------------------------------------------------------------------------- missing files / download
@pytest.mark.parametrize(("name", "file", "source"), [
    ("amazon-scientific", "Scientific.item2index", "UniSRec"),
    ("amazon-beauty", "Beauty.txt", "aHuiWang/CIKM2020-S3Rec"),
    ("amazon-sports", "Sports_and_Outdoors.txt", "aHuiWang/CIKM2020-S3Rec"),
    ("amazon-toys", "Toys_and_Games.txt", "aHuiWang/CIKM2020-S3Rec"),
    ("lastfm", "LastFM.txt", "aHuiWang/CIKM2020-S3Rec"),
    ("frappe", "frappe.csv.gz", "Mobile_Frappe.zip"),
    ("incarmusic", "contextual_ratings.csv", "Music_InCarMusic.zip"),
    ("depaulmovie", "ratings.txt", "Movie_DePaulMovie.zip"),
    ("ml-1m", "ml-1m-sas-original-ids.csv.gz", "docs/datasets.md"),
])
def test_missing_files_say_what_to_put_where(tmp_path: Path, name: str, file: str, source: str) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, tmp_path)
    msg = str(info.value)
    assert file in msg and source in msg and str(tmp_path) in msg


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", ["ml-100k", "ml-latest-small"])
def test_offline_download_fails_fast_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/{name}.zip"
    monkeypatch.setitem(dl.DOWNLOADS, name, dataclasses.replace(dl.DOWNLOADS[name], url=url))
    monkeypatch.delenv(dl.OFFLINE_ENV, raising=False)
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset(name, tmp_path)
    assert time.monotonic() - start < 5
    msg = str(info.value)
    first = "u.data" if name == "ml-100k" else "ratings.csv"
    assert str(tmp_path / name / first) in msg and url in msg and str(tmp_path / name) in msg
    assert not list((tmp_path / name).iterdir())  # nothing half-written left behind


def test_hanging_name_resolution_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dl.OFFLINE_ENV, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: time.sleep(3))
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError, match=r"could not resolve 'mirror.invalid' within 0.2 s"):
        dl.download("ml-100k", tmp_path, url="https://mirror.invalid/ml-100k.zip", timeout=0.2)
    assert time.monotonic() - start < 2


def test_offline_env_never_touches_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dl.OFFLINE_ENV, "1")
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("network used"))
    with pytest.raises(DatasetNotFoundError, match=r"CTXREC_OFFLINE.*https://files\.grouplens\.org"):
        load_dataset("ml-latest-small", tmp_path)


def _fake_zip(tmp_path: Path, files: dict[str, bytes]) -> str:
    archive = tmp_path / "mirror" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, body in files.items():
            zf.writestr(f"ml-100k/{name}", body)
    return archive.as_uri()


def test_download_verifies_sha256_then_extracts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dl.OFFLINE_ENV, raising=False)
    files = {"u.data": b"1\t1\t5\t874965758\n", "u.item": b"1|Toy Story (1995)|01-Jan-1995||x" + b"|0" * 19 + b"\n"}
    url = _fake_zip(tmp_path, files)
    root = tmp_path / "data"
    good = {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    written = dl.download("ml-100k", root, url=url, sha256=good, progress=False)
    assert sorted(p.name for p in written) == ["u.data", "u.item"]
    assert (root / "ml-100k" / "u.data").read_bytes() == files["u.data"]
    assert dl.sha256_of(root / "ml-100k" / "u.item") == good["u.item"]
    assert sorted(p.name for p in (root / "ml-100k").iterdir()) == ["u.data", "u.item"]  # temp dir cleaned up


def test_download_rejects_wrong_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dl.OFFLINE_ENV, raising=False)
    url = _fake_zip(tmp_path, {"u.data": b"tampered\n", "u.item": b"x\n"})
    root = tmp_path / "data"
    bad = {"u.data": hashlib.sha256(b"tampered\n").hexdigest(), "u.item": "0" * 64}
    with pytest.raises(DatasetNotFoundError, match=r"'ml-100k/u\.item'.*SHA-256.*expected 0{64}"):
        dl.download("ml-100k", root, url=url, sha256=bad, progress=False)
    assert list((root / "ml-100k").iterdir()) == []  # all or nothing: u.data was not kept either
    # The official table is what load_dataset uses: a fake archive never passes it.
    monkeypatch.setitem(dl.DOWNLOADS, "ml-100k", dataclasses.replace(dl.DOWNLOADS["ml-100k"], url=url))
    with pytest.raises(DatasetNotFoundError, match=r"has no 'ml-100k/README'|SHA-256"):
        load_dataset("ml-100k", root)


@pytest.mark.data
def test_official_hashes_match_shared_data(data_dir: Path) -> None:
    """The embedded table equals the SHA256SUMS of the shared copies of the official files."""
    sums = {}
    for line in (data_dir / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split(maxsplit=1)
        sums[path.removeprefix("./")] = digest
    for spec in dl.DOWNLOADS.values():
        for fname, digest in spec.sha256.items():
            assert sums[f"{spec.folder}/{fname}"] == digest
