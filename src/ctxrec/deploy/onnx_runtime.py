"""ONNX Runtime backend: serve an export folder written by :func:`ctxrec.deploy.export.export_model`.

:class:`OnnxRecommender` is a :class:`~ctxrec.models.base.Recommender`: it keeps the model's vocabularies,
stored histories and query encoding (the base class's ``encode_queries`` and the model's own tensor
preparation, run on a weightless instance of the PyTorch class), and replaces only the network by an
ONNX Runtime session. So ``recommend(queries, k)``, ``recommend_indices`` and the
:class:`~ctxrec.evaluation.evaluator.Evaluator` work on it unchanged.

:class:`OnnxTextEncoder` runs the exported sentence encoder (MiniLM) with the ``tokenizers`` package,
for item texts added at serving time and free-text queries.

Export folder layout::

    export.json            format, model kind, quantization, pruning, graph inputs, verification
    config.json            the model's config (kind, config, schema, fit_info), as in a model folder
    state.json             the model's JSON state (context encoder, vocabularies of features)
    vocab/, items.json     id vocabularies and display titles
    runtime.safetensors    stored histories and the non-network arrays (popularity, profiles, ...)
    recommender.onnx       padded query tensors -> scores over the catalogue (one file)
    text_encoder/          model.onnx, tokenizer.json, text_encoder.json (text-aware models only)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ctxrec.errors import ConfigError, UnsupportedError
from ctxrec.models.base import QueryBatch, Recommender

__all__ = ["EXPORT_FORMAT", "OnnxRecommender", "OnnxTextEncoder", "is_export_dir", "load_recommender",
           "query_feeds"]

EXPORT_FORMAT = "ctxrec-onnx/1"
Backend = Literal["torch", "onnx", "auto"]


def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / "export.json").is_file()


def load_recommender(path: str | Path, backend: Backend = "auto", *, threads: int | None = None) -> Recommender:
    """Load a model for serving. ``backend="torch"``: a model or run folder (``ctxrec.models.load_model``);
    ``"onnx"``: an export folder (``ctxrec export``) on ONNX Runtime; ``"auto"``: ONNX when ``path`` is an
    export folder, else PyTorch. ``threads`` sets ONNX Runtime's intra-op threads (default: its own)."""
    if backend not in ("torch", "onnx", "auto"):
        raise ConfigError(f"backend must be 'torch', 'onnx' or 'auto', got {backend!r}")
    if backend == "onnx" or (backend == "auto" and is_export_dir(path)):
        return OnnxRecommender.load(path, threads=threads)
    from ctxrec.models import load_model

    if is_export_dir(path):
        raise ConfigError(f"{str(path)!r} is an ONNX export folder; load it with backend='onnx'")
    return load_model(path)


