"""Events and queries -> the fusion network's tensors.

Every context the model reads -- a training event's, a history event's (from a frame, from per-event
dicts, or from the stored history of a known user) and a request's -- goes through one entry,
:func:`encode_context`, so an event's context is encoded the same way on every path.

A sequence is ``[BOS] + events``: BOS (item -1) carries no event and no context, and predicts the first
event, so an empty history (a new user) still has a state. Item indices are shifted by one (0 = padding).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from ctxrec.models.features import last_event_times, query_profiles
from ctxrec.models.fusion.context_head import anonymous_rows
from ctxrec.training.batching import length_bucketed_batches

if TYPE_CHECKING:
    from ctxrec.context import ContextEncoder
    from ctxrec.data.dataset import Dataset
    from ctxrec.models.fusion.config import FusionConfig
    from ctxrec.queries import QueryBatch

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # context ids (n, F'), dense (n, Dd), event type ids (n,)


class FusionInputs(Protocol):
    """What turning events and queries into tensors reads from a fitted fusion model."""

    config: FusionConfig
    ctx_encoder: ContextEncoder | None
    event_types: dict[str, int]
    user_profile: np.ndarray | None
    user_text_vectors: np.ndarray | None
    device: torch.device

    @property
    def context_as_text(self) -> bool: ...

    def context_text_ids(self, texts: list[str]) -> np.ndarray: ...

    def stored_event_inputs(self, user: int, hist: np.ndarray) -> Arrays | None: ...


# ------------------------------------------------------------------------------------ context
def encode_context(m: FusionInputs, prev: np.ndarray, *, frame: Any = None, rows: np.ndarray | None = None,
                   contexts: Sequence[Mapping[str, Any]] | None = None, times: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The one context encoding: ids (n, F [+1]) and dense features (n, Dd) of n events or requests, given
    as ``rows`` of ``frame`` or as ``contexts`` dicts with their ``times``; ``prev`` (n,) is the time of each
    one's previous event (NaN = none). With ``context.as_text`` the id of each rendered context (a row of
    the network's ``ctx_text_vectors``, new renderings encoded on the way) is the last id column."""
    enc = m.ctx_encoder
    assert enc is not None
    if frame is not None:
        assert rows is not None
        ids, dense = enc.encode_columns(frame, rows, prev)
        texts = enc.render_columns(frame, rows) if m.context_as_text else []
    else:
        assert contexts is not None
        ids, dense = enc.encode(list(contexts), times, prev)
        texts = enc.render(list(contexts)) if m.context_as_text else []
    if m.context_as_text:
        ids = np.concatenate([ids, m.context_text_ids(texts)[:, None]], 1)
    return ids, dense


def previous_times(times: np.ndarray) -> np.ndarray:
    """(n,) -> (n,) the time of each event's predecessor in one user's sequence (NaN for the first)."""
    return np.concatenate([[np.nan], times[:-1]]) if len(times) else times


def event_ids(event_types: dict[str, int], values: np.ndarray) -> np.ndarray:
    """Event-type ids (0 = unknown; all 0 when the data has a single event type)."""
    if not event_types:
        return np.zeros(len(values), dtype=np.int64)
    return np.fromiter((event_types.get(str(v), 0) for v in values), dtype=np.int64, count=len(values))


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainingEvents:
    """Every training event encoded once, rows in per-user order."""

    items: np.ndarray  # (N,) item index + 1
    ctx_ids: np.ndarray  # (N, F')
    ctx_dense: np.ndarray  # (N, Dd)
    events: np.ndarray  # (N,) event type ids
    offsets: np.ndarray  # (n_users + 1,) first row of each user
    users: list[int]  # users with at least one event


