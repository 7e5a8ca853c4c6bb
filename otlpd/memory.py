"""Allocator settings for the daemon process (docs/PERFORMANCE.md, "What changed").

Applied by ``otlpd run`` and by each worker process before anything is
allocated, never on import: an application that embeds otlpd keeps its own
allocator settings.

Measured under full load (traces, 1000-span requests, 256 MiB buffer, VmHWM,
two runs each; docs/PERFORMANCE.md): pyarrow's default pool (mimalloc) with
glibc's default thresholds peaked at 531-548 MiB, because both allocators keep
freed pages of the 32 MiB concatenated batches and of large decoder buffers for
reuse. Arrow's system pool plus a fixed 4 MiB glibc mmap threshold returns
every block of 4 MiB or more to the kernel when it is freed: 456-475 MiB at the
same throughput. In a later window, where the load filled the buffer less, both
peaked alike (436-485 MiB): the settings matter when the buffer runs full. A
256 KiB threshold peaked lower (426-473 MiB) but cost 10-20 % of the throughput
in page faults on fresh pages.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

import pyarrow as pa

MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>

# What configure_process_memory() applied in this process (empty if not called).
APPLIED: dict = {}


def configure_process_memory() -> dict:
    """Use Arrow's system memory pool and glibc's mmap for blocks >= 4 MiB.

    ``ARROW_DEFAULT_MEMORY_POOL`` set in the environment wins over the pool
    choice. Returns what was applied, which is also kept in APPLIED for the
daemon's status snapshot.
    """
    applied = APPLIED
    applied.clear()
    if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        pa.set_memory_pool(pa.system_memory_pool())
    applied["arrow_memory_pool"] = pa.default_memory_pool().backend_name
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # not glibc (musl, macOS): nothing to tune
        return applied
    if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1:
        applied["malloc_mmap_threshold"] = MMAP_THRESHOLD
    return applied
