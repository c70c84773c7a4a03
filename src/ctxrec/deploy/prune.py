"""Magnitude pruning: global L1 unstructured pruning of a network's weight matrices, made permanent.

``torch.nn.utils.prune.global_unstructured`` ranks the weights of all chosen tensors together and zeroes
the smallest ``amount`` fraction; ``prune.remove`` then folds the masks into the weights, so the pruned
network is a plain module that saves, exports and quantizes like any other. The zeros do not shrink a
dense file by themselves (they compress well, see ``size_mb_gzip`` in the deploy benchmark); pruning
here is a study of how much of the network the ranking needs.

Which views of a fusion model to drop is a configuration matter (``FusionConfig.use_context`` /
``use_profile``), decided from ablation runs, not done here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

__all__ = ["magnitude_prune", "prunable_weights", "sparsity"]


def prunable_weights(net: nn.Module, *, include_embeddings: bool = True) -> list[tuple[nn.Module, str]]:
    """``(module, "weight")`` for every Linear (and Embedding/EmbeddingBag) in ``net``. Biases, norms and
    positional tables are small and sensitive, and stay dense."""
    kinds: tuple[type[nn.Module], ...] = (nn.Linear,)
    if include_embeddings:
        kinds += (nn.Embedding, nn.EmbeddingBag)
    out = []
    for name, m in net.named_modules():
        if isinstance(m, kinds) and not name.endswith("pos_emb"):
            out.append((m, "weight"))
    return out


def magnitude_prune(net: nn.Module, amount: float, *, include_embeddings: bool = True) -> dict[str, Any]:
    """Zero the ``amount`` fraction of smallest-magnitude weights across all prunable tensors of ``net``
    (in place, permanent). Returns what was pruned: per-tensor and overall sparsity."""
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"prune amount must be in [0, 1), got {amount}")
    params = prunable_weights(net, include_embeddings=include_embeddings)
    if not params:
        raise ValueError(f"{type(net).__name__} has no Linear/Embedding weights to prune")
    if amount > 0:
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        for m, n in params:
            prune.remove(m, n)
    return {"method": "global L1 unstructured (torch.nn.utils.prune), permanent", "amount": amount,
            "include_embeddings": include_embeddings, **sparsity(net, params)}


@torch.no_grad()
def sparsity(net: nn.Module, params: list[tuple[nn.Module, str]] | None = None) -> dict[str, Any]:
    """Fraction of exact zeros in the prunable weights (overall and per tensor)."""
    params = params if params is not None else prunable_weights(net)
    names = {id(m): name for name, m in net.named_modules()}
    per, zeros, total = {}, 0, 0
    for m, n in params:
        w = getattr(m, n)
        z, t = int((w == 0).sum()), w.numel()
        per[f"{names.get(id(m), '?')}.{n}"] = round(z / max(t, 1), 4)
        zeros, total = zeros + z, total + t
    return {"sparsity": round(zeros / max(total, 1), 4), "pruned_weights": total, "per_tensor": per}
