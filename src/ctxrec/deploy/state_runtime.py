"""The served user-state path on ONNX Runtime.

A served request whose user has a new event misses the user-state cache and runs the fusion model's
Transformer over their history (:meth:`FusionNet.encode_last`). At serving batch sizes (1-4 users,
tens of positions) eager PyTorch spends that time in per-operator dispatch, not arithmetic: the served
test model's ``encode_state`` took 0.78 ms on PyTorch and 0.40 ms with this (an ml-1m-shaped model 4.7 and
4.1 ms; ``benchmarks/results/serving/STATE_RUNTIME.md``). So ``ctxrec serve`` (``--state-runtime onnx``, the default) exports that one
function when a model is loaded (once per set of weights: the graph is cached on disk, see
:func:`cache_dir`) and runs it on ONNX Runtime; the views, gate and head (the per-request part) stay in
PyTorch.

The graph takes the item table as an input, so items added while serving need no new export; every
other weight it reads (:meth:`FusionNet.encoder_tensors`) is baked in, and the model rebuilds the
session when one of those changes (:meth:`FusionRecommender._state_encoder`). Each build is checked
against eager PyTorch on samples of several shapes; an export that fails or disagrees leaves the model
on PyTorch and says why (a warning, and :func:`onnx_state_runtime`'s ``on_failure``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ctxrec.models.fusion.net import EncodeLast, FusionNet

__all__ = ["OnnxEncodeLast", "onnx_state_runtime"]

_NAMES = ("items", "events", "ctx_ids", "ctx_dense", "table", "lengths")
TOLERANCE = 1e-4
"""Largest absolute difference from eager PyTorch accepted when a session is built (float32 sums
in another order differ by ~1e-7 here)."""


FORMAT = "ctxrec-state-encoder/1"
"""Part of the cache key: bump it when the exported graph changes for the same weights."""


class _EncodeLastModule(nn.Module):
    def __init__(self, net: FusionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, items: torch.Tensor, events: torch.Tensor, ctx_ids: torch.Tensor, ctx_dense: torch.Tensor,
                table: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net.encode_last(items, events, ctx_ids, ctx_dense, table, lengths)


def _sample(net: FusionNet, table: torch.Tensor, batch: int, length: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Random token inputs of one shape: items (BOS first), event types, context ids and values."""
    g = torch.Generator().manual_seed(seed)
    spec, n_items = net.spec, table.shape[0] - 1
    items = torch.randint(1, max(n_items, 1) + 1, (batch, length), generator=g)
    items[:, 0] = -1  # BOS, as history_tensors writes it
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    lengths[0] = length
    for b in range(batch):
        items[b, int(lengths[b]):] = 0
    events = torch.randint(0, spec.n_event_types + 1, (batch, length), generator=g)
    cards = list(spec.ctx_cardinalities) + ([net.ctx_text_vectors.shape[0]] if net.ctx_text_proj is not None else [])
    ctx_ids = torch.stack([torch.randint(0, c, (batch, length), generator=g) for c in cards], -1) if cards \
        else torch.zeros(batch, length, 0, dtype=torch.long)
    ctx_dense = torch.randn(batch, length, spec.n_dense, generator=g)
    return items, events, ctx_ids, ctx_dense, table, lengths