def _session(path: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    env_threads = os.environ.get("CTXREC_ORT_THREADS")
    n = threads if threads is not None else (int(env_threads) if env_threads else None)
    if n:
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are not actionable
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------ query feeds
def query_feeds(host: Recommender, batch: QueryBatch, input_names: Sequence[str],
                text_vectors: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The recommender graph's inputs for ``batch``, prepared by the model's own code (``host`` may be a
    weightless instance). ``text_vectors`` (B, Dt): language-model vectors of the queries' free texts."""
    kind = host.kind
    if kind == "sasrec":
        from ctxrec.models.sasrec import right_pad

        inp, lens = right_pad([np.asarray(h, np.int64) + 1 for h in batch.histories], host.config.max_len)
        feeds = {"items": inp, "lengths": lens}
    elif kind == "fusion":
        from ctxrec.models.fusion import FusionRecommender

        assert isinstance(host, FusionRecommender)
        x = {k: v.cpu().numpy() for k, v in host.encode_batch(batch).items()}
        x["lengths"] = x.pop("len")
        B = len(batch)
        if "query_text" in input_names:
            texts = batch.texts or [None] * B
            x["has_query"] = np.array([bool(t) for t in texts])
            assert host.spec is not None
            x["query_text"] = text_vectors if text_vectors is not None else np.zeros((B, host.spec.text_dim), np.float32)
        feeds = x
    else:
        raise ConfigError(f"ONNX export supports 'sasrec' and 'fusion' models, not {kind!r}")
    return {n: np.ascontiguousarray(feeds[n]) for n in input_names}


def _host_from_folder(p: Path) -> Recommender:
    """The PyTorch model class, instantiated without its network, with everything else of the model:
    vocabularies, schema, titles, JSON state (``Recommender.restore``, as ``load`` does) and the
    non-network arrays of ``runtime.safetensors``."""
    from safetensors.numpy import load_file

    from ctxrec.models import get_model_class
    from ctxrec.models.base import read_saved_config

    meta = read_saved_config(p)
    cls = get_model_class(meta["kind"])
    arrays = load_file(str(p / "runtime.safetensors"))
    host = cls.restore(p, meta, arrays)
    for k, v in arrays.items():
        name = k[len("state."):]
        if not hasattr(host, name):
            raise ConfigError(f"{str(p)!r}: runtime array {k!r} has no attribute on {cls.__name__}; re-export the model")
        setattr(host, name, v)
    return host


class OnnxRecommender(Recommender):
    """A model exported by ``ctxrec export``, scored by ONNX Runtime; same ``recommend`` as PyTorch.

    Not trainable and not re-savable (``fit``/``save`` raise): re-export from the PyTorch model instead.
    ``explain=True`` returns ``None`` explanations (the graph outputs scores only)."""

    kind = "onnx"
    config_class = object
    supports_add_items = False
    """The item table is inside the graph: new items need a new export (``add_items`` says how)."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        p = Path(path)
        if not is_export_dir(p):
            raise FileNotFoundError(
                f"{str(p)!r} is not an ONNX export folder (no export.json); write one with "
                f"`ctxrec export --model RUN_DIR --format onnx --out {p}`"
            )
        self.export_info: dict[str, Any] = json.loads((p / "export.json").read_text())
        if self.export_info.get("format") != EXPORT_FORMAT:
            raise ConfigError(f"{str(p)!r} has export format {self.export_info.get('format')!r}; this ctxrec reads "
                              f"{EXPORT_FORMAT!r}: re-export the model")
        self.host = _host_from_folder(p)
        super().__init__(self.host.config)
        self.path = p
        self.model_kind: str = self.host.kind
        self.item_vocab, self.user_vocab, self.schema = self.host.item_vocab, self.host.user_vocab, self.host.schema
        self._hist_indptr, self._hist_items = self.host._hist_indptr, self.host._hist_items
        self.item_titles, self.fit_info = self.host.item_titles, self.host.fit_info
        self.session = _session(p / "recommender.onnx", threads)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._threads = threads
        self._text_encoder: Any = None

    @classmethod
    def load(cls, path: str | Path, *, threads: int | None = None) -> OnnxRecommender:
        return cls(path, threads=threads)

    def __repr__(self) -> str:
        return (f"OnnxRecommender({self.model_kind!r}, quantize={self.export_info.get('quantize')!r}, "
                f"path={str(self.path)!r})")

    # ------------------------------------------------------------------------------------ scoring
    def text_encoder(self) -> Any:
        """The exported text encoder when the folder has one, else the model's configured encoder."""
        if self._text_encoder is None:
            if (self.path / "text_encoder" / "text_encoder.json").exists():
                self._text_encoder = OnnxTextEncoder(self.path / "text_encoder", threads=self._threads)
            else:
                from ctxrec.text.encoders import build_encoder

                self._text_encoder = build_encoder(self.host.config.text)
        return self._text_encoder

    def _score(self, batch: QueryBatch) -> np.ndarray:
        text_vecs = None
        if "query_text" in self.input_names and batch.texts and any(batch.texts):
            texts = batch.texts
            idx = [i for i, t in enumerate(texts) if t]
            text_vecs = np.zeros((len(batch), self.host.spec.text_dim), np.float32)  # type: ignore[attr-defined]  # fusion
            text_vecs[idx] = self.text_encoder().encode([texts[i] for i in idx], progress=False)
        feeds = query_feeds(self.host, batch, self.input_names, text_vecs)
        (scores,) = self.session.run(["scores"], feeds)
        if self.model_kind == "sasrec":  # the PyTorch model's documented fallback for empty histories
            pop = self.host.popularity  # type: ignore[attr-defined]  # SASRecRecommender.popularity
            empty = np.array([len(h) == 0 for h in batch.histories])
            if empty.any():
                scores[empty] = pop / max(1.0, float(pop.max()))
        return scores

    def _allows_unknown_users(self) -> bool:
        return self.host._allows_unknown_users()

    # ------------------------------------------------------------------------------------ not supported
    def add_items(self, items: Any) -> np.ndarray:
        raise UnsupportedError(
            "the ONNX backend serves the catalogue it was exported with (the item table is inside the graph); "
            "add the items to the PyTorch model (model.add_items) and export it again, or serve with backend='torch'"
        )

    def _fit(self, data: Any, *, valid: Any, run_dir: Any) -> None:
        raise UnsupportedError("an ONNX export cannot be trained; train the PyTorch model and export it again")

    def _state(self) -> dict[str, np.ndarray]:
        raise UnsupportedError("an ONNX export is saved by `ctxrec export`, not by save()")

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        raise UnsupportedError("load an ONNX export with OnnxRecommender.load(path)")


# ------------------------------------------------------------------------------------ text encoder
class OnnxTextEncoder:
    """A sentence encoder exported to ONNX (``text_encoder/`` of an export folder); the
    :class:`~ctxrec.text.encoders.TextEncoder` protocol, so the embedding cache works with it."""

    def __init__(self, folder: str | Path, *, threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.meta: dict[str, Any] = json.loads((self.folder / "text_encoder.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=int(self.meta["max_seq_length"]))
        self.tokenizer.no_padding()
        self.batch_size = int(self.meta.get("batch_size", 64))
        self._threads = threads
        self._session: Any = None
        digest = hashlib.sha256((self.folder / "model.onnx").read_bytes()).hexdigest()[:16]
        self._cache_key = f"onnx:{self.meta['source_cache_key']}:quantize={self.meta['quantize']}:{digest}"

    @property
    def name(self) -> str:
        q = self.meta["quantize"]
        return f"onnx-{self.meta['name']}" + (f"-{q}" if q != "none" else "")

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def cache_key(self) -> str:
        return self._cache_key

    def session(self) -> Any:
        if self._session is None:
            self._session = _session(self.folder / "model.onnx", self._threads)
        return self._session

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = True) -> np.ndarray:
        from ctxrec.text.encoders import _as_texts

        texts = _as_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        sess, bs = self.session(), batch_size or self.batch_size
        encs = self.tokenizer.encode_batch(texts)
        order = np.argsort([len(e.ids) for e in encs], kind="stable")  # similar lengths together: less padding
        for start in range(0, len(order), bs):
            rows = order[start:start + bs]
            T = max(len(encs[i].ids) for i in rows)
            ids = np.zeros((len(rows), T), np.int64)
            mask = np.zeros((len(rows), T), np.int64)
            for r, i in enumerate(rows):
                n = len(encs[i].ids)
                ids[r, :n], mask[r, :n] = encs[i].ids, 1
            (emb,) = sess.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
            out[rows] = emb
        return out

    def __repr__(self) -> str:
        return f"OnnxTextEncoder({self.name!r}, dim={self.dim}, folder={str(self.folder)!r})"

