"""Length-bucketed batches: every sequence once per epoch, little padding, equal event counts per batch,
different batches each epoch."""

from __future__ import annotations

import numpy as np
import pytest

from ctxrec.training.batching import length_bucketed_batches


def padded_positions(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    return sum(int(lengths[b].max()) * len(b) for b in batches)


def long_tailed(n: int = 4096) -> np.ndarray:
    """Lengths capped at max_len 200 with a long tail, as ml-1m's (mean ~60)."""
    return np.minimum(np.random.default_rng(0).geometric(1 / 60, size=n), 200)


def test_every_sequence_once_in_about_n_over_b_batches() -> None:
    lengths = long_tailed(1003)
    batches = length_bucketed_batches(lengths, 32, np.random.default_rng(1), pool=4)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1003))
    assert abs(len(batches) - 1003 / 32) <= 1003 / 32 / 4 + 1  # one pool's remainder at most merges per pool


def test_pools_cut_padding_on_long_tailed_lengths() -> None:
    lengths = long_tailed()
    random_batches = length_bucketed_batches(lengths, 64, np.random.default_rng(1), pool=1)
    assert all(len(b) == 64 for b in random_batches)  # pool 1: plain random batches of batch_size rows
    bucketed = length_bucketed_batches(lengths, 64, np.random.default_rng(1), pool=16)
    real = int(lengths.sum())
    assert real / padded_positions(lengths, random_batches) < 0.5
    assert real / padded_positions(lengths, bucketed) > 0.85


def test_batches_hold_equal_event_counts_not_equal_rows() -> None:
    """A batch of short histories holds more users, so each event weighs what it weighs in a random batch
    under the mean loss (equal rows up-weighted short histories and cost amazon-scientific 3% NDCG@10)."""
    lengths = long_tailed()
    bucketed = length_bucketed_batches(lengths, 64, np.random.default_rng(1), pool=16)
    events = np.array([lengths[b].sum() for b in bucketed])
    budget = 64 * lengths.mean()
    assert np.all(events <= budget * 1.5 + 200) and np.median(np.abs(events / budget - 1)) < 0.05
    rows = np.array([len(b) for b in bucketed])
    short, long_ = rows[np.argmin([lengths[b].max() for b in bucketed])], rows[np.argmax([lengths[b].max() for b in bucketed])]
    assert short > 64 > long_


def test_batches_differ_between_epochs_and_repeat_with_the_seed() -> None:
    lengths = long_tailed(2048)
    a = length_bucketed_batches(lengths, 64, np.random.default_rng([7, 0]), pool=16)
    b = length_bucketed_batches(lengths, 64, np.random.default_rng([7, 1]), pool=16)
    again = length_bucketed_batches(lengths, 64, np.random.default_rng([7, 0]), pool=16)
    assert len(a) == len(again) and all(np.array_equal(x, y) for x, y in zip(a, again, strict=True))
    assert {frozenset(x.tolist()) for x in a} != {frozenset(x.tolist()) for x in b}
    # the batch order is shuffled: not shortest first
    assert [lengths[x].max() for x in a] != sorted(lengths[x].max() for x in a)


def test_one_sequence_and_bad_sizes() -> None:
    (only,) = length_bucketed_batches(np.array([5]), 8, np.random.default_rng(0), pool=16)
    assert only.tolist() == [0]
    with pytest.raises(ValueError, match="got 0"):
        length_bucketed_batches(np.ones(3), 0, np.random.default_rng(0))


@pytest.mark.parametrize("kind", ["sasrec", "fusion"])
def test_train_length_pool_reaches_each_models_batches(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``train.length_pool`` is what both sequence models hand to the batcher (the ml-1m cost recipe trains
    with 16): each epoch's batches are drawn with it, and with 16 they hold less padding than random ones."""
    import pandas as pd

    from ctxrec.config import apply_overrides
    from ctxrec.data.dataset import Dataset
    from ctxrec.models import build_model
    from ctxrec.models.fusion import batches as fusion_batches
    from ctxrec.training import batching

    rng = np.random.default_rng(0)
    rows = [{"user_id": f"u{u}", "item_id": f"i{int(rng.integers(30))}", "timestamp": float(t)}
            for u in range(120) for t in range(2 + int(rng.geometric(1 / 8)))]
    data = Dataset.from_frames(pd.DataFrame(rows), name="lengths")
    padded: dict[int, list[int]] = {}

    def spy(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, pool: int = 1) -> list[np.ndarray]:
        out = length_bucketed_batches(lengths, batch_size, rng, pool)
        padded.setdefault(pool, []).append(padded_positions(lengths, out))
        return out

    monkeypatch.setattr(batching, "length_bucketed_batches", spy)
    monkeypatch.setattr(fusion_batches, "length_bucketed_batches", spy)
    tiny = ["d_model=8", "n_layers=1", "n_heads=1", "max_len=20", "train.max_epochs=2", "train.batch_size=8",
            "train.progress=false"] + (["use_text=false", "mixture=false", "context_head=false"] if kind == "fusion" else [])
    for pool in (1, 16):
        build_model(kind, apply_overrides({}, [*tiny, f"train.length_pool={pool}"])).fit(data)
    assert sorted(padded) == [1, 16] and len(padded[16]) == 2  # one draw per epoch, with the configured pool
    assert max(padded[16]) < min(padded[1])
