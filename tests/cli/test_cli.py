"""The CLI end to end on the offline synthetic dataset: train -> evaluate -> recommend, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxrec.cli import app

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.output


def test_data_info_synthetic() -> None:
    code, out = invoke("data", "info", "synthetic")
    assert code == 0, out
    assert "users" in out and "title" in out
    assert "daypart  categorical  4 values" in out and "order" in out and "leave-one-out test targets" in out


def test_data_info_unknown_dataset_names_it() -> None:
    code, out = invoke("data", "info", "no-such-set")
    assert code == 2
    assert "no-such-set" in out and "ml-1m" in out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "syn-sasrec"
    code, text = invoke(
        "train", "--dataset", "synthetic", "--model", "sasrec", "-o", str(out),
        "--set", "d_model=16", "--set", "n_layers=1", "--set", "max_len=20",
        "--set", "train.max_epochs=2", "--set", "train.progress=false",
    )
    assert code == 0, text
    return out


def test_train_writes_a_complete_run_folder(run_dir: Path) -> None:
    for name in ("config.json", "metrics.json", "history.json", "report.png", "model/config.json",
                 "model/model.safetensors", "model/vocab/items.json"):
        assert (run_dir / name).exists(), name
    assert any((run_dir / "tensorboard").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dataset", "model", "split", "metrics", "command", "seconds", "machine"):
        assert key in metrics
    assert metrics["dataset"] == "synthetic" and metrics["model"] == "sasrec"
    assert 0.0 <= metrics["metrics"]["ndcg@10"] <= 1.0
    assert metrics["command"].startswith("ctxrec train")
    import subprocess

    import torch

    assert metrics["machine"]["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    head = subprocess.run(["git", "rev-parse", "HEAD"], check=False, capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent).stdout.strip()
    assert metrics["code"]["ctxrec"] and metrics["code"]["commit"] == (head or None)  # the commit it trained at
    assert isinstance(metrics["code"]["dirty"], bool) or head == ""


def test_evaluate_reproduces_the_run_metrics(run_dir: Path) -> None:
    code, out = invoke("evaluate", str(run_dir))
    assert code == 0, out
    ndcg = json.loads((run_dir / "metrics.json").read_text())["metrics"]["ndcg@10"]
    assert f"{ndcg:.4f}" in out


def test_recommend_for_user_and_history(run_dir: Path) -> None:
    user = json.loads((run_dir / "model" / "vocab" / "users.json").read_text())["ids"][0]  # a trained user
    code, out = invoke("recommend", str(run_dir), "--user", user, "-k", "3", "--json")
    assert code == 0, out
    payload = json.loads(out)
    assert payload["known_user"] is True
    assert len(payload["items"]) == 3 and len(payload["titles"]) == 3 and all(payload["titles"])
    code, out = invoke("recommend", str(run_dir), "--history", "i001,i002", "--context", "device=tv", "-k", "2")
    assert code == 0, out
    assert out.count("\n") >= 2


def test_recommend_errors_are_clear(run_dir: Path) -> None:
    code, out = invoke("recommend", str(run_dir), "--history", "not-an-item")
    assert code == 2 and "not-an-item" in out
    code, out = invoke("recommend", str(run_dir), "--user", "u0001", "--context", "novalue")
    assert code == 2 and "key=value" in out
    code, out = invoke("recommend", str(run_dir))
    assert code == 2 and "--user" in out


def test_train_rejects_unknown_config_key(tmp_path: Path) -> None:
    code, out = invoke("train", "--dataset", "synthetic", "--model", "sasrec", "-o", str(tmp_path / "x"),
                       "--set", "not_a_field=3")
    assert code == 2
    assert "not_a_field" in out


def test_train_help_names_every_registered_model_kind() -> None:
    from ctxrec.models import MODELS

    code, out = invoke("train", "--help")
    assert code == 0, out
    flat = " ".join(out.split())  # rich wraps the help text
    for kind in MODELS:
        assert kind in flat, kind
    assert "configs/" not in flat  # there is no such folder
    assert "model_config" in flat  # the experiment file's keys are named


@pytest.mark.parametrize(("args", "expected"), [
    (["--model", "sasrec", "--set", "train.lrr=0.1"], "unknown config key train.'lrr' for TrainConfig"),
    (["--model", "sasrec", "--set", "d_model=wide"], "d_model"),
    (["--model", "no-such-model"], "unknown model kind 'no-such-model'"),
    (["--model", "sasrec", "--split", "by-moon"], "unknown split 'by-moon'"),
])
def test_config_errors_come_before_any_data_is_read(tmp_path: Path, args: list[str], expected: str) -> None:
    # the data directory does not exist: reading the dataset would fail with another message
    code, out = invoke("train", "--dataset", "ml-1m", "--data-dir", str(tmp_path / "no-data"), "-o",
                       str(tmp_path / "run"), *args)
    assert code == 2
    assert expected in " ".join(out.split())
    assert "ml-1m" not in out.replace("--dataset ml-1m", "")  # the dataset was never looked at
    assert list(tmp_path.iterdir()) == []  # no run folder, no staging folder


def test_a_failed_train_leaves_no_run_folder_and_keeps_an_earlier_one(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, text = invoke("train", "--dataset", "ml-1m", "--data-dir", str(tmp_path / "no-data"), "--model", "popularity",
                        "-o", str(out))
    assert code == 2 and "ml-1m" in text
    assert list(tmp_path.iterdir()) == []
    code, text = invoke("train", "--dataset", "synthetic", "--model", "popularity", "-o", str(out))
    assert code == 0, text
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code, text = invoke("train", "--dataset", "ml-1m", "--data-dir", str(tmp_path / "no-data"), "--model", "popularity",
                        "-o", str(out))
    assert code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_train_says_what_the_auto_settings_decided(tmp_path: Path) -> None:
    out = tmp_path / "syn-fusion"
    code, text = invoke("train", "--dataset", "synthetic", "--model", "fusion", "-o", str(out),
                        "--set", "d_model=16", "--set", "n_layers=1", "--set", "max_len=10", "--set", "auto_epochs=1",
                        "--set", "train.max_epochs=1", "--set", "train.progress=false", "--set", "text.model=hashing:32")
    assert code == 0, text
    chosen = json.loads((out / "metrics.json").read_text())["fit_info"]["auto"]["chosen"]
    line = next(x for x in text.splitlines() if x.startswith("decided on your data: "))
    for key, value in chosen.items():  # every decision, with the value metrics.json records
        assert f"{key}={str(value).lower()}" in line


def test_a_full_disk_is_one_line_naming_the_file_and_the_fix(small_disk: Path, fill_disk) -> None:
    """`ctxrec train -o` on a filesystem that is full: exit code 2 and one line naming the file, errno and
    what to do, no traceback (the command as a user runs it, in its own process)."""
    import subprocess
    import sys

    fill_disk(small_disk)
    res = subprocess.run([sys.executable, "-m", "ctxrec", "train", "--dataset", "synthetic", "--model", "sasrec",
                          "--set", "d_model=8", "--set", "n_layers=1", "--set", "max_len=10", "--set", "train.max_epochs=1",
                          "--set", "train.progress=false", "-o", str(small_disk / "run")],
                         capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"error: [Errno 28] No space left on device: '{small_disk}" in res.stderr and "free disk space" in res.stderr
