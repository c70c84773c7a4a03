"""Hand freed heap memory back to the operating system between epochs.

glibc's allocator keeps the memory of freed tensors in its heaps, and the pattern of a training epoch
(many large tensors of varying size, from two threads) fragments them: on ml-100k (fusion, d 64) the
resident set grew by about 130 MiB per epoch, 1.2 GiB after the first epoch to 1.8 GiB after the sixth,
while the live tensors stayed near 450 MiB. ``malloc_trim`` after each epoch returns the free pages, and
the peak stays at the first epoch's (1.5 GiB after six epochs instead of 2.0) at no measurable cost per
epoch. Forcing large blocks into ``mmap`` (``MALLOC_MMAP_THRESHOLD_``) kept the peak lower still (1.06 GiB)
but made every epoch about 30% slower (page faults on every large tensor), so it is not used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache


@cache
def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only: musl and others have no such symbol
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Return the allocator's free pages to the OS; True where that is possible (Linux with glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
