"""Int8 quantization of exported models.

Two parts, because ``onnxruntime.quantization.quantize_dynamic`` only rewrites MatMul/Linear-like ops
with constant weights, while in a recommender the *item table* dominates the size and is used by a
Gather (history tokens) and by the scoring MatMul (``H E^T``) at once:

* :class:`Int8Table`: an embedding table stored as int8 with one fp32 scale per row (symmetric,
  ``scale = max|row| / 127``), dequantized inside the graph. Per-row scales keep rare items (small
  norms) as accurate as popular ones, which one per-tensor scale would not.
* :func:`quantize_onnx`: ORT dynamic quantization (int8 weights, activations quantized per batch at run
  time) of the remaining MatMuls, per output channel.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["Int8Table", "quantize_onnx", "quantize_onnx_static", "quantize_rows"]


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: ``w ~= q * scale[:, None]``. Returns (q int8 (N, D), scale float32 (N,))."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1) if w.size else np.zeros(len(w), np.float32)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


class Int8Table(nn.Module):
    """A (N, D) table as int8 + per-row fp32 scales, a drop-in for ``nn.Embedding`` where only
    ``weight``, ``embedding_dim`` and ``forward(idx)`` are used; the exported graph dequantizes."""

    q: torch.Tensor  # (N, D) int8, a registered buffer
    scale: torch.Tensor  # (N, 1) float32, a registered buffer

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        q, scale = quantize_rows(weight.detach().cpu().float().numpy())
        self.register_buffer("q", torch.from_numpy(q))
        self.register_buffer("scale", torch.from_numpy(scale).unsqueeze(1))
        self.num_embeddings, self.embedding_dim = q.shape

    @property
    def weight(self) -> torch.Tensor:
        return self.q.float() * self.scale

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        # Gather int8 rows, then dequantize only those (cheaper than dequantizing the table first).
        return self.q[idx].float() * self.scale[idx]


def quantize_onnx(src: str | Path, dst: str | Path, *, per_channel: bool = True,
                  op_types: tuple[str, ...] = ("MatMul", "Gemm")) -> Path:
    """ORT dynamic int8 quantization of the MatMul/Gemm weights of ``src`` into ``dst`` (one file).

    Only MatMuls whose second input is a constant are quantized (``MatMulConstBOnly``); activations are
    quantized at run time per batch. Gathers are left alone: tables we want in int8 are already
    :class:`Int8Table`, and ORT's per-tensor Gather quantization loses rare rows."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    with _quiet_ort_advice():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=list(op_types), extra_options={"MatMulConstBOnly": True})
    return dst


@contextmanager
def _quiet_ort_advice() -> Iterator[None]:
    """ORT's quantizers log a "please run pre-processing" warning through the root logger; it is advice only."""
    qlog = logging.getLogger("root")
    level = qlog.level
    qlog.setLevel(logging.ERROR)
    try:
        yield
    finally:
        qlog.setLevel(level)


def quantize_onnx_static(src: str | Path, dst: str | Path, feeds: Sequence[dict[str, np.ndarray]], *,
                         per_channel: bool = True, op_types: tuple[str, ...] = ("MatMul", "Gemm")) -> Path:
    """ORT static int8 quantization (QDQ format) of every MatMul/Gemm of ``src`` into ``dst``.

    Unlike :func:`quantize_onnx` this also quantizes the activation x activation MatMuls (attention
    scores and attention-weighted values) and the scoring MatMul against the item table, with activation
    ranges calibrated (min/max) by running ``src`` on ``feeds`` (real queries); weights int8 per output
    channel, activations uint8 (ORT's u8s8 kernels on x86). No min/max pass over the activations at run
    time. Weights use 7 of the 8 bits (``reduce_range``): x86 CPUs without VNNI (AVX2) add u8 x s8 pairs in
    saturating 16-bit lanes, and with full-range weights the scores of a test model there correlated 0.94
    with PyTorch's (0.95 is the floor in tests/deploy/test_export.py); the export may be served on any CPU."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no type hints: its base class is Any
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    dst = Path(dst)
    with _quiet_ort_advice():
        quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=list(op_types),
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, reduce_range=True)
    return dst
