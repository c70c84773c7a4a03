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

COLD_ID_DROPOUT = 0.8
"""``id_dropout="auto"`` where the catalogue has items without training events (config.py says why)."""
WARM_ID_DROPOUT = 0.1
COLD_CATALOGUE_SHARE = 0.01
"""Share of catalogue items without training events from which ``id_dropout="auto"`` trains for them."""


def resolve_id_dropout(cfg: FusionConfig, data: Dataset) -> tuple[FusionConfig, dict[str, Any] | None]:
    """``cfg`` with ``id_dropout="auto"`` replaced by a number from the catalogue (not from pilots: the
    validation cases of a catalogue without cold items cannot tell what it does for them), and a report."""
    import numpy as np

    if cfg.id_dropout != "auto":
        return cfg, None
    n = max(int(data.n_items), 1)
    cold = int(n - np.count_nonzero(np.bincount(data.item_idx, minlength=n)))
    share = cold / n
    value = COLD_ID_DROPOUT if share >= COLD_CATALOGUE_SHARE else WARM_ID_DROPOUT
    why = (f"{cold} of {n} catalogue items ({share:.1%}) have no training events: "
           + ("their vectors come from text and attributes alone, so those are trained to stand alone"
              if value == COLD_ID_DROPOUT else f"below {COLD_CATALOGUE_SHARE:.0%}, the ID embeddings carry the model"))
    return dataclasses.replace(cfg, id_dropout=value), {"value": value, "cold_items": cold, "catalogue": n, "why": why}


def auto_fields(cfg: FusionConfig) -> list[str]:
    """The fields of ``cfg`` set to ``"auto"``."""
    return [f for f in AUTO_FIELDS if getattr(cfg, f) == "auto"]


def flips(cfg: FusionConfig, data: Dataset) -> list[str]:
    """The auto fields a pilot may turn on, cheapest first: text (a projection per item) before the mixture
    (J softmaxes over the catalogue instead of one); ``use_text`` only where the catalogue has text."""
    out = [f for f in auto_fields(cfg) if not (f == "use_text" and not data.schema.item_text_fields)]
    return sorted(out, key=lambda f: f == "mixture")


def choose(pilots: list[dict[str, Any]]) -> int:
    """Index of the first (cheapest) pilot whose validation score is within ``AUTO_MARGIN`` of the best."""
    best = max(p["valid"] for p in pilots)
    return next(i for i, p in enumerate(pilots) if p["valid"] >= best - AUTO_MARGIN * abs(best))


def resolve(cfg: FusionConfig, data: Dataset, valid: EvalSet | None,
            make: Callable[[FusionConfig], Recommender]) -> tuple[FusionConfig, dict[str, Any] | None]:
    """``cfg`` with every ``"auto"`` replaced by the value that won its pilot on ``valid``, and a report
    for ``fit_info["auto"]`` (None when nothing was auto). ``make`` builds a pilot model from a config."""
    fields = auto_fields(cfg)
    if not fields:
        return cfg, None
    base: dict[str, Any] = dict.fromkeys(fields, False)
    order = flips(cfg, data)
    if not order:
        return dataclasses.replace(cfg, **base), {"fields": fields, "chosen": base, "pilots": [],
                                                  "why": "the catalogue has no item text"}
    if valid is None or not len(valid):
        fallback: dict[str, Any] = {**base, **dict.fromkeys(order, True)}
        log.warning("%s: decided on validation cases, and this fit has none; taking %s. Pass valid= (ctxrec train "
                    "always does) to decide, or set each to true or false", ", ".join(f"{f}=auto" for f in fields),
                    ", ".join(f"{f}=true" for f in order))
        return dataclasses.replace(cfg, **fallback), {"fields": fields, "chosen": fallback, "pilots": [],
                                                      "why": "no validation cases: the fallback (true)"}
    budget = cfg.train.max_seconds  # a time budget bounds the whole fit: the pilots share a quarter of it
    pilot_train = dataclasses.replace(cfg.train, max_epochs=cfg.auto_epochs, progress=False, resume=False,
                                      max_seconds=None if budget is None else budget / (4 * (1 + len(order))))
    pilots: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def pilot(cand: dict[str, Any]) -> dict[str, Any]:
        model = make(dataclasses.replace(cfg, **cand, train=pilot_train, context_head=False))  # the net alone is judged
        model.fit(data, valid=valid)
        pilots.append({**cand, "valid": round(float(model.fit_info["best_valid"]), 6),
                       "seconds": round(float(model.fit_info["train_seconds"]), 2),
                       "stopped_by": model.fit_info.get("stopped_by")})
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
        "pilots": pilots, "seconds": round(spent, 2)}
