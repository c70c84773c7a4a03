"""Model lifecycle: fold the stored events into a new model version, evaluate it, decide promotion.

Policy (``ctxrec retrain``; docs/serving.md):

1. Data = the run's training dataset + every event in the store (events of unknown items are
   dropped and counted; items added through the API are part of the catalogue), with each user's
   *last stored event held out* for evaluation.
2. Warm start: the new model starts from the current weights (``fit(warm_start=...)``, a training
   loop ``TrainState``) and reads the data with the current model's encoders (``encoders_from``: a context
   value or event type first seen in the new events is unknown to it, as it is when served), and trains
   ``epochs`` more epochs; models without a warm start (non-neural, or weights that still do not fit) are
   refit from scratch for the current version's best epoch count. The report says which happened.
3. Evaluation: leave-one-out on the held-out new events (HR@10 / NDCG@10, full ranking, history =
   everything before the held-out event), for the current and the new model on the same cases.
4. Promotion: the new version is promoted when its NDCG@10 is at least the current one's minus
   ``tolerance`` (default 0); ``serving.json`` in the new run folder records the decision, the
   version name and the event watermark (events folded in), which the service reports as event lag.
   A promoted run is switched to with ``POST /v1/admin/model`` (``--promote URL`` does it) on any replica;
   the store records it and every other replica over the same store follows (serving/sync.py).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def _cases(events: list[Any], known_history: Any) -> tuple[list[Any], list[str]]:
    """Per user with stored events: the query before their last event, and that event's item."""
    from ctxrec.models.base import RecQuery

    by_user: dict[str, list[Any]] = {}
    for e in events:
        by_user.setdefault(e.user_id, []).append(e)
    queries, targets = [], []
    for user, evs in by_user.items():
        evs.sort(key=lambda e: (e.timestamp, e.id))
        *before, last = evs
        base = known_history(user)
        hist = base + [e.item_id for e in before]
        ctxs = [{}] * len(base) + [e.context for e in before]
        times = [math.nan] * len(base) + [e.timestamp for e in before]
        queries.append(RecQuery(history=hist, history_timestamps=times, history_contexts=ctxs, context=last.context,
                                timestamp=last.timestamp))
        targets.append(last.item_id)
    return queries, targets


