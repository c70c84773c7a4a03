"""The Recommender contract: ``fit / recommend(queries, k) / save / load``.

Public methods validate input and map external ids; subclasses implement ``_fit`` and ``_score``
(template methods, as RecTools does). Inside, everything is dense indices: ``_score`` receives a
:class:`QueryBatch` and returns a ``(B, n_items)`` score matrix over the whole catalogue.
"""

from __future__ import annotations

import difflib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import numpy as np

from ctxrec.config import from_dict, to_dict
from ctxrec.data.vocab import Vocab
from ctxrec.errors import ConfigError, NotFittedError, QueryError, UnknownQueryIdError, UnsupportedError
from ctxrec.queries import QueryBatch, Recommendations, RecQuery
from ctxrec.ranking import item_filter, rank, top_k

__all__ = ["FORMAT_VERSION", "ContextCheck", "NewEvent", "QueryBatch", "RecQuery", "Recommendations", "Recommender", "top_k"]

if TYPE_CHECKING:
    from ctxrec.context import ContextEncoder
    from ctxrec.data.dataset import Dataset, DatasetSchema
    from ctxrec.data.splits import EvalSet
    from ctxrec.training.loop import TrainState

FORMAT_VERSION = 1


class NewEvent(Protocol):
    """An event of a known or new user recorded after the model was trained (a service's event store
    holds these); :meth:`Recommender.encode_queries` appends them to the user's known history."""

    @property
    def item_id(self) -> str: ...

    @property
    def timestamp(self) -> float: ...

    @property
    def context(self) -> Mapping[str, Any]: ...

    @property
    def event_type(self) -> str: ...


