"""Catalogue-scoring losses shared by the sequence models.

``full_ce``: softmax cross-entropy over the whole catalogue (the SASRec+ recipe; exact, memory grows
with ``n_positions x n_items``). ``sampled_ce``: softmax over the positive plus ``K`` negatives drawn
from a proposal ``q`` (item popularity), with the log-Q correction ``logit - log(K q)`` so the
estimate stays consistent; memory grows with ``K`` only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_ce(hidden: torch.Tensor, item_table: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """hidden (N, D), item_table (V, D) with row 0 = padding, targets (N,) in 1..V-1."""
    logits = hidden @ item_table.T  # (N, V)
    logits[:, 0] = float("-inf")  # never predict padding
    return F.cross_entropy(logits.float(), targets)


def sampled_ce(
    hidden: torch.Tensor,
    item_table: torch.Tensor,
    targets: torch.Tensor,
    *,
    n_negatives: int,
    log_q: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sampled softmax with log-Q correction. ``log_q`` (V,) is the log proposal probability
    (``-inf`` for padding); negatives are shared across the batch (one draw per step)."""
    probs = log_q.exp()
    neg = torch.multinomial(probs, n_negatives, replacement=True, generator=generator)  # (K,)
    pos_logit = (hidden * item_table[targets]).sum(-1, keepdim=True)  # (N, 1)
    neg_logit = hidden @ item_table[neg].T  # (N, K)
    correction = log_q[neg] + torch.log(torch.tensor(float(n_negatives), device=hidden.device))
    neg_logit = neg_logit - correction
    pos_logit = pos_logit - (log_q[targets] + torch.log(torch.tensor(float(n_negatives), device=hidden.device)))[:, None]
    # a sampled negative equal to the target is not a negative
    neg_logit = neg_logit.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1).float()
    return F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long, device=hidden.device))
