"""The CTR protocol (BARS frappe_x1, generalised): labelled instances from an event log, cut 7:2:1.

Pointwise (click-through-rate) models are trained and judged on labelled rows, not on rankings:

1. every log row (user, item, context fields) is a positive;
2. per positive, ``n_neg`` negatives: the same user and context with an item drawn uniformly from the
   catalogue items that this (user, context) pair has no log row for (without replacement per row);
3. all instances are shuffled with ``numpy.random.default_rng(seed)`` and cut 7:2:1 into train /
   validation / test (frappe, seed 2026: 202,027 / 57,722 / 28,860, the BARS sizes);
4. vocabularies and user histories come from the *training positives* only (:attr:`CtrSplit.data`),
   and a training instance's own log row is left out of its user's history (``exclude_item``), so the
   history feature means the same at training and test time.

The parts are tables for ``PointwiseRecommender.fit_labelled(split.data, split.train, split.valid)`` and
``predict_table(split.test)``: columns ``user_id``, ``item_id``, the context fields, ``label`` (1/0),
``row`` (the log row behind the instance) and, in ``train`` only, ``exclude_item``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ctxrec.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from ctxrec.data.dataset import Dataset

VALID_SHARE, TEST_SHARE = 0.2, 0.1  # the rest (0.7) is train


@dataclass(frozen=True)
class CtrSplit:
    """Labelled train / validation / test tables of the CTR protocol, and the data models fit on."""

    data: Dataset
    """The log rows behind the training positives (catalogue, vocabularies, user histories)."""
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    seed: int
    n_neg: int

    def describe(self) -> str:
        """One line for result files: what the split is."""
        return (f"ctr: every event a positive, {self.n_neg} same-context negatives per positive, "
                f"random 7:2:1 (seed {self.seed})")


def ctr_split(data: Dataset, seed: int = 2026, n_neg: int = 2) -> CtrSplit:
    """Build the CTR protocol's instances from ``data``'s log (see the module docstring)."""
    table = _instances(data, seed, n_neg)
    part = table.pop("part").to_numpy()
    own = table.pop("own_item").to_numpy()
    parts = {p: table[part == p].reset_index(drop=True) for p in ("train", "valid", "test")}
    # A training instance's own log row is left out of its user's history (valid/test rows are not in it).
    parts["train"]["exclude_item"] = own[part == "train"]
    train_rows = np.zeros(data.n_events, dtype=bool)
    tp = parts["train"]
    train_rows[tp.loc[tp["label"] == 1.0, "row"].to_numpy()] = True
    return CtrSplit(data=data.subset(train_rows, name=f"{data.name}/ctr-train"), train=parts["train"],
                    valid=parts["valid"], test=parts["test"], seed=seed, n_neg=n_neg)


def _instances(data: Dataset, seed: int, n_neg: int) -> pd.DataFrame:
    """All instances, shuffled: user_id, item_id, context..., label, row, own_item, part."""
    import pandas as pd

    context = data.schema.context_names
    if not context:
        raise DataError(f"dataset {data.name!r} has no context fields; the CTR protocol draws each negative in the "
                        "context of its positive. Use data with context columns (a mapping's context fields), "
                        "or tune on a ranking metric (--metric ndcg@10)")
    if n_neg < 1:
        raise DataError(f"n_neg must be >= 1 negatives per positive, got {n_neg}")
    inter = data.interactions
    n, V = len(inter), data.n_items
    if n == 0:
        raise DataError(f"dataset {data.name!r} has no events to build CTR instances from")
    rng = np.random.default_rng(seed)
    key = inter["user_id"].astype(str)
    for c in context:
        key = key + "|" + inter[c].astype(str)
    keys = key.to_numpy()
    used: dict[str, set[int]] = {}
    for k, i in zip(keys, data.item_idx, strict=True):
        used.setdefault(k, set()).add(int(i))
    fullest = max(used, key=lambda k: len(used[k]))
    if V - len(used[fullest]) < n_neg:
        raise DataError(f"dataset {data.name!r}: the (user, context) pair {fullest!r} used {len(used[fullest])} of the "
                        f"{V} catalogue items, leaving fewer than n_neg={n_neg} items to draw its negatives from; "
                        "lower n_neg or use data with a larger catalogue")
    neg = np.zeros((n, n_neg), np.int64)
    for r in range(n):
        taken = used[keys[r]]
        picked: list[int] = []
        while len(picked) < n_neg:
            j = int(rng.integers(V))
            if j not in taken and j not in picked:
                picked.append(j)
        neg[r] = picked
    ids = np.asarray(data.item_vocab.ids, dtype=object)
    base = inter[["user_id", *context]].reset_index(drop=True)
    own = inter["item_id"].to_numpy()
    pos = base.assign(item_id=own, label=1.0, row=np.arange(n), own_item=own)
    negs = [base.assign(item_id=ids[neg[:, k]], label=0.0, row=np.arange(n), own_item=own) for k in range(n_neg)]
    table = pd.concat([pos, *negs], ignore_index=True)
    table = table.iloc[rng.permutation(len(table))].reset_index(drop=True)
    n_te, n_va = int(len(table) * TEST_SHARE), round(len(table) * VALID_SHARE)  # frappe: 28,860 / 57,722 as in BARS
    n_tr = len(table) - n_va - n_te
    at = np.arange(len(table))
    table["part"] = np.where(at < n_tr, "train", np.where(at < n_tr + n_va, "valid", "test"))
    return table
