"""`ctxrec ensemble`: fusion runs trained apart (as side-by-side processes) become one seed ensemble run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ctxrec.cli import app
from ctxrec.models.base import RecQuery

runner = CliRunner()
TINY = ["--set", "d_model=16", "--set", "n_layers=1", "--set", "max_len=20", "--set", "use_text=false",
        "--set", "train.max_epochs=2", "--set", "train.progress=false"]


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def train(out: Path, *extra: str, model: str = "fusion") -> Path:
    code, text = invoke("train", "--dataset", "synthetic", "--model", model, "-o", str(out),
                        *(TINY if model == "fusion" else []),
                        *extra)
    assert code == 0, text
    return out


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("members")
    return [train(root / f"s{s}", "--set", f"train.seed={s}") for s in (1, 2)]


def test_runs_trained_apart_become_an_ensemble_run_that_evaluate_reads(members: list[Path], tmp_path: Path) -> None:
    from ctxrec.models import load_model
    from ctxrec.models.ensemble import EnsembleRecommender

    code, out = invoke("ensemble", *map(str, members), "-o", str(tmp_path / "ens"))
    assert code == 0, out
    result = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert result["model"] == "ensemble" and [m["seed"] for m in result["members"]] == [1, 2]
    assert all(m["metrics"]["ndcg@10"] == json.loads((p / "metrics.json").read_text())["metrics"]["ndcg@10"]
               for m, p in zip(result["members"], members, strict=True))
    assert result["command"].startswith("ctxrec ensemble")
    ens = load_model(tmp_path / "ens")
    assert isinstance(ens, EnsembleRecommender) and ens.config.seeds == (1, 2)
    parts = [load_model(p) for p in members]
    user = parts[0].user_vocab.ids[0]
    batch = ens.encode_queries([RecQuery(user_id=user)])
    mean = np.log(np.mean([np.exp(m.score(batch)) for m in parts], axis=0))  # log of the members' mean probability
    np.testing.assert_allclose(ens.score(batch), mean, rtol=1e-4, atol=1e-5)
    code, out = invoke("evaluate", str(tmp_path / "ens"))  # the folder is a run folder like any other
    assert code == 0, out
    assert f"{result['metrics']['ndcg@10']:.4f}" in out


def test_runs_that_are_not_one_experiment_are_refused_naming_the_difference(members: list[Path], tmp_path: Path) -> None:
    other = train(tmp_path / "d8", "--set", "train.seed=3", "--set", "d_model=8")
    code, out = invoke("ensemble", str(members[0]), str(other), "-o", str(tmp_path / "ens"))
    assert code != 0 and "model_config.d_model" in out and "another seed" in out
    pop = train(tmp_path / "pop", model="popularity")
    code, out = invoke("ensemble", str(pop), str(members[0]), "-o", str(tmp_path / "ens"))
    assert code != 0 and "'popularity' model" in out
    code, out = invoke("ensemble", str(members[0]), str(tmp_path / "nowhere"), "-o", str(tmp_path / "ens"))
    assert code != 0 and "nowhere" in out and "not a run folder" in out
    code, out = invoke("ensemble", str(members[0]), "-o", str(tmp_path / "ens"))
    assert code != 0 and "at least two" in out
    assert not (tmp_path / "ens").exists()  # a refused command writes nothing


def test_runs_of_one_network_trained_with_another_loss_become_one_ensemble(members: list[Path], tmp_path: Path) -> None:
    """A full-softmax run and a sampled-softmax run of the same network (say the two best recipes) average
    like seeds; the ensemble run folder records each member's loss and serves after a load."""
    from ctxrec.models import load_model

    sampled = train(tmp_path / "sampled", "--set", "train.seed=3", "--set", "loss=sampled", "--set", "n_negatives=8",
                    "--set", "train.max_epochs=3")
    code, out = invoke("ensemble", str(members[0]), str(sampled), "-o", str(tmp_path / "ens"))
    assert code == 0, out
    ens = load_model(tmp_path / "ens")
    assert [(m.config.train.seed, m.config.loss, m.config.train.max_epochs) for m in ens.members] == [
        (1, load_model(members[0]).config.loss, 2), (3, "sampled", 3)]
    assert ens.recommend([RecQuery(user_id=ens.user_vocab.ids[0])], k=5)[0].item_ids
