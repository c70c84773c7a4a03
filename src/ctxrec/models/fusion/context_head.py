"""The context prior: P_ctx(i | c), what the request's context alone says, for requests with nothing else.

The fusion network answers a request with no history and no profile (an anonymous visitor) from its BOS
state modulated by the context view; it sees that case only at each user's first training event, so it
never learns P(item | context) (frappe: 0.19 NDCG@10 anonymous against 0.22 for per-context popularity).
The context head is a separate model of that distribution,

    P_ctx(i | c) = softmax_i(MLP([e_1(c_1), ..., e_F(c_F), W d]) . sg(E_i) + b_i),

with its own field embeddings, an MLP over their concatenation (so fields interact), the fusion item
table ``E`` as a fixed item space (stop-gradient ``sg``) and a per-item bias. It is fitted after the main
training, on every training event's (context, item), with the network's weights frozen: the answers of
every request with a history are unchanged, bit for bit. Requests with no history, no profile and no text
query are answered by it (``FusionNet.anonymous``); explanations name it as the ``context_prior`` view.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Fit of the head (the network is fixed, so these are the head's own optimisation settings).
BATCH = 2048
MIN_STEPS = 20  # per epoch: small logs get smaller batches
LR = 3e-3
MAX_EPOCHS = 30
PATIENCE = 3
# Without validation cases (``fit(data)`` with no ``valid=``) the fit holds out this share of the training
# events (at most HOLDOUT_MAX, at least HOLDOUT_MIN or none) to know when to stop: the training loss keeps
# falling for all MAX_EPOCHS (on ml-1m that took over 25 minutes) while the answer has long stopped improving.
HOLDOUT = 0.05
HOLDOUT_MAX = 20_000
HOLDOUT_MIN = 50
SCORE_ROWS = 4096  # validation rows scored at once: (rows, V + 1) logits, not the whole validation set's


class ContextHead(nn.Module):
    """Context fields (N, F) ids + (N, Dd) dense -> (N, V + 1) logits over the item table; column 0 = -inf."""

    bias: torch.Tensor  # (V + 1,) log-prior offset per item; 0 = an item without training events
    weight: torch.Tensor  # () the prior's weight in answers with a history

    def __init__(self, cardinalities: list[int], n_dense: int, n_items: int, d_field: int, hidden: int,
                 d_out: int, dropout: float) -> None:
        super().__init__()
        self.n_fields = len(cardinalities)
        self.emb = nn.ModuleList(nn.Embedding(c, d_field) for c in cardinalities)
        for e in self.emb:
            nn.init.normal_(e.get_parameter("weight"), std=0.1)
        self.dense = nn.Linear(n_dense, d_field) if n_dense else None
        width = d_field * (self.n_fields + (1 if n_dense else 0))
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out))
        # A buffer, not a parameter: the fit trains a copy and stores it here shifted so that its minimum is 0,
        # which makes the zero rows ``add_items`` appends rank new items as the least likely a priori.
        self.register_buffer("bias", torch.zeros(n_items + 1))
        # Weight w of the prior in every other request's answer, (1 - w) P + w P_ctx (0 = only anonymous ones).
        self.register_buffer("weight", torch.zeros(()))
        # Item vectors of its own, added to the fixed table's (starting at 0, i.e. at the table's geometry).
        # Measured on frappe (seed 2): anonymous NDCG@10 0.268 with them, 0.258 on the table alone.
        self.items = nn.Embedding(n_items + 1, d_out)
        nn.init.zeros_(self.items.weight)

    def grow(self, n: int) -> None:
        """Append ``n`` items (``add_items``) with bias 0: as unlikely a priori as the least likely trained item."""
        self.bias = torch.cat([self.bias, self.bias.new_zeros(n)])
        w = self.items.weight.data
        self.items.weight = nn.Parameter(torch.cat([w, w.new_zeros(n, w.shape[1])]))
        self.items.num_embeddings = w.shape[0] + n

    def features(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """ids (N, F [+1 text id, ignored]) and dense (N, Dd) -> (N, d_out) context vectors."""
        parts = [e(ids[:, f]) for f, e in enumerate(self.emb)]
        if self.dense is not None:
            parts.append(self.dense(dense))
        return self.mlp(torch.cat(parts, -1))

    def forward(self, ids: torch.Tensor, dense: torch.Tensor, table: torch.Tensor,
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, V + 1) of P_ctx against the (detached) item table (V + 1, D); column 0 = -inf."""
        items = table.detach() + self.items.weight
        logits = (self.features(ids, dense) @ items.T).float() + (self.bias if bias is None else bias)
        logits[:, 0] = float("-inf")
        return logits


def anonymous_rows(lengths: torch.Tensor, prof: torch.Tensor, utext: torch.Tensor | None,
                   has_query: torch.Tensor | None) -> torch.Tensor:
    """(B,) True where a request gives nothing but its context: no history event (``lengths`` counts BOS),
    no profile (all profile ids unknown, no user-text vector) and no text query. One rule for the library
    (``batches.anonymous_requests``) and the exported graph, each applying it to its own input tensors."""
    anon = (lengths <= 1) & (prof == 0).all(-1)
    if utext is not None:
        anon = anon & (utext == 0).all(-1)
    return anon if has_query is None else anon & ~has_query


PRIOR_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
"""Grid for ``context_prior_weight=None``: the weight with the best validation NDCG@10."""


