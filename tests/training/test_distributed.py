"""Distributed training (torchrun + DDP, gloo on CPU): sharding, the 2-process = 1-process check, the CLI.

The two multi-process tests start real worker processes (about 8 s and 12 s on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ctxrec.training.distributed import shard_batch
from ctxrec.training.loop import _prefetch

WORKER = Path(__file__).with_name("ddp_worker.py")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "CTXREC_LAUNCH_COMMAND"):
        env.pop(k, None)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONWARNINGS"] = "error::FutureWarning"  # a deprecated DDP argument would fail the workers
    return env


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *args], env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def test_shards_are_disjoint_cover_the_batch_and_weigh_rows() -> None:
    batch = {"inp": torch.arange(14).view(7, 2), "tgt": torch.arange(7), "n": 3}
    got = [shard_batch(batch, r, 2) for r in range(2)]
    assert all(g is not None for g in got)
    rows = torch.cat([g[0]["tgt"] for g in got if g is not None])
    assert rows.tolist() == list(range(7))  # disjoint, in order, nothing lost
    assert [g[0]["inp"].shape[0] for g in got if g is not None] == [3, 4]
    weights = [g[1] for g in got if g is not None]
    assert weights == pytest.approx([6 / 7, 8 / 7])  # world * rows / total: the averaged gradient is row-weighted
    assert got[0] is not None and got[0][0]["n"] == 3  # non-tensors pass through


def test_batch_smaller_than_world_is_skipped_by_every_rank() -> None:
    batch = {"inp": torch.zeros(1, 5)}
    assert shard_batch(batch, 0, 2) is None and shard_batch(batch, 1, 2) is None


def test_batch_tensors_must_share_the_batch_dimension() -> None:
    with pytest.raises(ValueError, match="leading sizes"):
        shard_batch({"a": torch.zeros(4, 2), "b": torch.zeros(3)}, 0, 2)


def test_prefetch_keeps_order_and_reraises_errors() -> None:
    items = [({"x": torch.tensor([i])}, 1.0) for i in range(5)]
    assert [int(b["x"]) for b, _ in _prefetch(iter(items), depth=2, pin=False)] == list(range(5))

    def broken():
        yield items[0]
        raise RuntimeError("batch builder failed")

    with pytest.raises(RuntimeError, match="batch builder failed"):
        list(_prefetch(broken(), depth=2, pin=False))


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    """Same seed, same global batches, dropout off: per-epoch loss within 1e-4 (relative) and validation
    NDCG@10 within 1e-3 of the single-process run, for SASRec and fusion; SASRec's parameters within 1e-2
    (float summation order differs)."""
    _run([str(WORKER), str(tmp_path / "one.json")])
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", str(WORKER), str(tmp_path / "two.json")])
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads((tmp_path / "two.json").read_text())
    assert two["world_size"] == 2
    assert len(one["history"]) == len(two["history"]) == 4
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert abs(b["valid_ndcg@10"] - a["valid_ndcg@10"]) <= 1e-3
    assert one["history"][-1]["loss"] < one["history"][0]["loss"]  # it trained
    assert np.abs(np.array(one["params"]) - np.array(two["params"])).max() < 1e-2
    for a, b in zip(one["fusion_history"], two["fusion_history"], strict=True):  # fusion: same loop, same result
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert abs(b["valid_ndcg@10"] - a["valid_ndcg@10"]) <= 1e-3
    # rank 0 alone wrote the run folder: one TensorBoard file, history and checkpoints
    run = tmp_path / "two" / "run"
    assert len(list((run / "tensorboard").iterdir())) == 1
    assert len(json.loads((run / "history.json").read_text())) == 4
    assert (run / "checkpoints" / "last" / "meta.json").exists()


def test_cli_nproc_2_trains_resumes_and_writes_once(tmp_path: Path) -> None:
    """`ctxrec train --nproc 2` end to end gives the single-process run's loss and test metrics, then
    `train.resume=true` continues from rank 0's checkpoint.

    Dropout is off and ``max_len`` 2 (every synthetic user keeps at least 3 training events), so each row
    holds the same number of targets and the 2-rank gradient is the 1-process one up to float rounding."""
    out = tmp_path / "run"
    model = ["--dataset", "synthetic", "--model", "sasrec", "--set", "d_model=16", "--set", "n_layers=1",
             "--set", "max_len=2", "--set", "dropout=0.0", "--set", "train.progress=false"]
    base = ["-m", "ctxrec.cli", "train", "--nproc", "2", *model, "-o", str(out)]
    proc = _run([*base, "--set", "train.max_epochs=1"])
    assert proc.stdout.count("run folder:") == 1  # printed by rank 0 only
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert metrics["command"].startswith("ctxrec train --nproc 2 ")
    _run(["-m", "ctxrec.cli", "train", *model, "--set", "train.max_epochs=1", "-o", str(tmp_path / "one")])
    single = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert "distributed" not in single
    one_loss = json.loads((tmp_path / "one" / "history.json").read_text())[0]["loss"]
    assert json.loads((out / "history.json").read_text())[0]["loss"] == pytest.approx(one_loss, rel=1e-4)
    for key in ("ndcg@10", "hr@10"):  # one test case moves a metric by 1/1000: allow two rank flips
        assert abs(metrics["metrics"][key] - single["metrics"][key]) <= 2e-3, key
    assert single["metrics"]["hr@10"] > 2 * 10 / single["dataset_stats"]["items"]  # and both learned something
    _run([*base, "--set", "train.max_epochs=2", "--set", "train.resume=true"])
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert len(list((out / "tensorboard").iterdir())) == 2  # one file per run (the first run's and the resumed one's)
