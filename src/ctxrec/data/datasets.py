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

import numpy as np

from ctxrec.data.dataset import Columns, ContextField, Dataset, DatasetSchema
from ctxrec.errors import DatasetNotFoundError

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

    hint = "ML-1M files are prepared as described in the ctxrec docs (docs/datasets.md)."
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
def load_ml_100k(root: Path) -> Dataset:
    """MovieLens 100K: 943 users, 1,682 items, 100,000 ratings with timestamps and demographics.

    Event order per user is (timestamp, original row order), as RecBole orders it up to its float32
    rounding; every rating is an interaction (implicit feedback), the rating is the weight.
    """
    import pandas as pd

    data = pd.read_csv(
        require_file(root, "ml-100k", "u.data", hint=_GL_HINT), sep="\t",
        names=["user_id", "item_id", "rating", "timestamp"],
    )
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
    items = pd.read_csv(
        require_file(root, "ml-100k", "u.item", hint=_GL_HINT), sep="|", names=cols, encoding="latin-1", dtype=str,
    )
    flags = items[genre_names].astype(int).to_numpy()
    items["genres"] = [[g for g, f in zip(genre_names, row, strict=True) if f] for row in flags]
    items = items[["item_id", "title", "release_date", "genres"]].set_index("item_id")
    users = pd.read_csv(
        require_file(root, "ml-100k", "u.user", hint=_GL_HINT), sep="|",
        names=["user_id", "age", "gender", "occupation", "zip"], dtype=str,
    ).set_index("user_id")
    schema = DatasetSchema(
        item_text_fields=("title", "genres"),
        item_attribute_fields=("genres",),
        user_attribute_fields=("age", "gender", "occupation"),
    )
    return Dataset.from_frames(inter, items=items, users=users, schema=schema, name="ml-100k")


_GL_HINT = "Download ml-100k.zip from https://files.grouplens.org/datasets/movielens/ and unzip it there."

DATASETS: dict[str, Callable[[Path], Dataset]] = {
    "ml-100k": load_ml_100k,
    "ml-1m": load_ml_1m,
}


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a built-in dataset by name from the data directory."""
    try:
        loader = DATASETS[name]
    except KeyError:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; built-in datasets: {sorted(DATASETS)}") from None
    return loader(resolve_data_dir(data_dir))


__all__ = ["DATASETS", "ENV_VAR", "load_dataset", "resolve_data_dir", "ContextField"]
