"""Which training sequences share a batch.

A batch is padded to its longest sequence. Drawn at random, nearly every batch holds one sequence at
``max_len``, so most of the Transformer's work is padding when lengths are long-tailed: 46% of it on
ml-1m (max_len 200), 85% on amazon-beauty (max_len 50). Sorting whole epochs by length would fix the
padding but give the same batches every epoch. So ("sortish", as in fastai's SortishSampler): shuffle,
cut into pools of ``pool`` batches, sort each pool by length, cut it into batches, and shuffle the
batches. It is measured, not yet the default: ``train.length_pool`` (:class:`ctxrec.training.loop.TrainConfig`).

A sorted pool is cut into batches of equal *event* counts (``batch_size`` x the mean length), not equal
row counts: a batch of 256 one-event users would otherwise weigh as much in the mean loss as a batch of
256 fifty-event users, a 50-fold up-weighting of short histories that cost amazon-scientific 3% NDCG@10
(0.0857 and 0.0871 against 0.0898 and 0.0895 with random batches, seeds 42 and 43). With equal event
counts each event weighs what it weighs in a random batch.
"""

from __future__ import annotations

import numpy as np

SORTED_POOL = 16
"""The pool size ``benchmarks/batching_cost.py`` measures bucketing with."""


def length_bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                            pool: int = 1) -> list[np.ndarray]:
    """Indices of the sequences of each batch of one epoch, in the order to train them. ``lengths`` (n,):
    each sequence's number of target events. ``pool``: batches per sorted pool (``train.length_pool``;
    1 gives random batches of ``batch_size`` rows, which ``benchmarks/batching_cost.py``
    measures against). Every index appears once, in about ``n / batch_size`` batches of about ``batch_size``
    x ``lengths.mean()`` events each (more rows when short, fewer when long)."""
    if batch_size < 1 or pool < 1:
        raise ValueError(f"batch_size and pool must be >= 1, got {batch_size} and {pool}")
    lengths = np.asarray(lengths)
    perm = rng.permutation(len(lengths))
    if pool == 1:
        return [perm[i : i + batch_size] for i in range(0, len(perm), batch_size)]
    budget = batch_size * float(lengths.mean()) if len(lengths) else 1.0  # events per batch
    batches: list[np.ndarray] = []
    for start in range(0, len(perm), batch_size * pool):
        chunk = perm[start : start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]  # ties keep the random order
        ends = np.cumsum(lengths[chunk])
        cuts = np.searchsorted(ends, np.arange(budget, float(ends[-1]), budget), side="right")
        pieces = [b for b in np.split(chunk, np.unique(np.clip(cuts, 1, len(chunk)))) if len(b)]
        if len(pieces) > 1 and lengths[pieces[-1]].sum() < budget / 2:  # a pool's remainder joins its last batch
            pieces[-2:] = [np.concatenate(pieces[-2:])]
        batches.extend(pieces)
    return [batches[i] for i in rng.permutation(len(batches))]
