"""The RecBole atomic export of benchmarks/peer_recbole.py: exact file, and RecBole's leave-one-out
rule replayed on it gives ctxrec's valid/test targets (ties in raw time included)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from ctxrec.data.dataset import Dataset
from ctxrec.data.splits import leave_one_out

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "peer_recbole.py"


@pytest.fixture(scope="module")
def peer():  # the benchmark script is not a package module; load it by path
    spec = importlib.util.spec_from_file_location("peer_recbole", _PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["peer_recbole"] = mod
    spec.loader.exec_module(mod)
    return mod


# User "u1" has two events at the same raw time (20): ctxrec keeps file order (x before y), and raw
# time alone would leave RecBole a tie; "10" sorts after "2" as a string but not as a dense index.
EVENTS = [
    ("10", "c", 5.0), ("u1", "y", 20.0), ("2", "b", 15.0), ("u1", "a", 10.0), ("u1", "x", 20.0),
    ("2", "c", 38.0), ("10", "a", 35.0), ("2", "a", 25.0), ("10", "b", 45.0), ("u1", "b", 30.0),
]


def _data(events=EVENTS) -> Dataset:
    return Dataset.from_frames(pd.DataFrame(events, columns=["user_id", "item_id", "timestamp"]), name="toy")


def test_export_writes_our_order_with_position_keys(peer, tmp_path: Path) -> None:
    path = tmp_path / "toy" / "toy.inter"
    peer.export_atomic(_data(), path)
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    rows = [ln.split("\t") for ln in lines[1:]]
    assert rows == [
        ["2", "b", "0"], ["2", "a", "1"], ["2", "c", "2"],
        ["10", "c", "0"], ["10", "a", "1"], ["10", "b", "2"],
        ["u1", "a", "0"], ["u1", "y", "1"], ["u1", "x", "2"], ["u1", "b", "3"],
    ]  # users in dense order (natural sort: 2, 10, u1); tie x/y kept in file order (y came first)
    by_user: dict[str, list[str]] = {}
    for u, i, _ in rows:
        by_user.setdefault(u, []).append(i)
    data = _data()
    for u, seq in zip(data.user_vocab.ids, data.sequences(), strict=True):
        assert by_user[u] == data.item_vocab.external(seq)


def test_recbole_rule_on_export_gives_our_loo_targets(peer, tmp_path: Path) -> None:
    data = _data()
    path = tmp_path / "toy.inter"
    peer.export_atomic(data, path)
    theirs = peer.recbole_targets_from_file(path)
    ours = peer.ctxrec_targets(data, leave_one_out(data))
    assert ours["test"] == {"2": "c", "10": "b", "u1": "b"}
    assert ours["valid"] == {"2": "a", "10": "a", "u1": data.item_vocab.external(data.sequences()[2])[-2]}
    check = peer.compare_targets(ours, theirs)
    assert check["equal"], check


def test_order_comes_from_the_key_not_the_row_order(peer, tmp_path: Path) -> None:
    data = _data()
    path = tmp_path / "toy.inter"
    frame = peer.export_atomic(data, path)
    frame.sample(frac=1.0, random_state=0).to_csv(path, sep="\t", index=False)  # shuffle rows, keep keys
    check = peer.compare_targets(peer.ctxrec_targets(data, leave_one_out(data)), peer.recbole_targets_from_file(path))
    assert check["equal"], check


def test_compare_reports_differences_and_short_users(peer, tmp_path: Path) -> None:
    # A 2-event user gets a test case from RecBole (min(2, n-1) held out) but none from ctxrec.
    data = _data([*EVENTS, ("z", "a", 1.0), ("z", "b", 2.0)])
    path = tmp_path / "toy.inter"
    peer.export_atomic(data, path)
    ours = peer.ctxrec_targets(data, leave_one_out(data))
    check = peer.compare_targets(ours, peer.recbole_targets_from_file(path))
    assert not check["equal"]
    assert check["test"]["differ"] == 1 and check["test"]["examples"] == ["z"] and check["valid"]["differ"] == 0
    ours["valid"]["2"] = "b"
    assert peer.compare_targets(ours, ours | {"valid": {**ours["valid"], "2": "a"}})["valid"]["differ"] == 1


def test_export_rejects_ids_with_tabs(peer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tab or newline"):
        peer.export_atomic(_data([("a\tb", "x", 1.0), ("a\tb", "y", 2.0)]), tmp_path / "bad.inter")
