"""The ctxrec fusion recommender: text + behaviour + context in one Transformer, with attention over views.

Per event, a token is the item's representation (a learned projection of its frozen language-model
text embedding + its attribute embeddings + an ID embedding when it has one) plus the event's context
(categorical/numeric fields and cyclic time features) and its position. A causal Transformer reads the
sequence, which starts with a learned BOS token so that an empty history (a new user) still has a state.

At the position that predicts the next item, several *views* of the user each score the whole catalogue
through the same item table ``E`` (g(H) = H E^T):

* ``sequence``: the Transformer state H_t;
* ``context``: H_t fused with the request-time context c (context and time of the request);
* ``profile``: the user's profile fields (demographics, user text) when the data has them;
* ``query``: a free-text query embedded by the same language model, when a request gives one.

An attention gate conditioned on the request-time context (and H_t) gives weights w_j, and the model is
the mixture ``P(y | x, c) = sum_j w_j softmax(H_j E^T)``, trained with cross-entropy (full softmax, or a
sampled softmax with log-Q correction above ``sampled_above`` items). The weights w_j and each view's
share of an item's probability are returned as explanations. Every part has an ablation switch.

Items never seen in training are recommendable from their text and attributes alone: ID embeddings are
dropped at random in training (``id_dropout``) so the text/attribute part of an item vector carries the
signal on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctxrec.context import ContextConfig, ContextEncoder
from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender
from ctxrec.models.sasrec import CausalBlock
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.text.templates import TextTemplateConfig
from ctxrec.training.loop import TrainConfig, pick_device

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet

VIEWS = ("sequence", "context", "profile", "query")


@dataclass(frozen=True, kw_only=True)
class FusionConfig:
    """The fusion model. Every ``use_*`` flag is an ablation switch."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    max_len: int = 200
    dropout: float = 0.2
    use_id: bool = True
    """Learned ID embedding per item (items without one rely on text and attributes)."""
    use_text: bool = True
    """Frozen language-model embedding of the item text, through a learned projection. It carries items
    without events (cold start) and helps where the text says what IDs cannot learn (amazon-scientific
    +9% NDCG@10 from text alone; +0.6% once brand and category are attributes too); on ml-1m (titles +
    genres beside genre attributes) it cost 6.6% at a 10-minute budget, and at the full budget the model
    without it led on validation at 21 of 22 epochs (benchmarks/results/ml-1m/text/): turn it off there."""
    use_attributes: bool = True
    use_context: bool = True
    """Per-event and request-time context (fields and time features) and the context view."""
    event_context: bool = True
    """Add each history event's context to its token (else context enters only at request time)."""
    context_dropout: float = 0.3
    """Training-time probability of hiding a position's whole context vector (robustness to noise)."""
    use_profile: bool = True
    """The profile view from user fields / user text, where the dataset has them."""
    mixture: bool = True
    """Mixture of per-view softmaxes; False = one softmax over the gate-weighted sum of views. Measured on
    ml-1m (three views, d 256): no better per epoch (+0.5% validation NDCG@10) and 1.5x slower per epoch,
    so the ml-1m benchmark config turns it off (benchmarks/results/ml-1m/ablations/ABLATIONS.md)."""
    id_dropout: float = 0.1
    """Probability, per training step and item, of hiding the item's ID embedding (cold-start robustness)."""
    id_scale: float = 1.0
    """Multiplier of the ID part of item vectors at inference (training always uses 1). Below 1 pulls warm
    items towards their text/attribute vectors, which items without an ID embedding have alone (with a
    high ``id_dropout`` the model mostly trained on such vectors). ``FusionRecommender.set_inference``
    changes it on a fitted model without retraining; ``benchmarks/cold_start.py --id-scales`` measures it.
    Measured on amazon-scientific (id_dropout 0.8): scales 0.25-0.75 raised warm-target recall and lowered
    cold-target recall; 0 (no ID part) gave the highest cold/warm ratio at a 4% warm cost."""
    cold_ids: Literal["none", "neighbours"] = "none"
    """Inference-time ID part for items without an ID embedding (no training events, or added at serving
    time). ``neighbours``: the similarity-weighted mean ID part of the ``cold_id_neighbours`` items with one
    whose frozen text vectors are closest (cosine), so a new item borrows the collaborative signal of the
    items its text resembles. Training is unchanged; ``FusionRecommender.set_inference`` switches it on a
    fitted model."""
    cold_id_neighbours: int = 10
    """Neighbours of ``cold_ids="neighbours"``. amazon-scientific: 3 keeps warm items nearly as they were
    (cold/warm Recall@10 0.77, warm -1.7%), 10 lifts cold items most (0.94, warm -6%), 30 is like 10."""
    cold_prior: Literal["none", "fit"] = "none"
    """``fit``: after training, one log-prior offset for items without an ID embedding (no training events,
    or added at serving time) is fitted by maximum likelihood on the validation cases whose target is such
    an item. Training never shows them as targets, so nothing else tells the model how often new items are
    chosen; the offset restores that base rate (fewer than ``cold_prior_min_cases`` such cases: no offset).
    Off by default: it calibrates the probability mass of new items, which on amazon-scientific's cold-start
    benchmark did not change their top-10 recall beyond noise (benchmarks/results/amazon-scientific/
    COLD_START.md)."""
    cold_prior_min_cases: int = 20
    """``cold_prior="fit"`` needs at least this many validation targets without an ID embedding."""
    unseen_negatives: bool = False
    """Score catalogue items that have no training events as negatives in the training softmax. Off by
    default: nobody could choose an item that was not yet on offer, so its absence is no evidence against
    it, and pushing such items down at every step teaches the text projection that their kind of text is
    never chosen -- which is exactly what cold start must not learn."""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    item_text: TextTemplateConfig = field(default_factory=TextTemplateConfig)
    user_text: TextTemplateConfig = field(default_factory=TextTemplateConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    text_adapter: Literal["linear", "mlp", "moe"] = "linear"
    """How frozen LM vectors become item vectors: a linear projection; plus a residual MLP adapter; or a
    gated mixture of whitened linear experts (UniSRec's MoE adaptor). The adapters adapt the language
    model's space to the domain while its weights (and the embedding cache) stay fixed."""
    n_experts: int = 4
    """Experts of the ``moe`` text adapter."""
    item_vectors: str | None = None
    """Precomputed item vectors (image embeddings, for instance) joining as one more modality: a Parquet
    file with ``item_id`` and ``vector`` (list) columns, or an ``.npz`` with ``ids`` and ``vectors``."""
    temperature: float | None = None
    """Score items by cosine similarity / temperature (e.g. 0.07) instead of raw dot products."""
    query_weight: float = 0.5
    """Mixture weight of the text-query view when a request has a text query."""
    loss: Literal["auto", "ce", "sampled"] = "auto"
    sampled_above: int = 50_000
    """With ``loss="auto"``: full softmax up to this catalogue size, sampled softmax above it."""
    n_negatives: int = 2048
    label_smoothing: float = 0.0
    """Full-softmax loss only: the target gets 1 - eps of the training mass, the other catalogue items
    (those with training events) share eps, as in ``torch.nn.CrossEntropyLoss``. amazon-scientific: 0.1
    and 0.3 left NDCG@10 within noise and lowered Recall@10 (0.1219, 0.1212 vs 0.1247), so it is off."""
    contrastive: float = 0.0
    """Weight of a contrastive regulariser (DuoRec's unsupervised augmentation): the batch is encoded a
    second time under fresh dropout, and each position's state must pick its own twin among all positions
    of the batch (InfoNCE over cosine similarities / ``contrastive_temperature``). 0 = off; doubles the
    encoder's training cost. amazon-scientific: weights 0.1 and 0.3 lowered NDCG@10 (0.0825, 0.0800 vs
    0.0840): with full-softmax cross-entropy over a 4k catalogue it adds no signal the loss lacks."""
    contrastive_temperature: float = 0.1
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(f"id_dropout must be in [0, 1), got {self.id_dropout}")
        if not 0.0 <= self.id_scale <= 1.0:
            raise ConfigError(f"id_scale must be in [0, 1] (1 = the ID part as trained), got {self.id_scale}")
        if self.cold_ids not in ("none", "neighbours"):
            raise ConfigError(f"cold_ids must be 'none' or 'neighbours', got {self.cold_ids!r}")
        if self.cold_id_neighbours < 1:
            raise ConfigError(f"cold_id_neighbours must be >= 1, got {self.cold_id_neighbours}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.contrastive < 0.0 or self.contrastive_temperature <= 0.0:
            raise ConfigError(f"contrastive must be >= 0 and contrastive_temperature > 0, got "
                              f"{self.contrastive} / {self.contrastive_temperature}")


@dataclass
class NetSpec:
    """Shapes the network is built from (saved in state.json, so ``load`` rebuilds it)."""

    n_items: int
    text_dim: int
    n_attr_ids: int
    attr_width: int
    ctx_cardinalities: list[int]
    n_dense: int
    profile_cardinalities: list[int]
    user_text_dim: int
    n_event_types: int
    extra_dim: int = 0
    """Width of the precomputed item vectors (``FusionConfig.item_vectors``); 0 = none."""
    ctx_text_dim: int = 0
    """Width of the language-model vectors of rendered contexts (``context.as_text``); 0 = off."""
    n_ctx_texts: int = 0
    """Distinct rendered contexts with a vector (grows when requests bring new ones)."""


class TextAdapter(nn.Module):
    """Frozen LM vector (..., Dt) -> item space (..., D): linear, linear + residual MLP, or MoE of
    whitened linear experts (x - b_k) W_k mixed by a softmax gate over x (as UniSRec's adaptor)."""

    def __init__(self, text_dim: int, d: int, kind: str, n_experts: int, dropout: float) -> None:
        super().__init__()
        self.kind = kind
        self.drop = nn.Dropout(dropout)
        if kind == "moe":
            self.bias = nn.Parameter(torch.zeros(n_experts, text_dim))
            self.experts = nn.Parameter(torch.randn(n_experts, text_dim, d) / math.sqrt(text_dim))
            self.gate = nn.Linear(text_dim, n_experts, bias=False)
            nn.init.zeros_(self.gate.weight)  # starts as the mean of the experts
        else:
            self.lin = nn.Linear(text_dim, d)
        if kind == "mlp":
            self.ff = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
            nn.init.zeros_(self.ff[-1].weight)  # starts as the linear projection
            nn.init.zeros_(self.ff[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "moe":
            xe = self.drop(x).unsqueeze(-2) - self.bias  # (..., K, Dt)
            experts = torch.einsum("...kt,ktd->...kd", xe, self.experts)  # (..., K, D)
            return (torch.softmax(self.gate(x), -1).unsqueeze(-1) * experts).sum(-2)
        y = self.lin(self.drop(x))
        return y + self.ff(y) if self.kind == "mlp" else y


def _small_init(emb: nn.Module | None, std: float = 0.02) -> None:
    """N(0, std) rows (the ID embedding's init); the padding row, if any, stays zero."""
    if emb is None:
        return
    nn.init.normal_(emb.weight, std=std)
    pad = getattr(emb, "padding_idx", None)
    if pad is not None:
        with torch.no_grad():
            emb.weight[pad].zero_()


class FusionNet(nn.Module):
    """Item table, token encoder, causal Transformer, views and gate. Index 0 = padding everywhere."""

    def __init__(self, spec: NetSpec, cfg: FusionConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.cfg, self.spec = cfg, spec
        n = spec.n_items + 1  # + padding row 0
        self.id_emb = nn.Embedding(n, d, padding_idx=0) if cfg.use_id else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.02)
        self.text_proj = TextAdapter(spec.text_dim, d, cfg.text_adapter, cfg.n_experts, cfg.dropout) if spec.text_dim else None
        self.register_buffer("text_vectors", torch.zeros(n, max(spec.text_dim, 1)), persistent=True)
        self.extra_proj = nn.Linear(spec.extra_dim, d) if spec.extra_dim else None
        self.register_buffer("extra_vectors", torch.zeros(n, max(spec.extra_dim, 1)), persistent=spec.extra_dim > 0)
        self.attr_emb = nn.EmbeddingBag(spec.n_attr_ids + 1, d, mode="mean", padding_idx=0) if spec.n_attr_ids else None
        # Every item-vector part starts on the ID embedding's scale: at torch's default N(0, 1) the attribute
        # part would be ~sqrt(d) long, swamp ID and text, and (x sqrt(d) in the tokens) the positions too.
        _small_init(self.attr_emb)
        self.register_buffer("attr_ids", torch.zeros(n, max(spec.attr_width, 1), dtype=torch.long), persistent=True)
        # 1 for items with training events. Items without (cold, or added after training) use text and
        # attributes only: an untrained ID row would otherwise carry the "never a target" push-down.
        self.register_buffer("has_id", torch.zeros(n, 1), persistent=True)
        # Log-prior offset of items without an ID embedding (FusionConfig.cold_prior), fitted after training.
        self.register_buffer("cold_bias", torch.zeros(1), persistent=True)
        self._nb_cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None  # cold_ids search
        self.bos = nn.Parameter(torch.randn(d) * 0.02)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.event_emb = nn.Embedding(spec.n_event_types + 1, d)
        nn.init.zeros_(self.event_emb.weight)
        # Context: one table per field (id 0 = unknown) + dense features, shared by events and requests.
        self.ctx_emb = nn.ModuleList(nn.Embedding(c, d) for c in spec.ctx_cardinalities) if cfg.use_context else nn.ModuleList()
        for emb in self.ctx_emb:
            nn.init.normal_(emb.weight, std=0.02)
        self.ctx_dense = nn.Linear(spec.n_dense, d) if (cfg.use_context and spec.n_dense) else None
        # Context as text: the last column of the context ids indexes rows of ctx_text_vectors (0 = none).
        self.ctx_text_proj = nn.Linear(spec.ctx_text_dim, d) if (cfg.use_context and spec.ctx_text_dim) else None
        self.register_buffer("ctx_text_vectors", torch.zeros(spec.n_ctx_texts + 1, max(spec.ctx_text_dim, 1)),
                             persistent=self.ctx_text_proj is not None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(CausalBlock(d, cfg.n_heads, d, cfg.dropout) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        # Views.
        self.has_context_view = cfg.use_context and bool(spec.ctx_cardinalities or spec.n_dense or spec.ctx_text_dim)
        self.context_view = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d)) if self.has_context_view else None
        self.profile_emb = nn.ModuleList(nn.Embedding(c, d) for c in spec.profile_cardinalities) if cfg.use_profile else nn.ModuleList()
        for emb in self.profile_emb:
            _small_init(emb)
        self.user_text_proj = nn.Linear(spec.user_text_dim, d) if (cfg.use_profile and spec.user_text_dim) else None
        self.has_profile_view = bool(len(self.profile_emb) or self.user_text_proj is not None)
        self.profile_view = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, d)) if self.has_profile_view else None
        self.view_names = ["sequence"] + (["context"] if self.has_context_view else []) + (["profile"] if self.has_profile_view else [])
        self.gate = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, len(self.view_names)))

    # ------------------------------------------------------------------------------ pieces
    def item_table(self) -> torch.Tensor:
        """(n_items + 1, D) item representations; row 0 (padding) is zero."""
        parts = []
        has_content = self.text_proj is not None or self.attr_emb is not None or self.extra_proj is not None
        if self.id_emb is not None:
            ids = self.id_emb.weight * self.has_id if has_content else self.id_emb.weight
            if self.training and self.cfg.id_dropout > 0 and has_content:
                keep = (torch.rand(ids.shape[0], 1, device=ids.device) >= self.cfg.id_dropout).to(ids.dtype)
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

    def _neighbour_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """(V, D): for rows without an ID embedding, the mean of ``ids`` over the k rows with one whose text
        vectors are most cosine-similar, weighted by the (non-negative) similarity; zeros elsewhere."""
        cold_idx, nb, w = self._neighbours()
        out = torch.zeros_like(ids)
        if len(cold_idx):
            out[cold_idx] = (w.unsqueeze(-1) * ids[nb]).sum(1)
        return out

    def _neighbours(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cold rows (C,), their k warm neighbour rows (C, k), weights (C, k)). The search depends only on
        ``has_id`` and the frozen text vectors, so it runs again only when those change (``add_items``),
        not on every table build (every validation batch while fitting)."""
        key = (id(self.has_id), self.has_id._version, id(self.text_vectors), self.text_vectors._version,
               self.cfg.cold_id_neighbours)
        if self._nb_cache is not None and self._nb_cache[0] == key:
            return self._nb_cache[1]
        warm = self.has_id[:, 0] > 0
        cold = ~warm
        cold[0] = False  # padding
        warm_idx, cold_idx = warm.nonzero().squeeze(1), cold.nonzero().squeeze(1)
        if not len(warm_idx):
            cold_idx = cold_idx[:0]
        k = max(1, min(self.cfg.cold_id_neighbours, len(warm_idx)))
        nb = torch.zeros(len(cold_idx), k, dtype=torch.long, device=self.has_id.device)
        w = torch.zeros(len(cold_idx), k, device=self.has_id.device)
        text = F.normalize(self.text_vectors, dim=-1)
        warm_text = text[warm_idx]  # (W, Dt)
        chunk = max(1, (1 << 24) // max(1, len(warm_idx)))  # bounds the (chunk, W) similarity block
        for start in range(0, len(cold_idx), chunk):
            rows = slice(start, start + chunk)
            sim, j = (text[cold_idx[rows]] @ warm_text.T).topk(k, dim=1)  # (C, k)
            sim = sim.clamp(min=0)
            w[rows] = sim / sim.sum(1, keepdim=True).clamp(min=1e-12)  # an item without text (all 0) gets no ID part
            nb[rows] = warm_idx[j]
        self._nb_cache = (key, (cold_idx, nb, w))
        return cold_idx, nb, w

    def item_log_prior(self) -> torch.Tensor | None:
        """(V,) additive log-prior: ``cold_bias`` on items without an ID embedding; None while it is 0."""
        if float(self.cold_bias) == 0.0:
            return None
        return self.cold_bias * (1.0 - self.has_id[:, 0])

    def scoring_inputs(self, view_vecs: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What g(H) = H E^T multiplies: raw vectors, or unit vectors / temperature (cosine scoring)."""
        t = self.cfg.temperature
        if t is None:
            return view_vecs, table
        return F.normalize(view_vecs, dim=-1) / t, F.normalize(table, dim=-1)

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
        T = items.shape[1]
        bos = items < 0
        x = table[items.clamp(min=0)]  # (B, T, D)
        x = torch.where(bos.unsqueeze(-1), self.bos.expand_as(x), x)
        x = x * math.sqrt(self.cfg.d_model) + self.pos_emb.weight[:T] + self.event_emb(events)
        if self.cfg.use_context and self.cfg.event_context:
            x = x + self._ctx_dropout(self.context_vector(ctx_ids, ctx_dense))
        x = self.drop(x) * (items != 0).unsqueeze(-1)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

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


