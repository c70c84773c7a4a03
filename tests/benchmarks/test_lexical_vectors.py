"""benchmarks/lexical_vectors.py: TF-IDF n-gram rows reduced by SVD, unit length, zero for an empty text."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest


def test_same_text_same_vector_and_shared_tokens_are_closer(load_bench) -> None:
    lex = load_bench("lexical_vectors")
    texts = ["Sanding roll 80 grit PORTER-CABLE", "Sanding roll 120 grit PORTER-CABLE", "Gorilla glue 8 ounce bottle",
             "Gorilla glue 4 ounce bottle", "Sanding roll 80 grit PORTER-CABLE", "Nitrile gloves large box of 100",
             "Nitrile gloves medium box of 100", ""]
    v = lex.lexical_vectors(texts, dim=4)
    assert v.shape == (8, 4) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v[:7], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[7], 0.0)  # no text: no lexical vector
    np.testing.assert_allclose(v[0], v[4], atol=1e-6)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] and sim[2, 3] > sim[2, 5] and sim[5, 6] > sim[5, 0]


def test_a_dimension_above_the_data_is_refused_with_the_limit(load_bench) -> None:
    lex = load_bench("lexical_vectors")
    with pytest.raises(SystemExit, match="must be below"):
        lex.lexical_vectors(["red apple pie", "green apple pie", "red cherry pie"], dim=64)


def test_own_data_through_a_mapping_then_ctxrec_train_reads_the_vectors(load_bench, tmp_path: Path) -> None:
    """The user's path: a column mapping of their log, lexical vectors from its item text, a fusion model
    trained from the CLI with them as item_vectors (the run's saved model carries the extra part)."""
    import json

    from typer.testing import CliRunner

    from ctxrec.cli import app
    from ctxrec.data.synthetic import SimulatorConfig, simulate, write_raw_log

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
    from test_mapping_cli import MAPPING

    write_raw_log(simulate(SimulatorConfig(n_users=60, n_items=30, n_genres=4, events_per_user=8, seed=5)), tmp_path)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    out = load_bench("lexical_vectors").main(["--mapping", str(mapping), "--dim", "8", "--out", str(tmp_path / "lex.npz")])
    with np.load(out) as z:
        ids, vecs = list(z["ids"]), z["vectors"]
    assert vecs.shape == (30, 8) and len(set(ids)) == 30
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--mapping", str(mapping), "--model", "fusion", "--out", str(run),
                                   "--set", f"item_vectors={out}", "--set", "use_text=false", "--set", "mixture=false",
                                   "--set", "d_model=16", "--set", "max_len=8", "--set", "train.max_epochs=1",
                                   "--set", "train.progress=false"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "metrics.json").read_text())["metrics"]["ndcg@10"] >= 0.0
    assert json.loads((run / "model" / "config.json").read_text())["config"]["item_vectors"] == str(out)
    from safetensors import safe_open

    with safe_open(str(run / "model" / "model.safetensors"), "pt") as st:
        stored = st.get_tensor("state.net.extra_vectors")  # (items + padding, dim): the vectors travel with the model
    assert tuple(stored.shape) == (31, 8) and float(stored[1:].norm(dim=1).min()) > 0.99


def test_a_mapping_without_item_text_is_refused_with_the_fix(load_bench, tmp_path: Path) -> None:
    from ctxrec.data.synthetic import SimulatorConfig, simulate, write_raw_log

    write_raw_log(simulate(SimulatorConfig(n_users=20, n_items=10, events_per_user=5, seed=1)), tmp_path)
    (tmp_path / "mapping.toml").write_text('interactions = "events.csv"\nuser_column = "userID"\nitem_column = '
                                           '"itemID"\ntimestamp_column = "DateTime"\ntimestamp_format = '
                                           '"%d/%m/%Y %H:%M:%S"\nna_values = ["NULL"]\n')
    with pytest.raises(SystemExit, match="no item text"):
        load_bench("lexical_vectors").main(["--mapping", str(tmp_path / "mapping.toml"), "--out", str(tmp_path / "x.npz")])


def test_item_vectors_that_miss_items_are_said_and_a_missing_file_is_a_data_error(tmp_path: Path) -> None:
    from ctxrec.errors import DataError
    from ctxrec.models.features import load_item_vectors

    path = tmp_path / "v.npz"
    np.savez(path, ids=np.array(["a", "b"]), vectors=np.ones((2, 3), np.float32))
    with pytest.warns(UserWarning, match=r"1 of 3 catalogue items have no vector .*\['c'\]"):
        out = load_item_vectors(str(path), ["a", "b", "c"])
    np.testing.assert_array_equal(out[2], 0.0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_item_vectors(str(tmp_path / "nope.npz"), ["a"])
    with pytest.raises(DataError, match="none of the ids"):
        load_item_vectors(str(path), ["x"])
