"""The command keeps the memory it frees, rather than handing it back to the kernel and
faulting it in again, zeroed, for the next image.

glibc serves large allocations with fresh mappings and returns freed memory at the top of
its heap. Inference allocates and frees hundreds of megabytes of feature maps per image, and
faulting those pages in again cost 100 of 780 ms per 375×500 image (measured, docs/design.md
§6). So the command raises both thresholds once at start-up; the process then holds its
peak, which it reaches anyway. The library leaves the allocator alone (it is the whole
process's); a program of one's own can do the same with GLIBC_TUNABLES
(``glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824``).
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""mallopt's parameters, from glibc's malloc.h."""
MMAP_THRESHOLD = 32 << 20
"""glibc's largest on 64-bit: only larger blocks get mappings of their own."""
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc's thresholds; False (nothing done) where the C library is not glibc."""
    try:
        libc = ctypes.CDLL(None)
        mallopt, _ = libc.mallopt, libc.gnu_get_libc_version  # glibc only
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
