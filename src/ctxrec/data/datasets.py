"""Built-in public datasets, read from a data directory.

The data directory is ``--data-dir`` (CLI) / ``data_dir=`` (API), else the ``CTXREC_DATA``
environment variable, else ``~/.cache/ctxrec/data``. Each dataset lives in its own sub-folder
(``<data_dir>/ml-1m/...``). Licences forbid redistributing most of these files, so ctxrec never
ships them: where an official download exists it is fetched (with a checksum check) when a file is
missing, otherwise the error says exactly which file to put where.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ctxrec.data.dataset import Columns, ContextField, Dataset, DatasetSchema, _natural_key
from ctxrec.errors import DataError, DatasetNotFoundError

if TYPE_CHECKING:
    import pandas as pd

ENV_VAR = "CTXREC_DATA"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: explicit argument, else ``$CTXREC_DATA``, else ``~/.cache/ctxrec/data``."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ctxrec" / "data"


def require_file(root: Path, folder: str, name: str, *, hint: str = "") -> Path:
    """Path of a dataset file, or a :class:`DatasetNotFoundError` that says where to put it."""
    path = root / folder / name
    if path.exists():
        return path
    raise DatasetNotFoundError(
        f"dataset file {str(path)!r} is missing. Put {name!r} in {str(root / folder)!r} "
        f"(the data directory is set by --data-dir or ${ENV_VAR}; now {str(root)!r}). {hint}".strip()
    )


# ---------------------------------------------------------------------------------------- ml-1m
def load_ml_1m(root: Path) -> Dataset:
    """ML-1M, the standard SASRec/BERT4Rec file (6,040 users, 3,416 items, 999,611 events).

    Rows come from ``ml-1m-sas-original-ids.csv.gz`` (original ids, each user's sequence in the
    standard chronological order given by ``position``); titles/genres from ``movies.dat``,
    demographics from ``users.dat``, and exact timestamps/ratings where the rating files know them
    (663,062 of the events; the rest keep NaN and the standard order).
    """
    import pandas as pd

    hint = "The ML-1M files are prepared as described in docs/datasets.md (section ml-1m)."
    seq = pd.read_csv(require_file(root, "ml-1m", "ml-1m-sas-original-ids.csv.gz", hint=hint))
    rated = [
        pd.read_csv(require_file(root, "ml-1m", f, hint=hint), usecols=["user_id", "movie_id", "rating", "timestamp"])
        for f in ("ratings_train80_ge4.csv.gz", "ratings_latest20pct.csv.gz")
    ]
    ratings = pd.concat(rated, ignore_index=True)
    seq = seq.merge(ratings, on=["user_id", "movie_id"], how="left", validate="one_to_one")
    seq = seq.sort_values(["user_id", "position"], kind="stable").reset_index(drop=True)
    inter = pd.DataFrame(
        {
            Columns.USER: seq["user_id"].astype(str),
            Columns.ITEM: seq["movie_id"].astype(str),
            Columns.TIME: seq["timestamp"].astype("float64"),
            Columns.WEIGHT: seq["rating"].fillna(0).astype("float32"),
            Columns.ORDER: np.arange(len(seq)),
        }
    )
    movies = pd.read_csv(
        require_file(root, "ml-1m", "movies.dat", hint=hint),
        sep="::", engine="python", names=["item_id", "title", "genres"], encoding="latin-1",
    )
    movies["item_id"] = movies["item_id"].astype(str)
    movies["genres"] = movies["genres"].str.split("|")
    keep = set(inter[Columns.ITEM])
    movies = movies[movies["item_id"].isin(keep)].set_index("item_id")
    users = pd.read_csv(
        require_file(root, "ml-1m", "users.dat", hint=hint),
        sep="::", engine="python", names=["user_id", "gender", "age", "occupation", "zip"], dtype=str,
    ).set_index("user_id")
    schema = DatasetSchema(
        item_text_fields=("title", "genres"),
        item_attribute_fields=("genres",),
        user_attribute_fields=("gender", "age", "occupation"),
        has_timestamps=True,
    )
    return Dataset.from_frames(
        inter, items=movies, users=users, schema=schema, name="ml-1m",
        notes=(f"timestamps known for {int(inter[Columns.TIME].notna().sum()):,} of {len(inter):,} events",),
    )


# -------------------------------------------------------------------------------------- ml-100k
_GL_HINT = "Download ml-100k.zip from https://files.grouplens.org/datasets/movielens/ and unzip it there."


def load_ml_100k(root: Path) -> Dataset:
    """MovieLens 100K: 943 users, 1,682 items, 100,000 ratings with timestamps and demographics.

    Event order per user is (timestamp, original row order), as RecBole orders it up to its float32
    rounding; every rating is an interaction (implicit feedback), the rating is the weight.
    Missing files are downloaded from GroupLens (SHA-256 checked), see :mod:`ctxrec.data.download`.
    """
    import pandas as pd

    from ctxrec.data.download import ensure_files

    paths = ensure_files("ml-100k", root, ["u.data", "u.item", "u.user"])
    data = pd.read_csv(paths["u.data"], sep="\t", names=["user_id", "item_id", "rating", "timestamp"])
    inter = pd.DataFrame(
        {
            Columns.USER: data["user_id"].astype(str),
            Columns.ITEM: data["item_id"].astype(str),
            Columns.TIME: data["timestamp"].astype("float64"),
            Columns.WEIGHT: data["rating"].astype("float32"),
        }
    )
    genre_names = [
        "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
        "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
    ]
    cols = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *genre_names]
    items = pd.read_csv(paths["u.item"], sep="|", names=cols, encoding="latin-1", dtype=str)
    flags = items[genre_names].astype(int).to_numpy()
    items["genres"] = [[g for g, f in zip(genre_names, row, strict=True) if f] for row in flags]
    items = items[["item_id", "title", "release_date", "genres"]].set_index("item_id")
    users = pd.read_csv(
        paths["u.user"], sep="|", names=["user_id", "age", "gender", "occupation", "zip"], dtype=str,
    ).set_index("user_id")
    schema = DatasetSchema(
        item_text_fields=("title", "genres"),
        item_attribute_fields=("genres",),
        user_attribute_fields=("age", "gender", "occupation"),
    )
    return Dataset.from_frames(inter, items=items, users=users, schema=schema, name="ml-100k")


# ------------------------------------------------------------------------------ ml-latest-small
def load_ml_latest_small(root: Path) -> Dataset:
    """MovieLens latest-small: 610 users, 100,836 ratings (half stars, timestamps), 9,742 movies.

    The catalogue is all of ``movies.csv`` (9,742; 9,724 are rated). Item text: title, genres and the
    users' free-text tags (unique per movie, in file order). Missing files are downloaded.
    """
    import pandas as pd

    from ctxrec.data.download import ensure_files

    paths = ensure_files("ml-latest-small", root, ["ratings.csv", "movies.csv", "tags.csv"])
    ratings = pd.read_csv(paths["ratings.csv"], dtype={"userId": str, "movieId": str})
    inter = pd.DataFrame(
        {
            Columns.USER: ratings["userId"],
            Columns.ITEM: ratings["movieId"],
            Columns.TIME: ratings["timestamp"].astype("float64"),
            Columns.WEIGHT: ratings["rating"].astype("float32"),
        }
    )
    movies = pd.read_csv(paths["movies.csv"], dtype=str, keep_default_na=False).set_index("movieId")
    genres = movies["genres"].where(movies["genres"] != "(no genres listed)", "")
    movies["genres"] = _lists(genres, "|")
    tags = pd.read_csv(paths["tags.csv"], dtype={"movieId": str, "tag": str})
    tags = tags.dropna(subset=["tag"]).drop_duplicates(["movieId", "tag"])
    per_movie = tags.groupby("movieId", sort=False)["tag"].agg(list)
    movies["tags"] = per_movie.reindex(movies.index).map(lambda v: v if isinstance(v, list) else [])
    movies.index.name = Columns.ITEM
    schema = DatasetSchema(
        item_text_fields=("title", "genres", "tags"),
        item_attribute_fields=("genres",),
        has_timestamps=True,
    )
    return Dataset.from_frames(inter, items=movies, schema=schema, name="ml-latest-small")


# ---------------------------------------------------------------------------- amazon-scientific
_UNISREC_HINT = (
    "These are the UniSRec downstream files for Amazon 2018 'Industrial_and_Scientific' (RUCAIBox/UniSRec, "
    "KDD 2022; its README links the download; the same files are in GitHub ysh-1998/CoWPiRec, dataset/Scientific/). "
    "Research use only; see docs/datasets.md."
)


def _scientific_attributes(text: str) -> tuple[str | None, str | None]:
    """(brand, category path) of a UniSRec ``Scientific.text`` string "title. categories. brand." Parsed
    from the right, since titles may contain ". "; the category path always starts with the top category
    ("Industrial & Scientific ..."), so a string without one yields no category rather than a title piece."""
    parts = [x.strip() for x in str(text).strip().rstrip(".").split(". ")]
    if len(parts) < 3:
        return None, None
    brand = parts[-1] or None
    category = parts[-2] if parts[-2].startswith("Industrial & Scientific") else None
    return brand, category


def load_amazon_scientific(root: Path) -> Dataset:
    """Amazon 2018 Industrial & Scientific as released by UniSRec: 8,442 users, 4,385 items, 59,427 events.

    Ids are the ASINs / reviewer ids (via ``Scientific.item2index`` / ``user2index``); item text is the
    ``Scientific.text`` string (title. categories. brand.), and its brand and category path are also item
    attributes (``brand``, ``category``: ids a model can learn, as amazon-beauty's S3-Rec attributes). Each
    user's full sequence is rebuilt
    exactly from the given rows (train rows are the prefixes: first history item + every train
    target, then the valid and the test target), so ``leave_one_out`` gives back the given valid and
    test targets, and the given (50-truncated) histories are the last 50 items of its histories.
    No timestamps: event order is the sequence order.
    """
    import pandas as pd

    folder = "amazon-scientific-unisrec"

    def read(name: str, **kw: object) -> pd.DataFrame:
        path = require_file(root, folder, name, hint=_UNISREC_HINT)
        return pd.read_csv(path, sep="\t", quoting=3, dtype=str, keep_default_na=False, **kw)

    item_ids = read("Scientific.item2index", header=None, names=["asin", "idx"])
    user_ids = read("Scientific.user2index", header=None, names=["reviewer", "idx"])
    text = read("Scientific.text")
    text.columns = ["asin", "text"]
    splits = {}
    for part in ("train", "valid", "test"):
        df = read(f"Scientific.{part}.inter")
        df.columns = ["u", "hist", "target"]
        splits[part] = df
    tr, va, te = splits["train"], splits["valid"], splits["test"]
    src = str(root / folder)
    if not (va["u"].is_unique and te["u"].is_unique and set(va["u"]) == set(te["u"]) == set(tr["u"])):
        raise DataError(f"{src}: valid/test must have one row per user and train the same users (UniSRec format)")

    # Train rows come newest prefix first within a user; reverse to get positions 1..k of the sequence.
    tr = tr.iloc[::-1].reset_index(drop=True)
    tr["pos"] = tr.groupby("u", sort=False).cumcount() + 1
    hist_len = tr["hist"].str.count(" ") + 1
    if not (hist_len == np.minimum(tr["pos"], 50)).all():
        raise DataError(f"{src}/Scientific.train.inter: train rows are not the expected prefixes (UniSRec format)")
    first = tr[tr["pos"] == 1].set_index("u")["hist"]
    seq = pd.concat(
        [
            pd.DataFrame({"u": first.index, "pos": 0, "item": first.to_numpy()}),
            tr[["u", "pos"]].assign(item=tr["target"]),
            va.assign(pos=np.iinfo(np.int32).max - 1)[["u", "pos"]].assign(item=va["target"]),
            te.assign(pos=np.iinfo(np.int32).max)[["u", "pos"]].assign(item=te["target"]),
        ],
        ignore_index=True,
    )
    seq["u_int"] = seq["u"].astype(np.int64)
    seq = seq.sort_values(["u_int", "pos"], kind="stable").reset_index(drop=True)
    # Checks: every train history ends with the item just before its target, and the given test
    # history is the last 50 items before the test target.
    prev = seq.groupby("u", sort=False)["item"].shift(1)
    at = seq.set_index(["u", "pos"])
    prev_of = pd.Series(prev.to_numpy(), index=at.index).reindex(pd.MultiIndex.from_arrays([tr["u"], tr["pos"]]))
    if not (tr["hist"].str.rsplit(" ", n=1).str[-1].to_numpy() == prev_of.to_numpy()).all():
        raise DataError(f"{src}/Scientific.train.inter: train histories do not chain into one sequence per user")
    joined = seq.groupby("u", sort=False)["item"].agg(list)
    rebuilt = joined.map(lambda s: " ".join(s[:-1][-50:]))
    given = te.set_index("u")["hist"].reindex(rebuilt.index)
    bad = rebuilt != given
    if bad.any():
        raise DataError(
            f"{src}: user {bad.index[bad.to_numpy()][0]!r}: the rebuilt sequence does not end with the test history "
            "of Scientific.test.inter (the files do not belong together)"
        )
    item_map = pd.Series(item_ids["asin"].to_numpy(), index=item_ids["idx"].to_numpy())
    user_map = pd.Series(user_ids["reviewer"].to_numpy(), index=user_ids["idx"].to_numpy())
    inter = pd.DataFrame(
        {
            Columns.USER: user_map.reindex(seq["u"]).to_numpy(),
            Columns.ITEM: item_map.reindex(seq["item"]).to_numpy(),
            Columns.ORDER: np.arange(len(seq), dtype=np.int64),
        }
    )
    if inter[[Columns.USER, Columns.ITEM]].isna().any().any():
        raise DataError(f"{src}: some user/item indices are not in Scientific.user2index / Scientific.item2index")
    # Catalogue in UniSRec index order, so dense item index == UniSRec item index.
    item_text = text.set_index("asin")["text"].str.strip().reindex(item_ids["asin"]).to_numpy()
    brand, category = zip(*(_scientific_attributes(t) for t in item_text), strict=True)
    items = pd.DataFrame(
        {"text": item_text, "brand": list(brand), "category": list(category)},
        index=pd.Index(item_ids["asin"].to_numpy(), name=Columns.ITEM),
    )
    schema = DatasetSchema(item_text_fields=("text",), item_attribute_fields=("brand", "category"), has_timestamps=False)
    notes = (
        (
            f"sequences rebuilt from Scientific.train/valid/test.inter: {len(inter):,} events "
            "(the UniSRec paper's count); no timestamps, event order = sequence order"
        ),
    )
    return Dataset.from_frames(inter, items=items, schema=schema, name="amazon-scientific", notes=notes)


# ------------------------------------------------------------------------- S3-Rec Amazon, LastFM
_S3REC_HINT = (
    "It comes from GitHub aHuiWang/CIKM2020-S3Rec, folder data/ (S3-Rec, CIKM 2020; Amazon 2014 5-core, "
    "research use only; LastFM from HetRec 2011, non-commercial). See docs/datasets.md."
)


def _load_s3rec(root: Path, folder: str, stem: str, name: str) -> Dataset:
    """An S3-Rec sequence file (``user item_1 ... item_n`` per line, chronological) + item attributes.

    Item field ``attributes``: the attribute (brand/category or tag) ids of ``<stem>_item2attributes.json``
    as a list of strings, duplicates removed (first occurrence order kept); ``[]`` for items without
    any. No timestamps: event order is the line order.
    """
    import json

    import pandas as pd

    seq_path = require_file(root, folder, f"{stem}.txt", hint=_S3REC_HINT)
    attr_path = require_file(root, folder, f"{stem}_item2attributes.json", hint=_S3REC_HINT)
    lines = pd.Series(seq_path.read_text().splitlines(), dtype=str)
    lineno = np.arange(1, len(lines) + 1)
    nonblank = lines.str.strip() != ""
    lines, lineno = lines[nonblank.to_numpy()], lineno[nonblank.to_numpy()]
    tokens = lines.str.split()
    short = (tokens.str.len() < 2).to_numpy()
    if short.any():
        got = lines[short].iloc[0]
        raise DataError(f"{seq_path}, line {lineno[short][0]}: expected 'user item_1 ... item_n', got {got!r}")
    users = tokens.str[0]
    dup = users.duplicated().to_numpy()
    if dup.any():
        raise DataError(f"{seq_path}, line {lineno[dup][0]}: user {users[dup].iloc[0]!r} has a second line")
    inter = pd.DataFrame({Columns.USER: users, Columns.ITEM: tokens.str[1:]}).explode(Columns.ITEM, ignore_index=True)
    inter[Columns.ORDER] = np.arange(len(inter), dtype=np.int64)
    try:
        attrs = json.loads(attr_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{attr_path}: not valid JSON ({exc})") from None
    item_ids = sorted(pd.unique(inter[Columns.ITEM]), key=_natural_key)
    items = pd.DataFrame(
        {"attributes": [list(dict.fromkeys(str(a) for a in attrs.get(i, ()))) for i in item_ids]},
        index=pd.Index(item_ids, name=Columns.ITEM),
    )
    schema = DatasetSchema(item_attribute_fields=("attributes",), has_timestamps=False)
    notes = (f"from {seq_path.name}: no timestamps, event order = line order; attributes from {attr_path.name}",)
    return Dataset.from_frames(inter, items=items, schema=schema, name=name, notes=notes)


def load_amazon_beauty(root: Path) -> Dataset:
    """Amazon 2014 Beauty (S3-Rec): 22,363 users, 12,101 items, 198,502 events."""
    return _load_s3rec(root, "amazon-s3rec", "Beauty", "amazon-beauty")


def load_amazon_sports(root: Path) -> Dataset:
    """Amazon 2014 Sports and Outdoors (S3-Rec): 35,598 users, 18,357 items, 296,337 events."""
    return _load_s3rec(root, "amazon-s3rec", "Sports_and_Outdoors", "amazon-sports")


def load_amazon_toys(root: Path) -> Dataset:
    """Amazon 2014 Toys and Games (S3-Rec): 19,412 users, 11,924 items, 167,597 events."""
    return _load_s3rec(root, "amazon-s3rec", "Toys_and_Games", "amazon-toys")


def load_lastfm(root: Path) -> Dataset:
    """Last.fm (S3-Rec version of HetRec 2011): 1,090 users, 3,646 artists, 52,551 events; attributes = tag ids."""
    return _load_s3rec(root, "lastfm-s3rec", "LastFM", "lastfm")


# ---------------------------------------------------------------------------------------- frappe
_CARSKIT = "GitHub irecsys/CARSKit, context-aware_data_sets/"
FRAPPE_CONTEXT = ("daytime", "weekday", "isweekend", "homework", "cost", "weather", "country", "city")


def load_frappe(root: Path) -> Dataset:
    """Frappe app usage in context: 957 users, 4,082 apps, 96,203 log rows.

    Every log row is one event (user, app, context) with weight = ``cnt`` (times the app was used in
    that context) and the 8 context fields as categorical context (values as in the file, e.g.
    ``homework = unknown``). Item text: name, category, description from ``meta.csv`` (``unknown`` =
    missing). No timestamps: event order = file order.
    """
    import pandas as pd

    hint = (
        f"It comes from {_CARSKIT}Mobile_Frappe.zip (frappe/frappe.csv and frappe/meta.csv; .gz optional). "
        "Research use only, no redistribution; see docs/datasets.md."
    )
    log_path = _first_file(root, "frappe", ("frappe.csv.gz", "frappe.csv"), hint)
    meta_path = _first_file(root, "frappe", ("meta.csv.gz", "meta.csv"), hint)
    # Both files are tab separated despite the name; meta has unbalanced quotes -> quoting off.
    log = pd.read_csv(log_path, sep="\t", dtype=str, keep_default_na=False)
    _require_cols(log_path, log, ["user", "item", "cnt", *FRAPPE_CONTEXT])
    inter = pd.DataFrame(
        {
            Columns.USER: log["user"],
            Columns.ITEM: log["item"],
            Columns.WEIGHT: pd.to_numeric(log["cnt"], errors="raise").astype("float32"),
            **{c: log[c] for c in FRAPPE_CONTEXT},
        }
    )
    meta = pd.read_csv(meta_path, sep="\t", quoting=3, dtype=str, keep_default_na=False)
    _require_cols(meta_path, meta, ["item", "name", "category", "description"])
    meta = meta.set_index("item").replace("unknown", np.nan)
    meta.index.name = Columns.ITEM
    schema = DatasetSchema(
        context=tuple(ContextField(name=c, kind="categorical") for c in FRAPPE_CONTEXT),
        item_text_fields=("name", "category", "description"),
        has_timestamps=False,
        repeat_consumption=True,
    )
    notes = ("every log row is an event with weight = cnt (usage count in that context); no timestamps",)
    return Dataset.from_frames(inter, items=meta, schema=schema, name="frappe", notes=notes)


# ------------------------------------------------------------------------------------ incarmusic
INCARMUSIC_CONTEXT = (
    "DrivingStyle", "landscape", "mood", "naturalphenomena", "RoadType", "sleepiness", "trafficConditions", "weather",
)


def load_incarmusic(root: Path) -> Dataset:
    """InCarMusic: 42 users, 139 tracks, 4,012 ratings under 8 in-car context factors.

    Context factors are categorical, ``NA`` (not asked) becomes ``<unk>``; the rating (0-5) is the
    weight. Item text: title, artist, genre (``music_tracks.csv`` joined with ``music_categories.csv``).
    No timestamps.
    """
    import pandas as pd

    hint = (
        f"Get {_CARSKIT}Music_InCarMusic.zip and export the sheets of Data_InCarMusic.xlsx to CSV "
        "(contextual_ratings.csv, music_tracks.csv, music_categories.csv); "
        "see docs/datasets.md."
    )
    rpath = require_file(root, "incarmusic", "contextual_ratings.csv", hint=hint)
    tpath = require_file(root, "incarmusic", "music_tracks.csv", hint=hint)
    cpath = require_file(root, "incarmusic", "music_categories.csv", hint=hint)
    ratings = _stripped(pd.read_csv(rpath, dtype=str, keep_default_na=False))
    _require_cols(rpath, ratings, ["UserID", "ItemID", "Rating", *INCARMUSIC_CONTEXT])
    inter = pd.DataFrame(
        {
            Columns.USER: ratings["UserID"],
            Columns.ITEM: ratings["ItemID"],
            Columns.WEIGHT: pd.to_numeric(ratings["Rating"], errors="raise").astype("float32"),
            **{c: ratings[c].replace({"NA": "<unk>", "": "<unk>"}) for c in INCARMUSIC_CONTEXT},
        }
    )
    tracks = _stripped(pd.read_csv(tpath, dtype=str, keep_default_na=False)).replace("\\N", np.nan)
    _require_cols(tpath, tracks, ["id", "title", "artist", "category_id"])
    # The sheet has no header row; accept the export with or without the one we document.
    genres = pd.read_csv(cpath, dtype=str, keep_default_na=False, header=None, names=["category_id", "genre"])
    genres = _stripped(genres)
    genres = genres[genres["category_id"] != "category_id"]
    tracks = tracks.merge(genres, on="category_id", how="left").set_index("id")
    tracks.index.name = Columns.ITEM
    no_ctx = int((inter[list(INCARMUSIC_CONTEXT)] == "<unk>").all(axis=1).sum())
    schema = DatasetSchema(
        context=tuple(ContextField(name=c, kind="categorical") for c in INCARMUSIC_CONTEXT),
        item_text_fields=("title", "artist", "genre"),
        has_timestamps=False,
        repeat_consumption=True,
    )
    notes = (f"weight = rating (0-5); {no_ctx:,} events have no context (all factors '<unk>'); no timestamps",)
    return Dataset.from_frames(inter, items=tracks, schema=schema, name="incarmusic", notes=notes)


# ----------------------------------------------------------------------------------- depaulmovie
DEPAUL_CONTEXT = ("Time", "Location", "Companion")


def load_depaulmovie(root: Path) -> Dataset:
    """DePaulMovie: 97 users, 79 movies (IMDb ids), 5,043 ratings with Time/Location/Companion context.

    Every row is kept (including 8 repeated rows); ``NA`` context becomes ``<unk>``; the rating is the
    weight; item text is the IMDb id (no titles ship with the data). No timestamps.
    """
    import pandas as pd

    hint = f"It comes from {_CARSKIT}Movie_DePaulMovie.zip (ratings.txt); see docs/datasets.md."
    path = require_file(root, "depaulmovie", "ratings.txt", hint=hint)
    ratings = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_cols(path, ratings, ["userid", "itemid", "rating", *DEPAUL_CONTEXT])
    inter = pd.DataFrame(
        {
            Columns.USER: ratings["userid"],
            Columns.ITEM: ratings["itemid"],
            Columns.WEIGHT: pd.to_numeric(ratings["rating"], errors="raise").astype("float32"),
            **{c: ratings[c].replace({"NA": "<unk>", "": "<unk>"}) for c in DEPAUL_CONTEXT},
        }
    )
    ids = sorted(pd.unique(inter[Columns.ITEM]))
    items = pd.DataFrame({"imdb_id": ids}, index=pd.Index(ids, name=Columns.ITEM))
    schema = DatasetSchema(
        context=tuple(ContextField(name=c, kind="categorical") for c in DEPAUL_CONTEXT),
        item_text_fields=("imdb_id",),
        has_timestamps=False,
        repeat_consumption=True,
    )
    notes = ("weight = rating (1-5); item text is the IMDb id only; no timestamps",)
    return Dataset.from_frames(inter, items=items, schema=schema, name="depaulmovie", notes=notes)


# --------------------------------------------------------------------------------------- helpers
def _first_file(root: Path, folder: str, names: tuple[str, ...], hint: str) -> Path:
    """The first of ``names`` that exists in ``root/folder`` (e.g. ``x.csv.gz`` or ``x.csv``)."""
    for name in names:
        if (root / folder / name).exists():
            return root / folder / name
    return require_file(root, folder, names[0], hint=f"({' or '.join(repr(n) for n in names[1:])} also works.) {hint}")


def _require_cols(path: Path, df: pd.DataFrame, cols: list[str]) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"{path}, line 1 (header): columns {missing} are missing (found {list(df.columns)})")


def _stripped(df: pd.DataFrame) -> pd.DataFrame:
    """Header names and string cells without surrounding spaces (spreadsheet exports keep them)."""
    df = df.rename(columns=lambda c: str(c).strip())
    return df.apply(lambda col: col.str.strip())


def _lists(s: pd.Series, sep: str) -> pd.Series:
    """Split strings into lists of non-empty parts, vectorised; empty string -> []."""
    parts = s.str.split(sep, regex=False)
    return parts.map(lambda v: [x for x in v if x])


# -------------------------------------------------------------------------------------- registry
def load_synthetic(root: Path) -> Dataset:
    """The seeded simulator with default settings (no files; known context, sequence and text effects)."""
    from ctxrec.data.synthetic import SimulatorConfig, simulate

    del root  # generated, nothing to read
    return simulate(SimulatorConfig())


DATASETS: dict[str, Callable[[Path], Dataset]] = {
    "synthetic": load_synthetic,
    "ml-100k": load_ml_100k,
    "ml-1m": load_ml_1m,
    "ml-latest-small": load_ml_latest_small,
    "amazon-scientific": load_amazon_scientific,
    "amazon-beauty": load_amazon_beauty,
    "amazon-sports": load_amazon_sports,
    "amazon-toys": load_amazon_toys,
    "lastfm": load_lastfm,
    "frappe": load_frappe,
    "incarmusic": load_incarmusic,
    "depaulmovie": load_depaulmovie,
}


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a built-in dataset by name from the data directory."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; built-in datasets: {sorted(DATASETS)}") from None
    return loader(resolve_data_dir(data_dir))


def dataset_info(name: str, data_dir: str | Path | None = None) -> dict[str, object]:
    """Summary of a built-in dataset (users / items / events, context and text fields, notes)."""
    return load_dataset(name, data_dir).summary()


__all__ = [
    "DATASETS", "ENV_VAR", "ContextField", "dataset_info", "load_dataset", "require_file", "resolve_data_dir",
]