def mixture_log_probs(view_vecs: torch.Tensor, log_w: torch.Tensor, table: torch.Tensor, *, mixture: bool) -> torch.Tensor:
    """log P(i) over the catalogue. view_vecs (N, J, D), log_w (N, J), table (V, D) -> (N, V); column 0 = -inf."""
    if mixture:
        logits = torch.einsum("njd,vd->njv", view_vecs, table).float()  # (N, J, V)
        logits[..., 0] = float("-inf")
        return torch.logsumexp(log_w.unsqueeze(-1) + F.log_softmax(logits, -1), dim=1)
    h = (log_w.exp().unsqueeze(-1) * view_vecs).sum(1)  # (N, D)
    logits = (h @ table.T).float()
    logits[:, 0] = float("-inf")
    return F.log_softmax(logits, -1)


def with_prior(log_p: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
    """log P (N, V) re-weighted by an additive log-prior (V,) and renormalised; unchanged when None."""
    return log_p if prior is None else F.log_softmax(log_p + prior, -1)


def mixture_nll(view_vecs: torch.Tensor, log_w: torch.Tensor, table: torch.Tensor, targets: torch.Tensor,
                *, mixture: bool, exclude: torch.Tensor | None = None, label_smoothing: float = 0.0) -> torch.Tensor:
    """Full-softmax NLL of the mixture. The target column is gathered *before* the logsumexp over views:
    the padding column is -inf in every view, and logsumexp's gradient at an all -inf input is NaN.
    ``exclude`` (V,) bool: columns left out of the softmax (never targets: items without training events).
    ``label_smoothing`` eps: (1 - eps) NLL + eps x the mean -log P over the columns in the softmax."""
    if not mixture:
        h = (log_w.exp().unsqueeze(-1) * view_vecs).sum(1)  # (N, D)
        if label_smoothing <= 0.0:  # torch's fused CE: the path the headline ml-1m runs took
            logits = (h @ table.T).float()
            logits[:, 0] = float("-inf")
            if exclude is not None:
                logits = logits.masked_fill(exclude, float("-inf"))
            return F.cross_entropy(logits, targets)
        view_vecs, log_w = h.unsqueeze(1), torch.zeros_like(log_w[:, :1])  # one view of weight 1
    logits = torch.einsum("njd,vd->njv", view_vecs, table).float()  # (N, J, V)
    logits[..., 0] = float("-inf")
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    log_sm = logits - torch.logsumexp(logits, -1, keepdim=True)  # (N, J, V) per-view log-softmax
    idx = targets.view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    nll = -torch.logsumexp(log_w + log_sm.gather(-1, idx).squeeze(-1), dim=1).mean()
    if label_smoothing <= 0.0:
        return nll
    valid = torch.isfinite(logits[0, 0])  # (V,) the columns in the softmax
    # mixture log P over valid columns only (an all -inf column would give NaN gradients)
    log_p = torch.logsumexp(log_w.unsqueeze(-1) + log_sm[..., valid], dim=1)  # (N, V')
    return (1.0 - label_smoothing) * nll - label_smoothing * log_p.mean()


def contrastive_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over 2N states (N, D) x 2 by cosine / temperature: each state's positive is its twin from the
    other dropout pass; the other 2N - 2 states are its negatives (DuoRec / SimCSE)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)  # (2N, D)
    sim = (z @ z.T) / temperature
    sim.fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    twin = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, twin)


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