def training_events(m: FusionInputs, data: Dataset) -> TrainingEvents:
    order, offsets = data.row_order(), data.user_offsets()
    frame = data.interactions
    prev = previous_times(frame["timestamp"].to_numpy(dtype=np.float64)[order])
    starts = np.zeros(len(order), dtype=bool)
    starts[offsets[:-1][offsets[:-1] < len(order)]] = True
    prev[starts] = np.nan  # no previous event across users
    ctx_ids, ctx_dense = encode_context(m, prev, frame=frame, rows=order)
    return TrainingEvents(items=data.item_idx[order] + 1, ctx_ids=ctx_ids, ctx_dense=ctx_dense,
                          events=event_ids(m.event_types, frame["event_type"].to_numpy()[order]), offsets=offsets,
                          users=[u for u in range(data.n_users) if offsets[u + 1] > offsets[u]])


def training_batches(ev: TrainingEvents, batch_size: int, max_len: int, pool: int = 1
                     ) -> Callable[[np.random.Generator], Iterator[dict[str, torch.Tensor]]]:
    """Batches of users' last ``max_len`` events as targets, each predicted from the event before it (the
    user's first event from BOS) with its own context as the request context; which users share a batch:
    :mod:`ctxrec.training.batching` (``pool`` 1: random). CPU tensors: the training loop shards them across ranks, pins
    and copies them."""
    items, ctx_ids, ctx_dense, events, offsets = ev.items, ev.ctx_ids, ev.ctx_dense, ev.events, ev.offsets
    lengths = np.minimum(np.diff(offsets)[ev.users], max_len)

    def batches(rng: np.random.Generator) -> Iterator[dict[str, torch.Tensor]]:
        for chosen in length_bucketed_batches(lengths, batch_size, rng, pool):
            us = [ev.users[i] for i in chosen]
            sl = [np.arange(offsets[u], offsets[u + 1])[-max_len:] for u in us]  # target positions
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
                inp[b, :n] = items[prev_rows]
                inp_ev[b, :n], inp_ci[b, :n], inp_cd[b, :n] = events[prev_rows], ctx_ids[prev_rows], ctx_dense[prev_rows]
                if s[0] == offsets[u]:  # the user's first event is predicted from BOS (cold-start path)
                    inp[b, 0], inp_ev[b, 0], inp_ci[b, 0], inp_cd[b, 0] = -1, 0, 0, 0.0
            yield {
                "inp": torch.from_numpy(inp), "ev": torch.from_numpy(inp_ev),
                "ci": torch.from_numpy(inp_ci), "cd": torch.from_numpy(inp_cd),
                "rci": torch.from_numpy(req_ci), "rcd": torch.from_numpy(req_cd),
                "tgt": torch.from_numpy(tgt), "users": torch.from_numpy(np.asarray(us)),
            }

    return batches


# ------------------------------------------------------------------------------------ queries
def query_tensors(m: FusionInputs, batch: QueryBatch) -> dict[str, torch.Tensor]:
    """Queries -> padded tensors: [BOS] + last (max_len - 1) history events with their contexts (``inp``,
    ``ev``, ``ci``, ``cd``; (B, T[, .])), the request context (``rci``, ``rcd``), profile ids (``prof``),
    user-text vectors (``utext``, when the model has them) and sequence lengths (``len``, BOS included)."""
    return {**history_tensors(m, batch), **request_tensors(m, batch)}


