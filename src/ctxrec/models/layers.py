"""Network layers shared by the sequence models (SASRec and fusion), and how they group histories at inference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ctxrec.errors import ConfigError


def check_transformer_shape(*, d_model: int, n_layers: int, n_heads: int, max_len: int, dropout: float,
                            d_ff: int | None = None) -> None:
    """The shape of a causal Transformer config, checked when the config is built (before any data loads):
    a wrong value otherwise surfaces as a tensor-size error deep inside the first training step."""
    for name, value in (("d_model", d_model), ("n_layers", n_layers), ("n_heads", n_heads), ("max_len", max_len)):
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if d_ff is not None and d_ff < 1:
        raise ConfigError(f"d_ff must be >= 1 (or null: d_model), got {d_ff}")
    if d_model % n_heads:
        fits = [h for h in range(1, 17) if d_model % h == 0]
        raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads}); with d_model {d_model}, "
                          f"n_heads can be {', '.join(map(str, fits))}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


class CausalBlock(nn.Module):
    """Pre-norm Transformer block with causal self-attention."""

    def __init__(self, d: int, n_heads: int, d_ff: int, dropout: float, attn_dropout: float | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d))
        self.drop = nn.Dropout(dropout)
        # Dropout on the attention weights makes CPU attention take the unfused path, which builds the
        # (B, H, T, T) matrix; without it scaled_dot_product_attention runs its fused kernel.
        self.attn_dropout = dropout if attn_dropout is None else attn_dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, T, D)
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, H, T, d)
        # Right padding + causal mask: real positions never attend to padding (pads come after).
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, D)))
        return x + self.drop(self.ff(self.ln2(x)))

    def forward_at(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``forward(x)[arange(B), pos]`` (B, D) in eval mode, with the query, projection and feed-forward
        computed at position ``pos`` (B,) only (keys and values still cover every position): a sequence
        model's last block needs only the position it predicts from."""
        B, T, D = x.shape
        H, rows = self.n_heads, torch.arange(B, device=x.device)
        h = self.ln1(x)  # (B, T, D)
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(h[rows, pos], w[:D], b[:D]).view(B, H, 1, D // H)
        k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in F.linear(h, w[D:], b[D:]).split(D, dim=-1))  # (B, H, T, d)
        keep = (torch.arange(T, device=x.device).unsqueeze(0) <= pos.unsqueeze(1)).view(B, 1, 1, T)  # causal row pos
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, H, 1, d)
        y = x[rows, pos] + self.proj(a.reshape(B, D))  # (B, D)
        return y + self.ff(self.ln2(y))


def small_init(emb: nn.Module | None, std: float = 0.02) -> None:
    """N(0, std) rows of an embedding table (the ID embedding's init); the padding row, if any, stays zero."""
    if emb is None:
        return
    weight = emb.get_parameter("weight")
    nn.init.normal_(weight, std=std)
    pad = getattr(emb, "padding_idx", None)
    if pad is not None:
        with torch.no_grad():
            weight[pad].zero_()


STATE_TOKENS = 1 << 14
"""Most padded history positions in one inference forward (:func:`state_chunks`). On ml-1m (fusion, d 256,
histories of 200) a validation batch of 512 users in one forward raised the peak RSS by about 900 MiB; in
pieces of 16,384 positions the activations stay near 100 MiB, and pieces of 80 such histories still make
full-width matrix products."""


def length_groups(lengths: Sequence[int], slack: float = 1.25) -> list[list[int]]:
    """Indices grouped by similar length (sorted; a group's longest at most ``slack`` x its shortest + 8), so
    that padding each group to its longest wastes little."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] <= slack * lengths[groups[-1][0]] + 8:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def state_chunks(lengths: Sequence[int], max_tokens: int | None = None) -> list[list[int]]:
    """Indices of histories to encode together at inference: :func:`length_groups` (padding every history to
    the longest of a batch would cost up to max_len / length times the work), each cut so that it pads to
    at most ``max_tokens`` positions (default :data:`STATE_TOKENS`; + 1 each for a BOS token; at least one
    history per chunk)."""
    budget = STATE_TOKENS if max_tokens is None else max_tokens
    chunks: list[list[int]] = []
    for group in length_groups(lengths):
        step = max(1, budget // (max(lengths[i] for i in group) + 1))
        chunks.extend(group[start:start + step] for start in range(0, len(group), step))
    return chunks
