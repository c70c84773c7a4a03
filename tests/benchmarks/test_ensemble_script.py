"""benchmarks/ensemble.py: members are split into disjoint ensembles, every seed in exactly one."""

from __future__ import annotations

import pytest


def test_seeds_go_in_order_into_disjoint_ensembles(load_bench) -> None:
    ens = load_bench("ensemble")
    assert ens.groups([42, 43, 44, 45, 46, 47], 3) == [[42, 43, 44], [45, 46, 47]]
    assert ens.groups([42, 43, 44, 45, 46, 47], 6) == [[42, 43, 44, 45, 46, 47]]


@pytest.mark.parametrize(("n", "size"), [(7, 3), (6, 1), (6, 4)])
def test_a_split_that_leaves_a_seed_over_or_a_member_alone_is_refused(load_bench, n: int, size: int) -> None:
    ens = load_bench("ensemble")
    with pytest.raises(SystemExit, match=f"--size {size}"):
        ens.groups(list(range(42, 42 + n)), size)
