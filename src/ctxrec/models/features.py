"""Item and user features that the fusion and pointwise models share.

Both models represent an item by its ID, a learned projection of its frozen language-model text vector
and the mean of its attribute embeddings, and a user by profile fields. This module turns a dataset into
those inputs (attribute ids, profile ids, text vectors) and holds the network buffers both models keep
them in, so the two models read items and users the same way.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ctxrec.errors import DataError, InputFileNotFoundError

if TYPE_CHECKING:
    import pandas as pd

    from ctxrec.data.dataset import Dataset
    from ctxrec.queries import QueryBatch
    from ctxrec.text.encoders import TextEncoder, TextEncoderConfig
    from ctxrec.text.templates import TextTemplateConfig


@dataclass
class FeatureShapes:
    """The input shapes both networks are built from (each model's spec adds its own; saved in state.json)."""

    n_items: int
    text_dim: int
    """Width of the frozen item-text vectors; 0 = no text."""
    n_attr_ids: int
    attr_width: int
    """Most attribute ids of one item (rows of ``attr_ids`` are padded with 0 to this width)."""
    ctx_cardinalities: list[int]
    n_dense: int
    profile_cardinalities: list[int]


# ------------------------------------------------------------------------------------ attributes
def attribute_values(v: Any) -> list[Any]:
    """One attribute cell as a list of values: a list stays a list, a missing value is no value."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return list(v)
    return [] if v is None or (isinstance(v, float) and np.isnan(v)) else [v]


def attribute_matrix(data: Dataset, vocab: dict[str, int] | None = None, *, frozen: bool = False,
                     width: int | None = None) -> tuple[np.ndarray, int]:
    """(n_items + 1, A) attribute ids (row 0 and unused slots = padding 0) over the schema's item
    attribute fields, and the number of ids. ``vocab`` ("field=value" -> id) is filled in place, or with
    ``frozen`` only read (a value it lacks is left out); ``width`` fixes A (extra ids are cut)."""
    vocab = {} if vocab is None else vocab
    rows: list[list[int]] = [[] for _ in range(data.n_items)]
    items = data.items.reindex(data.item_vocab.ids)
    for f in data.schema.item_attribute_fields:
        if f not in items.columns:
            continue
        for i, v in enumerate(items[f].tolist()):
            for x in attribute_values(v):
                key = f"{f}={x}"
                if not frozen:
                    rows[i].append(vocab.setdefault(key, len(vocab) + 1))
                elif key in vocab:
                    rows[i].append(vocab[key])
    if width is None:
        width = max(max((len(r) for r in rows), default=0), 1)
    mat = np.zeros((data.n_items + 1, width), dtype=np.int64)
    for i, r in enumerate(rows):
        mat[i + 1, : min(len(r), width)] = r[:width]
    return mat, len(vocab)


def new_item_attributes(frame: pd.DataFrame, fields: Sequence[str], vocab: dict[str, int], width: int) -> np.ndarray:
    """(len(frame), width) attribute ids of items added after training: values the training vocabulary
    lacks map to padding (their embeddings do not exist), and at most ``width`` ids fit per item."""
    attrs = np.zeros((len(frame), width), np.int64)
    for f in fields:
        if f not in frame.columns:
            continue
        for r, v in enumerate(frame[f].tolist()):
            known = [vocab[f"{f}={x}"] for x in attribute_values(v) if f"{f}={x}" in vocab]
            free = [c for c in range(width) if attrs[r, c] == 0][: len(known)]
            attrs[r, free] = known[: len(free)]
    return attrs


# ------------------------------------------------------------------------------------ users
def profile_matrix(data: Dataset, use_profile: bool, vocabs: dict[str, dict[str, int]] | None = None
                   ) -> tuple[np.ndarray, dict[str, dict[str, int]]]:
    """(n_users, Fu) profile ids (0 = unknown) over the schema's user attribute fields, and each field's
    value vocabulary (value -> id, sorted values from 1). ``use_profile=False`` gives no fields. Given
    ``vocabs`` (a fitted model's), exactly their fields are read with them (a field the data lacks, and a
    value they lack, read as unknown)."""
    fields = [f for f in data.schema.user_attribute_fields if data.users is not None and f in data.users.columns]
    if not use_profile:
        fields = []
    if vocabs is not None:
        fields = list(vocabs)
    users = data.users.reindex(data.user_vocab.ids) if data.users is not None else None
    mat = np.zeros((data.n_users, len(fields)), dtype=np.int64)
    out: dict[str, dict[str, int]] = {}
    for j, f in enumerate(fields):
        if users is None or f not in users.columns:
            out[f] = dict(vocabs[f]) if vocabs is not None else {}
            continue
        col = users[f].astype("string").fillna("").astype(str)
        vocab = out[f] = dict(vocabs[f]) if vocabs is not None else \
            {v: k + 1 for k, v in enumerate(sorted(v for v in col.unique() if v))}
        mat[:, j] = col.map(lambda v, vocab=vocab: vocab.get(v, 0)).to_numpy()
    return mat, out


def query_profiles(user_profile: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(B, Fu) profile ids of a batch's users (-1 = a user the model does not know: all unknown)."""
    prof = np.zeros((len(users), user_profile.shape[1]), np.int64)
    known = users >= 0
    prof[known] = user_profile[users[known]]
    return prof


def last_event_times(batch: QueryBatch) -> np.ndarray:
    """(B,) timestamp of each query's last history event (NaN when unknown): the "time since the last
    event" feature of the request context."""
    B = len(batch)
    if len(batch.history_times) != B:
        return np.full(B, np.nan)
    return np.array([np.asarray(t, np.float64)[-1] if len(t) else np.nan for t in batch.history_times])


# ------------------------------------------------------------------------------------ text
def encode_texts(encoder: TextEncoder, config: TextEncoderConfig, texts: list[str], *, progress: bool) -> np.ndarray:
    """Language-model vectors through the on-disk cache (a second run encodes nothing)."""
    from ctxrec.text.cache import EmbeddingCache

    return EmbeddingCache.from_config(config).encode_cached(encoder, texts, progress=progress and len(texts) > 1000)


def item_text_vectors(data: Dataset, encoder: TextEncoder, config: TextEncoderConfig, template: TextTemplateConfig,
                      *, progress: bool) -> np.ndarray:
    """(n_items, Dt) frozen language-model vectors of the items' rendered texts."""
    from ctxrec.text.templates import item_texts

    return encode_texts(encoder, config, item_texts(data, template), progress=progress)


def item_vectors_path(path: str) -> Path:
    """The ``item_vectors`` file as a path; a missing one is an :class:`InputFileNotFoundError` saying what it must hold
    (checked with the config, before any data loads, and again when it is read)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileNotFoundError(f"item_vectors file {path!r} does not exist; give a Parquet file with item_id and "
                                     "vector columns, or an .npz with ids and vectors")
    return p


def load_item_vectors(path: str, item_ids: list[str]) -> np.ndarray:
    """Precomputed vectors aligned to ``item_ids`` (n_items, D); items the file lacks get zeros, with a warning
    that counts them. A missing or malformed file is a :class:`DataError` naming it."""
    import pandas as pd

    p = item_vectors_path(path)
    if p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as z:
            if not {"ids", "vectors"} <= set(z.files):
                raise DataError(f"{str(p)!r} must hold arrays 'ids' and 'vectors'; it has {sorted(z.files)}")
            ids, vecs = [str(i) for i in z["ids"]], np.asarray(z["vectors"], np.float32)
    else:
        df = pd.read_parquet(p)
        missing = {"item_id", "vector"} - set(df.columns)
        if missing:
            raise DataError(f"{str(p)!r} lacks column(s) {sorted(missing)}; it needs item_id and vector")
        ids, vecs = df["item_id"].astype(str).tolist(), np.stack(df["vector"].to_numpy()).astype(np.float32)
    if vecs.ndim != 2 or len(vecs) != len(ids):
        raise DataError(f"{str(p)!r}: expected one vector per id, got {len(ids)} ids and vectors of shape {vecs.shape}")
    pos = {i: k for k, i in enumerate(ids)}
    out = np.zeros((len(item_ids), vecs.shape[1]), np.float32)
    found = [(n, pos[i]) for n, i in enumerate(item_ids) if i in pos]
    if not found:
        raise DataError(f"none of the ids in {str(p)!r} is a catalogue item (first ids: {ids[:3]}); check the id column")
    rows, src = np.array(found).T
    out[rows] = vecs[src]
    if len(found) < len(item_ids):  # said, not silent: these items get no part from the file
        warnings.warn(f"{len(item_ids) - len(found)} of {len(item_ids)} catalogue items have no vector in {str(p)!r} "
                      f"(first: {[i for i in item_ids if i not in pos][:3]}); they get zeros for this part", stacklevel=2)
    return out


# ------------------------------------------------------------------------------------ network parts
def attribute_bag(shapes: FeatureShapes, d: int) -> nn.EmbeddingBag | None:
    """Mean of an item's attribute embeddings (id 0 = padding); None without attributes."""
    return nn.EmbeddingBag(shapes.n_attr_ids + 1, d, mode="mean", padding_idx=0) if shapes.n_attr_ids else None


def register_item_inputs(net: nn.Module, shapes: FeatureShapes) -> None:
    """The frozen per-item inputs, as saved buffers (row 0 = padding): ``text_vectors`` (V + 1, Dt) and
    ``attr_ids`` (V + 1, A). Fill them with :func:`fill_item_inputs` once the data is encoded."""
    n = shapes.n_items + 1
    net.register_buffer("text_vectors", torch.zeros(n, max(shapes.text_dim, 1)), persistent=True)
    net.register_buffer("attr_ids", torch.zeros(n, max(shapes.attr_width, 1), dtype=torch.long), persistent=True)


def fill_item_inputs(net: nn.Module, text: np.ndarray | None, attrs: np.ndarray) -> None:
    """Copy the items' text vectors (n_items, Dt) and attribute ids (n_items + 1, A) into the buffers."""
    with torch.no_grad():
        if text is not None:
            net.get_buffer("text_vectors")[1:] = torch.from_numpy(text)
        net.get_buffer("attr_ids").copy_(torch.from_numpy(attrs))
