"""FusionRecommender: fitting, scoring, explaining, adding items and persistence of the fusion model."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctxrec.context import ContextEncoder
from ctxrec.errors import ConfigError, QueryError, UnsupportedError
from ctxrec.models.base import QueryBatch, Recommender, encoder_context_schema
from ctxrec.models.features import (
    encode_texts,
    fill_item_inputs,
    new_item_attributes,
)
from ctxrec.models.fusion.batches import (
    Arrays,
    anonymous_requests,
    decode_event_inputs,
    history_tensors,
    prior_cases,
    prior_training_inputs,
    query_tensors,
    request_tensors,
    training_batches,
    training_events,
)
from ctxrec.models.fusion.config import RETIRED_OPTIONS, FusionConfig
from ctxrec.models.fusion.context_head import choose_prior_weight, fit_context_head
from ctxrec.models.fusion.encoders import fit_encoders
from ctxrec.models.fusion.explain import explain
from ctxrec.models.fusion.net import (
    EncodeLast,
    FusionNet,
    NetSpec,
    blend_text_query,
    mixture_log_probs,
    mixture_nll,
    sampled_mixture_nll,
    text_match_log_probs,
)
from ctxrec.models.layers import state_chunks
from ctxrec.training.loop import pick_device

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet
    from ctxrec.text.lexical import LexicalEncoder

_STRUCTURE = [0]
"""Bumped whenever any module registers (or replaces) a parameter, buffer or submodule: the cached list of a
net's tensors in :meth:`FusionRecommender._eval_cached` is rebuilt only then. Walking the module tree for
it on every request cost ~0.25 ms of a served request's ~1.5 ms (tiny model, one core)."""


def _bump_structure(*_: Any) -> None:
    _STRUCTURE[0] += 1


nn.modules.module.register_module_parameter_registration_hook(_bump_structure)
nn.modules.module.register_module_buffer_registration_hook(_bump_structure)
nn.modules.module.register_module_module_registration_hook(_bump_structure)