def evaluate_cases(model: Any, queries: list[Any], targets: list[str], k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of ``model`` on the held-out events (full ranking; seen items excluded unless the
    model's users take items again, :attr:`~ctxrec.models.base.Recommender.keeps_seen`)."""
    if not queries:
        return {"hr@10": float("nan"), "ndcg@10": float("nan"), "cases": 0}
    vocab = model.item_vocab
    hits, gains = [], []
    for s in range(0, len(queries), 256):
        qs = list(queries[s : s + 256])
        # items the model does not know (added after it was trained) cannot be in its history
        qs = [_known(q, vocab) for q in qs]
        for rec, t in zip(model.recommend(qs, k=k), targets[s : s + 256], strict=True):
            rank = rec.item_ids.index(t) if t in rec.item_ids else -1
            hits.append(rank >= 0)
            gains.append(1.0 / math.log2(rank + 2) if rank >= 0 else 0.0)
    return {"hr@10": float(np.mean(hits)), "ndcg@10": float(np.mean(gains)), "cases": len(queries)}


def should_promote(current: dict[str, float], candidate: dict[str, float], tolerance: float = 0.0) -> bool:
    """The promotion rule: the candidate's NDCG@10 on the held-out events is at least the current
    model's minus ``tolerance``. With no held-out events there is nothing to compare, and the candidate
    (which has folded in more events) is promoted."""
    return bool(candidate["cases"] == 0 or candidate["ndcg@10"] >= current["ndcg@10"] - tolerance)


def _known(q: Any, vocab: Any) -> Any:
    from dataclasses import replace

    keep = [i for i, x in enumerate(q.history) if x in vocab]
    if len(keep) == len(q.history):
        return q
    return replace(q, history=[q.history[i] for i in keep], history_timestamps=[q.history_timestamps[i] for i in keep],
                   history_contexts=[q.history_contexts[i] for i in keep])


def retrain(run_dir: str | Path, store_url: str, out: str | Path, *, epochs: int = 3, data_dir: str | None = None,
            tolerance: float = 0.0, data: Any = None, secret: str | None = None) -> dict[str, Any]:
    """Fold the store's events into a new model version at ``out``; returns (and writes) the report.
    ``secret`` (default $CTXREC_PSEUDONYM_SECRET) pseudonymises the dataset's user ids as the service
    does; users erased through the service are left out."""
    import pandas as pd

    from ctxrec.config import from_dict, to_dict
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.datasets import load_dataset
    from ctxrec.data.vocab import Vocab
    from ctxrec.models import build_model, load_model
    from ctxrec.serving.store import EventStore

    t0 = time.perf_counter()
    run, out = Path(run_dir), Path(out)
    run_cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() and (run / "model").exists() else {}
    current = load_model(run)
    assert current.item_vocab is not None and current.user_vocab is not None
    if data is None:
        name = run_cfg.get("dataset")
        if not name:
            raise ValueError(f"{str(run)!r} does not record its dataset (config.json 'dataset'); retrain needs a run folder")
        data = load_dataset(name, data_dir or run_cfg.get("data_dir"))
    store = EventStore(store_url)
    try:
        events = list(store.events_after(0))
        added = {i: p for i, p, retired, _ in store.items() if p and not retired}
        watermark = max((e.id for e in events), default=0)
        erased = store.erased_users()
    finally:
        store.close()
    from ctxrec.privacy import pseudonym_secret, pseudonymise_dataset
    from ctxrec.serving.store import user_tombstone

    data = pseudonymise_dataset(data, secret or pseudonym_secret(),
                                drop=(lambda u: user_tombstone(u) in erased) if erased else None)
    if added and current.supports_add_items:  # the catalogue as served
        current.add_items(pd.DataFrame([{**p, "item_id": i} for i, p in added.items()]))
    # Items: the model's catalogue (training items + items added through the API), same order.
    items = data.items.copy()
    extra = pd.DataFrame([{**p, "item_id": i} for i, p in added.items() if i not in items.index])
    if len(extra):
        items = pd.concat([items, extra.set_index("item_id")])
    vocab_ids = list(current.item_vocab.ids)
    items = items.reindex(vocab_ids)
    known = set(vocab_ids)
    usable = [e for e in events if e.item_id in known]
    queries, targets = _cases(usable, lambda u: current.item_vocab.external(current.known_history(current.user_vocab.get(u)))
                              if current.user_vocab.get(u) >= 0 else [])
    held: dict[str, Any] = {}  # user -> their last stored event
    for e in usable:  # each user's last stored event is held out
        if e.user_id not in held or (e.timestamp, e.id) > (held[e.user_id].timestamp, held[e.user_id].id):
            held[e.user_id] = e
    held_ids = {e.id for e in held.values()}
    ctx_names = list(data.schema.context_names)
    new_rows = pd.DataFrame([{"user_id": e.user_id, "item_id": e.item_id, "timestamp": e.timestamp, "event_type": e.event_type,
                              **{c: e.context.get(c) for c in ctx_names}} for e in usable if e.id not in held_ids])
    cols = ["user_id", "item_id", "timestamp", "event_type", *ctx_names]
    inter = data.interactions[[c for c in cols if c in data.interactions.columns]]
    if len(new_rows):
        new_rows = new_rows[list(inter.columns)]
        inter = pd.concat([inter, new_rows], ignore_index=True)
    combined = Dataset.from_frames(inter, items=items, users=data.users, schema=data.schema, name=data.name,
                                   item_vocab=Vocab(vocab_ids, kind="item"))

    out.mkdir(parents=True, exist_ok=True)
    cfg_dict = to_dict(current.config)
    model_kind = current.kind
    warm = "refit"
    model = None
    net = getattr(current, "net", None)  # the neural models' torch module
    if current.supports_warm_start and net is not None:
        from ctxrec.training.loop import TrainState

        cfg_w = json.loads(json.dumps(cfg_dict))
        cfg_w["train"].update({"resume": False, "max_epochs": epochs})
        try:
            # the current encoders read the new events, so the weights fit (a new context value or event type is
            # unknown to this version, as it is when served; the next full training learns it)
            model = build_model(model_kind, cfg_w).fit(combined, run_dir=out, warm_start=TrainState(weights=net.state_dict()),
                                                       encoders_from=current if current.reads_with_encoders_of else None)
            warm = "warm-start"
        except RuntimeError as exc:  # the weights still do not fit (e.g. context rendered as text): refit below
            warm = f"refit (warm start impossible: {' '.join(str(exc).split())[:500]})"
            model = None
    if model is None:
        cfg_r = json.loads(json.dumps(cfg_dict))
        if "train" in cfg_r:
            cfg_r["train"]["resume"] = False
            best = current.fit_info.get("best_epoch")
            if isinstance(best, int) and best >= 0:  # no validation here: as many epochs as the current version's chose
                cfg_r["train"]["max_epochs"] = best + 1
        model = build_model(model_kind, cfg_r).fit(combined, run_dir=out)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # training scratch; the new version is out/model
    # the new version keeps the training config (no resume flag) for later retrains
    model.config = from_dict(type(model.config), cfg_dict)
    before = evaluate_cases(current, queries, targets)
    after = evaluate_cases(model, queries, targets)
    promote = should_promote(before, after, tolerance)
    model.save(out / "model")
    version = f"{model_kind}-{out.resolve().name}-{int(time.time())}"
    report = {"version": version, "parent": str(run.resolve()), "event_watermark": watermark, "events_used": len(usable),
              "events_dropped_unknown_item": len(events) - len(usable), "held_out": len(held_ids), "training": warm,
              "epochs": epochs, "current": before, "candidate": after, "tolerance": tolerance, "promoted": promote,
              "seconds": round(time.perf_counter() - t0, 2)}
    (out / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    if run_cfg:
        (out / "config.json").write_text(json.dumps(run_cfg, indent=2) + "\n")
    return report