def history_tensors(m: FusionInputs, batch: QueryBatch) -> dict[str, torch.Tensor]:
    """The history part of :func:`query_tensors` (``inp``, ``ev``, ``ci``, ``cd``, ``len``): all the
    Transformer reads, so all a cached user state depends on."""
    assert m.ctx_encoder is not None
    enc, L = m.ctx_encoder, m.config.max_len
    n_f, n_d = len(enc.field_names) + int(m.context_as_text), enc.n_dense
    seqs, evs, cis, cds = [], [], [], []
    from_frame = _frame_history_inputs(m, batch)
    for b, given in enumerate(batch.histories):
        hist = np.asarray(given, dtype=np.int64)
        keep = slice(max(0, len(hist) - (L - 1)), len(hist))  # the model reads the last max_len - 1 events
        if from_frame is not None:
            fci, fcd, fev = from_frame[b]
            ci, cd, ev = fci[keep], fcd[keep], fev[keep]
        else:  # only the kept events' contexts are encoded (a served history may be far longer than max_len)
            ci, cd, ev = _history_inputs(m, batch, b, hist, keep)
        seqs.append(np.concatenate([[-1], hist[keep] + 1]))
        evs.append(np.concatenate([[0], ev]))
        cis.append(np.concatenate([np.zeros((1, n_f), np.int64), ci]))
        cds.append(np.concatenate([np.zeros((1, n_d), np.float32), cd]))
    B, T = len(seqs), max(len(s) for s in seqs)
    inp = np.zeros((B, T), np.int64)
    ev_a = np.zeros((B, T), np.int64)
    ci_a = np.zeros((B, T, n_f), np.int64)
    cd_a = np.zeros((B, T, n_d), np.float32)
    for b in range(B):
        n = len(seqs[b])
        inp[b, :n], ev_a[b, :n], ci_a[b, :n], cd_a[b, :n] = seqs[b], evs[b], cis[b], cds[b]
    dev = m.device
    return {"inp": torch.from_numpy(inp).to(dev), "ev": torch.from_numpy(ev_a).to(dev),
            "ci": torch.from_numpy(ci_a).to(dev), "cd": torch.from_numpy(cd_a).to(dev),
            "len": torch.from_numpy(np.array([len(s) for s in seqs])).to(dev)}


def request_tensors(m: FusionInputs, batch: QueryBatch) -> dict[str, torch.Tensor]:
    """The request part of :func:`query_tensors`: context (``rci``, ``rcd``; its time features read the
    last history time), profile ids (``prof``) and user-text vectors (``utext``)."""
    assert m.user_profile is not None
    rci, rcd = encode_context(m, last_event_times(batch), contexts=batch.contexts, times=batch.timestamps)
    users = batch.users
    B = len(users)
    prof = query_profiles(m.user_profile, users)
    dev = m.device
    out = {"rci": torch.from_numpy(rci).to(dev), "rcd": torch.from_numpy(rcd).to(dev),
           "prof": torch.from_numpy(prof).to(dev)}
    if m.user_text_vectors is not None:
        known = users >= 0
        utext = np.zeros((B, m.user_text_vectors.shape[1]), np.float32)
        utext[known] = m.user_text_vectors[users[known]]
        out["utext"] = torch.from_numpy(utext).to(dev)
    return out


def _history_times(batch: QueryBatch, b: int, n: int) -> np.ndarray:
    return np.asarray(batch.history_times[b], dtype=np.float64) if len(batch.history_times) > b else np.full(n, np.nan)


def _frame_history_inputs(m: FusionInputs, batch: QueryBatch) -> list[Arrays] | None:
    """The evaluation path (history given as rows of a frame), vectorised over the whole batch: a
    per-query column conversion costs O(rows in the frame) each time and dominated evaluation."""
    if batch.history_rows is None or batch.frame is None:
        return None
    rows = [np.asarray(r, dtype=np.int64) for r in batch.history_rows]
    prev = [previous_times(_history_times(batch, b, len(r))) for b, r in enumerate(rows)]
    all_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    ci, cd = encode_context(m, np.concatenate(prev) if prev else np.zeros(0), frame=batch.frame, rows=all_rows)
    ev = event_ids(m.event_types, batch.frame["event_type"].to_numpy()[all_rows])
    cuts = np.cumsum([len(r) for r in rows])[:-1]
    return list(zip(np.split(ci, cuts), np.split(cd, cuts), np.split(ev, cuts), strict=True))