def cache_dir() -> Path:
    """``$CTXREC_CACHE/state-encoders`` when set, else ``~/.cache/ctxrec/state-encoders``."""
    root = os.environ.get("CTXREC_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "ctxrec") / "state-encoders"


def _graph_key(net: FusionNet) -> str:
    """What the exported graph is a function of: the weights it bakes in, their shapes, the config, torch."""
    h = hashlib.sha256(f"{FORMAT}|{torch.__version__}|{net.cfg.d_model}|{net.cfg.n_heads}|{net.cfg.max_len}".encode())
    for tensor in net.encoder_tensors():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update((t.float() if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()[:32]


def _export(net: FusionNet, table: torch.Tensor) -> bytes:
    """The dynamo exporter (the TorchScript one, 3x faster, mis-exported the masked attention here)."""
    args = _sample(net, table, 2, min(5, net.cfg.max_len), seed=0)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    seq = torch.export.Dim("seq", min=1, max=net.cfg.max_len)
    rows = torch.export.Dim("rows", min=2, max=1 << 28)
    shapes = (*({0: batch, 1: seq} for _ in range(4)), {0: rows}, {0: batch})
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), torch.inference_mode(False), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's notes are about torch internals
            program = torch.onnx.export(_EncodeLastModule(net), args, None, dynamo=True, input_names=list(_NAMES),
                                        output_names=["state"], dynamic_shapes=shapes, optimize=True, verbose=False)
        assert program is not None
        return bytes(program.model_proto.SerializeToString())
    except Exception as exc:  # any exporter failure leaves the model on PyTorch, said
        raise RuntimeError(f"ONNX export of the state encoder failed: {type(exc).__name__}: {exc}") from exc
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)


def _cached_graph(net: FusionNet, table: torch.Tensor) -> tuple[bytes, Path | None]:
    """The exported graph from the cache (exports take seconds; replicas and restarts reuse it), else
    exported now and stored (0600; a cache that cannot be written is skipped, not an error)."""
    path = cache_dir() / f"{_graph_key(net)}.onnx"
    with contextlib.suppress(OSError):
        return path.read_bytes(), path
    data = _export(net, table)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        logging.getLogger("ctxrec.serving").warning("state encoder not cached (%s): the next load exports again", exc)
    return data, None


class OnnxEncodeLast:
    """``net.encode_last`` as an ONNX Runtime session (same arguments, same (B, D) result on the CPU).

    Raises ``RuntimeError`` when the export fails or the session disagrees with eager PyTorch (a cached
    graph that disagrees is exported again first)."""

    def __init__(self, net: FusionNet, table: torch.Tensor, *, threads: int = 1) -> None:
        import onnxruntime as ort

        net = net.eval()
        self.opts = ort.SessionOptions()
        self.opts.intra_op_num_threads = max(1, threads)
        self.opts.inter_op_num_threads = 1
        data, cached = _cached_graph(net, table)
        try:
            self._open(data, net, table)
        except RuntimeError:
            if cached is None:
                raise
            cached.unlink(missing_ok=True)  # another version's graph under this key: export afresh
            self._open(_cached_graph(net, table)[0], net, table)

    def _open(self, data: bytes, net: FusionNet, table: torch.Tensor) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(data, self.opts, providers=["CPUExecutionProvider"])
        # the exporter drops inputs the graph never reads (e.g. context ids of a model without context)
        self.inputs = [i.name for i in self.session.get_inputs()]
        worst = 0.0
        for seed, (b, t) in enumerate([(1, 1), (3, net.cfg.max_len), (4, max(1, net.cfg.max_len // 2))]):
            sample = _sample(net, table, b, t, seed=seed + 1)
            with torch.no_grad():
                want = net.encode_last(*sample).numpy()
            worst = max(worst, float(np.abs(self(*sample).numpy() - want).max()))
        if not worst <= TOLERANCE:
            raise RuntimeError(f"the ONNX state encoder differs from PyTorch by {worst:.2g} (> {TOLERANCE:g})")
        self.max_abs_diff = worst

    def __call__(self, items: torch.Tensor, events: torch.Tensor, ctx_ids: torch.Tensor, ctx_dense: torch.Tensor,
                 table: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        given = dict(zip(_NAMES, (items, events, ctx_ids, ctx_dense, table, lengths), strict=True))
        feeds = {n: given[n].detach().cpu().numpy() for n in self.inputs}
        return torch.from_numpy(self.session.run(None, feeds)[0])


def onnx_state_runtime(*, threads: int = 1, on_failure: Callable[[str], None] | None = None
                       ) -> Callable[[FusionNet, torch.Tensor], EncodeLast]:
    """A builder for :attr:`FusionRecommender.state_runtime`: ``(net, table) -> encode_last`` on ONNX
    Runtime, or the net's own ``encode_last`` (after ``on_failure(reason)``) when that cannot be built."""

    def build(net: FusionNet, table: torch.Tensor) -> EncodeLast:
        try:
            return OnnxEncodeLast(net, table, threads=threads)
        except (RuntimeError, ImportError) as exc:
            logging.getLogger("ctxrec.serving").warning("user states run on PyTorch: %s", exc)
            if on_failure is not None:
                on_failure(str(exc))
            return net.encode_last

    return build
