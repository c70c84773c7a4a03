"""Deterministic evaluation splits: leave-one-out, global temporal, and a seeded random holdout.

An :class:`EvalSet` holds one case per (user, held-out window): the history the model may see (items
strictly before the target, oldest first), the target item(s), and the context and time of the first
target event. Evaluation never shows a model anything at or after the target.

Leave-one-out needs each user's events in the order they happened. When timestamps do not give that
order (missing, or one value for all of a user's events), it uses the file's order only if the dataset
says the file is in event order (``DatasetSchema.order == "file"``; ``order = "file"`` in a mapping) and
refuses otherwise; :func:`random_holdout` needs no order. :func:`target_support` measures how many
targets no other user has in train, the symptom of a wrong order.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ctxrec.data.dataset import Columns, Dataset

if TYPE_CHECKING:
    import pandas as pd
from ctxrec.errors import DataError


@dataclass
class EvalSet:
    """Evaluation cases, aligned lists/arrays of length ``n``."""

    users: np.ndarray  # (n,) int64 dense user index
    histories: list[np.ndarray]  # n x (L_i,) int64 item index, oldest first
    history_times: list[np.ndarray]  # n x (L_i,) float64 unix seconds (NaN where unknown)
    targets: list[np.ndarray]  # n x (T_i,) int64, T_i >= 1
    contexts: list[Mapping[str, Any]]  # context of the (first) target event
    timestamps: np.ndarray  # (n,) float64 time of the (first) target event
    history_rows: list[np.ndarray] | None = None  # n x (L_i,) rows of `frame` behind each history item
    frame: pd.DataFrame | None = None  # the source interactions (for per-event context of histories)

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray | list[int]) -> EvalSet:
        idx = np.asarray(idx, dtype=np.int64)
        return EvalSet(
            users=self.users[idx],
            histories=[self.histories[i] for i in idx],
            history_times=[self.history_times[i] for i in idx],
            targets=[self.targets[i] for i in idx],
            contexts=[self.contexts[i] for i in idx],
            timestamps=self.timestamps[idx],
            history_rows=None if self.history_rows is None else [self.history_rows[i] for i in idx],
            frame=self.frame,
        )


@dataclass
class Split:
    """A train dataset (same vocabularies as the full one) and validation/test cases."""

    name: str
    train: Dataset
    valid: EvalSet
    test: EvalSet


def _user_rows(data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    order = data.row_order()
    return order, data.user_offsets()


def _context_of(data: Dataset, row: int) -> dict[str, Any]:
    names = data.schema.context_names
    if not names:
        return {}
    rec = data.interactions.iloc[row]
    return {n: rec[n] for n in names}


def leave_one_out(data: Dataset, *, min_events: int = 3) -> Split:
    """Per user, in event order: last event = test, second-to-last = validation, the rest = train.

    Users with fewer than ``min_events`` events keep all their events in train and get no eval case
    (the SASRec convention). Deterministic: no randomness is involved.
    """
    if min_events < 2:  # one event cannot be both the validation and the test target
        raise DataError(f"leave-one-out needs min_events >= 2 (a validation and a test event), got {min_events}")
    if data.schema.order == "time":
        order, offsets = _user_rows(data)
        _require_time_order(data, order, offsets, min_events)

    def last_two(u: int, rows: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
        n = len(rows)
        return n - 2, n - 1, rows[: n - 2], rows[: n - 1]

    return _holdout(data, min_events, "leave-one-out", "leave-one-out", last_two)


def _holdout(data: Dataset, min_events: int, name: str, what: str,
             choose: Callable[[int, np.ndarray], tuple[int, int, np.ndarray, np.ndarray]]) -> Split:
    """Per user with ``min_events``+ events (rows in event order), ``choose(u, rows)`` gives the
    positions of the validation and test targets and the rows of each one's history; both targets
    leave train. Shared by leave-one-out and the random holdout."""
    order, offsets = _user_rows(data)
    times = data.interactions[Columns.TIME].to_numpy()
    ctx_cols = data.schema.context_names
    ctx_frame = data.interactions[list(ctx_cols)] if ctx_cols else None
    train_mask = np.ones(data.n_events, dtype=bool)
    v: dict[str, list[Any]] = {k: [] for k in ("u", "h", "ht", "t", "c", "ts", "hr")}
    te: dict[str, list[Any]] = {k: [] for k in ("u", "h", "ht", "t", "c", "ts", "hr")}
    for u in range(data.n_users):
        rows = order[offsets[u] : offsets[u + 1]]
        if len(rows) < min_events:
            continue
        valid_pos, test_pos, valid_hist, test_hist = choose(u, rows)
        train_mask[rows[[valid_pos, test_pos]]] = False
        for bucket, pos, hist in ((v, valid_pos, valid_hist), (te, test_pos, test_hist)):
            bucket["u"].append(u)
            bucket["h"].append(data.item_idx[hist])
            bucket["ht"].append(times[hist])
            bucket["hr"].append(hist.copy())
            bucket["t"].append(data.item_idx[rows[pos : pos + 1]])
            bucket["c"].append(ctx_frame.iloc[rows[pos]].to_dict() if ctx_frame is not None else {})
            bucket["ts"].append(times[rows[pos]])
    if not te["u"]:
        raise DataError(f"dataset {data.name!r}: no user has {min_events} or more events, so {what} is empty")
    return Split(
        name=name,
        train=data.subset(train_mask, name=f"{data.name}/train"),
        valid=_evalset(v, data.interactions),
        test=_evalset(te, data.interactions),
    )


def _require_time_order(data: Dataset, order: np.ndarray, offsets: np.ndarray, min_events: int) -> None:
    """Refuse when timestamps do not order the events that leave-one-out holds out."""
    times = data.interactions[Columns.TIME].to_numpy()
    unknown = int(np.isnan(times).sum())
    if unknown == len(times):
        why = "the log has no timestamps"
    elif unknown:
        why = f"{unknown:,} of {len(times):,} events have no timestamp, so events are kept in file order"
    else:
        sizes = np.diff(offsets)
        users = np.flatnonzero(sizes >= min_events)
        # Each user's events are sorted by time, so one timestamp for all of them = first equals last.
        flat = users[times[order[offsets[users]]] == times[order[offsets[users + 1] - 1]]]
        if not len(flat):
            return
        first = data.user_vocab.ids[int(flat[0])]
        why = (f"{len(flat):,} of {len(users):,} users with {min_events}+ events have one timestamp for all their "
               f"events (e.g. user {first!r})")
    raise DataError(
        f"dataset {data.name!r}: leave-one-out holds out each user's last events, but {why}, so 'last' would "
        "mean last in the file. If the file lists each user's events in the order they happened, add "
        "order = \"file\" to the mapping; otherwise use split = \"random\" (a seeded random holdout per user, "
        "e.g. ctxrec train --split random)"
    )


def random_holdout(data: Dataset, *, min_events: int = 3, seed: int = 0) -> Split:
    """Per user, one random event = test, another = validation, the rest = train; for logs without a
    trustworthy event order. Each case's history is the user's other events (the test history includes
    the validation event, as in leave-one-out), in event order.

    Seeded per user (``seed`` and the user id), so a user's holdout does not change when other users are
    added or removed. Users with fewer than ``min_events`` events stay in train without a case.
    """
    if min_events < 2:
        raise DataError(f"the random holdout needs min_events >= 2 (a validation and a test event), got {min_events}")
    def two_random(u: int, rows: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, zlib.crc32(data.user_vocab.ids[u].encode())])
        test_pos, valid_pos = (int(p) for p in rng.choice(len(rows), size=2, replace=False))
        valid_seen, test_seen = np.ones(len(rows), dtype=bool), np.ones(len(rows), dtype=bool)
        valid_seen[[valid_pos, test_pos]] = False  # the test history includes the validation event
        test_seen[test_pos] = False
        return valid_pos, test_pos, rows[valid_seen], rows[test_seen]

    return _holdout(data, min_events, "random", "the random holdout", two_random)


def temporal(data: Dataset, *, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Global time split: the last ``test_frac`` of events (by timestamp) are test, the
    ``valid_frac`` before them validation. Each user with events in a window gets one case whose
    targets are all their items in that window and whose history is all their events before it."""
    times = data.interactions[Columns.TIME].to_numpy()
    if np.isnan(times).any():
        raise DataError(
            f"dataset {data.name!r} has {int(np.isnan(times).sum())} events without a timestamp; "
            "a temporal split needs timestamps on every event (use leave-one-out instead)"
        )
    if not (0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1):
        raise DataError(f"temporal split fractions must be in (0, 1) and sum below 1, got {valid_frac}, {test_frac}")
    t_valid = float(np.quantile(times, 1 - valid_frac - test_frac))
    t_test = float(np.quantile(times, 1 - test_frac))
    order, offsets = _user_rows(data)
    ctx_cols = data.schema.context_names
    ctx_frame = data.interactions[list(ctx_cols)] if ctx_cols else None
    buckets: list[dict[str, list[Any]]] = [{k: [] for k in ("u", "h", "ht", "t", "c", "ts", "hr")} for _ in range(2)]
    for u in range(data.n_users):
        rows = order[offsets[u] : offsets[u + 1]]
        ts = times[rows]
        items = data.item_idx[rows]
        for bucket, lo, hi in ((buckets[0], t_valid, t_test), (buckets[1], t_test, np.inf)):
            in_win = (ts >= lo) & (ts < hi)
            before = ts < lo
            if not in_win.any() or not before.any():
                continue
            first = int(np.flatnonzero(in_win)[0])
            bucket["u"].append(u)
            bucket["h"].append(items[before].copy())
            bucket["ht"].append(ts[before].copy())
            bucket["hr"].append(rows[before].copy())
            bucket["t"].append(np.unique(items[in_win]))
            bucket["c"].append(ctx_frame.iloc[rows[first]].to_dict() if ctx_frame is not None else {})
            bucket["ts"].append(ts[first])
    train_mask = times < t_valid
    return Split(
        name="temporal",
        train=data.subset(train_mask, name=f"{data.name}/train"),
        valid=_evalset(buckets[0], data.interactions),
        test=_evalset(buckets[1], data.interactions),
    )


