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
