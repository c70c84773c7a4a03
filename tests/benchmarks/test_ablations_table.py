"""benchmarks/ablations.py's table: deltas against ``full`` and the equal-epoch validation column."""

from __future__ import annotations

import json
from pathlib import Path


def _row(ndcg: float, curve: list[float] | None) -> dict:
    info = {"epochs_run": len(curve or []), "best_epoch": 0, "views": ["sequence"]}
    if curve is not None:
        info["valid_curve"] = {"metric": "valid_ndcg@10", "values": curve}
    return {"metrics": {"ndcg@10": ndcg, "recall@10": 0.2, "mrr@10": 0.1}, "fit_info": info, "seconds_per_epoch": 1.0}


def test_table_compares_at_the_shortest_run_and_against_full(tmp_path: Path, load_bench) -> None:
    rows = {"full": _row(0.10, [0.05, 0.08, 0.09]), "no_text": _row(0.12, [0.06, 0.07]), "no_id": _row(0.05, None)}
    for name, r in rows.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    load_bench("ablations").write_table("toy", tmp_path, "--dataset toy", "A note on the budget.")
    text = (tmp_path / "ABLATIONS.md").read_text()
    assert "A note on the budget." in text
    assert "valid ndcg@10 after 2 epochs" in text  # the shortest curve sets the epoch
    lines = {ln.split(" | ")[0].strip("| "): ln for ln in text.splitlines() if ln.startswith("| ")}
    assert lines["full"].rstrip().endswith("| 0.0800 |")  # full's value after 2 epochs, not its last
    assert "+20.0%" in lines["no_text"] and lines["no_text"].rstrip().endswith("| 0.0700 |")
    assert "-50.0%" in lines["no_id"] and lines["no_id"].rstrip().endswith("| - |")


def test_an_unnamed_variant_is_described_by_its_own_overrides(tmp_path: Path, load_bench) -> None:
    base = "python benchmarks/run.py --dataset toy --model fusion --set max_len=50 --set dropout=0.3"
    full, custom = _row(0.10, None), _row(0.11, None)
    full["command"] = base
    custom["command"] = base + " --set train.lr=0.002 --set dropout=0.5"
    (tmp_path / "full.json").write_text(json.dumps(full))
    (tmp_path / "my_try.json").write_text(json.dumps(custom))
    load_bench("ablations").write_table("toy", tmp_path, "--dataset toy")
    line = next(ln for ln in (tmp_path / "ABLATIONS.md").read_text().splitlines() if ln.startswith("| my_try "))
    assert "| train.lr=0.002, dropout=0.5 |" in line  # the base's own --set values are not repeated
