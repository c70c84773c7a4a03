"""ctxrec.deploy.state_runtime: a fusion model's user states on ONNX Runtime equal PyTorch's, follow weight
changes, survive item additions without a new export, and fall back to PyTorch (said) when they cannot be built."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from ctxrec.data.dataset import Dataset
from ctxrec.deploy import state_runtime
from ctxrec.deploy.state_runtime import OnnxEncodeLast, onnx_state_runtime
from ctxrec.models import load_model
from ctxrec.models.base import QueryBatch, RecQuery
from ctxrec.models.fusion import FusionRecommender


@pytest.fixture
def model(fusion: FusionRecommender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FusionRecommender:
    """A private copy of the session's fusion model (text, attributes, event and request context), with
    an empty state-encoder cache of its own."""
    monkeypatch.setenv("CTXREC_CACHE", str(tmp_path / "cache"))
    fusion.save(tmp_path / "m")
    m = load_model(tmp_path / "m")
    assert isinstance(m, FusionRecommender)
    return m


def _queries(m: FusionRecommender, synth: Dataset) -> QueryBatch:
    """Known users (histories of every length up to past max_len), an anonymous history with per-event
    context, and an empty history."""
    assert m.user_vocab is not None
    users = [m.user_vocab.ids[i] for i in range(0, 40, 3)]
    inter = synth.interactions
    items = inter["item_id"].astype(str).tolist()[:5]
    return m.encode_queries([*(RecQuery(user_id=u) for u in users), RecQuery(history=items),
                             RecQuery(history=[])])


def _builds(m: FusionRecommender, **kw: Any) -> list[int]:
    """Attach the ONNX runtime to ``m``; the returned list grows by one per session built."""
    made: list[int] = []
    inner = onnx_state_runtime(**kw)

    def counting(net: Any, table: torch.Tensor) -> Any:
        made.append(1)
        return inner(net, table)

    m.state_runtime = counting
    return made


def test_onnx_states_equal_pytorch_for_every_history_shape(model: FusionRecommender, synth: Dataset) -> None:
    qb = _queries(model, synth)
    want = model.encode_state(qb)
    builds = _builds(model)
    got = model.encode_state(qb)
    assert len(builds) == 1
    assert isinstance(model._state_runtime[3], OnnxEncodeLast)  # type: ignore[index]
    np.testing.assert_allclose(got, want, atol=1e-5)
    for rows in ([0], [len(qb) - 1], [1, 2, 3]):  # one user, the empty history, a small batch
        np.testing.assert_allclose(model.encode_state(qb.subset(rows)), want[rows], atol=1e-5)
    assert len(builds) == 1  # one session serves every shape
    scores = model.score(qb)
    model.state_runtime = None
    np.testing.assert_allclose(scores, model.score(qb), atol=1e-5)


def test_encoder_tensors_are_exactly_the_weights_encode_last_reads(model: FusionRecommender) -> None:
    """A weight missing from encoder_tensors would leave a stale session after it changed: every parameter
    that gets a gradient through encode_last (the item table given, detached) must be listed, and no other."""
    net = model.net
    assert net is not None
    net.eval()
    table = model._eval_item_table().detach()
    args = state_runtime._sample(net, table, 3, model.config.max_len, seed=4)
    net.zero_grad(set_to_none=True)
    with torch.enable_grad():
        net.encode_last(*args).square().sum().backward()
    read = {id(p) for p in net.parameters() if p.grad is not None and bool(p.grad.abs().sum() > 0)}
    listed = {id(t) for t in net.encoder_tensors() if isinstance(t, torch.nn.Parameter)}
    names = {id(p): n for n, p in net.named_parameters()}
    assert read == listed, (sorted(names[i] for i in read - listed), sorted(names[i] for i in listed - read))


def test_a_changed_encoder_weight_rebuilds_and_an_item_table_change_does_not(model: FusionRecommender,
                                                                             synth: Dataset) -> None:
    qb = _queries(model, synth)
    builds = _builds(model)
    model.encode_state(qb)
    net = model.net
    assert net is not None and net.id_emb is not None
    for weight, rebuilt in ((net.blocks[0].qkv.weight, 1), (net.id_emb.weight, 0)):
        before = len(builds)
        with torch.no_grad():
            weight.add_(0.05)
        runtime, model.state_runtime = model.state_runtime, None
        want = model.encode_state(qb)  # eager PyTorch on the changed weights
        model.state_runtime = runtime
        np.testing.assert_allclose(model.encode_state(qb), want, atol=1e-5)
        assert len(builds) == before + rebuilt


def test_items_added_while_serving_need_no_new_export(model: FusionRecommender, synth: Dataset) -> None:
    builds = _builds(model)
    model.encode_state(_queries(model, synth))
    model.add_items(pd.DataFrame({"item_id": ["new-1", "new-2"], "title": ["a red lamp", "green tea"]}))
    qb = model.encode_queries([RecQuery(history=["new-1", "new-2"]), RecQuery(history=["new-2"])])
    got = model.encode_state(qb)
    model.state_runtime = None
    np.testing.assert_allclose(got, model.encode_state(qb), atol=1e-5)
    assert len(builds) == 1


def test_the_graph_is_cached_private_and_a_wrong_cached_graph_is_exported_again(
        model: FusionRecommender, synth: Dataset, fusion: FusionRecommender, tmp_path: Path) -> None:
    qb = _queries(model, synth)
    want = model.encode_state(qb)
    _builds(model)
    model.encode_state(qb)
    files = list(state_runtime.cache_dir().glob("*.onnx"))
    assert len(files) == 1 and state_runtime.cache_dir() == tmp_path / "cache" / "state-encoders"
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(files[0].parent.stat().st_mode) == 0o700
    # Another model's graph under this key (a collision, or code that changed the graph): checked, replaced.
    other = load_model(tmp_path / "m")
    assert isinstance(other, FusionRecommender) and other.net is not None
    with torch.no_grad():
        other.net.blocks[0].qkv.weight.mul_(1.5)
    other.state_runtime = onnx_state_runtime()
    other.encode_state(qb)
    wrong = [f for f in state_runtime.cache_dir().glob("*.onnx") if f != files[0]]
    files[0].write_bytes(wrong[0].read_bytes())
    fresh = load_model(tmp_path / "m")
    assert isinstance(fresh, FusionRecommender)
    fresh.state_runtime = onnx_state_runtime()
    np.testing.assert_allclose(fresh.encode_state(qb), want, atol=1e-5)
    assert isinstance(fresh._state_runtime[3], OnnxEncodeLast)  # type: ignore[index]


def test_an_export_that_fails_leaves_pytorch_and_says_why(model: FusionRecommender, synth: Dataset,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    def broken(net: Any, table: torch.Tensor) -> bytes:
        raise RuntimeError("ONNX export of the state encoder failed: test")

    monkeypatch.setattr(state_runtime, "_export", broken)
    reasons: list[str] = []
    model.state_runtime = onnx_state_runtime(on_failure=reasons.append)
    qb = _queries(model, synth)
    got = model.encode_state(qb)
    assert reasons == ["ONNX export of the state encoder failed: test"]
    assert "user states run on PyTorch" in caplog.text
    model.state_runtime = None
    np.testing.assert_array_equal(got, model.encode_state(qb))
