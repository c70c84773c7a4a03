"""ctxrec retrain: stored events folded into a new version from the current weights, evaluated on
held-out new events, promotion decided and recorded; CLI key creation."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.data.synthetic import SimulatorConfig, simulate
from ctxrec.serving.lifecycle import retrain
from ctxrec.serving.store import EventStore


def test_retrain_folds_events_warm_start_and_records_the_decision(fusion_run: Path, tmp_path: Path) -> None:
    data = simulate(SimulatorConfig(n_users=60, n_items=40, n_genres=4, events_per_user=10, seed=1))
    store = EventStore(str(tmp_path / "s.sqlite"))
    rows = [(f"u{u:02d}", f"i{(u + j) % 40:02d}", "view", 1.9e9 + u * 100 + j, {"device": "tv"}) for u in range(20) for j in range(3)]
    rows.append(("brand-new", "i05", "view", 1.9e9, {}))
    rows.append(("brand-new", "zz-unknown", "view", 1.9e9 + 1, {}))
    rows.append(("u00", "added-1", "view", 1.9e9 - 1, {}))  # an item added through the API is in the catalogue
    store.add_events(rows)
    store.put_items([("added-1", {"title": "Koutain Deluxe", "genre": "genre_1"})])
    store.close()
    out = tmp_path / "fusion-v2"
    report = retrain(fusion_run, str(tmp_path / "s.sqlite"), out, epochs=1, data=data)
    assert report["training"] == "refit" or report["training"] == "warm-start"
    assert report["events_dropped_unknown_item"] == 1  # zz-unknown is in no catalogue
    assert report["held_out"] == 21 and report["candidate"]["cases"] == 21 and report["events_used"] == 62
    assert isinstance(report["promoted"], bool)
    saved = json.loads((out / "serving.json").read_text())
    assert saved["event_watermark"] == len(rows) and saved["version"] == report["version"]
    assert (out / "model" / "config.json").exists() and not (out / "checkpoints").exists()
    assert report["training"] == "warm-start"


def test_cli_new_key_prints_once_and_stores_only_the_hash(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    res = CliRunner().invoke(app, ["serve", "--model", "x", "--keys", str(keys), "--new-key", "web", "--scopes", "read,write"])
    assert res.exit_code == 0, res.output
    key = res.output.strip()
    assert key.startswith("ctx_") and key not in keys.read_text()
    assert json.loads(keys.read_text())["keys"][0]["scopes"] == ["read", "write"]
    res = CliRunner().invoke(app, ["serve", "--model", "x", "--keys", str(keys), "--new-key", "bad", "--scopes", "root"])
    assert res.exit_code == 2
