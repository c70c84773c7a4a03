"""The fusion network: item table, token encoder, causal Transformer, views, gate and the heads.

Index 0 is padding everywhere. See the package docstring for the model; shapes are in the comments.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ctxrec.models.features import FeatureShapes, attribute_bag, register_item_inputs
from ctxrec.models.fusion.config import FusionConfig
from ctxrec.models.fusion.context_head import ContextHead
from ctxrec.models.layers import CausalBlock, small_init

EncodeLast = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
""":meth:`FusionNet.encode_last`'s signature (items, events, ctx_ids, ctx_dense, table, lengths) -> (B, D)."""

TRAIN_NEIGHBOURS_MAX_ITEMS = 100_000
"""Largest catalogue whose dropped ID parts train as their text neighbours' mean (``cold_ids="neighbours"``):
the search compares every item with every warm one once per fit (items x warm items x text width)."""


@dataclass
class NetSpec(FeatureShapes):
    """Shapes the network is built from (saved in state.json, so ``load`` rebuilds it)."""

    user_text_dim: int
    n_event_types: int
    extra_dim: int = 0
    """Width of the precomputed item vectors (``FusionConfig.item_vectors``); 0 = none."""
    ctx_text_dim: int = 0
    """Width of the language-model vectors of rendered contexts (``context.as_text``); 0 = off."""
    n_ctx_texts: int = 0
    """Distinct rendered contexts with a vector (grows when requests bring new ones)."""