class FusionRecommender(Recommender):
    """The ctxrec model. See the package docstring; ``recommend(..., explain=True)`` returns view weights."""

    kind = "fusion"
    config_class = FusionConfig

    supports_add_items = True
    supports_warm_start = reads_with_encoders_of = True
    supports_state = True

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
        self._table_cache: tuple[tuple[tuple[int, int], ...], dict[str, torch.Tensor]] | None = None
        self._net_tensors: tuple[int, int, list[torch.Tensor]] | None = None  # (structure, id(net), tensors)
        self._fitting = False
        self.state_runtime: Callable[[FusionNet, torch.Tensor], EncodeLast] | None = None
        """Builds a faster ``encode_last`` for the current weights (``ctxrec serve`` sets
        :func:`ctxrec.deploy.state_runtime.onnx_state_runtime`); None = the net's own."""
        # (module-structure stamp, the tensors encode_last reads, their identity + versions, the built encoder)
        self._state_runtime: tuple[tuple[int, int], list[torch.Tensor], tuple[object, ...], EncodeLast] | None = None
        self.attr_vocab: dict[str, int] = {}  # "field=value" -> attribute id, for items added at serving time
        self.lexical: LexicalEncoder | None = None  # lexical_dim: n-gram vectors of item text, for new items too
        self._lexical_meta: dict[str, Any] | None = None  # a loaded model's, until _load_state has its arrays

    # ================================================================================ features
    def _text_encoder_instance(self) -> Any:
        if self._text_encoder is None:
            from ctxrec.text.encoders import build_encoder

            self._text_encoder = build_encoder(self.config.text)
        return self._text_encoder

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        """Language-model vectors through the on-disk cache (a second run encodes nothing)."""
        return encode_texts(self._text_encoder_instance(), self.config.text, texts, progress=self.config.train.progress)

    @property
    def context_as_text(self) -> bool:
        """Rendered contexts are embedded by the language model (``context.as_text``, with context fields)."""
        return self.config.use_context and self.config.context.as_text and bool(self.ctx_encoder and self.ctx_encoder.field_names)

    def context_schema(self) -> dict[str, dict[str, Any]]:
        """The context fields of the fitted context encoder (none with ``use_context = false``)."""
        self._check_fitted()
        if not self.config.use_context or self.ctx_encoder is None:
            return {}
        return encoder_context_schema(self.ctx_encoder)

    def context_text_ids(self, texts: list[str]) -> np.ndarray:
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

    def stored_event_inputs(self, user: int, hist: np.ndarray) -> Arrays | None:
        """The encoded contexts and event types of known user ``user``'s stored (trained) history, when
        ``hist`` is it."""
        if user < 0 or self.hist_ctx_ids is None:
            return None
        stored = self.known_history(user)
        if len(stored) != len(hist) or not np.array_equal(stored, hist):
            return None
        assert self._hist_indptr is not None and self.hist_ctx_dense is not None and self.hist_events is not None
        sl = slice(self._hist_indptr[user], self._hist_indptr[user + 1])
        return self.hist_ctx_ids[sl], self.hist_ctx_dense[sl], self.hist_events[sl]

    def known_history_events(self, user: int) -> list[tuple[str | None, dict[str, Any]]] | None:
        stored = self.stored_event_inputs(user, self.known_history(user)) if user >= 0 else None
        return None if stored is None else decode_event_inputs(self, stored)

    # ================================================================================ training
    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        from ctxrec.models.fusion.auto import resolve

        self.config, auto = resolve(self.config, data, valid, type(self))  # every "auto" field decided
        self._fitting, self._table_cache = True, None
        try:
            self._fit_net(data, valid=valid, run_dir=run_dir)
        finally:
            self._fitting, self._table_cache = False, None
        if auto is not None:
            self.fit_info["auto"] = auto

    def _fit_net(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        from ctxrec.evaluation.evaluator import validation_fn
        from ctxrec.training.loop import train_loop

        cfg, tc = self.config, self.config.train
        torch.manual_seed(tc.seed)
        self.device = pick_device(tc.device)
        self.popularity = np.bincount(data.item_idx, minlength=data.n_items).astype(np.float32)

        src = self._encoders_from if isinstance(self._encoders_from, FusionRecommender) else None
        text, attrs, n_attr, extra = fit_encoders(self, data, src)
        assert self.ctx_encoder is not None
        # Every training event's context, encoded once (rendered contexts too, before the net exists).
        self.ctx_texts, self._pending_ctx_vectors, self.net = {}, None, None
        events = training_events(self, data)
        self.hist_ctx_ids, self.hist_ctx_dense, self.hist_events = events.ctx_ids, events.ctx_dense, events.events
        self.spec = NetSpec(
            n_items=data.n_items, text_dim=0 if text is None else text.shape[1], n_attr_ids=n_attr,
            attr_width=attrs.shape[1], ctx_cardinalities=self.ctx_encoder.cardinalities if cfg.use_context else [],
            n_dense=self.ctx_encoder.n_dense if cfg.use_context else 0,
            profile_cardinalities=[len(v) + 1 for v in self.profile_vocabs.values()],
            user_text_dim=0 if self.user_text_vectors is None else self.user_text_vectors.shape[1],
            n_event_types=len(self.event_types), extra_dim=0 if extra is None else extra.shape[1],
        )
        if self._pending_ctx_vectors is not None:
            self.spec.ctx_text_dim, self.spec.n_ctx_texts = self._pending_ctx_vectors.shape[1], len(self.ctx_texts)
        self.net = FusionNet(self.spec, cfg).to(self.device)
        fill_item_inputs(self.net, text, attrs)
        with torch.no_grad():
            if extra is not None:
                self.net.extra_vectors[1:] = torch.from_numpy(extra)
            if self._pending_ctx_vectors is not None:
                self.net.ctx_text_vectors[1:] = self._pending_ctx_vectors
                self._pending_ctx_vectors = None
            self.net.has_id[1:, 0] = torch.from_numpy(self.popularity > 0).float()

        use_sampled = cfg.loss == "sampled" or (cfg.loss == "auto" and data.n_items > cfg.sampled_above)
        seen = np.bincount(events.items, minlength=data.n_items + 1)
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
        net, dev = self.net, self.device
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
                return sampled_mixture_nll(vecs, log_w, out_table, targets, n_negatives=cfg.n_negatives, log_q=log_q,
                                           mixture=cfg.mixture_on, generator=gen)
            return mixture_nll(vecs, log_w, out_table, targets, mixture=cfg.mixture_on, exclude=exclude)

        evaluate = validation_fn(self, valid, self._monitor, exclude_seen=not self.keeps_seen)
        n_batches = math.ceil(len(events.users) / tc.batch_size)
        result = train_loop(net, batches=training_batches(events, tc.batch_size, cfg.max_len, tc.length_pool), loss_fn=loss_fn,
                            evaluate=evaluate, cfg=tc, run_dir=run_dir, n_batches=n_batches,
                            initial=self._warm_start)
        net.eval()
        self.fit_info = {"best_epoch": result.best_epoch, "best_valid": result.best_score, "epochs_run": result.epochs_run,
                         "train_seconds": result.seconds, "stopped_by": result.stopped_by, "history": result.history,
                         "loss": "sampled" if use_sampled else "full", "views": net.view_names}
        if net.context_head is not None:  # the context prior, fitted on the frozen network (context_head.py)
            with torch.no_grad():
                table = net.item_table()
            self.fit_info["context_head"] = fit_context_head(
                net.context_head, table, prior_training_inputs(self, data, events),
                prior_cases(self, valid) if valid is not None and len(valid) else None, seed=tc.seed, exclude=exclude)
            self.fit_info["context_head"].update(choose_prior_weight(net.context_head, cfg.context_prior_weight,
                                                                     validation_fn(self, valid, exclude_seen=not self.keeps_seen)))

    # ================================================================================ inference
    def encode_batch(self, batch: QueryBatch) -> dict[str, torch.Tensor]:
        """Queries -> the padded input tensors of the net (public: the ONNX runtime feeds its graph with them;
        :func:`ctxrec.models.fusion.batches.query_tensors`)."""
        return query_tensors(self, batch)

    @torch.no_grad()
    def _state_tensor(self, batch: QueryBatch) -> torch.Tensor:
        """(B, D): the Transformer's output after each query's last history event (after BOS for none).

        The one path from histories to states (scoring, evaluation, serving): queries run in groups of
        similar history length (padding every query to the longest would cost up to max_len / length times
        the work), each cut to at most :data:`~ctxrec.models.layers.STATE_TOKENS` padded positions (the
        activations of one forward stay bounded, whatever the evaluation batch), and the last block runs at
        the predicting position only."""
        assert self.net is not None
        net = self._eval_net()
        table = self._eval_item_table()  # once: while fitting it is rebuilt on every call
        encode = self._state_encoder(net, table)
        chunks = state_chunks([min(len(h), self.config.max_len - 1) for h in batch.histories])
        if len(chunks) == 1:  # the usual served miss (one user, or users of one length): no gather
            x = history_tensors(self, batch)
            return encode(x["inp"], x["ev"], x["ci"], x["cd"], table, x["len"]).float()
        out = torch.empty(len(batch), self.config.d_model, device=self.device)
        for rows in chunks:
            x = history_tensors(self, batch.subset(rows))
            h = encode(x["inp"], x["ev"], x["ci"], x["cd"], table, x["len"])  # (b, D)
            out[torch.as_tensor(rows, device=self.device)] = h.float()
        return out

    def _state_encoder(self, net: FusionNet, table: torch.Tensor) -> EncodeLast:
        """``net.encode_last``, or what :attr:`state_runtime` built from the weights it reads, rebuilt when
        one of them changes (not the item table: it is an input, so added items need no rebuild)."""
        if self.state_runtime is None or self._fitting or self.device.type != "cpu":
            return net.encode_last
        walked = (_STRUCTURE[0], id(net))  # the tensor list is walked again only when some module changed
        old = self._state_runtime
        tensors = old[1] if old is not None and old[0] == walked else net.encoder_tensors()
        key = (id(net), id(self.state_runtime), *((id(t), t._version) for t in tensors))  # in-place changes bump _version
        built = self.state_runtime(net, table) if old is None or old[2] != key else old[3]
        self._state_runtime = (walked, tensors, key, built)
        return built

    def encode_state(self, batch: QueryBatch) -> np.ndarray:
        """(B, D) float32: the Transformer state at the last history position. It reads the history only:
        its items' rows of the item table (ID, text, attributes), event types, times and contexts; the
        request context, profile and text query enter in :meth:`score_from_state` (views, gate, head)."""
        self._check_fitted()
        return self._state_tensor(batch).cpu().numpy()

    def score_from_state(self, state: np.ndarray, batch: QueryBatch) -> np.ndarray:
        """``score(batch)`` from cached states: the views, gate and head only (no Transformer)."""
        self._check_fitted()
        return self._scores(batch, torch.as_tensor(np.asarray(state, np.float32), device=self.device))

    @torch.no_grad()
    def _forward(self, batch: QueryBatch, state: torch.Tensor | None = None,
                 requests: dict[str, torch.Tensor] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Per query: view vectors (B, J, D), log gate weights (B, J), item table, view names. ``state``
        (B, D): :meth:`encode_state`'s rows, else computed; ``requests``: :func:`request_tensors`, if built."""
        assert self.net is not None
        net = self._eval_net()
        last = self._state_tensor(batch) if state is None else state  # (B, D)
        r = request_tensors(self, batch) if requests is None else requests
        profile = net.profile_vector(r["prof"], r.get("utext"))
        vecs, log_w = net.views(last, r["rci"], r["rcd"], profile)
        return vecs, log_w, self._eval_item_table(), list(net.view_names)

    def _eval_net(self) -> FusionNet:
        """The network in eval mode (``eval()`` walks every module: ~0.1 ms, so only when needed)."""
        assert self.net is not None
        return self.net.eval() if self.net.training else self.net

    def _eval_item_table(self) -> torch.Tensor:
        """The item table in eval mode, kept between requests until a weight or buffer changes."""
        return self._eval_cached("table", lambda net: net.item_table())

    def _eval_cached(self, name: str, build: Callable[[FusionNet], torch.Tensor]) -> torch.Tensor:
        """``build(net)`` kept between requests until a weight or buffer changes. Not used while fitting:
        fused optimiser steps update weights without bumping tensor versions."""
        assert self.net is not None
        if self._fitting:
            return build(self.net)
        if self._net_tensors is None or self._net_tensors[:2] != (_STRUCTURE[0], id(self.net)):
            self._net_tensors = (_STRUCTURE[0], id(self.net), [*self.net.parameters(), *self.net.buffers()])
        key = tuple((id(t), t._version) for t in self._net_tensors[2])  # an in-place change bumps _version
        if self._table_cache is None or self._table_cache[0] != key:
            self._table_cache = (key, {})
        cache = self._table_cache[1]
        if name not in cache:
            with torch.no_grad():  # a cached tensor must never carry an autograd graph into later requests
                cache[name] = build(self.net)
        return cache[name]

    def text_query_log_probs(self, texts: Sequence[str | None]) -> torch.Tensor | None:
        """(B, V + 1) log P_text of each query's text (:func:`text_match_log_probs`; column 0 padding), or
        None when no query has text. A model without item text cannot match text and says so."""
        if not any(texts):
            return None
        assert self.net is not None and self.spec is not None
        idx = [i for i, t in enumerate(texts) if t]
        if not self.spec.text_dim:
            raise QueryError("this fusion model has no item text (use_text=false or a catalogue without text "
                             "fields), so it cannot match a text query; drop `text` or serve a model with text",
                             query=idx[0], field="text")
        emb = np.zeros((len(texts), self.spec.text_dim), np.float32)
        emb[idx] = self._text_encoder_instance().encode([texts[i] for i in idx], progress=False)
        items = self._eval_cached("unit_text", lambda net: F.normalize(net.text_vectors, dim=-1))  # (V + 1, Dt)
        return text_match_log_probs(torch.from_numpy(emb).to(self.device), items, self.config.query_temperature)

    def _scores(self, batch: QueryBatch, state: torch.Tensor | None) -> np.ndarray:
        r = request_tensors(self, batch)  # once, for the views and the context prior
        vecs, log_w, table, _ = self._forward(batch, state, r)
        assert self.net is not None
        vecs, out_table = self.net.scoring_inputs(vecs, table)
        log_p = mixture_log_probs(vecs, log_w, out_table, mixture=self.config.mixture_on)  # (B, V + 1)
        text = self.text_query_log_probs(batch.texts or [])
        if text is not None:
            has_q = torch.tensor([bool(t) for t in batch.texts or []], device=log_p.device)
            log_p = blend_text_query(log_p, text, has_q, self.config.query_weight)
        head = self.net.context_head
        anon = None if head is None else anonymous_requests(self, batch, always=float(head.weight) > 0, requests=r)
        if anon is not None:  # context-only requests: the context prior (context_head.py); the rest mix it in
            log_p = self.net.with_context_prior(log_p, *anon, table)
        return log_p[:, 1:].cpu().numpy()

    def _score(self, batch: QueryBatch) -> np.ndarray:
        return self._scores(batch, None)

    # ---------------------------------------------------------------- dot-product form (mixture = false)
    def embed_from_state(self, state: np.ndarray, batch: QueryBatch) -> np.ndarray:
        """(B, D) gate-weighted sum of the views: with ``mixture=false`` the score is log_softmax of its dot
        product with the item table, so it ranks like :meth:`score` (for queries without text)."""
        self._check_no_mixture()
        assert self.net is not None
        vecs, log_w, table, _ = self._forward(batch, torch.as_tensor(np.asarray(state, np.float32), device=self.device))
        vecs, _ = self.net.scoring_inputs(vecs, table)
        return (log_w.exp().unsqueeze(-1) * vecs).sum(1).float().cpu().numpy()

    def user_embeddings(self, batch: QueryBatch) -> np.ndarray:
        self._check_no_mixture()
        return self.embed_from_state(self.encode_state(batch), batch)

    def item_embeddings(self) -> np.ndarray:
        """(n_items, D) item table rows (unit rows with ``temperature``), for ``mixture=false``."""
        self._check_no_mixture()
        assert self.net is not None
        table = self._eval_item_table()
        _, table = self.net.scoring_inputs(table[:1], table)
        return table[1:].float().cpu().numpy()

    def _check_no_mixture(self) -> None:
        self._check_fitted()
        if self.config.mixture_on:
            raise UnsupportedError("a fusion model with mixture=true scores log sum_j w_j softmax_j(h_j . E): one "
                                   "normaliser per view, not one dot product, so it has no user/item vector form; "
                                   "it is scored exactly (train with mixture=false for approximate retrieval)")
        head = self.net.context_head if self.net is not None else None
        if head is not None and float(head.weight) > 0:
            raise UnsupportedError(f"this fusion model mixes its context prior into every answer (weight "
                                   f"{float(head.weight):.2f}, chosen on validation): not one dot product, so it is "
                                   "scored exactly (set context_prior_weight=0 for approximate retrieval)")

    def _explain(self, batch: QueryBatch, top: np.ndarray) -> list[dict[str, Any] | None]:
        """View weights and shares, and occlusion attribution over request fields and past events."""
        return explain(self, batch, top)

    # ================================================================================ serving
    INFERENCE_OPTIONS = ("id_scale", "cold_ids", "cold_id_neighbours")

    def set_inference(self, **options: Any) -> None:
        """Change how the item table is built at inference (``id_scale``, ``cold_ids``,
        ``cold_id_neighbours``), no retraining: the next request (and a later ``save``/export) uses it."""
        bad = sorted(set(options) - set(self.INFERENCE_OPTIONS))
        if bad:
            raise ConfigError(f"set_inference cannot change {bad}: only {list(self.INFERENCE_OPTIONS)} (others need a refit)")
        if options.get("cold_ids") == "auto":
            raise ConfigError('cold_ids="auto" is decided from the training catalogue when the model is fitted; '
                              'on a fitted model set "none" or "neighbours"')
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
                if net.context_head is not None:
                    net.context_head.grow(grow)
                self.spec.n_items = len(self.item_vocab)
                if self.popularity is not None:
                    self.popularity = np.concatenate([self.popularity, np.zeros(grow, self.popularity.dtype)])
            rows = torch.from_numpy(idx + 1)
            if (net.text_proj is not None and self.spec.text_dim) or self.lexical is not None:
                tc = self.config.item_text
                fields, missing = _fields(tc, self.schema.item_text_fields if self.schema else ())
                texts = render_texts(frame, fields, tc.template, sep=tc.sep, list_sep=tc.list_sep, missing=missing, kind="item")
            if net.text_proj is not None and self.spec.text_dim:
                net.text_vectors[rows] = torch.from_numpy(np.asarray(self._encode_texts(texts), np.float32)).to(net.text_vectors.device)
            if self.lexical is not None:  # the item_vectors file's part of a new item stays zero
                lex = self.lexical.transform(texts)
                net.extra_vectors[rows, -lex.shape[1]:] = torch.from_numpy(lex).to(net.extra_vectors.device)
            attrs = new_item_attributes(frame, self.schema.item_attribute_fields if self.schema else (), self.attr_vocab,
                                        net.attr_ids.shape[1])
            net.attr_ids[rows] = torch.from_numpy(attrs).to(net.attr_ids.device)
            net.has_id[rows[torch.from_numpy(idx >= n_old)]] = 0.0  # only ids never trained are cold; a re-added item keeps its ID
        if "title" in frame.columns:
            self.item_titles.update({i: str(t) for i, t in zip(frame.index, frame["title"].tolist(), strict=True) if isinstance(t, str)})
        return idx

    # ================================================================================ persistence
    @classmethod
    def load(cls, path: str | Path) -> Self:
        """As :meth:`Recommender.load`; a model saved with an option since removed is refused with the
        keys to delete (harmless when they hold the value that meant "off")."""
        cfg = Path(path) / "config.json"
        saved = json.loads(cfg.read_text()).get("config", {}) if cfg.exists() else {}
        retired = sorted(k for k in saved if k in RETIRED_OPTIONS)
        if retired:
            used = {k: saved[k] for k in retired if saved[k] != RETIRED_OPTIONS[k]}
            why = (f"it was trained with {used}, which no longer exists: retrain it" if used else
                   "they held the values that meant 'off', so deleting them changes nothing")
            raise ConfigError(f"{str(cfg)!r} names fusion options removed since it was saved (they measured no gain): {retired}; {why}. "
                              f"Delete those keys from its 'config' to load it.")
        return super().load(path)

    def _meta(self) -> dict[str, Any]:
        assert self.spec is not None and self.ctx_encoder is not None
        return {"spec": self.spec.__dict__, "context_encoder": self.ctx_encoder.to_dict(),
                "event_types": self.event_types, "profile_vocabs": self.profile_vocabs, "attr_vocab": self.attr_vocab,
                "ctx_texts": self.ctx_texts, **({"lexical": self.lexical.to_meta()} if self.lexical is not None else {})}

    def _load_meta(self, meta: dict[str, Any]) -> None:
        self.spec = NetSpec(**meta["spec"])
        self.ctx_encoder = ContextEncoder.from_dict(meta["context_encoder"])
        self.event_types = dict(meta["event_types"])
        self.profile_vocabs = {k: dict(v) for k, v in meta["profile_vocabs"].items()}
        self.ctx_texts = {str(k): int(v) for k, v in meta.get("ctx_texts", {}).items()}
        self.attr_vocab = dict(meta.get("attr_vocab", {}))
        self._lexical_meta = meta.get("lexical")  # rebuilt with its arrays in _load_state

    def _state(self) -> dict[str, np.ndarray]:
        assert self.net is not None and self.popularity is not None and self.user_profile is not None
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}
        state["popularity"] = self.popularity
        state["user_profile"] = self.user_profile
        assert self.hist_ctx_ids is not None and self.hist_ctx_dense is not None and self.hist_events is not None
        state["hist_ctx_ids"], state["hist_ctx_dense"], state["hist_events"] = self.hist_ctx_ids, self.hist_ctx_dense, self.hist_events
        if self.user_text_vectors is not None:
            state["user_text_vectors"] = self.user_text_vectors
        if self.lexical is not None:
            state.update({f"lexical.{k}": v for k, v in self.lexical.to_state().items()})
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        assert self.spec is not None
        self.popularity = state.pop("popularity")
        self.user_profile = state.pop("user_profile")
        self.hist_ctx_ids, self.hist_ctx_dense, self.hist_events = state.pop("hist_ctx_ids"), state.pop("hist_ctx_dense"), state.pop("hist_events")
        self.user_text_vectors = state.pop("user_text_vectors", None)
        lexical = {k.split(".", 1)[1]: state.pop(k) for k in [k for k in state if k.startswith("lexical.")]}
        if self._lexical_meta is not None:
            from ctxrec.text.lexical import LexicalEncoder

            self.lexical = LexicalEncoder.from_saved(self._lexical_meta, lexical)
        self.net = FusionNet(self.spec, self.config)
        weights = {k[4:]: torch.from_numpy(v) for k, v in state.items()}
        # Saved before the redesign: the retired cold prior's offset (always 0 unless cold_prior="fit",
        # which load() refuses), and the text projection saved as a bare Linear before TextAdapter.
        weights.pop("cold_bias", None)
        if "text_proj.weight" in weights:
            for name in ("weight", "bias"):
                weights[f"text_proj.lin.{name}"] = weights.pop(f"text_proj.{name}")
        if self.net.context_head is not None and not any(k.startswith("context_head.") for k in weights):
            self.net.context_head = None  # saved before the context prior existed: answers as it was trained
            self.config = self.net.cfg = replace(self.config, context_head=False)
        self.net.load_state_dict(weights)
        self.net.eval()
