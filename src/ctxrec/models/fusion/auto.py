"""``"auto"`` settings of the fusion model, decided on the validation cases by short pilot runs.

Whether the language-model view pays (``use_text``) and whether the per-view softmax mixture beats one
softmax (``mixture``) depend on the data: text carries amazon-scientific and costs on ml-1m, the mixture
is +0.5% at equal epochs and -5.8% at equal time on ml-1m. So each ``"auto"`` field is decided by
pilots of ``auto_epochs`` epochs on the same training part, scored on validation: first
neither, then text on, then the mixture on top of whichever won (one field at a time, cheapest first:
three pilots, not four: a mixture pilot costs about 2x on ml-1m). A costlier pilot replaces a cheaper one
only when it leads by ``AUTO_MARGIN``, more than seed noise. The test cases are never read.
A fit without validation cases cannot decide and takes ``true`` for each, with a warning. With a time
budget (``train.max_seconds``) the pilots share a quarter of it and the full run gets what is left.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctxrec.data.dataset import Dataset
    from ctxrec.data.splits import EvalSet
    from ctxrec.models.base import Recommender
    from ctxrec.models.fusion.config import FusionConfig

log = logging.getLogger(__name__)

AUTO_FIELDS = ("use_text", "mixture")
AUTO_MARGIN = 0.01
"""Relative validation lead a costlier pilot needs over a cheaper one. Between seeds, test NDCG@10 of the
default-flags rows moves by 0.5-2.2% (std: ml-1m SASRec 0.5%, amazon-scientific 1.1%, amazon-beauty 1.9%,
ml-100k 2.2%), while the mixture costs 2.1x per training step on ml-1m (d 64, 3 views, 3,417 items) and led
ml-100k's pilots by 0.3% only."""

COLD_CATALOGUE_SHARE = 0.01
"""Share of catalogue items without training events from which the ``"auto"`` cold-start settings train
and score for them (``COLD_SETTINGS``)."""
COLD_SETTINGS: dict[str, Any] = {"id_dropout": 0.8, "temperature": 0.07, "cold_ids": "neighbours"}
"""What ``"auto"`` takes where items must be ranked from their content (config.py says why for each), measured
together on amazon-scientific with 10% of the items cold (benchmarks/results/amazon-scientific/COLD_START.md):
cold/warm Recall@10 0.75 +- 0.05 over three training seeds (0.73 / 0.81 / 0.72; 0.71 +- 0.12 before dropped IDs
trained as text neighbours) against 0.45 with id_dropout 0.8 alone and 0.25 with the warm settings (one seed each)."""
WARM_SETTINGS: dict[str, Any] = {"id_dropout": 0.1, "temperature": None, "cold_ids": "none"}
"""What ``"auto"`` takes where every catalogue item has training events (the leave-one-out benchmarks)."""