def _evalset(b: dict[str, list[Any]], frame: pd.DataFrame) -> EvalSet:
    return EvalSet(
        users=np.asarray(b["u"], dtype=np.int64),
        histories=b["h"],
        history_times=b["ht"],
        targets=b["t"],
        contexts=b["c"],
        timestamps=np.asarray(b["ts"], dtype=np.float64),
        history_rows=b["hr"],
        frame=frame,
    )


SPLITS: dict[str, Callable[[Dataset], Split]] = {"leave-one-out": leave_one_out, "temporal": temporal, "random": random_holdout}


def make_split(data: Dataset, name: str) -> Split:
    """Split by name (``leave-one-out``, ``temporal`` or ``random``)."""
    try:
        fn = SPLITS[name]
    except KeyError:
        raise DataError(f"unknown split {name!r}; choose one of {sorted(SPLITS)}") from None
    return fn(data)


@dataclass(frozen=True)
class TargetSupport:
    """How many test targets are items that no other user has in train (see :func:`target_support`)."""

    cases: int
    """Test (case, target item) pairs."""
    unsupported: int
    """Pairs whose item no train event of another user has."""
    warning: str | None
    """A sentence for ``data info`` when the share is above the threshold, else None."""

    @property
    def share(self) -> float:
        return self.unsupported / self.cases if self.cases else 0.0


