"""release_free_heap: freed heap pages go back to the OS (glibc's malloc_trim)."""

import sys

import pytest

from ctxrec.training.memory import release_free_heap


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trim_returns_the_holes_of_a_fragmented_heap() -> None:
    # 64 KiB blocks stay below glibc's mmap threshold, so they live in the heap; freeing every other one
    # leaves holes that a heap cannot give back by shrinking (the blocks above them are still live).
    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MiB, each page touched by the zero fill
    del blocks[::2]
    before = _rss_mib()
    assert release_free_heap() is True
    after = _rss_mib()
    assert before - after > 50, f"RSS {before:.0f} -> {after:.0f} MiB: the ~94 MiB of holes were not returned"
    assert len(blocks) == 1500


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_heap_guard_returns_the_holes_once_the_heap_grew_by_its_slack() -> None:
    from ctxrec.training.memory import HeapGuard, resident_mib

    rss = resident_mib()
    assert rss is not None and abs(rss - _rss_mib()) < 1.0
    guard = HeapGuard(slack_mib=64)
    guard.after_step()  # the first step sets the floor
    assert guard.floor is not None and guard.trims == 0
    small = [bytearray(64 * 1024) for _ in range(300)]  # ~19 MiB of growth: within the slack, no trim
    del small[::2]
    guard.after_step()
    assert guard.trims == 0
    blocks = [bytearray(64 * 1024) for _ in range(3000)]  # ~190 MiB; half of it freed into holes
    del blocks[::2]
    before = _rss_mib()
    guard.after_step()  # grew by more than the slack: the holes go back
    assert guard.trims == 1
    assert before - _rss_mib() > 50
    assert guard.floor is None  # the floor is measured after the next step, with its working set
    work = [bytearray(64 * 1024) for _ in range(3000)]  # the next step's ~190 MiB working set
    guard.after_step()
    assert guard.trims == 1 and guard.floor is not None and abs(guard.floor - _rss_mib()) < 8
    del work  # a step frees its tensors and the next allocates them again: no growth, no return
    work = [bytearray(64 * 1024) for _ in range(3000)]
    guard.after_step()
    assert guard.trims == 1 and len(blocks) == 1500 and len(small) == 150 and len(work) == 3000