def _ndcg10(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean NDCG@10 of one target per row (rank by logits; ties count against the target)."""
    return float(_gains10(logits, targets).mean())


def _gains10(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) NDCG@10 gain of each row's one target."""
    rank = (logits > logits.gather(1, targets[:, None])).sum(1)  # (N,) 0-based
    return torch.where(rank < 10, 1.0 / torch.log2(rank.float() + 2.0), torch.zeros_like(rank, dtype=torch.float))


def held_out(train: tuple[np.ndarray, np.ndarray, np.ndarray], seed: int
             ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Split training triples into (fit, held-out) for a fit without validation cases: a seeded random
    :data:`HOLDOUT` share of the events, at most :data:`HOLDOUT_MAX`; ``None`` held out below
    :data:`HOLDOUT_MIN` (a log that small stops on its training loss)."""
    n = len(train[2])
    n_hold = min(HOLDOUT_MAX, int(n * HOLDOUT))
    if n_hold < HOLDOUT_MIN:
        return train, None
    perm = np.random.default_rng(seed).permutation(n)
    hold, keep = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    return tuple(a[keep] for a in train), tuple(a[hold] for a in train)  # type: ignore[return-value]


def choose_prior_weight(head: ContextHead, weight: float | None, evaluate: Callable[[], dict[str, float]] | None
                        ) -> dict[str, Any]:
    """Set the prior's weight in answers with a history: ``weight``, or (None) the one of
    :data:`PRIOR_WEIGHTS` with the best validation NDCG@10 (``evaluate`` scores the model as it stands;
    0 without validation cases). Returns the weight and the validation figure of each tried."""
    tried: dict[str, float] = {}
    if weight is None and evaluate is not None:
        for w in PRIOR_WEIGHTS:
            head.weight.fill_(w)
            tried[str(w)] = round(evaluate()["ndcg@10"], 4)
        weight = max(PRIOR_WEIGHTS, key=lambda w: (tried[str(w)], -w))  # ties: the smaller weight
    head.weight.fill_(weight or 0.0)
    return {"weight": round(float(head.weight), 4), "weight_valid_ndcg@10": tried}


def fit_context_head(head: ContextHead, table: torch.Tensor, train: tuple[np.ndarray, np.ndarray, np.ndarray],
                     valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None, *, seed: int,
                     exclude: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit ``head`` on training (context ids, dense, item + 1) triples against the fixed ``table``, keeping
    the epoch with the best validation NDCG@10 of the context-only answer (the start, global popularity,
    when none beats it). Without validation cases it holds out a share of the training events
    (:func:`held_out`) and stops on those; on a log too small for that, on the training loss. ``exclude``
    (V + 1,) bool: items without training events, out of the softmax. Returns a summary for ``fit_info``
    (``stopped_on``: which of the three it was)."""
    has_valid = valid is not None and len(valid[2]) > 0
    stopped_on = "validation cases"
    if not has_valid:
        train, valid = held_out(train, seed)
        stopped_on = f"{len(valid[2])} held-out training events" if valid is not None else "training loss"
        has_valid = valid is not None
    dev = table.device
    table = table.detach()
    ids_t, dense_t, tgt_t = (torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in train)
    counts = torch.bincount(tgt_t, minlength=table.shape[0]).float()
    # Start from global popularity: the head only has to learn how the context moves it.
    bias = nn.Parameter(torch.log(counts + 1.0))
    params = [*head.parameters(), bias]
    opt = torch.optim.Adam(params, lr=LR)
    gen = torch.Generator().manual_seed(seed)
    mask = None if exclude is None else exclude.to(dev)

    def logits_of(ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        out = head(ids, dense, table, bias)
        return out if mask is None else out.masked_fill(mask, float("-inf"))

    def score_valid() -> float:
        assert valid is not None
        head.eval()
        with torch.no_grad():
            v_ids, v_dense, v_tgt = (torch.from_numpy(np.ascontiguousarray(a)).to(dev) for a in valid)
            gains = [_gains10(logits_of(v_ids[s:s + SCORE_ROWS], v_dense[s:s + SCORE_ROWS]), v_tgt[s:s + SCORE_ROWS])
                     for s in range(0, len(v_tgt), SCORE_ROWS)]
            return float(torch.cat(gains).mean())

    # The start (the log-popularity bias plus the untrained MLP's small scores) is a candidate too, so the
    # prior is never worse on validation than popularity (small logs: 42 validation cases on incarmusic).
    best = score_valid() if has_valid else -math.inf
    best_state = ({k: v.clone() for k, v in head.state_dict().items()}, bias.detach().clone())
    best_epoch, bad, epochs, history = -1, 0, 0, []
    batch = max(64, min(BATCH, math.ceil(len(tgt_t) / MIN_STEPS)))
    for epoch in range(MAX_EPOCHS):
        head.train()
        total = 0.0
        perm = torch.randperm(len(tgt_t), generator=gen).to(dev)
        for start in range(0, len(perm), batch):
            idx = perm[start : start + batch]
            loss = F.cross_entropy(logits_of(ids_t[idx], dense_t[idx]), tgt_t[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        epochs = epoch + 1
        score = score_valid() if has_valid else -total
        history.append({"loss": round(total / len(tgt_t), 4), "valid_ndcg@10": round(score, 4) if has_valid else None})
        if score > best:
            best, best_epoch, bad = score, epoch, 0
            best_state = ({k: v.clone() for k, v in head.state_dict().items()}, bias.detach().clone())
        else:
            bad += 1
            if bad >= PATIENCE:
                break
    head.load_state_dict(best_state[0])
    with torch.no_grad():
        b = best_state[1].clone()
        if mask is not None and bool((~mask[1:]).any()):
            b[mask] = b[1:][~mask[1:]].min()  # items without training events: as unlikely as the least likely
        head.bias.copy_(b - b[1:].min())
    head.eval()
    return {"best_epoch": best_epoch, "epochs_run": epochs, "stopped_on": stopped_on,
            "best_valid_ndcg@10": round(best, 4) if has_valid else None, "history": history}
