"""Why the fusion model recommended what it did: the gate's view weights, each view's share of each top
item's probability, and occlusion attribution over the request-context fields (the generic
``ctxrec.models.attribution``) and over the past events (here: it re-reads the token tensors). A request
with nothing but a context is answered by the context prior alone: its one view is ``context_prior``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ctxrec.models.attribution import all_fields_drop, context_attribution, list_score
from ctxrec.models.fusion.batches import FusionInputs, anonymous_requests
from ctxrec.models.fusion.net import mixture_log_probs

if TYPE_CHECKING:
    from ctxrec.context import ContextEncoder
    from ctxrec.data.vocab import Vocab
    from ctxrec.models.fusion.net import FusionNet
    from ctxrec.queries import QueryBatch


class FusionModel(FusionInputs, Protocol):
    """What explaining reads from a fitted ``FusionRecommender``."""

    net: FusionNet | None
    item_vocab: Vocab | None
    ctx_encoder: ContextEncoder | None

    def score(self, batch: QueryBatch) -> np.ndarray: ...

    def _forward(self, batch: QueryBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]: ...

    def encode_batch(self, batch: QueryBatch) -> dict[str, torch.Tensor]: ...

    def text_query_log_probs(self, texts: Sequence[str | None]) -> torch.Tensor | None: ...


@torch.no_grad()
def explain(model: FusionModel, batch: QueryBatch, top: np.ndarray) -> list[dict[str, Any] | None]:
    """View weights per query, each view's share of each top item's probability, and attributions."""
    assert model.item_vocab is not None and model.net is not None and model.ctx_encoder is not None
    vecs, log_w, table, names = model._forward(batch)
    vecs, table = model.net.scoring_inputs(vecs, table)
    logits = torch.einsum("bjd,vd->bjv", vecs, table).float()
    logits[..., 0] = float("-inf")
    joint = log_w.unsqueeze(-1) + F.log_softmax(logits, -1)  # (B, J, V): log w_j p_j(i)
    text = model.text_query_log_probs(batch.texts or [])
    if text is not None:  # the text-match component, weight query_weight where a query has text
        has_q = torch.tensor([bool(t) for t in batch.texts or []]).unsqueeze(1)  # (B, 1)
        qw = torch.tensor(model.config.query_weight)
        log_w = torch.cat([torch.where(has_q, log_w + torch.log1p(-qw), log_w),
                           torch.where(has_q, torch.log(qw), torch.tensor(float("-inf")))], 1)
        joint = torch.cat([log_w[:, :-1].unsqueeze(-1) + F.log_softmax(logits, -1),
                           log_w[:, -1:].unsqueeze(-1) + text.unsqueeze(1)], 1)  # (B, J + 1, V)
        names = [*names, "query"]
    share = torch.softmax(joint, dim=1)  # (B, J, V): view j's share of P(i)
    anon = anonymous_requests(model, batch) if model.net.context_head is not None else None
    prior_rows = set() if anon is None else set(anon[0].nonzero().flatten().tolist())
    out: list[dict[str, Any] | None] = []
    for b in range(len(top)):
        items = [int(i) for i in top[b] if i >= 0]
        if b in prior_rows:  # answered by the context prior alone (context_head.py)
            out.append({"view_weights": {"context_prior": 1.0},
                        "items": [{"item_id": model.item_vocab.ids[i], "view_shares": {"context_prior": 1.0}} for i in items]})
            continue
        out.append({
            "view_weights": {n: round(float(w), 4) for n, w in zip(names, log_w[b].exp().tolist(), strict=True)},
            "items": [{"item_id": model.item_vocab.ids[i],
                       "view_shares": {n: round(float(share[b, j, i + 1]), 4) for j, n in enumerate(names)}}
                      for i in items],
        })
    enc = model.ctx_encoder
    fields = [f for f in enc.field_names if any(f in c for c in batch.contexts)]
    if enc.use_time and np.isfinite(batch.timestamps).any():
        fields.append("time")
    base = list_score(np.asarray(model.score(batch), dtype=np.float64), top)  # (B,) scored once for both
    contexts = context_attribution(model, batch, top, fields=fields, base=base)
    together = all_fields_drop(model, batch, top, fields, base=base)
    for o, ctx, all_drop, hist in zip(out, contexts, together, history_attribution(model, batch, top), strict=True):
        assert o is not None
        o["context_attribution"], o["history_attribution"] = ctx, hist
        if all_drop is not None:
            o["context_all_fields"] = all_drop  # every sent field removed at once
    return out


@torch.no_grad()
def history_attribution(model: FusionModel, batch: QueryBatch, top: np.ndarray, *, max_events: int = 20
                        ) -> list[list[dict[str, Any]]]:
    """Per query, the last ``max_events`` history events with the drop of the list's mean log-probability
    when each is removed from the sequence (its context goes with it), largest first."""
    assert model.net is not None and model.item_vocab is not None
    net = model.net.eval()
    x = model.encode_batch(batch)
    out: list[list[dict[str, Any]]] = []
    table = net.item_table()
    for b in range(len(top)):
        n = int(x["len"][b])  # BOS + events
        hist = np.asarray(batch.histories[b], dtype=np.int64)
        first = max(1, n - max_events)
        variants: list[int | None] = [None, *range(first, n)]  # None = the full sequence
        V = len(variants)
        idx = torch.zeros(V, n, dtype=torch.long)  # (V, T) token positions kept by each variant
        mask = torch.zeros(V, n, dtype=torch.bool)
        for v, j in enumerate(variants):
            keep = [p for p in range(n) if p != j]
            idx[v, : len(keep)] = torch.tensor(keep)
            mask[v, : len(keep)] = True
        inp = torch.where(mask, x["inp"][b][idx], torch.zeros_like(idx))
        ev = torch.where(mask, x["ev"][b][idx], torch.zeros_like(idx))
        ci = x["ci"][b][idx] * mask.unsqueeze(-1)
        cd = x["cd"][b][idx] * mask.unsqueeze(-1)
        h = net.encode(inp, ev, ci, cd, table)  # (V, T, D)
        last = h[torch.arange(V), mask.sum(1) - 1]
        prof = net.profile_vector(x["prof"][b : b + 1].expand(V, -1),
                                  None if "utext" not in x else x["utext"][b : b + 1].expand(V, -1))
        vecs, log_w = net.views(last, x["rci"][b : b + 1].expand(V, -1), x["rcd"][b : b + 1].expand(V, -1), prof)
        vecs_s, table_s = net.scoring_inputs(vecs, table)
        log_p = mixture_log_probs(vecs_s, log_w, table_s, mixture=model.config.mixture_on)[:, 1:].double().numpy()
        scores = list_score(log_p, np.repeat(top[b : b + 1], V, 0))
        events: list[dict[str, Any]] = []
        offset = len(hist) - (n - 1)  # history index of token position 1
        for v, j in enumerate(variants[1:], start=1):
            assert j is not None
            pos = offset + j - 1
            events.append({"position": int(pos), "item_id": model.item_vocab.ids[int(hist[pos])],
                           "attribution": round(float(scores[0] - scores[v]), 4)})
        events.sort(key=lambda e: -e["attribution"])
        out.append(events)
    return out