def resolve_cold_start(cfg: FusionConfig, data: Dataset) -> tuple[FusionConfig, dict[str, Any] | None]:
    """``cfg`` with the ``"auto"`` cold-start fields (``COLD_SETTINGS``) replaced from the catalogue, and a
    report. Decided from the catalogue, not by pilots: the validation cases of a catalogue without cold items
    cannot tell what these settings do for them, and with cold items a pilot per setting would triple the cost."""
    import numpy as np

    fields = [f for f in COLD_SETTINGS if getattr(cfg, f) == "auto"]
    if not fields:
        return cfg, None
    n = max(int(data.n_items), 1)
    cold = int(n - np.count_nonzero(np.bincount(data.item_idx, minlength=n)))
    share = cold / n
    is_cold = share >= COLD_CATALOGUE_SHARE
    values: dict[str, Any] = {f: (COLD_SETTINGS if is_cold else WARM_SETTINGS)[f] for f in fields}
    why = (f"{cold} of {n} catalogue items ({share:.1%}) have no training events: "
           + ("they are ranked from text and attributes, so those are trained to stand alone (id_dropout), items are "
              "scored by cosine (temperature) and a cold item borrows the ID part of its text neighbours (cold_ids)"
              if is_cold else f"below {COLD_CATALOGUE_SHARE:.0%}, the ID embeddings carry the model"))
    has_text = bool(data.schema.item_text_fields)
    if is_cold and has_text and cfg.use_text == "auto":
        # No pilot: validation targets are nearly all warm items, which need no text, while the cold items
        # have nothing else (and the neighbours of cold_ids are found by text).
        values["use_text"] = True
        why += "; use_text=true: the cold items' text is what they are ranked from"
    if values.get("cold_ids") == "neighbours" and not (has_text and (cfg.use_text is True or values.get("use_text"))):
        values["cold_ids"] = "none"
        why += ("; cold_ids=none: neighbours are found by item text, and "
                + ("the catalogue has none" if not has_text else "use_text is false"))
    if values.get("cold_ids") == "neighbours":
        from ctxrec.models.fusion.net import TRAIN_NEIGHBOURS_MAX_ITEMS

        if n > TRAIN_NEIGHBOURS_MAX_ITEMS:
            why += (f"; above {TRAIN_NEIGHBOURS_MAX_ITEMS:,} items a dropped ID part trains as none, not as its text "
                    "neighbours' mean (the all-items search would cost too much)")
    return dataclasses.replace(cfg, **values), {**values, "cold_items": cold, "catalogue": n, "why": why}


def auto_fields(cfg: FusionConfig) -> list[str]:
    """The fields of ``cfg`` set to ``"auto"``."""
    return [f for f in AUTO_FIELDS if getattr(cfg, f) == "auto"]


SKIP_REASONS = {
    "use_text": "use_text: the catalogue has no item text",
    "mixture": "mixture: the model has one view (no context fields, timestamps or user fields), where the "
               "mixture is one softmax",
}


def n_views(cfg: FusionConfig, data: Dataset) -> int:
    """How many views the net will have on ``data`` (``FusionNet.view_names``): the sequence, a context view
    where there are context fields or timestamps, a profile view where there are user fields or user text."""
    from ctxrec.context import ContextEncoder

    ctx = ContextEncoder(cfg.context).fit(data) if cfg.use_context else None
    has_context = ctx is not None and bool(ctx.cardinalities or ctx.n_dense)
    users = data.users
    has_profile = cfg.use_profile and (bool(data.schema.user_text_fields) or any(
        users is not None and f in users.columns for f in data.schema.user_attribute_fields))
    return 1 + int(has_context) + int(has_profile)


def flips(cfg: FusionConfig, data: Dataset) -> list[str]:
    """The auto fields a pilot may turn on, cheapest first: text (a projection per item) before the mixture
    (J softmaxes over the catalogue instead of one); ``use_text`` only where the catalogue has text, the
    mixture only where there are two views or more (with one it is one softmax: a pilot would measure noise)."""
    out = [f for f in auto_fields(cfg) if not (f == "use_text" and not data.schema.item_text_fields)
           and not (f == "mixture" and n_views(cfg, data) == 1)]
    return sorted(out, key=lambda f: f == "mixture")


def choose(pilots: list[dict[str, Any]]) -> int:
    """Index of the first (cheapest) pilot whose validation score is within ``AUTO_MARGIN`` of the best."""
    best = max(p["valid"] for p in pilots)
    return next(i for i, p in enumerate(pilots) if p["valid"] >= best - AUTO_MARGIN * abs(best))


def resolve(cfg: FusionConfig, data: Dataset, valid: EvalSet | None,
            make: Callable[[FusionConfig], Recommender]) -> tuple[FusionConfig, dict[str, Any] | None]:
    """``cfg`` with every ``"auto"`` decided -- the cold-start settings from the catalogue, then the pilot
    fields on ``valid`` -- and a report for ``fit_info["auto"]`` (None when nothing was auto)."""
    cfg, cold = resolve_cold_start(cfg, data)  # before any pilot: the pilots train with these settings
    cfg, auto = resolve_pilots(cfg, data, valid, make)
    if cold is not None:
        auto = {**(auto or {"fields": [], "chosen": {}, "pilots": []}), "cold_start": cold}
    return cfg, auto


