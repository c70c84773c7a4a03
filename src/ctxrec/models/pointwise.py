"""Context-aware pointwise scorer: "how likely is this user to use this item in this context?".

Each (user, item, context) instance is a set of *fields*, every one a ``d_field`` vector:

* query side: the user ID embedding, the user's history (the history items' vectors pooled by their
  mean, or by attention to the candidate item as in DIN: ``history_pooling``; last ``max_history``
  events), the user's profile fields (demographics), one embedding per categorical
  context field and one projection of the dense context (numeric fields, cyclic time features);
* item side: the item ID embedding, a learned projection of the item's frozen language-model text
  embedding (MiniLM by default, cached on disk) and the mean of its attribute embeddings -- the same
  item representation as the fusion model, kept as separate fields so the head can cross them.

The head (``head``) is ``"fm"`` (first order + factorisation-machine pairwise term), ``"deepfm"``
(FM + an MLP over the concatenated fields) or ``"dcn"`` (FM + a DCN-v2 cross network feeding the
MLP). The logit is trained with binary log loss on every positive event and ``n_negatives`` items
drawn uniformly for the same user, history and context.

``predict_proba(queries, item_ids)`` answers one (query, item) pair per row; ``recommend`` ranks the
whole catalogue by scoring every item for the query (the Recommender contract). ``fit_labelled``
trains on an explicit labelled table instead (CTR protocols such as BARS frappe).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctxrec.context import ContextConfig, ContextEncoder
from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender, RecQuery, encoder_context_schema
from ctxrec.models.features import (
    FeatureShapes,
    attribute_bag,
    attribute_matrix,
    fill_item_inputs,
    item_text_vectors,
    last_event_times,
    profile_matrix,
    query_profiles,
    register_item_inputs,
)
from ctxrec.text.encoders import TextEncoderConfig
from ctxrec.text.templates import TextTemplateConfig
from ctxrec.training.loop import TrainConfig, pick_device

if TYPE_CHECKING:
    import pandas as pd

    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet

SCORE_CHUNK = 65_536  # (query, item) pairs scored at once when ranking the catalogue
MATCH_BUCKETS = (1, 2, 3, 5, 10)  # history_match: occurrences 0 | 1 | 2 | 3-4 | 5-9 | 10+


@dataclass(frozen=True, kw_only=True)
class PointwiseConfig:
    """The pointwise scorer. Every ``use_*`` flag is an ablation switch."""

    d_field: int = 16
    head: Literal["fm", "deepfm", "dcn"] = "deepfm"
    mlp: tuple[int, ...] = (128, 64)
    n_cross: int = 2
    """Cross layers of the ``dcn`` head."""
    dropout: float = 0.1
    batch_norm: bool = False
    """Batch norm in the MLP (BARS DeepFM/DCN settings use it on frappe)."""
    use_user: bool = True
    use_history: bool = True
    max_history: int = 50
    history_pooling: Literal["mean", "target"] = "mean"
    """``target``: attention of the candidate item over the history items (DIN-style), else their mean."""
    history_match: bool = False
    """One more field: how often the candidate itself occurs in the user's history (bucketed 0, 1, 2, 3-4,
    5-9, 10+). The repeat-use signal that pooling item vectors blurs (apps, music: users return to items)."""
    use_profile: bool = True
    """User attribute fields (demographics) as query fields, where the dataset has them."""
    use_context: bool = True
    """Request context fields and time features; False = the same model blind to context."""
    use_id: bool = True
    use_text: bool = True
    use_attributes: bool = True
    n_negatives: int = 4
    """Uniformly drawn negatives per positive event (same user, history, context) in ``fit``."""
    emb_l2: float = 0.0
    """L2 penalty on embeddings: ``emb_l2 * sum of squares`` of the rows each batch uses, or of every
    embedding table (``emb_l2_scope``)."""
    emb_l2_scope: Literal["batch", "table"] = "batch"
    """``table`` penalises the whole tables at every step, as FuxiCTR's ``embedding_regularizer`` does
    (its lambda corresponds to ``2 * emb_l2``)."""
    init_std: float = 0.01
    """Std of the normal init of the ID/field embedding tables (larger = pairwise terms start learning sooner)."""
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    item_text: TextTemplateConfig = field(default_factory=TextTemplateConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.head not in ("fm", "deepfm", "dcn"):
            raise ConfigError(f"PointwiseConfig.head must be 'fm', 'deepfm' or 'dcn', got {self.head!r}")
        if self.history_pooling not in ("mean", "target"):
            raise ConfigError(f"PointwiseConfig.history_pooling must be 'mean' or 'target', got {self.history_pooling!r}")
        if self.emb_l2_scope not in ("batch", "table"):
            raise ConfigError(f"PointwiseConfig.emb_l2_scope must be 'batch' or 'table', got {self.emb_l2_scope!r}")
        if self.n_negatives < 1:
            raise ConfigError(f"PointwiseConfig.n_negatives must be >= 1, got {self.n_negatives}")
        refuse_length_pool(self.train)


def refuse_length_pool(train: TrainConfig) -> None:
    """``train.length_pool`` groups training sequences by length; these models train on single events, so
    another value than 1 would be ignored: an error instead, raised when the config is built."""
    if train.length_pool != 1:
        raise ConfigError(f"train.length_pool={train.length_pool} groups training sequences of similar length "
                          "(sasrec, fusion); this model trains on single events: leave it at 1")


@dataclass
class PointwiseSpec(FeatureShapes):
    """Shapes the network is built from (saved in state.json, so ``load`` rebuilds it)."""

    n_users: int


class PointwiseNet(nn.Module):
    """Field embeddings + FM / DeepFM / DCN-v2 head. Index 0 = unknown/padding in every table."""

    text_vectors: torch.Tensor  # (V + 1, Dt) buffer
    attr_ids: torch.Tensor  # (V + 1, A) buffer

    def __init__(self, spec: PointwiseSpec, cfg: PointwiseConfig) -> None:
        super().__init__()
        d = cfg.d_field
        self.cfg, self.spec = cfg, spec
        n = spec.n_items + 1

        def emb(rows: int) -> nn.Embedding:
            e = nn.Embedding(rows, d)
            nn.init.normal_(e.weight, std=cfg.init_std)
            return e

        # item side (the same item inputs as the fusion model's, kept as separate fields)
        self.item_id = emb(n) if cfg.use_id else None
        self.text_proj = nn.Linear(spec.text_dim, d) if spec.text_dim else None
        self.attr_emb = attribute_bag(spec, d)
        register_item_inputs(self, spec)  # text_vectors (n, Dt), attr_ids (n, A)
        self.n_item_fields = sum(x is not None for x in (self.item_id, self.text_proj, self.attr_emb))
        if self.n_item_fields == 0:
            raise ConfigError("the pointwise model needs at least one item field: enable use_id, use_text or use_attributes")
        # query side
        self.user_emb = emb(spec.n_users + 1) if cfg.use_user else None
        self.hist_proj = nn.Linear(d, d) if cfg.use_history else None
        self.match_emb = emb(len(MATCH_BUCKETS) + 1) if cfg.use_history and cfg.history_match else None
        self.profile_emb = nn.ModuleList(emb(c) for c in spec.profile_cardinalities)
        self.ctx_emb = nn.ModuleList(emb(c) for c in spec.ctx_cardinalities)
        self.ctx_dense = nn.Linear(spec.n_dense, d) if spec.n_dense else None
        self.n_query_fields = (int(self.user_emb is not None) + int(self.hist_proj is not None)
                               + int(self.match_emb is not None) + len(self.profile_emb)
                               + len(self.ctx_emb) + int(self.ctx_dense is not None))
        n_fields = self.n_query_fields + self.n_item_fields
        width = n_fields * d
        self.bias = nn.Parameter(torch.zeros(1))
        self.linear = nn.Linear(width, 1, bias=False)
        self.cross = nn.ModuleList(nn.Linear(width, width) for _ in range(cfg.n_cross)) if cfg.head == "dcn" else nn.ModuleList()
        layers: list[nn.Module] = []
        if cfg.head != "fm":
            prev = width
            for h in cfg.mlp:
                layers += [nn.Linear(prev, h)] + ([nn.BatchNorm1d(h)] if cfg.batch_norm else []) + [nn.ReLU(), nn.Dropout(cfg.dropout)]
                prev = h
            layers.append(nn.Linear(prev, 1))
        self.mlp = nn.Sequential(*layers) if layers else None

    # ------------------------------------------------------------------------------ fields
    def item_fields(self, items: torch.Tensor) -> torch.Tensor:
        """items (...,) indices (0 = padding) -> (..., Fi, d)."""
        parts = []
        if self.item_id is not None:
            parts.append(self.item_id(items))
        if self.text_proj is not None:
            parts.append(self.text_proj(self.text_vectors[items]))
        if self.attr_emb is not None:
            flat = self.attr_ids[items.reshape(-1)]
            parts.append(self.attr_emb(flat).reshape(*items.shape, -1))
        return torch.stack(parts, -2)

    def query_fields(self, q: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query tensors -> (B, Fq', d): user, profile, context fields, dense context (history apart)."""
        B = q["users"].shape[0]
        parts = []
        if self.user_emb is not None:
            parts.append(self.user_emb(q["users"]))
        for f, e in enumerate(self.profile_emb):
            parts.append(e(q["prof"][:, f]))
        for f, e in enumerate(self.ctx_emb):
            parts.append(e(q["ci"][:, f]))
        if self.ctx_dense is not None:
            parts.append(self.ctx_dense(q["cd"]))
        if not parts:
            return torch.zeros(B, 0, self.cfg.d_field, device=q["users"].device)
        return torch.stack(parts, 1)

    def history_field(self, hist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """hist (B, L) item indices (0 = padding); target (B, d) or (B, V, d) candidate item vectors ->
        the pooled, projected history field (B, d) or (B, V, d)."""
        assert self.hist_proj is not None
        vec = self.item_fields(hist).sum(-2)  # (B, L, d): each history item's summed representation
        mask = hist > 0  # (B, L)
        if self.cfg.history_pooling == "mean":
            m = mask.unsqueeze(-1).to(vec.dtype)
            pooled = (vec * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, d)
            return self.hist_proj(pooled if target.dim() == 2 else pooled.unsqueeze(1).expand_as(target))
        t = target if target.dim() == 3 else target.unsqueeze(1)  # (B, V, d)
        att = torch.einsum("bvd,bld->bvl", t, vec) / math.sqrt(vec.shape[-1])
        att = att.masked_fill(~mask.unsqueeze(1), float("-inf"))
        w = torch.nan_to_num(torch.softmax(att, -1), nan=0.0)  # empty history -> all-zero weights
        pooled = torch.einsum("bvl,bld->bvd", w, vec)
        out = self.hist_proj(pooled)
        return out if target.dim() == 3 else out.squeeze(1)

    # ------------------------------------------------------------------------------ head
    def head(self, fields: torch.Tensor) -> torch.Tensor:
        """fields (N, F, d) -> logits (N,)."""
        flat = fields.flatten(1)  # (N, F*d)
        s = fields.sum(1)
        fm = 0.5 * (s.pow(2).sum(-1) - fields.pow(2).sum((1, 2)))  # pairwise <e_f, e_g> over f < g
        out = self.bias + self.linear(flat).squeeze(-1) + fm
        if self.mlp is not None:
            x = flat
            for layer in self.cross:  # DCN-v2: x_{l+1} = x_0 * (W x_l + b) + x_l
                x = flat * layer(x) + x
            out = out + self.mlp(x).squeeze(-1)
        return out

    def pair_fields(self, q: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Query tensors (N rows) and items (N,) -> all fields (N, F, d)."""
        itf = self.item_fields(items)  # (N, Fi, d)
        parts = [self.query_fields(q)]
        if self.hist_proj is not None:
            parts.append(self.history_field(q["hist"], itf.sum(1)).unsqueeze(1))
        if self.match_emb is not None:
            count = (q["hist"] == items.unsqueeze(1)).sum(1)  # (N,) occurrences of the candidate
            parts.append(self._match_field(count).unsqueeze(1))
        return torch.cat([*parts, itf], 1)

    def _match_field(self, count: torch.Tensor) -> torch.Tensor:
        """Occurrence counts (...,) -> bucket embeddings (..., d)."""
        assert self.match_emb is not None
        edges = torch.tensor(MATCH_BUCKETS, device=count.device)
        return self.match_emb(torch.bucketize(count.contiguous(), edges, right=True))

    def pair_logits(self, q: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Query tensors (N rows), items (N,) -> logits (N,)."""
        return self.head(self.pair_fields(q, items))

    def all_logits(self, q: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query tensors (B rows) -> (B, n_items) logits for every catalogue item (chunked over queries)."""
        qf = self.query_fields(q)
        B, V = qf.shape[0], self.spec.n_items
        itf = self.item_fields(torch.arange(1, V + 1, device=qf.device))  # (V, Fi, d)
        rows = max(1, SCORE_CHUNK // max(V, 1))
        out = []
        for s in range(0, B, rows):
            qs = qf[s : s + rows]
            b = qs.shape[0]
            parts = [qs.unsqueeze(1).expand(b, V, *qs.shape[1:])]
            if self.hist_proj is not None:
                target = itf.sum(1).unsqueeze(0).expand(b, V, -1)  # (b, V, d)
                parts.append(self.history_field(q["hist"][s : s + rows], target).unsqueeze(2))
            if self.match_emb is not None:
                hist = q["hist"][s : s + rows]  # (b, L), 0 = padding
                count = torch.zeros(b, V + 1, dtype=torch.long, device=hist.device)
                count.scatter_add_(1, hist, torch.ones_like(hist))
                parts.append(self._match_field(count[:, 1:]).unsqueeze(2))  # (b, V, 1, d)
            parts.append(itf.unsqueeze(0).expand(b, *itf.shape))
            fields = torch.cat(parts, 2)  # (b, V, F, d)
            out.append(self.head(fields.reshape(b * V, *fields.shape[2:])).reshape(b, V))
        return torch.cat(out) if out else torch.zeros(0, V, device=qf.device)


class PointwiseRecommender(Recommender):
    """Context-aware CTR-style scorer; see the module docstring."""

    kind = "pointwise"
    config_class: ClassVar[type] = PointwiseConfig
    supports_warm_start = True

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.net: PointwiseNet | None = None
        self.spec: PointwiseSpec | None = None
        self.ctx_encoder: ContextEncoder | None = None
        self.profile_vocabs: dict[str, dict[str, int]] = {}
        self.user_profile: np.ndarray | None = None  # (n_users, Fu) int64
        self.device = torch.device("cpu")
        self._labelled: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ options (FM baselines override)
    def _opts(self) -> PointwiseConfig:
        """The effective pointwise settings (subclasses map their own config onto these)."""
        cfg = self.config
        assert isinstance(cfg, PointwiseConfig)
        return cfg

    def context_schema(self) -> dict[str, dict[str, Any]]:
        """The context fields of the fitted context encoder (none with ``use_context = false``)."""
        self._check_fitted()
        if not self._opts().use_context or self.ctx_encoder is None:
            return {}
        return encoder_context_schema(self.ctx_encoder)

    def _build(self, data: Dataset) -> None:
        """Fit encoders and build the network for ``data``'s catalogue, users and context."""
        from ctxrec.text.encoders import build_encoder

        o = self._opts()
        torch.manual_seed(o.train.seed)
        self.device = pick_device(o.train.device)
        text = None
        if o.use_text and data.schema.item_text_fields:
            text = item_text_vectors(data, build_encoder(o.text), o.text, o.item_text, progress=o.train.progress)
        if o.use_attributes:
            attrs, n_attr = attribute_matrix(data)
        else:
            attrs, n_attr = np.zeros((data.n_items + 1, 1), np.int64), 0
        self.ctx_encoder = ContextEncoder(o.context).fit(data)
        self.user_profile, self.profile_vocabs = profile_matrix(data, o.use_profile)
        self.spec = PointwiseSpec(
            n_items=data.n_items, n_users=data.n_users, text_dim=0 if text is None else text.shape[1],
            n_attr_ids=n_attr, attr_width=attrs.shape[1],
            ctx_cardinalities=self.ctx_encoder.cardinalities if o.use_context else [],
            n_dense=self.ctx_encoder.n_dense if o.use_context else 0,
            profile_cardinalities=[len(v) + 1 for v in self.profile_vocabs.values()],
        )
        self.net = PointwiseNet(self.spec, o).to(self.device)
        fill_item_inputs(self.net, text, attrs)

    # ================================================================================ training
    def fit_labelled(self, data: Dataset, train: pd.DataFrame, valid: pd.DataFrame | None = None,
                     *, run_dir: str | Path | None = None) -> PointwiseRecommender:
        """Train on an explicit labelled table (CTR protocols): columns ``user_id``, ``item_id``, ``label``
        (0/1), the dataset's context fields and optionally ``exclude_item`` (leave this item's one event
        out of the user's history: the training row the instance came from). ``data`` gives the catalogue, item text, users and the
        context vocabulary (fit it on the training positives). Early stopping on ``valid`` AUC (set
        ``train.valid_metric="auc"``); histories are the users' events in ``data``."""
        self._labelled = (train, valid)
        try:
            self.fit(data, run_dir=run_dir)
        finally:
            self._labelled = None
        return self

    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        from ctxrec.training.loop import train_loop

        o, tc = self._opts(), self._opts().train
        self._build(data)
        assert self.net is not None and self.ctx_encoder is not None
        net = self.net
        if self._labelled is not None:
            batches, n_batches, evaluate = self._labelled_batches(*self._labelled)
        else:
            batches, n_batches = self._sampled_batches(data)
            from ctxrec.evaluation.evaluator import validation_fn

            evaluate = validation_fn(self, valid, self._monitor, exclude_seen=not self.keeps_seen)
        tables = [m.weight for m in net.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]

        def loss_fn(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            fields = net.pair_fields(batch, batch["items"])
            logits = net.head(fields)
            loss = F.binary_cross_entropy_with_logits(logits, batch["label"])
            if o.emb_l2 > 0 and o.emb_l2_scope == "batch":
                loss = loss + o.emb_l2 * fields.pow(2).sum((1, 2)).mean()
            elif o.emb_l2 > 0:
                loss = loss + o.emb_l2 * sum(w.pow(2).sum() for w in tables)
            return loss

        result = train_loop(net, batches=batches, loss_fn=loss_fn, evaluate=evaluate, cfg=tc, run_dir=run_dir,
                            n_batches=n_batches, initial=self._warm_start)
        net.eval()
        self.fit_info = {"best_epoch": result.best_epoch, "best_valid": result.best_score, "epochs_run": result.epochs_run,
                         "train_seconds": result.seconds, "stopped_by": result.stopped_by, "history": result.history,
                         "n_query_fields": net.n_query_fields, "n_item_fields": net.n_item_fields}

    def _sampled_batches(self, data: Dataset) -> tuple[Any, int]:
        """Every event is a positive; ``n_negatives`` uniform items per positive share its query."""
        o, tc = self._opts(), self._opts().train
        assert self.ctx_encoder is not None and self.user_profile is not None
        order, offsets = data.row_order(), data.user_offsets()
        frame = data.interactions
        ts = frame["timestamp"].to_numpy(dtype=np.float64)[order]
        prev = np.concatenate([[np.nan], ts[:-1]])
        starts_mask = np.zeros(len(order), dtype=bool)
        starts_mask[offsets[:-1][offsets[:-1] < len(order)]] = True
        prev[starts_mask] = np.nan
        ci, cd = self.ctx_encoder.encode_columns(frame, order, prev)
        items = data.item_idx[order] + 1  # (N,) 1-based
        users = data.user_idx[order]
        row_start = offsets[users]  # first row of each row's user
        n, n_neg, L, V = len(order), o.n_negatives, o.max_history, data.n_items
        prof = self.user_profile
        dev = self.device

        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            perm = rng.permutation(n)
            per = max(1, tc.batch_size // (1 + n_neg))  # positives per batch
            for s in range(0, n, per):
                r = perm[s : s + per]
                neg = rng.integers(1, V + 1, size=(len(r), n_neg))
                it = np.concatenate([items[r, None], neg], 1).reshape(-1)
                lab = np.zeros((len(r), 1 + n_neg), np.float32)
                lab[:, 0] = 1.0
                rr = np.repeat(r, 1 + n_neg)
                hidx = r[:, None] - np.arange(L, 0, -1)[None, :]  # (b, L) previous rows, oldest first
                hist = np.where(hidx >= row_start[r, None], items[np.maximum(hidx, 0)], 0)
                yield {
                    "users": torch.from_numpy(users[rr] + 1).to(dev),
                    "hist": torch.from_numpy(np.repeat(hist, 1 + n_neg, 0)).to(dev),
                    "prof": torch.from_numpy(prof[users[rr]]).to(dev),
                    "ci": torch.from_numpy(ci[rr]).to(dev), "cd": torch.from_numpy(cd[rr]).to(dev),
                    "items": torch.from_numpy(it).to(dev), "label": torch.from_numpy(lab.reshape(-1)).to(dev),
                }

        per = max(1, tc.batch_size // (1 + n_neg))
        return batches, math.ceil(n / per)

    def _table_tensors(self, table: pd.DataFrame) -> dict[str, np.ndarray]:
        """A labelled table -> encoded arrays (users 1-based, 0 = unknown; history = the user's events)."""
        assert self.ctx_encoder is not None and self.user_profile is not None and self.item_vocab is not None
        assert self.user_vocab is not None
        o = self._opts()
        u = np.array([self.user_vocab.get(x) for x in table["user_id"].astype(str)], dtype=np.int64)
        it = self.item_vocab.lookup(table["item_id"].astype(str).tolist()) + 1
        if "timestamp" not in table.columns:
            table = table.assign(timestamp=np.nan)
        ci, cd = self.ctx_encoder.encode_columns(table, np.arange(len(table)))
        prof = np.zeros((len(table), self.user_profile.shape[1]), np.int64)
        prof[u >= 0] = self.user_profile[u[u >= 0]]
        hist = np.zeros((len(table), o.max_history if o.use_history else 1), np.int64)
        if o.use_history:
            # The user's distinct items, most frequent first; an instance's own event is left out of it
            # (``exclude_item``: the item of the log row behind a training instance) so the feature
            # is the same at training and test time.
            per_user: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for x in np.unique(u[u >= 0]):
                its, cnt = np.unique(self.known_history(int(x)), return_counts=True)
                order = np.lexsort((its, -cnt))[: o.max_history]
                per_user[int(x)] = (its[order] + 1, cnt[order])
            excl = (self.item_vocab.lookup(table["exclude_item"].astype(str).tolist()) + 1
                    if "exclude_item" in table.columns else np.zeros(len(table), np.int64))
            for j, x in enumerate(u):
                got = per_user.get(int(x))
                if got is None:
                    continue
                h, cnt = got
                if excl[j]:
                    h = h[~((h == excl[j]) & (cnt == 1))]
                if len(h):
                    hist[j, : len(h)] = h
        return {"users": np.where(u >= 0, u + 1, 0), "items": it, "ci": ci, "cd": cd, "prof": prof, "hist": hist,
                "label": table["label"].to_numpy(dtype=np.float32)}

    def _labelled_batches(self, train: pd.DataFrame, valid: pd.DataFrame | None) -> tuple[Any, int, Any]:
        tc, dev = self._opts().train, self.device
        arrays = self._table_tensors(train)
        n = len(train)

        def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
            perm = rng.permutation(n)
            for s in range(0, n, tc.batch_size):
                r = perm[s : s + tc.batch_size]
                yield {k: torch.from_numpy(v[r]).to(dev) for k, v in arrays.items()}

        evaluate = None
        if valid is not None and len(valid):
            from ctxrec.evaluation.metrics import auc, log_loss

            varr = self._table_tensors(valid)

            def evaluate() -> dict[str, float]:
                p = self._proba_arrays(varr)
                return {"auc": auc(varr["label"], p), "logloss": log_loss(varr["label"], p)}

        return batches, math.ceil(n / tc.batch_size), evaluate

    # ================================================================================ inference
    @torch.no_grad()
    def _proba_arrays(self, arr: dict[str, np.ndarray], chunk: int = 16_384) -> np.ndarray:
        assert self.net is not None
        net = self.net.eval()
        out = []
        n = len(arr["items"])
        for s in range(0, n, chunk):
            q = {k: torch.from_numpy(v[s : s + chunk]).to(self.device) for k, v in arr.items() if k != "label"}
            out.append(torch.sigmoid(net.pair_logits(q, q["items"])).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def predict_proba(self, queries: Sequence[RecQuery], item_ids: Sequence[str]) -> np.ndarray:
        """P(use | user, history, context) for each (query, item) pair: ``(len(queries),)`` in [0, 1]."""
        self._check_fitted()
        assert self.item_vocab is not None
        if len(queries) != len(item_ids):
            raise ValueError(f"predict_proba takes one item per query; got {len(queries)} queries and {len(item_ids)} items")
        batch = self.encode_queries(list(queries))
        q = self._query_arrays(batch)
        q["items"] = self.item_vocab.lookup(list(item_ids)) + 1
        return self._proba_arrays(q)

    def predict_table(self, table: pd.DataFrame) -> np.ndarray:
        """Probabilities for a labelled-table layout (``user_id``, ``item_id``, context columns)."""
        self._check_fitted()
        t = table if "label" in table.columns else table.assign(label=0.0)
        return self._proba_arrays(self._table_tensors(t))

    def _query_arrays(self, batch: QueryBatch) -> dict[str, np.ndarray]:
        assert self.ctx_encoder is not None and self.user_profile is not None
        o, B = self._opts(), len(batch)
        users = np.asarray(batch.users, dtype=np.int64)
        L = o.max_history if o.use_history else 1
        hist = np.zeros((B, L), np.int64)
        if o.use_history:
            for b, events in enumerate(batch.histories):
                h = np.asarray(events, dtype=np.int64)[-L:]
                if len(h):
                    hist[b, -len(h):] = h + 1
        ci, cd = self.ctx_encoder.encode(list(batch.contexts), batch.timestamps, last_event_times(batch))
        prof = query_profiles(self.user_profile, users)
        return {"users": np.where(users >= 0, users + 1, 0), "hist": hist, "prof": prof, "ci": ci, "cd": cd}

    @torch.no_grad()
    def _score(self, batch: QueryBatch) -> np.ndarray:
        assert self.net is not None
        net = self.net.eval()
        q = {k: torch.from_numpy(v).to(self.device) for k, v in self._query_arrays(batch).items()}
        return net.all_logits(q).cpu().numpy()

    # ================================================================================ persistence
    def _meta(self) -> dict[str, Any]:
        assert self.spec is not None and self.ctx_encoder is not None
        return {"spec": self.spec.__dict__, "context_encoder": self.ctx_encoder.to_dict(),
                "profile_vocabs": self.profile_vocabs}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.spec = PointwiseSpec(**meta["spec"])
        self.ctx_encoder = ContextEncoder.from_dict(meta["context_encoder"])
        self.profile_vocabs = {k: dict(v) for k, v in meta["profile_vocabs"].items()}

    def _state(self) -> dict[str, np.ndarray]:
        assert self.net is not None and self.user_profile is not None
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        state["user_profile"] = self.user_profile
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        assert self.spec is not None
        self.user_profile = state.pop("user_profile")
        self.net = PointwiseNet(self.spec, self._opts())
        self.net.load_state_dict({k[4:]: torch.from_numpy(v) for k, v in state.items()})
        self.net.eval()