class TextAdapter(nn.Module):
    """Frozen LM vector (..., Dt) -> item space (..., D): a linear projection (input dropout in training).
    The language model's weights and the embedding cache stay fixed; the projection adapts its space."""

    def __init__(self, text_dim: int, d: int, dropout: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.lin = nn.Linear(text_dim, d)  # state-dict key text_proj.lin.* (as when other adapters existed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(self.drop(x))


class FusionNet(nn.Module):
    """Item table, token encoder, causal Transformer, views and gate. Index 0 = padding everywhere."""

    # buffers (row 0 = padding): frozen item inputs, trained-ID flags, context-text vectors
    text_vectors: torch.Tensor  # (V + 1, Dt)
    attr_ids: torch.Tensor  # (V + 1, A)
    extra_vectors: torch.Tensor  # (V + 1, De)
    has_id: torch.Tensor  # (V + 1, 1)
    ctx_text_vectors: torch.Tensor  # (n_ctx_texts + 1, Dc)

    def __init__(self, spec: NetSpec, cfg: FusionConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg, self.spec = cfg, spec
        n = spec.n_items + 1  # + padding row 0
        # The creation order below fixes the parameters' order (and so the random init and the gradient
        # norm's summation order): keep it, or seeded results move.
        self.id_emb = nn.Embedding(n, d, padding_idx=0) if cfg.use_id else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.02)
        self.text_proj = TextAdapter(spec.text_dim, d, cfg.dropout) if spec.text_dim else None
        register_item_inputs(self, spec)  # text_vectors (n, Dt), attr_ids (n, A)
        self.extra_proj = nn.Linear(spec.extra_dim, d) if spec.extra_dim else None
        self.register_buffer("extra_vectors", torch.zeros(n, max(spec.extra_dim, 1)), persistent=spec.extra_dim > 0)
        self.attr_emb = attribute_bag(spec, d)
        # Every item-vector part starts on the ID embedding's scale: at torch's default N(0, 1) the attribute
        # part would be ~sqrt(d) long, swamp ID and text, and (x sqrt(d) in the tokens) the positions too.
        small_init(self.attr_emb)
        # 1 for items with training events. Items without (cold, or added after training) use text and
        # attributes only: an untrained ID row would otherwise carry the "never a target" push-down.
        self.register_buffer("has_id", torch.zeros(n, 1), persistent=True)
        self._nb_cache: dict[bool, tuple[tuple[object, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}  # cold_ids search
        self.bos = nn.Parameter(torch.randn(d) * 0.02)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.event_emb = nn.Embedding(spec.n_event_types + 1, d)
        nn.init.zeros_(self.event_emb.weight)
        # Context: one table per field (id 0 = unknown) + dense features, shared by events and requests.
        self.ctx_emb = nn.ModuleList(nn.Embedding(c, d) for c in spec.ctx_cardinalities) if cfg.use_context else nn.ModuleList()
        for emb in self.ctx_emb:
            nn.init.normal_(emb.get_parameter("weight"), std=0.02)
        self.ctx_dense = nn.Linear(spec.n_dense, d) if (cfg.use_context and spec.n_dense) else None
        # Context as text: the last column of the context ids indexes rows of ctx_text_vectors (0 = none).
        self.ctx_text_proj = nn.Linear(spec.ctx_text_dim, d) if (cfg.use_context and spec.ctx_text_dim) else None
        self.register_buffer("ctx_text_vectors", torch.zeros(spec.n_ctx_texts + 1, max(spec.ctx_text_dim, 1)),
                             persistent=self.ctx_text_proj is not None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(CausalBlock(d, cfg.n_heads, d, cfg.dropout, cfg.attention_dropout) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        # Views.
        self.has_context_view = cfg.use_context and bool(spec.ctx_cardinalities or spec.n_dense or spec.ctx_text_dim)
        self.context_view = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d)) if self.has_context_view else None
        self.profile_emb = nn.ModuleList(nn.Embedding(c, d) for c in spec.profile_cardinalities) if cfg.use_profile else nn.ModuleList()
        for emb in self.profile_emb:
            small_init(emb)
        self.user_text_proj = nn.Linear(spec.user_text_dim, d) if (cfg.use_profile and spec.user_text_dim) else None
        self.has_profile_view = bool(len(self.profile_emb) or self.user_text_proj is not None)
        self.profile_view = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d)) if self.has_profile_view else None
        self.view_names = ["sequence"] + (["context"] if self.has_context_view else []) + (["profile"] if self.has_profile_view else [])
        self.gate = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, len(self.view_names)))
        # The context prior (context_head.py), fitted after training for requests with nothing but a context.
        # Created last and from its own seeded generator: the main training's random stream is unchanged.
        self.context_head: ContextHead | None = None
        if cfg.context_head and cfg.use_context and (spec.ctx_cardinalities or spec.n_dense):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.train.seed)
                self.context_head = ContextHead(spec.ctx_cardinalities, spec.n_dense, spec.n_items, d_field=16,
                                                hidden=2 * d, d_out=d, dropout=cfg.dropout)

    # ------------------------------------------------------------------------------ item table
    def item_table(self) -> torch.Tensor:
        """(n_items + 1, D) item representations; row 0 (padding) is zero."""
        parts = []
        has_content = self.text_proj is not None or self.attr_emb is not None or self.extra_proj is not None
        if self.id_emb is not None:
            ids = self.id_emb.weight * self.has_id if has_content else self.id_emb.weight
            if self.training and has_content and self.cfg.id_dropout_value > 0:
                keep = (torch.rand(ids.shape[0], 1, device=ids.device) >= self.cfg.id_dropout_value).to(ids.dtype)
                if (self.cfg.cold_ids == "neighbours" and self.text_proj is not None
                        and self.spec.n_items <= TRAIN_NEIGHBOURS_MAX_ITEMS):
                    # Train as cold items are scored: a dropped ID part becomes its text neighbours' mean.
                    ids = ids * keep + self._neighbour_ids(ids, training=True) * (1 - keep * self.has_id)
                else:
                    ids = ids * keep
            elif not self.training and self.cfg.id_scale != 1.0 and has_content:
                ids = ids * self.cfg.id_scale
            if not self.training and self.cfg.cold_ids == "neighbours" and self.text_proj is not None:
                ids = ids + self._neighbour_ids(ids)
            parts.append(ids)
        if self.text_proj is not None:
            parts.append(self.text_proj(self.text_vectors))
        if self.attr_emb is not None:
            parts.append(self.attr_emb(self.attr_ids))
        if self.extra_proj is not None:
            parts.append(self.extra_proj(self.extra_vectors))
        table = torch.stack(parts).sum(0)
        return table * (torch.arange(table.shape[0], device=table.device) > 0).unsqueeze(-1).to(table.dtype)

    def _neighbour_ids(self, ids: torch.Tensor, training: bool = False) -> torch.Tensor:
        """(V, D): for rows without an ID embedding (``training``: for every row), the mean of ``ids`` over the
        k other rows with one whose text vectors are most cosine-similar, weighted by the (non-negative)
        similarity; zeros elsewhere."""
        rows, nb, w = self._neighbours(training)
        out = torch.zeros_like(ids)
        if len(rows):
            out = out.index_copy(0, rows, (w.unsqueeze(-1) * ids[nb]).sum(1))
        return out

    def _neighbours(self, training: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(query rows (C,), their k warm neighbour rows (C, k), weights (C, k)). Queries: the cold rows, or
        while training every item row (a row is never its own neighbour). The search depends only on
        ``has_id`` and the frozen text vectors, so it runs again only when those change (``add_items``),
        not on every table build (every training step, every validation batch)."""
        key = (training, id(self.has_id), self.has_id._version, id(self.text_vectors), self.text_vectors._version,
               self.cfg.cold_id_neighbours)
        cached = self._nb_cache.get(training)
        if cached is not None and cached[0] == key:
            return cached[1]
        warm = self.has_id[:, 0] > 0
        query = torch.ones_like(warm) if training else ~warm
        query[0] = False  # padding
        warm_idx, q_idx = warm.nonzero().squeeze(1), query.nonzero().squeeze(1)
        if not len(warm_idx) or (training and len(warm_idx) < 2):
            q_idx = q_idx[:0]
        k = max(1, min(self.cfg.cold_id_neighbours, len(warm_idx) - int(training)))
        nb = torch.zeros(len(q_idx), k, dtype=torch.long, device=self.has_id.device)
        w = torch.zeros(len(q_idx), k, device=self.has_id.device)
        text = F.normalize(self.text_vectors, dim=-1)
        warm_text = text[warm_idx]  # (W, Dt)
        chunk = max(1, (1 << 24) // max(1, len(warm_idx)))  # bounds the (chunk, W) similarity block
        for start in range(0, len(q_idx), chunk):
            rows = slice(start, start + chunk)
            sim = text[q_idx[rows]] @ warm_text.T  # (C, W)
            if training:  # a warm query row is not its own neighbour
                sim = sim.masked_fill(q_idx[rows].unsqueeze(1) == warm_idx.unsqueeze(0), float("-inf"))
            sim, j = sim.topk(k, dim=1)  # (C, k)
            sim = sim.clamp(min=0)
            w[rows] = sim / sim.sum(1, keepdim=True).clamp(min=1e-12)  # an item without text (all 0) gets no ID part
            nb[rows] = warm_idx[j]
        self._nb_cache[training] = (key, (q_idx, nb, w))
        return q_idx, nb, w

    def scoring_inputs(self, view_vecs: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What g(H) = H E^T multiplies: raw vectors, or unit vectors / temperature (cosine scoring)."""
        t = self.cfg.temperature_value
        if t is None:
            return view_vecs, table
        return F.normalize(view_vecs, dim=-1) / t, F.normalize(table, dim=-1)

    # ------------------------------------------------------------------------------ sequence and views
    def context_vector(self, ids: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """ids (..., F [+1 text id]) and dense (..., Dd) -> (..., D); zeros when context is off."""
        out = torch.zeros(*ids.shape[:-1], self.cfg.d_model, device=ids.device)
        for f, emb in enumerate(self.ctx_emb):
            out = out + emb(ids[..., f])
        if self.ctx_text_proj is not None:
            out = out + self.ctx_text_proj(self.ctx_text_vectors[ids[..., -1]])
        if self.ctx_dense is not None:
            out = out + self.ctx_dense(dense)
        return out

    def encode(self, items: torch.Tensor, events: torch.Tensor, ctx_ids: torch.Tensor, ctx_dense: torch.Tensor,
               table: torch.Tensor) -> torch.Tensor:
        """Token sequence -> hidden states. items (B, T) with -1 = BOS, 0 = padding; returns (B, T, D)."""
        x = self._tokens(items, events, ctx_ids, ctx_dense, table)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def encode_last(self, items: torch.Tensor, events: torch.Tensor, ctx_ids: torch.Tensor, ctx_dense: torch.Tensor,
                    table: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``encode(...)[arange(B), lengths - 1]`` (B, D) in eval mode, the last block run at that position
        only (:meth:`CausalBlock.forward_at`): about a quarter less work per served user state."""
        x = self._tokens(items, events, ctx_ids, ctx_dense, table)
        *first, last = self.blocks
        for block in first:
            x = block(x)
        assert isinstance(last, CausalBlock)
        return self.ln_f(last.forward_at(x, lengths - 1))

    def encoder_tensors(self) -> list[torch.Tensor]:
        """Every weight and buffer :meth:`encode_last` reads besides the item table it is given: a copy of
        the encoder built from them (``ctxrec.deploy.state_runtime``) is stale once one of them changes."""
        parts: list[nn.Module | None] = [self.pos_emb, self.event_emb, self.ctx_emb, self.ctx_dense,
                                         self.ctx_text_proj, *self.blocks, self.ln_f]
        out = [self.bos, self.ctx_text_vectors]
        for m in parts:
            if m is not None:
                out += [*m.parameters(), *m.buffers()]
        return out

    def _tokens(self, items: torch.Tensor, events: torch.Tensor, ctx_ids: torch.Tensor, ctx_dense: torch.Tensor,
                table: torch.Tensor) -> torch.Tensor:
        """(B, T, D) input tokens: item row (BOS for -1) x sqrt(D) + position + event type [+ context]."""
        T = items.shape[1]
        bos = items < 0
        x = table[items.clamp(min=0)]  # (B, T, D)
        x = torch.where(bos.unsqueeze(-1), self.bos.expand_as(x), x)
        x = x * math.sqrt(self.cfg.d_model) + self.pos_emb.weight[:T] + self.event_emb(events)
        if self.cfg.use_context and self.cfg.event_context:
            x = x + self._ctx_dropout(self.context_vector(ctx_ids, ctx_dense))
        return self.drop(x) * (items != 0).unsqueeze(-1)

    def _ctx_dropout(self, c: torch.Tensor) -> torch.Tensor:
        if not self.training or self.cfg.context_dropout <= 0:
            return c
        keep = (torch.rand(*c.shape[:-1], 1, device=c.device) >= self.cfg.context_dropout).to(c.dtype)
        return c * keep

    def views(self, h: torch.Tensor, req_ids: torch.Tensor, req_dense: torch.Tensor,
              profile: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-view user vectors (..., J, D) and log gate weights (..., J) at each predicting position.

        h (..., D) states; req_* the request-time context of the position; profile (..., D) or None."""
        c = self._ctx_dropout(self.context_vector(req_ids, req_dense)) if self.has_context_view else torch.zeros_like(h)
        vs = [h]
        if self.context_view is not None:
            vs.append(h + self.context_view(torch.cat([h, c], -1)))
        if self.profile_view is not None:
            p = profile if profile is not None else torch.zeros_like(h)
            vs.append(h + self.profile_view(torch.cat([h, p], -1)))
        log_w = F.log_softmax(self.gate(torch.cat([h, c], -1)).float(), -1)
        return torch.stack(vs, -2), log_w

    def with_context_prior(self, log_p: torch.Tensor, anonymous: torch.Tensor, req_ids: torch.Tensor,
                           req_dense: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """log_p (B, V + 1) of the mixture with the ``anonymous`` rows (B,) (``context_head.anonymous_rows``)
        replaced by the context prior's log P_ctx(i | c) and the others mixed with it at the head's ``weight``
        ((1 - w) P + w P_ctx); unchanged without a context head."""
        head = self.context_head
        if head is None:
            return log_p
        eager = not torch.compiler.is_compiling() and not torch.onnx.is_in_onnx_export()
        if eager and not bool(anonymous.any()) and float(head.weight) == 0.0:
            return log_p  # (eager only: an exported graph has no data-dependent branch)
        with torch.no_grad():
            prior = F.log_softmax(head(req_ids, req_dense, table), -1).to(log_p.dtype)  # (B, V + 1)
            w = head.weight.to(log_p.dtype)
            mixed = torch.logaddexp(log_p + torch.log1p(-w), prior + torch.log(w))  # w = 0: log_p itself
        return torch.where(anonymous.unsqueeze(-1), prior, mixed)

    def profile_vector(self, prof_ids: torch.Tensor, user_text: torch.Tensor | None) -> torch.Tensor | None:
        """prof_ids (B, Fu), user_text (B, Dt) -> (B, D), or None without a profile view."""
        if not self.has_profile_view:
            return None
        out = torch.zeros(prof_ids.shape[0], self.cfg.d_model, device=prof_ids.device)
        for f, emb in enumerate(self.profile_emb):
            out = out + emb(prof_ids[:, f])
        if self.user_text_proj is not None and user_text is not None:
            out = out + self.user_text_proj(user_text)
        return out


# ---------------------------------------------------------------------------------- heads
def mixture_log_probs(view_vecs: torch.Tensor, log_w: torch.Tensor, table: torch.Tensor, *, mixture: bool) -> torch.Tensor:
    """log P(i) over the catalogue. view_vecs (N, J, D), log_w (N, J), table (V, D) -> (N, V); column 0 = -inf."""
    if mixture:
        N, J, D = view_vecs.shape
        logits = catalogue_logits(view_vecs.reshape(N * J, D), table)  # (N J, V)
        return torch.logsumexp(log_w.unsqueeze(-1) + F.log_softmax(logits, -1).view(N, J, -1), dim=1)
    return F.log_softmax(catalogue_logits((log_w.exp().unsqueeze(-1) * view_vecs).sum(1), table), -1)


def catalogue_logits(h: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(M, D) vectors -> (M, V) float32 logits over the catalogue in one matmul; column 0 (padding) = -inf.
    A mixture passes its (N, J, D) views as (N J, D) rows: one matmul, contiguous rows for the softmax."""
    logits = (h @ table.T).float()
    logits[:, 0] = float("-inf")
    return logits


def text_match_log_probs(query: torch.Tensor, item_text: torch.Tensor, temperature: float) -> torch.Tensor:
    """log P_text(i | q) = log_softmax_i(cos(q, t_i) / temperature) over the catalogue, in the frozen
    language-model space. query (B, Dt), item_text (V, Dt) -> (B, V); column 0 (padding) = -inf."""
    cos = F.normalize(query, dim=-1) @ F.normalize(item_text, dim=-1).T  # (B, V); an all-zero vector: 0
    logits = (cos / temperature).float()
    logits[:, 0] = float("-inf")
    return F.log_softmax(logits, -1)


def blend_text_query(log_p: torch.Tensor, log_p_text: torch.Tensor, has_query: torch.Tensor, weight: float) -> torch.Tensor:
    """log((1 - w) P + w P_text) where ``has_query`` (B,), else log P. log_p, log_p_text (B, V)."""
    if weight <= 0.0:
        return log_p
    if weight >= 1.0:
        blended = log_p_text
    else:
        blended = torch.logsumexp(torch.stack([log_p + math.log(1.0 - weight), log_p_text + math.log(weight)]), 0)
    return torch.where(has_query.unsqueeze(1), blended, log_p)


def mixture_nll(view_vecs: torch.Tensor, log_w: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                *, mixture: bool, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Full-softmax NLL of the mixture. The target column is gathered *before* the logsumexp over views:
    the padding column is -inf in every view, and logsumexp's gradient at an all -inf input is NaN.
    ``exclude`` (V,) bool: columns left out of the softmax (never targets: items without training events)."""
    if not mixture:  # one softmax over the gate-weighted views: torch's fused cross-entropy
        logits = catalogue_logits((log_w.exp().unsqueeze(-1) * view_vecs).sum(1), table)  # (N, V)
        if exclude is not None:
            logits = logits.masked_fill(exclude, float("-inf"))
        return F.cross_entropy(logits, targets)
    # Each view's log-softmax at the target is minus torch's fused cross-entropy on that view's row. Against
    # an einsum, a logsumexp and a gather over the (N, J, V) logits, on ml-1m (20k positions, 3 views,
    # 3,417 items; benchmarks/mixture_loss.py) the loss takes 0.62x the time and a training step 0.66x, with
    # the same loss and gradients to 1e-9.
    N, J, D = view_vecs.shape
    logits = catalogue_logits(view_vecs.reshape(N * J, D), table)  # (N J, V)
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    log_p = -F.cross_entropy(logits, targets.repeat_interleave(J), reduction="none").view(N, J)  # log softmax_j(target)
    return -torch.logsumexp(log_w + log_p, dim=1).mean()


def sampled_mixture_nll(view_vecs: torch.Tensor, log_w: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                        *, n_negatives: int, log_q: torch.Tensor, mixture: bool,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Sampled-softmax estimate of the mixture NLL with log-Q correction (shared negatives per step)."""
    neg = torch.multinomial(log_q.exp(), n_negatives, replacement=True, generator=generator)  # (K,)
    log_k = math.log(n_negatives)
    if not mixture:
        view_vecs = (log_w.exp().unsqueeze(-1) * view_vecs).sum(1, keepdim=True)
        log_w = torch.zeros_like(log_w[:, :1])
    pos = (view_vecs * table[targets].unsqueeze(1)).sum(-1) - (log_q[targets] + log_k).unsqueeze(1)  # (N, J)
    negs = torch.einsum("njd,kd->njk", view_vecs, table[neg]) - (log_q[neg] + log_k)  # (N, J, K)
    negs = negs.masked_fill((neg[None, :] == targets[:, None]).unsqueeze(1), float("-inf"))
    logits = torch.cat([pos.unsqueeze(-1), negs], -1).float()
    log_p = F.log_softmax(logits, -1)[..., 0]  # (N, J)
    return -torch.logsumexp(log_w + log_p, dim=1).mean()
