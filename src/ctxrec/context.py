"""Context encoders: turn raw context values into model inputs, per event and at request time.

* categorical fields: a vocabulary fitted on training events (id 0 = unknown/missing, so unseen
  values at request time are safe), or feature hashing into ``hash_buckets`` ids;
* numeric fields: standardised value plus an equal-frequency bucket id (bucket 0 = missing);
* time: hour-of-day and weekday as cyclic (sin, cos) features and log time since the previous event,
  from Unix timestamps (zeros and a "known" flag of 0 when the timestamp is missing);
* text: ``render_text`` writes the context as "daypart: evening; device: tv" for a language model, so
  values never seen in training still get sensible vectors.

The fitted encoder is plain JSON (``to_dict`` / ``from_dict``), saved beside the model weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ctxrec.errors import ConfigError

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset

N_TIME_FEATURES = 6  # sin/cos hour, sin/cos weekday, log1p(gap hours), known flag
MISSING = {"", "nan", "none", "na", "<unk>", "null"}


@dataclass(frozen=True, kw_only=True)
class ContextConfig:
    """Which context to encode and how."""

    fields: tuple[str, ...] | None = None
    """Context columns to use (``None`` = every context field of the dataset schema)."""
    time_features: bool = True
    """Hour-of-day / weekday / time-gap features from timestamps, where the data has them."""
    hash_buckets: int = 0
    """0 = a vocabulary per categorical field; > 0 = hash values into this many ids per field."""
    numeric_buckets: int = 8
    min_count: int = 1
    """Categorical values seen fewer times in training map to the unknown id."""
    as_text: bool = False
    """Also render each context as text ("Location: Berlin; Weather: rainy") for the language model, so
    values never seen in training (a new city, a free-text note) still get a meaningful vector."""


def is_missing(v: Any) -> bool:
    """True for None, NaN and the missing-value tokens in MISSING (a missing value is never a category)."""
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    return str(v).strip().lower() in MISSING


def _stable_hash(field: str, value: str, buckets: int) -> int:
    h = hashlib.blake2b(f"{field}={value}".encode(), digest_size=8).digest()
    return 1 + int.from_bytes(h, "little") % buckets  # 0 stays "unknown"


class ContextEncoder:
    """Fitted on a training Dataset; encodes contexts (dicts or frame columns) into ids and floats."""

    def __init__(self, config: ContextConfig | None = None) -> None:
        self.config = config or ContextConfig()
        self.categorical: list[str] = []
        self.numeric: list[str] = []
        self.vocabs: dict[str, dict[str, int]] = {}
        self.num_stats: dict[str, dict[str, Any]] = {}
        self.use_time = False

    # ----------------------------------------------------------------------------- fitting
    def fit(self, data: Dataset) -> ContextEncoder:
        fields = {c.name: c.kind for c in data.schema.context}
        wanted = self.config.fields if self.config.fields is not None else tuple(fields)
        unknown = [f for f in wanted if f not in fields]
        if unknown:
            raise ConfigError(f"context fields {unknown} are not in dataset {data.name!r}; it has {sorted(fields)}")
        self.categorical = [f for f in wanted if fields[f] == "categorical"]
        self.numeric = [f for f in wanted if fields[f] == "numeric"]
        frame = data.interactions
        for f in self.categorical:
            if self.config.hash_buckets:
                continue
            counts = frame[f].astype(str).value_counts()
            values = sorted(v for v, c in counts.items() if c >= self.config.min_count and not is_missing(v))
            self.vocabs[f] = {v: i + 1 for i, v in enumerate(values)}
        for f in self.numeric:
            x = frame[f].to_numpy(dtype=np.float64)
            x = x[~np.isnan(x)]
            if not len(x):
                x = np.zeros(1)
            edges = np.unique(np.quantile(x, np.linspace(0, 1, self.config.numeric_buckets + 1)[1:-1]))
            self.num_stats[f] = {"mean": float(x.mean()), "std": float(x.std() or 1.0), "edges": edges.tolist()}
        ts = frame["timestamp"].to_numpy(dtype=np.float64)
        self.use_time = bool(self.config.time_features and np.isfinite(ts).any())
        return self

    # ----------------------------------------------------------------------------- sizes
    @property
    def cardinalities(self) -> list[int]:
        """Number of ids per categorical field (including id 0 = unknown), then per numeric bucket field."""
        cats = [(self.config.hash_buckets or len(self.vocabs[f])) + 1 for f in self.categorical]
        return cats + [len(self.num_stats[f]["edges"]) + 2 for f in self.numeric]

    @property
    def n_dense(self) -> int:
        return len(self.numeric) + (N_TIME_FEATURES if self.use_time else 0)

    @property
    def field_names(self) -> list[str]:
        return [*self.categorical, *self.numeric]

    # ----------------------------------------------------------------------------- encoding
    def encode(self, contexts: Sequence[Mapping[str, Any]] | None, timestamps: np.ndarray | None = None,
               prev_timestamps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Ids ``(n, n_fields)`` int64 and dense features ``(n, n_dense)`` float32.

        ``contexts`` are dicts (missing keys = unknown). ``timestamps``/``prev_timestamps`` (n,) are
        Unix seconds (NaN = unknown) for the time features.
        """
        n = len(contexts) if contexts is not None else (len(timestamps) if timestamps is not None else 0)
        ids = np.zeros((n, len(self.field_names)), dtype=np.int64)
        dense = np.zeros((n, self.n_dense), dtype=np.float32)
        if contexts is not None:
            for j, f in enumerate(self.categorical):
                ids[:, j] = self._cat_ids(f, [c.get(f) for c in contexts])
            for k, f in enumerate(self.numeric):
                vals = np.array([_to_float(c.get(f)) for c in contexts], dtype=np.float64)
                ids[:, len(self.categorical) + k], dense[:, k] = self._num(f, vals)
        if self.use_time and timestamps is not None:
            dense[:, len(self.numeric):] = time_features(timestamps, prev_timestamps)
        return ids, dense

    def encode_columns(self, frame: Any, rows: np.ndarray, prev_ts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`encode` over rows of an interactions frame (training time)."""
        n = len(rows)
        ids = np.zeros((n, len(self.field_names)), dtype=np.int64)
        dense = np.zeros((n, self.n_dense), dtype=np.float32)
        for j, f in enumerate(self.categorical):
            col = frame[f].to_numpy()[rows].astype(str)
            if self.config.hash_buckets:
                uniq, inv = np.unique(col, return_inverse=True)
                mapped = np.array([0 if is_missing(u) else _stable_hash(f, u, self.config.hash_buckets) for u in uniq])
            else:
                uniq, inv = np.unique(col, return_inverse=True)
                mapped = np.array([self.vocabs[f].get(u, 0) for u in uniq])
            ids[:, j] = mapped[inv] if len(uniq) else 0
        for k, f in enumerate(self.numeric):
            vals = frame[f].to_numpy(dtype=np.float64)[rows]
            ids[:, len(self.categorical) + k], dense[:, k] = self._num(f, vals)
        if self.use_time:
            ts = frame["timestamp"].to_numpy(dtype=np.float64)[rows]
            dense[:, len(self.numeric):] = time_features(ts, prev_ts)
        return ids, dense

    def decode(self, ids: np.ndarray, dense: np.ndarray) -> list[dict[str, Any]]:
        """Contexts back from :meth:`encode`'s ``ids`` and ``dense``, to show what a model read: a categorical
        value as the vocabulary holds it (a string), a numeric one to 6 significant digits (it is kept
        standardised in float32); missing and unknown values, and every field of a hashed encoding (a hash
        cannot be read back), are left out."""
        out: list[dict[str, Any]] = [{} for _ in range(len(ids))]
        if not self.config.hash_buckets:
            for j, f in enumerate(self.categorical):
                names = {i: v for v, i in self.vocabs[f].items()}
                for r, i in enumerate(ids[:, j].tolist()):
                    if i in names:
                        out[r][f] = names[i]
        for k, f in enumerate(self.numeric):
            st, col = self.num_stats[f], len(self.categorical) + k
            for r in np.flatnonzero(ids[:, col] != 0).tolist():  # bucket 0: missing
                out[r][f] = float(f"{float(dense[r, k]) * st['std'] + st['mean']:.6g}")
        return out

    def _cat_ids(self, field: str, values: list[Any]) -> list[int]:
        """:meth:`_cat_id` of each value, each distinct value looked up once (a served history repeats a
        few devices and dayparts). Keyed by type too: ``True``, ``1`` and ``1.0`` are different categories."""
        memo: dict[tuple[type, Any], int] = {}
        out = []
        for v in values:
            try:
                key = (type(v), v)
                i = memo.get(key)
                if i is None:
                    i = memo[key] = self._cat_id(field, v)
            except TypeError:  # an unhashable value (a list): no memo
                i = self._cat_id(field, v)
            out.append(i)
        return out

    def _cat_id(self, field: str, value: Any) -> int:
        if is_missing(value):
            return 0
        if self.config.hash_buckets:
            return _stable_hash(field, str(value), self.config.hash_buckets)
        return self.vocabs[field].get(str(value), 0)

    def _num(self, field: str, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        st = self.num_stats[field]
        missing = np.isnan(vals)
        bucket = np.where(missing, 0, 1 + np.searchsorted(np.asarray(st["edges"]), np.nan_to_num(vals)))
        z = np.where(missing, 0.0, (np.nan_to_num(vals) - st["mean"]) / st["std"]).astype(np.float32)
        return bucket, z

    def render(self, contexts: Sequence[Mapping[str, Any]]) -> list[str]:
        """The encoder's fields of each context as text (see :meth:`render_text`)."""
        fields = self.field_names
        return [self.render_text({f: c.get(f) for f in fields}) for c in contexts]

    def render_columns(self, frame: Any, rows: np.ndarray) -> list[str]:
        """Vectorised :meth:`render` over rows of an interactions frame."""
        out = np.full(len(rows), "", dtype=object)
        for f in self.field_names:
            col = frame[f].to_numpy()[rows]
            keep = np.array([not is_missing(v) for v in col], dtype=bool)
            part = np.array([f"{f}: {v}" for v in col], dtype=object)
            sep = np.where((out != "") & keep, "; ", "")
            out = np.where(keep, out + sep + part, out)
        return out.tolist()

    @staticmethod
    def render_text(context: Mapping[str, Any]) -> str:
        """Context as text for a language model: "daypart: evening; device: tv" (missing values skipped)."""
        return "; ".join(f"{k}: {v}" for k, v in context.items() if not is_missing(v))

    # ----------------------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        from ctxrec.config import to_dict

        return {"config": to_dict(self.config), "categorical": self.categorical, "numeric": self.numeric,
                "vocabs": self.vocabs, "num_stats": self.num_stats, "use_time": self.use_time}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContextEncoder:
        from ctxrec.config import from_dict

        enc = cls(from_dict(ContextConfig, dict(d["config"])))
        enc.categorical, enc.numeric = list(d["categorical"]), list(d["numeric"])
        enc.vocabs = {k: dict(v) for k, v in d["vocabs"].items()}
        enc.num_stats, enc.use_time = dict(d["num_stats"]), bool(d["use_time"])
        return enc


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def time_features(ts: np.ndarray, prev_ts: np.ndarray | None = None) -> np.ndarray:
    """(n, 6): sin/cos of hour-of-day, sin/cos of weekday, log1p(hours since previous event), known flag.

    Uses UTC. Unknown timestamps give all-zero rows (known flag 0)."""
    ts = np.asarray(ts, dtype=np.float64)
    known = np.isfinite(ts)
    t = np.where(known, ts, 0.0)
    hour = (t % 86_400) / 3600.0
    weekday = ((t // 86_400) + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    out = np.zeros((len(ts), N_TIME_FEATURES), dtype=np.float32)
    out[:, 0] = np.sin(2 * np.pi * hour / 24)
    out[:, 1] = np.cos(2 * np.pi * hour / 24)
    out[:, 2] = np.sin(2 * np.pi * weekday / 7)
    out[:, 3] = np.cos(2 * np.pi * weekday / 7)
    if prev_ts is not None:
        prev = np.asarray(prev_ts, dtype=np.float64)
        ok = np.isfinite(prev) & known
        gap = np.where(ok, np.maximum(t - np.where(ok, prev, 0.0), 0.0) / 3600.0, 0.0)
        out[:, 4] = np.log1p(gap)
    out[:, 5] = 1.0
    out[~known] = 0.0
    return out
