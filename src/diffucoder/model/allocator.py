"""Keep freed tensor memory in the process: glibc's malloc thresholds for CPU tensors.

    from diffucoder.model.allocator import keep_freed_memory
    keep_freed_memory()        # once per process (DreamModel() calls it); a no-op off glibc

A forward pass allocates and frees the same few-megabyte activations again and again. glibc's
malloc may serve such blocks with ``mmap`` and return them with ``munmap``, or trim them off the
heap top, so that the next forward touches fresh pages, each zeroed by the kernel on first
touch. Whether it does depends on what the process freed before (glibc adjusts its thresholds to
that): after ``from_pretrained`` a decoding step of the tiny model at batch 16 took 5,000-11,000
page faults and a sixth of its CPU time in the kernel. With freed blocks kept (no ``mmap`` below
32 MiB, no trimming below 1 GiB of free heap) it takes none: the step ran in 36 ms instead of
55, the server decoded 384 tokens/s instead of 297 at 16 clients, a tiny training step gained
~5 % (``benchmarks/serving.py``, ``benchmarks/train_throughput.py``;
``tests/model/test_allocator.py`` counts the faults).

The cost is resident memory that stays at its peak instead of shrinking between forwards. A
process whose environment sets glibc's own thresholds (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, or ``GLIBC_TUNABLES`` with ``glibc.malloc.``) keeps them: the
caller's choice wins. Another malloc (jemalloc or tcmalloc preloaded) is left alone, as is a
libc other than glibc.
"""
from __future__ import annotations

import ctypes
import functools
import os

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20   # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**30
CALLER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def caller_chose_malloc() -> bool:
    """Whether the environment already tunes glibc's malloc (or preloads another allocator)."""
    return (any(name in os.environ for name in CALLER_SETTINGS)
            or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
            or any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")))


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds (see the module doc); whether they were set."""
    if caller_chose_malloc() or not _is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt   # the process's own symbols: glibc's, as checked above
    # mallopt answers 1 on success; setting either threshold also stops glibc adjusting them.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):   # no confstr, or a libc that does not know the name
        return False