def resolve_pilots(cfg: FusionConfig, data: Dataset, valid: EvalSet | None,
                   make: Callable[[FusionConfig], Recommender]) -> tuple[FusionConfig, dict[str, Any] | None]:
    """``cfg`` with every pilot field (``AUTO_FIELDS``) replaced by the value that won its pilot on
    ``valid``, and its report (None when none was auto). ``make`` builds a pilot model from a config."""
    fields = auto_fields(cfg)
    if not fields:
        return cfg, None
    base: dict[str, Any] = dict.fromkeys(fields, False)
    order = flips(cfg, data)
    skipped = {f: SKIP_REASONS[f] for f in fields if f not in order}  # false without a pilot, and why
    if not order:
        return dataclasses.replace(cfg, **base), {"fields": fields, "chosen": base, "pilots": [],
                                                  "why": "; ".join(skipped.values())}
    if valid is None or not len(valid):
        fallback: dict[str, Any] = {**base, **dict.fromkeys(order, True)}
        log.warning("%s: decided on validation cases, and this fit has none; taking %s. Pass valid= (ctxrec train "
                    "always does) to decide, or set each to true or false", ", ".join(f"{f}=auto" for f in fields),
                    ", ".join(f"{f}=true" for f in order))
        return dataclasses.replace(cfg, **fallback), {"fields": fields, "chosen": fallback, "pilots": [],
                                                      "why": "no validation cases: the fallback (true)"}
    budget = cfg.train.max_seconds  # a time budget bounds the whole fit: the pilots share a quarter of it
    pilot_train = dataclasses.replace(cfg.train, max_epochs=cfg.auto_epochs, resume=False,
                                      max_seconds=None if budget is None else budget / (4 * (1 + len(order))))
    pilots: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    say = cfg.train.progress  # the pilots are minutes of work before the real fit: say what runs, and why

    def pilot(cand: dict[str, Any]) -> dict[str, Any]:
        if say:
            print(f"auto: pilot {len(pilots) + 1} of up to {1 + len(order)}, {cfg.auto_epochs} epochs with "
                  f"{', '.join(f'{k}={str(v).lower()}' for k, v in cand.items())} (deciding {', '.join(order)}; "
                  "set them to true or false to skip the pilots)", file=sys.stderr, flush=True)
        model = make(dataclasses.replace(cfg, **cand, train=pilot_train, context_head=False))  # the net alone is judged
        model.fit(data, valid=valid)
        pilots.append({**cand, "valid": round(float(model.fit_info["best_valid"]), 6),
                       "seconds": round(float(model.fit_info["train_seconds"]), 2),
                       "stopped_by": model.fit_info.get("stopped_by")})
        if say:
            print(f"auto: pilot {len(pilots)}: validation {cfg.train.valid_metric} {pilots[-1]['valid']:.4f} "
                  f"({pilots[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return pilots[-1]

    best = pilot(base)
    for f in order:  # one field at a time, on top of what won so far (text and mixture hardly interact)
        cand = {**base, f: True}
        tried = pilot(cand)
        if choose([best, tried]) == 1:
            base, best = cand, tried
    spent = time.perf_counter() - t0
    train = cfg.train if budget is None else dataclasses.replace(cfg.train, max_seconds=max(budget - spent, 0.25 * budget))
    return dataclasses.replace(cfg, **base, train=train), {
        "fields": fields, "chosen": base, "epochs": cfg.auto_epochs, "metric": cfg.train.valid_metric,
        "margin": AUTO_MARGIN,
        "pilots": pilots, "seconds": round(spent, 2), **({"why": "; ".join(skipped.values())} if skipped else {})}