def load_item_vectors(path: str, item_ids: list[str]) -> np.ndarray:
    """Precomputed vectors aligned to ``item_ids`` (n_items, D); items the file lacks get zeros."""
    import pandas as pd

    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"item_vectors file {str(p)!r} does not exist; give a Parquet file with item_id and "
                                "vector columns, or an .npz with ids and vectors")
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if not {"ids", "vectors"} <= set(z.files):
                raise ValueError(f"{str(p)!r} must hold arrays 'ids' and 'vectors'; it has {sorted(z.files)}")
            ids, vecs = [str(i) for i in z["ids"]], np.asarray(z["vectors"], np.float32)
    else:
        df = pd.read_parquet(p)
        missing = {"item_id", "vector"} - set(df.columns)
        if missing:
            raise ValueError(f"{str(p)!r} lacks column(s) {sorted(missing)}; it needs item_id and vector")
        ids, vecs = df["item_id"].astype(str).tolist(), np.stack(df["vector"].to_numpy()).astype(np.float32)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise ValueError(f"{str(p)!r}: expected one vector per id, got {len(ids)} ids and vectors of shape {vecs.shape}")
    pos = {i: k for k, i in enumerate(ids)}
    out = np.zeros((len(item_ids), vecs.shape[1]), np.float32)
    found = [(n, pos[i]) for n, i in enumerate(item_ids) if i in pos]
    if not found:
        raise ValueError(f"none of the ids in {str(p)!r} is a catalogue item (first ids: {ids[:3]}); check the id column")
    rows, src = np.array(found).T
    out[rows] = vecs[src]
    return out


