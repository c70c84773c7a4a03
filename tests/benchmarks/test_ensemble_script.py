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


def test_several_runs_pair_members_of_different_seeds_each_used_once(load_bench) -> None:
    ens = load_bench("ensemble")
    parts = ens.pairings([42, 43, 44], ["e50", "ce"])
    assert parts == [[("e50", 42), ("ce", 43)], [("e50", 43), ("ce", 44)], [("e50", 44), ("ce", 42)]]
    assert all(len({s for _, s in g}) == len(g) for g in parts)  # no ensemble holds one seed twice
    assert sorted(m for g in parts for m in g) == sorted((r, s) for r in ("e50", "ce") for s in (42, 43, 44))
    with pytest.raises(SystemExit, match="at least 3 seeds"):
        ens.pairings([42, 43], ["a", "b", "c"])


def test_a_members_folder_is_its_seed_folder_or_the_run_itself_for_a_seeds_1_first_seed(load_bench, tmp_path) -> None:
    import json

    ens = load_bench("ensemble")
    run = tmp_path / "fusion-fast-e50"
    for folder, seed in ((run, 42), (run / "seed-43", 43)):
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"model_config": {"train": {"seed": seed}}}))
    assert ens.member_dir(run, 42) == run and ens.member_dir(run, 43) == run / "seed-43"
    assert ens.member_dir(run, 44) is None  # neither a seed-44 folder nor a run of seed 44
    (run / "seed-44").mkdir()  # a folder without a finished run is not a member
    assert ens.member_dir(run, 44) is None
