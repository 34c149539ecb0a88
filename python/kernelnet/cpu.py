"""Host (CPU) memory of kernelnet tensors, mirroring `kernelnet.cuda`'s memory functions.

Tensors of 64 KiB and more live in blocks of a native caching allocator: a freed block is kept
and reused by the next tensor of its size class, so a training loop stops faulting fresh pages
after its first step (csrc/cpu/host_memory.cpp says why that matters). The cache holds at most
`KERNELNET_CPU_CACHE_MB` (default 1024) MiB of free blocks; `empty_cache()` returns them all.
"""
from ._device import _cpu


def memory_allocated():
    """Bytes in cached-allocator blocks held by live tensors (tensors under 64 KiB not counted)."""
    return _cpu.host_cache_info()["allocated_bytes"]


def memory_reserved():
    """Bytes held by the allocator: live blocks plus free blocks kept for reuse."""
    info = _cpu.host_cache_info()
    return info["allocated_bytes"] + info["cached_bytes"]


def memory_stats():
    """Counters of the host allocator: cached/allocated bytes, cached blocks, hits, misses, limit."""
    return dict(_cpu.host_cache_info())


def empty_cache():
    """Free every cached block (live tensors are untouched)."""
    _cpu.host_empty_cache()


def set_cache_limit(nbytes):
    """Keep at most `nbytes` of free blocks cached (0 disables caching)."""
    nbytes = int(nbytes)
    if nbytes < 0:
        raise ValueError(f"set_cache_limit: the limit must be >= 0 bytes, got {nbytes}")
    _cpu.host_set_cache_limit(nbytes)