class Recommender(ABC):
    """Base class of every model. A model takes one frozen config and nothing else."""

    kind: ClassVar[str]
    config_class: ClassVar[type]
    supports_add_items: ClassVar[bool] = False
    """True when the model can score items added after training (from their text or attributes):
    :meth:`add_items` works. Callers test this flag instead of comparing methods."""
    supports_warm_start: ClassVar[bool] = False
    """True when :meth:`fit` can start from given weights (``warm_start``; ``ctxrec retrain``)."""
    reads_with_encoders_of: ClassVar[bool] = False
    """True when :meth:`fit` can read the data with a fitted model's encoders (``encoders_from``)."""
    context_blind: ClassVar[bool] = False
    """True when scores depend only on the user's history (not on request context, time or text)."""
    supports_state: ClassVar[bool] = False
    """True when scoring splits into :meth:`encode_state` (the history's part, cacheable per user and
    history version) and :meth:`score_from_state` (the request's part); a service caches the state."""

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        if not isinstance(self.config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(self.config).__name__}"
            )
        self.item_vocab: Vocab | None = None
        self.user_vocab: Vocab | None = None
        self.schema: DatasetSchema | None = None
        # Known histories (dense items per dense user), used when a query gives a user id only.
        self._hist_indptr: np.ndarray | None = None
        self._hist_items: np.ndarray | None = None
        self.fit_info: dict[str, Any] = {}
        self._monitor: EvalSet | None = None
        self._warm_start: TrainState | None = None
        self._encoders_from: Recommender | None = None
        self.item_titles: dict[str, str] = {}
        """Display titles (external id -> title) for CLI and service output; saved as items.json."""

    # ------------------------------------------------------------------ public API
    def fit(
        self,
        data: Dataset,
        *,
        valid: EvalSet | None = None,
        run_dir: str | Path | None = None,
        monitor: EvalSet | None = None,
        warm_start: TrainState | None = None,
        encoders_from: Recommender | None = None,
    ) -> Self:
        """Train on ``data`` (and early-stop on ``valid`` where the model supports it).

        ``monitor`` (e.g. the test cases, for benchmark curves such as time-to-quality) is evaluated
        after each epoch by iterative models and logged as ``monitor_*``; it never influences model
        selection, which uses ``valid`` only. ``warm_start`` starts training from those weights instead of
        fresh ones (models with ``supports_warm_start``). ``encoders_from``, a fitted model of the same kind
        (the one whose weights ``warm_start`` holds), reads ``data`` with that model's encoders (context
        values, time features, event types, profile and attribute vocabularies) instead of fitting new
        ones: the weights then fit, and values it never saw read as unknown, as they do when served.
        """
        if warm_start is not None and not self.supports_warm_start:
            raise UnsupportedError(f"{self.kind} models do not train from given weights; fit them without warm_start "
                                   "(sasrec, fusion and pointwise models can)")
        if encoders_from is not None and (encoders_from.kind != self.kind or not self.reads_with_encoders_of):
            raise UnsupportedError(f"{self.kind} models cannot read data with the encoders of a {encoders_from.kind!r} "
                                   "model; fit without encoders_from (fusion and sasrec models can, each with its own kind)")
        self._monitor, self._warm_start, self._encoders_from = monitor, warm_start, encoders_from
        self.item_vocab = Vocab(data.item_vocab.ids, kind="item")
        self.user_vocab = Vocab(data.user_vocab.ids, kind="user")
        self.schema = data.schema
        if "title" in data.items.columns:
            titles = data.items["title"].dropna().astype(str)
            self.item_titles = dict(zip(titles.index.astype(str), titles.tolist(), strict=True))
        seqs = data.sequences()
        self._hist_indptr = np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)
        self._hist_items = np.concatenate(seqs).astype(np.int64) if seqs else np.zeros(0, np.int64)
        try:
            self._fit(data, valid=valid, run_dir=Path(run_dir) if run_dir else None)
        except BaseException:
            # The vocabularies are set above, so a failed fit would otherwise report is_fitted and
            # fail later with an AssertionError instead of NotFittedError.
            self.item_vocab = self.user_vocab = None
            raise
        return self

    @property
    def is_fitted(self) -> bool:
        return self.item_vocab is not None

    @property
    def n_items(self) -> int:
        self._check_fitted()
        assert self.item_vocab is not None
        return len(self.item_vocab)

    @property
    def keeps_seen(self) -> bool:
        """Whether this model's users take items again (its data's ``repeat_consumption``: plays, re-orders,
        ratings of one item in several contexts): then seen items are recommended and evaluated by
        default, else they are left out."""
        return bool(self.schema is not None and self.schema.repeat_consumption)

    def recommend(
        self,
        queries: Sequence[RecQuery | str],
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        candidates: Sequence[str] | None = None,
        explain: bool = False,
    ) -> list[Recommendations]:
        """Top-``k`` items for each query (a :class:`RecQuery`, or a user id meaning ``RecQuery(user_id=...)``).
        ``exclude_seen`` drops items in the query's history (default: unless :attr:`keeps_seen`);
        ``candidates`` restricts the result to those item ids. Unknown users with no history are
        scored from context alone (popularity-like for context-blind models). ``explain`` asks the
        model for an explanation of each result (models without one return ``None``)."""
        self._check_fitted()
        assert self.item_vocab is not None
        if isinstance(queries, (RecQuery, str)):
            raise TypeError(f"recommend takes a sequence of queries (RecQuery or user ids), got {queries!r}; "
                            "wrap a single query in a list")
        typed: list[RecQuery] = []
        for i, q in enumerate(queries):
            if not isinstance(q, (str, RecQuery)):  # a caller without type checking
                raise TypeError(f"query {i} is a {type(q).__name__} ({q!r}); give a RecQuery or a user id string")
            typed.append(RecQuery(user_id=q) if isinstance(q, str) else q)
        batch = self.encode_queries(typed)
        cand = None if candidates is None else self.item_vocab.lookup(list(candidates))
        exclude = not self.keeps_seen if exclude_seen is None else exclude_seen
        idx, scores = self.recommend_indices(batch, k, exclude_seen=exclude, candidates=cand)
        explanations = self.explain(batch, idx) if explain else [None] * len(idx)
        out = []
        for row_i, row_s, expl in zip(idx, scores, explanations, strict=True):
            keep = np.isfinite(row_s)
            out.append(Recommendations(self.item_vocab.external(row_i[keep]), row_s[keep].astype(np.float32), expl))
        return out

    def context_schema(self) -> dict[str, dict[str, Any]]:
        """The request context this model uses: ``{field: {"kind": "categorical" | "numeric", "values":
        [...] | None}}``, ``values`` being the categorical values seen in training (``None``: any value
        gets its own id, e.g. hashed fields, and numeric fields). Empty: the model ignores request
        context (popularity, EASE, SASRec), so callers can say so instead of dropping it silently."""
        self._check_fitted()
        return {}

    def check_context(self, context: Mapping[str, Any], *, query: int = 0) -> ContextCheck:
        """Check and type a request context against :meth:`context_schema` (the CLI's ``-c`` and the service).

        A key that is no context field of the model or of its training data is a
        :class:`~ctxrec.errors.QueryError` naming the known fields. Values are typed by the schema: a
        categorical "2" stays the string "2", a numeric field parses a float (else a QueryError);
        missing tokens ("", "NULL", ...) become None. Categorical values never seen in training are
        returned in ``unknown_values`` (the model scores them as unknown)."""
        from ctxrec.context import is_missing

        schema = self.context_schema()
        data_fields = {c.name: c.kind for c in self.schema.context} if self.schema is not None else {}
        known = sorted({*data_fields, *schema})
        typed: dict[str, Any] = {}
        unknown: dict[str, str] = {}
        unused: list[str] = []
        for key, value in context.items():
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1) or [k for k in known if k.lower() == key.lower()]
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                fields = ", ".join(known) if known else "none: it was trained on data without context fields"
                raise QueryError(f"unknown context field {key!r}{hint}; the model's context fields: {fields}",
                                 query=query, field=f"context.{key}")
            spec = schema.get(key)
            if spec is None:  # a field of the data this model does not use
                unused.append(key)
                typed[key] = value
            elif is_missing(value):
                typed[key] = None
            elif spec["kind"] == "numeric":
                try:
                    typed[key] = float(value)
                except (TypeError, ValueError):
                    raise QueryError(f"context {key}={value!r} is not a number; {key!r} is a numeric context field",
                                     query=query, field=f"context.{key}") from None
            else:
                typed[key] = str(value)
                if spec["values"] is not None and typed[key] not in spec["values"]:
                    unknown[key] = typed[key]
        return ContextCheck(context=typed, unknown_values=unknown, unused_fields=unused, used=bool(schema))

    def score(self, batch: QueryBatch) -> np.ndarray:
        """Raw scores ``(B, n_items)`` over the whole catalogue for a dense batch (higher is better).

        The public form of :meth:`_score` for serving, deploy, attribution and ensembles."""
        self._check_fitted()
        return self._score(batch)

    def explain(self, batch: QueryBatch, top: np.ndarray) -> list[dict[str, Any] | None]:
        """Per query, what drove its top items ``top`` ``(B, k)``; ``None`` where the model cannot say."""
        self._check_fitted()
        return self._explain(batch, top)

    def recommend_indices(
        self,
        batch: QueryBatch,
        k: int,
        *,
        exclude_seen: bool = True,
        candidates: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dense top-k: ``(B, k)`` item indices and scores (``-inf`` where fewer than k exist).

        ``candidates`` (dense indices) are the only items ranked; ``exclude_seen`` drops each query's
        history. Filtering and top-k are :mod:`ctxrec.ranking`'s, as in the service."""
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        scores = np.asarray(self.score(batch), dtype=np.float32).copy()  # (B, n_items)
        n = scores.shape[1]
        filters = [item_filter(n, seen=hist if exclude_seen else None, allow=candidates) for hist in batch.histories]
        return rank(scores, k, filters)

    def encode_queries(
        self, queries: Sequence[RecQuery], *, new_events: Sequence[Sequence[NewEvent]] | None = None
    ) -> QueryBatch:
        """External-id queries to a dense :class:`QueryBatch`: the one query encoding of the library,
        the service and deploy. Invalid queries raise :class:`~ctxrec.errors.QueryError` naming the
        query and field (unknown ids: :class:`~ctxrec.errors.UnknownQueryIdError`).

        ``new_events`` (one sequence per query, oldest first): events recorded since training for a
        query that names a user without a ``history``; they are appended to the user's known history
        (a new user gets them alone). Events of items the model does not know are skipped: an event
        store may outlive the model version that accepted them."""
        assert self.item_vocab is not None and self.user_vocab is not None
        if new_events is not None and len(new_events) != len(queries):
            raise ValueError(f"new_events has {len(new_events)} entries for {len(queries)} queries; give one per query")
        users, hists, htimes, ts, prefix = [], [], [], [], []
        hctx: list[Sequence[Mapping[str, Any]] | None] = []
        htypes: list[Sequence[str] | None] = []
        for b, q in enumerate(queries):
            events = new_events[b] if new_events is not None else ()
            for name, given in (("history_timestamps", q.history_timestamps), ("history_contexts", q.history_contexts)):
                if given is None:
                    continue
                if q.history is None:
                    raise QueryError(f"{name} needs history: it describes the items of `history`, and this "
                                     "query has none", query=b, field=name)
                if len(given) != len(q.history):
                    raise QueryError(f"{name} has {len(given)} values but history has {len(q.history)} items; "
                                     "give one per history item", query=b, field=name)
            if events and q.history is not None:
                raise QueryError("a query with its own history takes no new events (the history replaces "
                                 "the user's)", query=b, field="history")
            u = self.user_vocab.get(q.user_id) if q.user_id is not None else -1
            ctx: Sequence[Mapping[str, Any]] | None = q.history_contexts
            known, types = 0, None
            if q.history is not None:
                h = self.item_vocab.lookup(list(q.history), strict=False)
                if (h < 0).any():
                    j = int(np.argmax(h < 0))
                    raise UnknownQueryIdError(
                        f"unknown item id {q.history[j]!r} at history[{j}]: the model knows "
                        f"{len(self.item_vocab)} items; drop it or retrain with it", query=b, field=f"history.{j}")
                t = (np.asarray(q.history_timestamps, dtype=np.float64) if q.history_timestamps is not None
                     else np.full(len(h), np.nan))
            else:
                h = self.known_history(u) if u >= 0 else np.zeros(0, np.int64)
                t = np.full(len(h), np.nan)
                known = len(h)  # the trained history keeps its stored contexts (known_prefix)
                if events:
                    e_idx = self.item_vocab.lookup([e.item_id for e in events], strict=False)
                    keep = e_idx >= 0
                    kept = [e for e, k in zip(events, keep, strict=True) if k]
                    ctx = [{}] * len(h) + [e.context for e in kept]
                    types = [e.event_type for e in kept]
                    h = np.concatenate([h, e_idx[keep]])
                    t = np.concatenate([t, np.array([e.timestamp for e in kept], np.float64)])
                elif u < 0 and q.user_id is not None and not self._allows_unknown_users():
                    raise UnknownQueryIdError(
                        f"unknown user id {q.user_id!r} and no history given: pass the user's recent "
                        "items as `history` to get recommendations for a new user", query=b, field="user_id")
            users.append(u)
            hists.append(h.astype(np.int64))
            htimes.append(t)
            hctx.append(ctx)
            prefix.append(known)
            htypes.append(types)
            ts.append(np.nan if q.timestamp is None else float(q.timestamp))
        return QueryBatch(
            users=np.asarray(users, dtype=np.int64),
            histories=hists,
            history_times=htimes,
            contexts=[dict(q.context) for q in queries],
            timestamps=np.asarray(ts, dtype=np.float64),
            history_contexts=hctx,
            texts=[q.text for q in queries],
            known_prefix=prefix,
            history_event_types=htypes,
        )

    def known_history(self, user: int) -> np.ndarray:
        assert self._hist_indptr is not None and self._hist_items is not None
        if user < 0 or user + 1 >= len(self._hist_indptr):
            return np.zeros(0, np.int64)
        return self._hist_items[self._hist_indptr[user] : self._hist_indptr[user + 1]]

    def known_history_events(self, user: int) -> list[tuple[str | None, dict[str, Any]]] | None:
        """The type and context of each event of :meth:`known_history` as this model reads them, or None
        when the model keeps no per-event inputs (an ID-only sequence model reads the items alone)."""
        return None

    def _allows_unknown_users(self) -> bool:
        """Unknown user ids fall back to the context/no-history path (documented cold-start policy)."""
        return True

    # ------------------------------------------------------------------ serving hooks
    def add_items(self, items: Any) -> np.ndarray:
        """Add catalogue items after training, from a pandas DataFrame indexed by (or with a column)
        ``item_id`` holding the schema's text/attribute fields; returns their dense indices.

        Only models that can score an item they never saw in training (from its text or attributes)
        override this; ID-only models cannot, and say so."""
        raise UnsupportedError(
            f"{type(self).__name__} ({self.kind!r}) scores items by their trained IDs only and cannot "
            "recommend items added after training; retrain with the new items, or serve a text-aware "
            "model such as 'fusion'"
        )

    def user_embeddings(self, batch: QueryBatch) -> np.ndarray:
        """``(B, D)`` user vectors such that ``user_embeddings(b) @ item_embeddings().T`` ranks items
        as ``_score`` does, for models whose score is such a dot product (used by approximate
        nearest-neighbour retrieval). Queries with an empty history may be scored differently
        (e.g. popularity): callers score those exactly."""
        raise UnsupportedError(f"{type(self).__name__} has no dot-product form; score it exactly")

    def item_embeddings(self) -> np.ndarray:
        """``(n_items, D)`` item vectors matching :meth:`user_embeddings`."""
        raise UnsupportedError(f"{type(self).__name__} has no dot-product form; score it exactly")

    # ------------------------------------------------------------------ user state (serving cache)
    def encode_state(self, batch: QueryBatch) -> np.ndarray:
        """``(B, ...)`` float32, per query: the part of its scoring that depends only on its history (items,
        their times, event types and contexts) and user id, never on the request's context, timestamp or
        text, so a service may keep it per (user, history version) and score each request with
        :meth:`score_from_state`. Default (context-blind dot-product models): the user vectors."""
        self._check_fitted()
        if not self.supports_state:
            raise UnsupportedError(f"{type(self).__name__} has no cacheable user state; score it with score()")
        return self.user_embeddings(batch)

    def score_from_state(self, state: np.ndarray, batch: QueryBatch) -> np.ndarray:
        """``score(batch)`` from ``state`` = the rows of ``encode_state`` for ``batch``'s queries (computed
        now or cached; equal up to float rounding). Default: ``state @ item_embeddings().T``, queries with
        an empty history scored by :meth:`score` (a dot-product model's fallback, e.g. popularity)."""
        self._check_fitted()
        scores = np.asarray(state, np.float32) @ np.asarray(self.item_embeddings(), np.float32).T  # (B, n_items)
        empty = [b for b, h in enumerate(batch.histories) if len(h) == 0]
        if empty:
            scores[empty] = self.score(batch.subset(empty))
        return scores

    def embed_from_state(self, state: np.ndarray, batch: QueryBatch) -> np.ndarray:
        """``(B, D)`` query vectors from ``state`` for approximate retrieval: ``embed_from_state(s, b) @
        item_embeddings().T`` ranks as :meth:`score_from_state` for queries with a history and no text.
        Default: the state itself (it is the user vector)."""
        return np.asarray(state, np.float32)

    def save(self, path: str | Path) -> None:
        """Write a self-describing folder: ``config.json``, ``model.safetensors``, ``vocab/*.json``."""
        from safetensors.numpy import save_file

        from ctxrec.training.checkpoint import write_safetensors

        self._check_fitted()
        assert self.item_vocab is not None and self.user_vocab is not None
        p = Path(path)
        (p / "vocab").mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "config": to_dict(self.config),
            "schema": to_dict(self.schema) if self.schema is not None else None,
            "fit_info": self.fit_info,
        }
        (p / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default) + "\n")
        self.item_vocab.save(p / "vocab" / "items.json")
        self.user_vocab.save(p / "vocab" / "users.json")
        (p / "items.json").write_text(json.dumps({"titles": self.item_titles}))
        (p / "state.json").write_text(json.dumps(self._meta(), indent=1, default=_json_default) + "\n")
        tensors = {f"state.{k}": np.ascontiguousarray(v) for k, v in self._state().items()}
        assert self._hist_indptr is not None and self._hist_items is not None
        tensors["history.indptr"] = self._hist_indptr
        tensors["history.items"] = self._hist_items
        write_safetensors(save_file, tensors, p / "model.safetensors")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild a model from a folder written by :meth:`save` (no pickle involved)."""
        from safetensors.numpy import load_file

        p = Path(path)
        meta = read_saved_config(p)
        if meta.get("kind") != cls.kind:
            raise ConfigError(f"{str(p)!r} holds a {meta.get('kind')!r} model, not {cls.kind!r}; use ctxrec.load_model")
        tensors = load_file(str(p / "model.safetensors"))
        model = cls.restore(p, meta, tensors)
        model._load_state({k[len("state.") :]: v for k, v in tensors.items() if k.startswith("state.")})
        return model

    @classmethod
    def restore(cls, folder: str | Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        """Everything of a saved model but its weights: config, vocabularies, schema, fit info, titles,
        JSON state, and the stored histories popped from ``arrays`` (the folder's safetensors). Used by
        :meth:`load` (which then loads the weights) and by the ONNX backend (whose weights are a graph)."""
        from ctxrec.data.dataset import ContextField, DatasetSchema

        p = Path(folder)
        model = cls(from_dict(cls.config_class, meta["config"]))
        model.item_vocab = Vocab.load(p / "vocab" / "items.json")
        model.user_vocab = Vocab.load(p / "vocab" / "users.json")
        if meta.get("schema"):
            s = dict(meta["schema"])
            s["context"] = tuple(ContextField(**c) for c in s.get("context", []))
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}
            model.schema = DatasetSchema(**fields)
        model.fit_info = meta.get("fit_info", {})
        if (p / "items.json").exists():
            model.item_titles = json.loads((p / "items.json").read_text()).get("titles", {})
        if (p / "state.json").exists():
            model._load_meta(json.loads((p / "state.json").read_text()))
        model._hist_indptr = arrays.pop("history.indptr")
        model._hist_items = arrays.pop("history.items")
        return model

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _fit(self, data: Dataset, *, valid: EvalSet | None, run_dir: Path | None) -> None:
        """Learn parameters from ``data`` (vocabularies are already set)."""

    @abstractmethod
    def _score(self, batch: QueryBatch) -> np.ndarray:
        """Scores ``(B, n_items)`` for every catalogue item; higher is better."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays that, with the config, fully determine the fitted model."""

    @abstractmethod
    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`_state`."""

    def _meta(self) -> dict[str, Any]:
        """JSON-able fitted state that is not an array (vocabularies of features, shapes)."""
        return {}

    def _load_meta(self, meta: dict[str, Any]) -> None:  # noqa: B027  (an optional hook: no meta, nothing to do)
        """Inverse of :meth:`_meta`; called before :meth:`_load_state`."""

    def _explain(self, batch: QueryBatch, top: np.ndarray) -> list[dict[str, Any] | None]:
        """Per query, what drove its top items ``top`` (B, k); ``None`` when the model cannot say."""
        return [None] * len(top)

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(data) or load(path) first")


@dataclass(frozen=True)
class ContextCheck:
    """A request context checked by :meth:`Recommender.check_context`."""

    context: dict[str, Any]
    """The context typed by the model's schema (categorical: str, numeric: float, missing: None)."""
    unknown_values: dict[str, str]
    """Categorical values never seen in training, by field: the model scores them as unknown."""
    unused_fields: list[str]
    """Fields of the training data that this model does not use."""
    used: bool
    """False when the model ignores request context altogether."""


def encoder_context_schema(encoder: ContextEncoder) -> dict[str, dict[str, Any]]:
    """:meth:`Recommender.context_schema` of a model that reads context through ``encoder``."""
    hashed = bool(encoder.config.hash_buckets)
    out: dict[str, dict[str, Any]] = {
        f: {"kind": "categorical", "values": None if hashed else sorted(encoder.vocabs[f])} for f in encoder.categorical}
    out.update({f: {"kind": "numeric", "values": None} for f in encoder.numeric})
    return out


def read_saved_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a saved model (or export) folder: kind, config, schema and fit info."""
    p = Path(folder)
    if not (p / "config.json").exists():
        raise FileNotFoundError(f"{str(p)!r} is not a saved ctxrec model: it has no config.json")
    meta: dict[str, Any] = json.loads((p / "config.json").read_text())
    return meta


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        f = float(o)
        return None if math.isnan(f) else f
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