def _history_inputs(m: FusionInputs, batch: QueryBatch, b: int, hist: np.ndarray, keep: slice) -> Arrays:
    """Context ids/dense and event ids of the history events ``hist[keep]`` of query ``b`` (a served
    request). The user's trained events (``batch.known_prefix``) read the inputs stored at training, as
    they did then; the events after them read their own contexts and event types (an event store's),
    else unknown. Time gaps are taken against the full history (the first kept event's gap is to the
    one before; the first event after the trained ones has an unknown gap: their times are not kept)."""
    hc = batch.history_contexts[b] if batch.history_contexts is not None else None
    if batch.known_prefix is not None:
        known = min(batch.known_prefix[b], len(hist))
    else:  # a batch built by hand: the stored inputs apply when the whole history is the known one
        known = len(hist) if hc is None else 0
    stored = m.stored_event_inputs(int(batch.users[b]), hist[:known]) if known else None
    lo, hi = keep.start, keep.stop
    split = max(lo, known) if stored is not None else lo
    parts: list[Arrays] = []
    if stored is not None and split > lo:
        parts.append((stored[0][lo:split], stored[1][lo:split], stored[2][lo:split]))
    if hi > split or not parts:
        times = _history_times(batch, b, len(hist))
        contexts = list(hc)[split:hi] if hc is not None else [{}] * (hi - split)
        ci, cd = encode_context(m, previous_times(times)[split:hi], contexts=contexts, times=times[split:hi])
        types = batch.history_event_types[b] if batch.history_event_types is not None else None
        after = batch.known_prefix[b] if batch.known_prefix is not None else 0  # types start after the trained events
        ev = np.zeros(hi - split, np.int64)
        first = max(split, after)
        if types is not None and hi > first:
            ev[first - split:] = event_ids(m.event_types, np.asarray(list(types)[first - after:hi - after], dtype=object))
        parts.append((ci, cd, ev))
    if len(parts) == 1:
        return parts[0]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def decode_event_inputs(m: FusionInputs, stored: Arrays) -> list[tuple[str | None, dict[str, Any]]]:
    """Each event's type (None: unknown, or a model trained on one type) and context back from the
    stored inputs (:meth:`~ctxrec.context.ContextEncoder.decode`; their times are not kept)."""
    ci, cd, ev = stored
    names = {i: t for t, i in m.event_types.items()}
    contexts = m.ctx_encoder.decode(ci, cd) if m.ctx_encoder is not None else [{} for _ in range(len(ev))]
    return [(names.get(e), c) for e, c in zip(ev.tolist(), contexts, strict=True)]


# ------------------------------------------------------------------------------------ context prior
def prior_training_inputs(m: FusionInputs, data: Dataset, ev: TrainingEvents) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The context head's training cases: every training event's context as a request with no history
    (no previous event, as an anonymous request has none) and its item + 1."""
    ctx_ids, ctx_dense = ev.ctx_ids, ev.ctx_dense
    assert m.ctx_encoder is not None
    if m.ctx_encoder.use_time:  # the time-gap feature must read "no previous event", as it will at request time
        order = data.row_order()
        ctx_ids, ctx_dense = encode_context(m, np.full(len(order), np.nan), frame=data.interactions, rows=order)
    return ctx_ids, ctx_dense, ev.items


def prior_cases(m: FusionInputs, cases: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation cases (``EvalSet``) as context-only requests: request context ids, dense and first target + 1."""
    n = len(cases.users)
    ids, dense = encode_context(m, np.full(n, np.nan), contexts=cases.contexts, times=cases.timestamps)
    return ids, dense, np.array([int(t[0]) + 1 for t in cases.targets], dtype=np.int64)


def anonymous_requests(m: FusionInputs, batch: QueryBatch, *, always: bool = False,
                       requests: dict[str, torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The rows of a batch that give nothing but a context (:func:`~ctxrec.models.fusion.context_head.anonymous_rows`
    on what the network would read: history length, profile ids, user-text vector, text query) and the
    request contexts ``(anonymous (B,), rci, rcd)``; None when no row is anonymous, unless ``always``.
    ``requests``: the batch's :func:`request_tensors` when already built (not encoded twice)."""
    r = request_tensors(m, batch) if requests is None else requests
    dev = m.device
    lengths = torch.tensor([1 + len(h) for h in batch.histories], device=dev)
    texts = batch.texts or []
    has_query = torch.tensor([bool(texts[b]) if b < len(texts) else False for b in range(len(lengths))], device=dev)
    anon = anonymous_rows(lengths, r["prof"], r.get("utext"), has_query)
    if not always and not bool(anon.any()):
        return None
    return anon, r["rci"], r["rcd"]