def target_support(split: Split, *, warn_above: float = 0.3) -> TargetSupport:
    """Share of test targets whose item no *other* user has in train.

    A model that learns from other users cannot rank such an item; a high share (the artist log sorted
    by artist id within each user had 62%) usually means the held-out events are not the real last ones.
    """
    train = split.train
    n_items = max(train.n_items, 1)
    pairs = np.unique(train.user_idx.astype(np.int64) * n_items + train.item_idx)  # distinct (user, item)
    users_per_item = np.bincount(pairs % n_items, minlength=n_items)
    case_users = np.concatenate([np.full(len(t), u, dtype=np.int64) for u, t in zip(split.test.users, split.test.targets,
                                                                                   strict=True)] or [np.zeros(0, np.int64)])
    case_items = np.concatenate([np.asarray(t, dtype=np.int64) for t in split.test.targets] or [np.zeros(0, np.int64)])
    own = np.isin(case_users * n_items + case_items, pairs)  # the user has the item in train too
    others = users_per_item[case_items] - own
    unsupported = int((others == 0).sum())
    cases = len(case_items)
    warning = None
    if cases and unsupported / cases > warn_above:
        warning = (
            f"{unsupported / cases:.0%} of the test targets ({unsupported:,} of {cases:,}) are items no other user "
            f"has in train, so models that learn from other users cannot rank them and metrics will be near 0. "
            "This usually means the held-out events are not each user's real last ones (a file sorted by item "
            "within user, constant timestamps): check the order, or use split = \"random\""
        )
    return TargetSupport(cases=cases, unsupported=unsupported, warning=warning)
