"""Vocab: external ids <-> dense indices, persistence and the errors users see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ctxrec.data.vocab import Vocab
from ctxrec.errors import UnknownIdError


def test_round_trip_between_ids_and_indices() -> None:
    v = Vocab(["b", "a", "c"], kind="item")
    assert len(v) == 3 and v.ids == ["b", "a", "c"]
    assert [v.index(x) for x in v.ids] == [0, 1, 2]
    idx = v.lookup(["c", "b", "c"])
    assert idx.dtype == np.int64 and idx.tolist() == [2, 0, 2]
    assert v.external(idx) == ["c", "b", "c"]
    assert v.external(np.array([1])) == ["a"]


def test_non_string_ids_are_stored_as_strings() -> None:
    v = Vocab([10, 2, 33])
    assert v.ids == ["10", "2", "33"]
    assert v.index(2) == v.index("2") == 1
    assert 33 in v and "33" in v and 4 not in v
    assert v.lookup(np.array([33, 10])).tolist() == [2, 0]


def test_unknown_ids() -> None:
    v = Vocab(["a", "b"], kind="user")
    with pytest.raises(UnknownIdError, match=r"unknown user id 'zz'.*among the 2 users.*history") as exc:
        v.index("zz")
    assert isinstance(exc.value, KeyError)
    assert "unknown user id 'zz'" in str(exc.value)  # readable, not KeyError's repr quoting
    with pytest.raises(UnknownIdError, match="'q'"):
        v.lookup(["a", "q"])
    assert v.lookup(["a", "q", "b"], strict=False).tolist() == [0, -1, 1]
    assert v.get("q") == -1 and v.get("q", default=7) == 7 and v.get("b") == 1


def test_duplicates_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate item ids"):
        Vocab(["a", "b", "a"], kind="item")
    with pytest.raises(ValueError, match="duplicate"):
        Vocab([1, "1"])  # equal once stringified


def test_extend_appends_only_new_ids() -> None:
    v = Vocab(["a", "b"])
    assert v.extend(["b", "c", "d", "c"]).tolist() == [1, 2, 3, 2]
    assert v.ids == ["a", "b", "c", "d"] and v.index("d") == 3 and len(v) == 4
    assert v.extend([]).tolist() == []


def test_empty_vocab() -> None:
    v = Vocab([])
    assert len(v) == 0 and v.lookup([]).tolist() == [] and v.lookup([], strict=False).tolist() == []


def test_save_and_load(tmp_path: Path) -> None:
    v = Vocab(["x", "7", "é"], kind="item")
    v.save(tmp_path / "items.json")
    assert json.loads((tmp_path / "items.json").read_text()) == {"kind": "item", "ids": ["x", "7", "é"]}
    w = Vocab.load(tmp_path / "items.json")
    assert w.ids == v.ids and w.kind == "item" and w.index("é") == 2
    (tmp_path / "old.json").write_text(json.dumps({"ids": ["a"]}))  # kind is optional
    assert Vocab.load(tmp_path / "old.json").kind == "id"


def test_large_lookups_match_the_per_id_path() -> None:
    """Lookups of >= 10,000 ids take the pandas hash join; it must agree with the dict path, ids of any
    type included, and refuse unknown ids the same way."""
    from ctxrec.data.vocab import _VECTORISED_LOOKUP

    rng = np.random.default_rng(0)
    v = Vocab([*range(500), "x", "1.5"])
    ext: list[object] = [int(i) for i in rng.integers(0, 500, _VECTORISED_LOOKUP)] + [np.int64(7), "x", 1.5, "12"]
    got = v.lookup(ext)
    assert v.lookup(tuple(ext)).tolist() == got.tolist()
    assert v.lookup(pd.Series([str(x) for x in ext])).tolist() == got.tolist()
    assert got.tolist() == [v.index(x) for x in ext]
    v.extend(["new"])  # the cached index must follow the vocabulary
    assert v.lookup([*ext, "new"])[-1] == 502
    with pytest.raises(UnknownIdError, match="'nope'"):
        v.lookup([*ext, "nope"])
    assert v.lookup([*ext, "nope"], strict=False)[-1] == -1