class FusionRecommender(Recommender):
    """The ctxrec model. See the module docstring; ``recommend(..., explain=True)`` returns view weights."""

    kind = "fusion"
    config_class = FusionConfig

    supports_add_items = True

    def __init__(self, config: FusionConfig | None = None) -> None:
        super().__init__(config)
        self.net: FusionNet | None = None
        self.spec: NetSpec | None = None
        self.ctx_encoder: ContextEncoder | None = None
        self.event_types: dict[str, int] = {}
        self.profile_vocabs: dict[str, dict[str, int]] = {}
        self.popularity: np.ndarray | None = None
        self.device = torch.device("cpu")
        # Per known user: profile ids, user-text vectors, and encoded context of the stored history.
        self.user_profile: np.ndarray | None = None  # (n_users, Fu) int64
        self.user_text_vectors: np.ndarray | None = None  # (n_users, Dt) float32
        self.hist_ctx_ids: np.ndarray | None = None  # (n_hist, F) aligned with the base history store
        self.hist_ctx_dense: np.ndarray | None = None
        self.hist_events: np.ndarray | None = None
        self._text_encoder: Any = None
        self.ctx_texts: dict[str, int] = {}  # rendered context -> row of net.ctx_text_vectors (0 = none)
        self._pending_ctx_vectors: torch.Tensor | None = None  # encoded in _fit before the net exists
        self._table_cache: tuple[tuple[tuple[int, int], ...], torch.Tensor] | None = None
        self._fitting = False
        self.attr_vocab: dict[str, int] = {}  # "field=value" -> attribute id, for items added at serving time

    # ================================================================================ features
    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Language-model vectors through the on-disk cache (a second run encodes nothing)."""
        from ctxrec.text.cache import EmbeddingCache
        from ctxrec.text.encoders import build_encoder

        if self._text_encoder is None:
            self._text_encoder = build_encoder(self.config.text)
        return EmbeddingCache.from_config(self.config.text).encode_cached(
            self._text_encoder, texts, progress=self.config.train.progress and len(texts) > 1000)

    def _with_ctx_text(self, ids: np.ndarray, texts: list[str]) -> np.ndarray:
        """Append the context-text id column to context ids (n, F) when ``context.as_text`` is on."""
        if not self._ctx_as_text:
            return ids
        return np.concatenate([ids, self._ctx_text_ids(texts)[:, None]], 1)

    @property
    def _ctx_as_text(self) -> bool:
        return self.config.use_context and self.config.context.as_text and bool(self.ctx_encoder and self.ctx_encoder.field_names)

    def _ctx_text_ids(self, texts: list[str]) -> np.ndarray:
        """Ids of rendered contexts; texts never seen are encoded now and appended (cold context values)."""
        new = sorted({t for t in texts if t and t not in self.ctx_texts})
        if new:
            vecs = torch.from_numpy(self._encode_texts(new))
            start = len(self.ctx_texts) + 1
            self.ctx_texts.update({t: start + i for i, t in enumerate(new)})
            if self.net is not None and self.spec is not None and self.net.ctx_text_proj is not None:
                buf = self.net.ctx_text_vectors
                self.net.ctx_text_vectors = torch.cat([buf, vecs.to(buf.device, buf.dtype)])
                self.spec.n_ctx_texts = len(self.ctx_texts)
            else:
                self._pending_ctx_vectors = vecs if self._pending_ctx_vectors is None else torch.cat([self._pending_ctx_vectors, vecs])
        return np.array([self.ctx_texts.get(t, 0) for t in texts], dtype=np.int64)

    def _item_text_vectors(self, data: Dataset) -> np.ndarray:
        from ctxrec.text.templates import item_texts

        return self._encode_texts(item_texts(data, self.config.item_text))

    def _user_text_vectors(self, data: Dataset) -> np.ndarray | None:
        if not (self.config.use_profile and data.schema.user_text_fields):
            return None
        from ctxrec.text.templates import user_texts

        return self._encode_texts(user_texts(data, self.config.user_text))

    @staticmethod
    def _attribute_matrix(data: Dataset, vocab: dict[str, int] | None = None) -> tuple[np.ndarray, int]:
        """(n_items + 1, A) attribute ids (0 = padding) over all list/scalar attribute fields; fills ``vocab``."""
        vocab = {} if vocab is None else vocab
        rows: list[list[int]] = [[] for _ in range(data.n_items)]
        items = data.items.reindex(data.item_vocab.ids)
        for f in data.schema.item_attribute_fields:
            if f not in items.columns:
                continue
            for i, v in enumerate(items[f].tolist()):
                values = v if isinstance(v, (list, tuple, np.ndarray)) else ([] if v is None or (isinstance(v, float) and np.isnan(v)) else [v])
                for x in values:
                    rows[i].append(vocab.setdefault(f"{f}={x}", len(vocab) + 1))
        width = max((len(r) for r in rows), default=0)
        mat = np.zeros((data.n_items + 1, max(width, 1)), dtype=np.int64)
        for i, r in enumerate(rows):
            mat[i + 1, : len(r)] = r
        return mat, len(vocab)

    def _profile_matrix(self, data: Dataset) -> np.ndarray:
        fields = [f for f in data.schema.user_attribute_fields if data.users is not None and f in data.users.columns]
        if not self.config.use_profile:
            fields = []
        users = data.users.reindex(data.user_vocab.ids) if data.users is not None else None
        mat = np.zeros((data.n_users, len(fields)), dtype=np.int64)
        for j, f in enumerate(fields):
            assert users is not None
            col = users[f].astype("string").fillna("").astype(str)
            values = sorted(v for v in col.unique() if v)
            self.profile_vocabs[f] = {v: k + 1 for k, v in enumerate(values)}
            mat[:, j] = col.map(lambda v, f=f: self.profile_vocabs[f].get(v, 0)).to_numpy()
        return mat

    # ================================================================================ training
    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        self._fitting, self._table_cache = True, None
        try:
            self._fit_net(data, valid=valid, run_dir=run_dir)
        finally:
            self._fitting, self._table_cache = False, None

    def _fit_net(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        from ctxrec.evaluation.evaluator import validation_fn
        from ctxrec.training.loop import train_loop

        cfg, tc = self.config, self.config.train
        torch.manual_seed(tc.seed)
        self.device = pick_device(tc.device)
        self.popularity = np.bincount(data.item_idx, minlength=data.n_items).astype(np.float32)

        text = self._item_text_vectors(data) if cfg.use_text else None
        attrs, n_attr = self._attribute_matrix(data, self.attr_vocab) if cfg.use_attributes else (np.zeros((data.n_items + 1, 1), np.int64), 0)
        extra = load_item_vectors(cfg.item_vectors, data.item_vocab.ids) if cfg.item_vectors else None
        self.ctx_encoder = ContextEncoder(cfg.context).fit(data)
        self.user_profile = self._profile_matrix(data)
        self.user_text_vectors = self._user_text_vectors(data)
        types = sorted(data.interactions["event_type"].astype(str).unique())
        self.event_types = {t: i + 1 for i, t in enumerate(types)} if len(types) > 1 else {}
        self.spec = NetSpec(
            n_items=data.n_items, text_dim=0 if text is None else text.shape[1], n_attr_ids=n_attr,
            attr_width=attrs.shape[1], ctx_cardinalities=self.ctx_encoder.cardinalities if cfg.use_context else [],
            n_dense=self.ctx_encoder.n_dense if cfg.use_context else 0,
            profile_cardinalities=[len(v) + 1 for v in self.profile_vocabs.values()],
            user_text_dim=0 if self.user_text_vectors is None else self.user_text_vectors.shape[1],
            n_event_types=len(self.event_types), extra_dim=0 if extra is None else extra.shape[1],
        )
        order, offsets = data.row_order(), data.user_offsets()
        frame = data.interactions
        self.ctx_texts, self._pending_ctx_vectors, self.net = {}, None, None
        ctx_text_ids = self._ctx_text_ids(self.ctx_encoder.render_columns(frame, order)) if self._ctx_as_text else None
        if self._pending_ctx_vectors is not None:
            self.spec.ctx_text_dim, self.spec.n_ctx_texts = self._pending_ctx_vectors.shape[1], len(self.ctx_texts)
        self.net = FusionNet(self.spec, cfg).to(self.device)
        with torch.no_grad():
            if text is not None:
                self.net.text_vectors[1:] = torch.from_numpy(text)
            if extra is not None:
                self.net.extra_vectors[1:] = torch.from_numpy(extra)
            if self._pending_ctx_vectors is not None:
                self.net.ctx_text_vectors[1:] = self._pending_ctx_vectors
                self._pending_ctx_vectors = None
            self.net.attr_ids.copy_(torch.from_numpy(attrs))
            self.net.has_id[1:, 0] = torch.from_numpy(self.popularity > 0).float()

        # Encode every training event once: rows in per-user order, context ids/dense, event types.
        ts = frame["timestamp"].to_numpy(dtype=np.float64)[order]
        prev = np.concatenate([[np.nan], ts[:-1]])
        starts = np.zeros(len(order), dtype=bool)
        starts[offsets[:-1][offsets[:-1] < len(order)]] = True
        prev[starts] = np.nan  # no previous event across users
        ctx_ids, ctx_dense = self.ctx_encoder.encode_columns(frame, order, prev)
        if ctx_text_ids is not None:
            ctx_ids = np.concatenate([ctx_ids, ctx_text_ids[:, None]], 1)
        events = self._event_ids(frame["event_type"].to_numpy()[order])
        items = data.item_idx[order] + 1
        self.hist_ctx_ids, self.hist_ctx_dense, self.hist_events = ctx_ids, ctx_dense, events
        users_with_data = [u for u in range(data.n_users) if offsets[u + 1] > offsets[u]]
        use_sampled = cfg.loss == "sampled" or (cfg.loss == "auto" and data.n_items > cfg.sampled_above)
        if use_sampled and cfg.label_smoothing > 0:
            raise ConfigError(f"label_smoothing={cfg.label_smoothing} needs the full-softmax loss, but this catalogue "
                              f"({data.n_items} items) trains with the sampled one; set loss='ce' or label_smoothing=0")
        seen = np.bincount(items, minlength=data.n_items + 1)
        counts = seen.astype(np.float64) + 1.0
        counts[0] = 0.0
        # Items without training events: out of the softmax (and never sampled) unless unseen_negatives.
        unseen = torch.from_numpy(seen == 0).to(self.device)
        unseen[0] = False  # the padding column is masked by the losses themselves
        exclude = None if cfg.unseen_negatives or not bool(unseen.any()) else unseen
        if exclude is not None:
            counts[seen == 0] = 0.0
        with np.errstate(divide="ignore"):
            log_q = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32, device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(tc.seed)
        net, dev, L = self.net, self.device, cfg.max_len

        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            perm = rng.permutation(len(users_with_data))
            for start in range(0, len(perm), tc.batch_size):
                us = [users_with_data[i] for i in perm[start : start + tc.batch_size]]
                sl = [np.arange(offsets[u], offsets[u + 1])[-L:] for u in us]  # target positions
                T = max(len(s) for s in sl)
                B = len(us)
                tgt = np.zeros((B, T), np.int64)
                inp = np.zeros((B, T), np.int64)
                inp_ev = np.zeros((B, T), np.int64)
                inp_ci = np.zeros((B, T, ctx_ids.shape[1]), np.int64)
                inp_cd = np.zeros((B, T, ctx_dense.shape[1]), np.float32)
                req_ci = np.zeros_like(inp_ci)
                req_cd = np.zeros_like(inp_cd)
                for b, (u, s) in enumerate(zip(us, sl, strict=True)):
                    n = len(s)
                    tgt[b, :n] = items[s]
                    req_ci[b, :n], req_cd[b, :n] = ctx_ids[s], ctx_dense[s]
                    prev_rows = s - 1
                    first_is_bos = s[0] == offsets[u]
                    inp[b, :n] = items[prev_rows]
                    inp_ev[b, :n], inp_ci[b, :n], inp_cd[b, :n] = events[prev_rows], ctx_ids[prev_rows], ctx_dense[prev_rows]
                    if first_is_bos:  # the user's first event is predicted from BOS (cold-start path)
                        inp[b, 0], inp_ev[b, 0], inp_ci[b, 0], inp_cd[b, 0] = -1, 0, 0, 0.0
                prof_u = np.asarray(us)
                yield {
                    # CPU tensors: the training loop shards them across ranks, pins and copies them
                    "inp": torch.from_numpy(inp), "ev": torch.from_numpy(inp_ev),
                    "ci": torch.from_numpy(inp_ci), "cd": torch.from_numpy(inp_cd),
                    "rci": torch.from_numpy(req_ci), "rcd": torch.from_numpy(req_cd),
                    "tgt": torch.from_numpy(tgt), "users": torch.from_numpy(prof_u),
                }

        prof_t = torch.from_numpy(self.user_profile).to(dev)
        utext_t = None if self.user_text_vectors is None else torch.from_numpy(self.user_text_vectors).to(dev)

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            table = net.item_table()  # (V, D)
            h = net.encode(batch["inp"], batch["ev"], batch["ci"], batch["cd"], table)  # (B, T, D)
            profile = net.profile_vector(prof_t[batch["users"]], None if utext_t is None else utext_t[batch["users"]])
            mask = batch["tgt"] > 0
            prof_tok = None if profile is None else profile.unsqueeze(1).expand_as(h)[mask]
            vecs, log_w = net.views(h[mask], batch["rci"][mask], batch["rcd"][mask], prof_tok)  # (N, J, D), (N, J)
            targets = batch["tgt"][mask]
            vecs, out_table = net.scoring_inputs(vecs, table)
            if use_sampled:
                loss = sampled_mixture_nll(vecs, log_w, out_table, targets, n_negatives=cfg.n_negatives, log_q=log_q,
                                           mixture=cfg.mixture, generator=gen)
            else:
                loss = mixture_nll(vecs, log_w, out_table, targets, mixture=cfg.mixture, exclude=exclude,
                                   label_smoothing=cfg.label_smoothing)
            if cfg.contrastive > 0:  # second pass: same inputs, fresh dropout masks
                h2 = net.encode(batch["inp"], batch["ev"], batch["ci"], batch["cd"], table)
                loss = loss + cfg.contrastive * contrastive_loss(h[mask], h2[mask], cfg.contrastive_temperature)
            return loss

        evaluate = validation_fn(self, valid, self._monitor)

        n_batches = math.ceil(len(users_with_data) / tc.batch_size)
        result = train_loop(net, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=tc, run_dir=run_dir, n_batches=n_batches)
        net.eval()
        self.fit_info = {"best_epoch": result.best_epoch, "best_valid": result.best_score, "epochs_run": result.epochs_run,
                         "train_seconds": result.seconds, "stopped_by": result.stopped_by, "history": result.history,
                         "loss": "sampled" if use_sampled else "full", "views": net.view_names}
        if cfg.cold_prior == "fit" and valid is not None:
            self.fit_info["cold_prior"] = self._fit_cold_prior(valid)

    @torch.no_grad()
    def _fit_cold_prior(self, valid: EvalSet) -> dict[str, Any]:
        """Maximum-likelihood ``cold_bias`` b on the validation cases. With q_n the model's probability mass
        on ID-less items for case n, the renormalised likelihood of its targets is maximal where
        sum_n T_n * sigmoid(b + logit q_n) = C (T_n targets, C of them ID-less): expected = observed. The
        left side increases in b, so bisection finds it."""
        net = self.net
        assert net is not None
        cold = (net.has_id[1:, 0] == 0).cpu().numpy()
        n_t = np.array([len(t) for t in valid.targets], dtype=np.float64)
        c = float(sum(int(cold[t].sum()) for t in valid.targets))
        info: dict[str, Any] = {"cold_items": int(cold.sum()), "cold_target_cases": int(c), "bias": 0.0}
        if c < self.config.cold_prior_min_cases or c >= n_t.sum():
            return info
        net.cold_bias.zero_()
        q = []
        for start in range(0, len(valid), 256):
            p = np.exp(self._score(QueryBatch.from_evalset(valid, slice(start, start + 256))).astype(np.float64))
            q.append(p[:, cold].sum(1))
        qn = np.clip(np.concatenate(q), 1e-300, 1 - 1e-16)
        logit_q = np.log(qn) - np.log1p(-qn)

        def excess(b: float) -> float:
            return float((n_t / (1.0 + np.exp(-(b + logit_q)))).sum() - c)

        lo, hi = -30.0, 30.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
        b = 0.5 * (lo + hi)
        net.cold_bias.fill_(b)
        info.update(bias=round(b, 4), mass_before=round(float(qn.mean()), 6), target_rate=round(c / float(n_t.sum()), 6))
        return info

    def _event_ids(self, values: np.ndarray) -> np.ndarray:
        if not self.event_types:
            return np.zeros(len(values), dtype=np.int64)
        return np.fromiter((self.event_types.get(str(v), 0) for v in values), dtype=np.int64, count=len(values))

    # ================================================================================ inference
    def _encode_batch(self, batch: QueryBatch) -> dict[str, torch.Tensor]:
        """Queries -> padded tensors: [BOS] + last (max_len - 1) history events, request context."""
        assert self.ctx_encoder is not None and self.user_profile is not None
        enc, L = self.ctx_encoder, self.config.max_len
        n_f, n_d = len(enc.field_names) + int(self._ctx_as_text), enc.n_dense
        seqs, evs, cis, cds = [], [], [], []
        from_frame = self._frame_history_context(batch)
        for b, hist in enumerate(batch.histories):
            hist = np.asarray(hist, dtype=np.int64)
            times = np.asarray(batch.history_times[b], dtype=np.float64) if len(batch.history_times) > b else np.full(len(hist), np.nan)
            ci, cd, ev = from_frame[b] if from_frame is not None else self._history_context(batch, b, hist, times)
            keep = slice(max(0, len(hist) - (L - 1)), len(hist))
            seqs.append(np.concatenate([[-1], hist[keep] + 1]))
            evs.append(np.concatenate([[0], ev[keep]]))
            cis.append(np.concatenate([np.zeros((1, n_f), np.int64), ci[keep]]))
            cds.append(np.concatenate([np.zeros((1, n_d), np.float32), cd[keep]]))
        B, T = len(seqs), max(len(s) for s in seqs)
        inp = np.zeros((B, T), np.int64)
        ev_a = np.zeros((B, T), np.int64)
        ci_a = np.zeros((B, T, n_f), np.int64)
        cd_a = np.zeros((B, T, n_d), np.float32)
        for b in range(B):
            n = len(seqs[b])
            inp[b, :n], ev_a[b, :n], ci_a[b, :n], cd_a[b, :n] = seqs[b], evs[b], cis[b], cds[b]
        last_t = np.array([np.asarray(t, np.float64)[-1] if len(t) else np.nan for t in batch.history_times]) if len(batch.history_times) == B else np.full(B, np.nan)
        rci, rcd = enc.encode(list(batch.contexts), batch.timestamps, last_t)
        rci = self._with_ctx_text(rci, enc.render(list(batch.contexts)) if self._ctx_as_text else [])
        users = batch.users
        prof = np.zeros((B, self.user_profile.shape[1]), np.int64)
        known = users >= 0
        prof[known] = self.user_profile[users[known]]
        utext = None
        if self.user_text_vectors is not None:
            utext = np.zeros((B, self.user_text_vectors.shape[1]), np.float32)
            utext[known] = self.user_text_vectors[users[known]]
        dev = self.device
        out = {"inp": torch.from_numpy(inp).to(dev), "ev": torch.from_numpy(ev_a).to(dev),
               "ci": torch.from_numpy(ci_a).to(dev), "cd": torch.from_numpy(cd_a).to(dev),
               "rci": torch.from_numpy(rci).to(dev), "rcd": torch.from_numpy(rcd).to(dev),
               "prof": torch.from_numpy(prof).to(dev),
               "len": torch.from_numpy(np.array([len(s) for s in seqs])).to(dev)}
        if utext is not None:
            out["utext"] = torch.from_numpy(utext).to(dev)
        return out

    def _frame_history_context(self, batch: QueryBatch) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
        """The evaluation path (history given as rows of a frame), vectorised over the whole batch: a
        per-query column conversion costs O(rows in the frame) each time and dominated evaluation."""
        if batch.history_rows is None or batch.frame is None:
            return None
        assert self.ctx_encoder is not None
        enc, rows = self.ctx_encoder, [np.asarray(r, dtype=np.int64) for r in batch.history_rows]
        prev = []
        for b, r in enumerate(rows):
            t = np.asarray(batch.history_times[b], dtype=np.float64) if len(batch.history_times) > b else np.full(len(r), np.nan)
            prev.append(np.concatenate([[np.nan], t[:-1]]) if len(t) else t)
        all_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        ci, cd = enc.encode_columns(batch.frame, all_rows, np.concatenate(prev) if prev else np.zeros(0))
        ci = self._with_ctx_text(ci, enc.render_columns(batch.frame, all_rows) if self._ctx_as_text else [])
        ev = self._event_ids(batch.frame["event_type"].to_numpy()[all_rows]) if self.event_types else np.zeros(len(all_rows), np.int64)
        cuts = np.cumsum([len(r) for r in rows])[:-1]
        return list(zip(np.split(ci, cuts), np.split(cd, cuts), np.split(ev, cuts), strict=True))

    def _history_context(self, batch: QueryBatch, b: int, hist: np.ndarray, times: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Context ids/dense and event ids of the history events of query ``b``."""
        assert self.ctx_encoder is not None
        enc = self.ctx_encoder
        prev = np.concatenate([[np.nan], times[:-1]]) if len(times) else times
        if batch.history_rows is not None and batch.frame is not None:
            rows = batch.history_rows[b]
            ci, cd = enc.encode_columns(batch.frame, rows, prev)
            ci = self._with_ctx_text(ci, enc.render_columns(batch.frame, rows) if self._ctx_as_text else [])
            return ci, cd, self._event_ids(batch.frame["event_type"].to_numpy()[rows])
        hc = batch.history_contexts[b] if batch.history_contexts is not None else None
        if hc is not None:
            ci, cd = enc.encode(list(hc), times, prev)
            ci = self._with_ctx_text(ci, enc.render(list(hc)) if self._ctx_as_text else [])
            return ci, cd, np.zeros(len(hist), np.int64)
        u = int(batch.users[b])
        if u >= 0 and self.hist_ctx_ids is not None:
            stored = self.known_history(u)
            if len(stored) == len(hist) and np.array_equal(stored, hist):
                assert self._hist_indptr is not None and self.hist_ctx_dense is not None and self.hist_events is not None
                sl = slice(self._hist_indptr[u], self._hist_indptr[u + 1])
                return self.hist_ctx_ids[sl], self.hist_ctx_dense[sl], self.hist_events[sl]
        ci, cd = enc.encode([{}] * len(hist), times, prev)
        ci = self._with_ctx_text(ci, [""] * len(hist))
        return ci, cd, np.zeros(len(hist), np.int64)

    @torch.no_grad()
    def _forward(self, batch: QueryBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Per query: view vectors (B, J, D), log weights (B, J), item table, view names (query view added)."""
        assert self.net is not None
        net = self.net.eval()
        x = self._encode_batch(batch)
        table = self._eval_item_table()
        h = net.encode(x["inp"], x["ev"], x["ci"], x["cd"], table)  # (B, T, D)
        last = h[torch.arange(h.shape[0]), x["len"] - 1]  # (B, D)
        profile = net.profile_vector(x["prof"], x.get("utext"))
        vecs, log_w = net.views(last, x["rci"], x["rcd"], profile)
        names = list(net.view_names)
        texts = batch.texts or []
        if net.text_proj is not None and any(texts):
            q = self._query_vectors(texts)  # (B, D)
            has_q = torch.tensor([bool(t) for t in texts], device=q.device)
            qw = self.config.query_weight
            vecs = torch.cat([vecs, q.unsqueeze(1)], 1)
            log_w = torch.where(has_q.unsqueeze(1), log_w + math.log(1 - qw), log_w)
            q_col = torch.where(has_q, torch.tensor(math.log(qw)), torch.tensor(float("-inf"))).unsqueeze(1)
            log_w = torch.cat([log_w, q_col.to(log_w.device)], 1)
            names.append("query")
        return vecs, log_w, table, names

    def _eval_item_table(self) -> torch.Tensor:
        """The item table in eval mode, kept between requests until a weight or buffer changes. Not used
        while fitting: fused optimiser steps update weights without bumping tensor versions."""
        assert self.net is not None
        if self._fitting:
            return self.net.item_table()
        tensors = [*self.net.parameters(), *self.net.buffers()]
        key = tuple((id(t), t._version) for t in tensors)
        if self._table_cache is None or self._table_cache[0] != key:
            with torch.no_grad():  # a cached table must never carry an autograd graph into later requests
                self._table_cache = (key, self.net.item_table())
        return self._table_cache[1]

    def _query_vectors(self, texts: list[str | None]) -> torch.Tensor:
        assert self.net is not None and self.net.text_proj is not None
        if self._text_encoder is None:
            from ctxrec.text.encoders import build_encoder

            self._text_encoder = build_encoder(self.config.text)
        idx = [i for i, t in enumerate(texts) if t]
        emb = np.zeros((len(texts), self.spec.text_dim if self.spec else 0), np.float32)
        emb[idx] = self._text_encoder.encode([texts[i] for i in idx], progress=False)
        return self.net.text_proj(torch.from_numpy(emb).to(self.device)) * math.sqrt(self.config.d_model)

    def _score(self, batch: QueryBatch) -> np.ndarray:
        vecs, log_w, table, _ = self._forward(batch)
        assert self.net is not None
        vecs, table = self.net.scoring_inputs(vecs, table)
        log_p = with_prior(mixture_log_probs(vecs, log_w, table, mixture=self.config.mixture), self.net.item_log_prior())  # (B, V)
        return log_p[:, 1:].cpu().numpy()

    @torch.no_grad()
    def _explain(self, batch: QueryBatch, top: np.ndarray) -> list[dict[str, Any] | None]:
        """View weights per query, and each view's share of each top item's probability."""
        assert self.item_vocab is not None
        vecs, log_w, table, names = self._forward(batch)
        assert self.net is not None
        vecs, table = self.net.scoring_inputs(vecs, table)
        logits = torch.einsum("bjd,vd->bjv", vecs, table).float()
        logits[..., 0] = float("-inf")
        joint = log_w.unsqueeze(-1) + F.log_softmax(logits, -1)  # (B, J, V): log w_j p_j(i)
        share = torch.softmax(joint, dim=1)  # (B, J, V): view j's share of P(i)
        out: list[dict[str, Any] | None] = []
        for b in range(len(top)):
            items = [int(i) for i in top[b] if i >= 0]
            out.append({
                "view_weights": {n: round(float(w), 4) for n, w in zip(names, log_w[b].exp().tolist(), strict=True)},
                "items": [{"item_id": self.item_vocab.ids[i],
                           "view_shares": {n: round(float(share[b, j, i + 1]), 4) for j, n in enumerate(names)}}
                          for i in items],
            })
        # Occlusion attribution over the request-context fields and the past events (models/attribution.py).
        from ctxrec.models.attribution import context_attribution, history_attribution

        for o, ctx, hist in zip(out, context_attribution(self, batch, top), history_attribution(self, batch, top), strict=True):
            assert o is not None
            o["context_attribution"], o["history_attribution"] = ctx, hist
        return out

    # ================================================================================ serving
    INFERENCE_OPTIONS = ("id_scale", "cold_ids", "cold_id_neighbours")

    def set_inference(self, **options: Any) -> None:
        """Change how the item table is built at inference (``id_scale``, ``cold_ids``,
        ``cold_id_neighbours``), no retraining: the next request (and a later ``save``/export) uses it."""
        from dataclasses import replace

        bad = sorted(set(options) - set(self.INFERENCE_OPTIONS))
        if bad:
            raise ConfigError(f"set_inference cannot change {bad}: only {list(self.INFERENCE_OPTIONS)} (others need a refit)")
        self.config = replace(self.config, **options)  # validates the values
        if self.net is not None:
            self.net.cfg = self.config
        self._table_cache = None

    def add_items(self, items: Any) -> np.ndarray:
        """Make items recommendable without retraining: their text is encoded with the model's text
        encoder and template, attributes map into the training attribute vocabulary (unknown values
        -> padding), and they get no ID embedding (``has_id`` = 0), exactly like cold items in
        training. A known id is updated in place. Returns the items' dense indices."""
        from ctxrec.text.templates import _fields, render_texts

        assert self.net is not None and self.item_vocab is not None and self.spec is not None
        frame = items.set_index("item_id") if "item_id" in items.columns else items.copy()
        frame.index = frame.index.astype(str)
        if frame.index.has_duplicates:
            raise ValueError(f"duplicate item ids in added items: {sorted(frame.index[frame.index.duplicated()])[:5]}")
        net, n_old = self.net, len(self.item_vocab)
        idx = self.item_vocab.extend(frame.index.tolist())
        grow = len(self.item_vocab) - n_old
        with torch.no_grad():
            if grow:  # append rows (row 0 stays padding); new items have no trained ID
                def _grow(t: torch.Tensor) -> torch.Tensor:
                    return torch.cat([t, t.new_zeros(grow, *t.shape[1:])])

                for name, buf in list(net.named_buffers(recurse=False)):  # every per-item buffer
                    if buf.shape[0] == n_old + 1 and name != "ctx_text_vectors":
                        setattr(net, name, _grow(buf))
                if net.id_emb is not None:
                    net.id_emb.weight = nn.Parameter(_grow(net.id_emb.weight.data))
                    net.id_emb.num_embeddings = net.id_emb.weight.shape[0]
                self.spec.n_items = len(self.item_vocab)
                if self.popularity is not None:
                    self.popularity = np.concatenate([self.popularity, np.zeros(grow, self.popularity.dtype)])
            rows = torch.from_numpy(idx + 1)
            if net.text_proj is not None and self.spec.text_dim:
                tc = self.config.item_text
                fields, missing = _fields(tc, self.schema.item_text_fields if self.schema else ())
                texts = render_texts(frame, fields, tc.template, sep=tc.sep, list_sep=tc.list_sep, missing=missing, kind="item")
                net.text_vectors[rows] = torch.from_numpy(np.asarray(self._encode_texts(texts), np.float32)).to(net.text_vectors.device)
            width = net.attr_ids.shape[1]
            attrs = np.zeros((len(frame), width), np.int64)
            for f in (self.schema.item_attribute_fields if self.schema else ()):
                if f not in frame.columns:
                    continue
                for r, v in enumerate(frame[f].tolist()):
                    vals = v if isinstance(v, (list, tuple, np.ndarray)) else ([] if v is None or (isinstance(v, float) and np.isnan(v)) else [v])
                    known = [self.attr_vocab[f"{f}={x}"] for x in vals if f"{f}={x}" in self.attr_vocab]
                    free = [c for c in range(width) if attrs[r, c] == 0][: len(known)]
                    attrs[r, free] = known[: len(free)]
            net.attr_ids[rows] = torch.from_numpy(attrs).to(net.attr_ids.device)
            net.has_id[rows[torch.from_numpy(idx >= n_old)]] = 0.0  # only ids never trained are cold; a re-added item keeps its ID
        if "title" in frame.columns:
            self.item_titles.update({i: str(t) for i, t in zip(frame.index, frame["title"].tolist(), strict=True) if isinstance(t, str)})
        return idx

    # ================================================================================ persistence
    def _meta(self) -> dict[str, Any]:
        assert self.spec is not None and self.ctx_encoder is not None
        return {"spec": self.spec.__dict__, "context_encoder": self.ctx_encoder.to_dict(),
                "event_types": self.event_types, "profile_vocabs": self.profile_vocabs, "attr_vocab": self.attr_vocab,
                "ctx_texts": self.ctx_texts}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.spec = NetSpec(**meta["spec"])
        self.ctx_encoder = ContextEncoder.from_dict(meta["context_encoder"])
        self.event_types = dict(meta["event_types"])
        self.profile_vocabs = {k: dict(v) for k, v in meta["profile_vocabs"].items()}
        self.ctx_texts = {str(k): int(v) for k, v in meta.get("ctx_texts", {}).items()}
        self.attr_vocab = dict(meta.get("attr_vocab", {}))

    def _state(self) -> dict[str, np.ndarray]:
        assert self.net is not None and self.popularity is not None and self.user_profile is not None
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        state["popularity"] = self.popularity
        state["user_profile"] = self.user_profile
        assert self.hist_ctx_ids is not None and self.hist_ctx_dense is not None and self.hist_events is not None
        state["hist_ctx_ids"], state["hist_ctx_dense"], state["hist_events"] = self.hist_ctx_ids, self.hist_ctx_dense, self.hist_events
        if self.user_text_vectors is not None:
            state["user_text_vectors"] = self.user_text_vectors
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        assert self.spec is not None
        self.popularity = state.pop("popularity")
        self.user_profile = state.pop("user_profile")
        self.hist_ctx_ids, self.hist_ctx_dense, self.hist_events = state.pop("hist_ctx_ids"), state.pop("hist_ctx_dense"), state.pop("hist_events")
        self.user_text_vectors = state.pop("user_text_vectors", None)
        self.net = FusionNet(self.spec, self.config)
        weights = {k[4:]: torch.from_numpy(v) for k, v in state.items()}
        weights.setdefault("cold_bias", torch.zeros(1))  # saved before FusionConfig.cold_prior existed
        if "text_proj.weight" in weights:  # saved before TextAdapter, when text_proj was a bare Linear
            for name in ("weight", "bias"):
                weights[f"text_proj.lin.{name}"] = weights.pop(f"text_proj.{name}")
        self.net.load_state_dict(weights)
        self.net.eval()
