"""Allocator settings for the daemon process (docs/PERFORMANCE.md, "What changed").

Applied by ``otlpd run`` before pyarrow is imported, and inherited by worker
processes; never on import of otlpd: an application that embeds otlpd keeps
its own allocator settings.

- Arrow's memory pool is the system allocator (glibc malloc), in pyarrow *and*
  in Arrow's C++ code (the IPC writer's compression buffers). Arrow's C++
  default pool is chosen once from ``ARROW_DEFAULT_MEMORY_POOL`` when it is
  first used, so this sets that variable before pyarrow is loaded; setting
  pyarrow's pool alone left the IPC writer on mimalloc, which kept 50-75 MiB of
  freed compression buffers resident in a 1 GiB reservation (measured under
  full load: peak RSS 409-440 MiB, 330-356 MiB with the variable set).
- glibc's mmap threshold is fixed at 4 MiB, so freed blocks of 4 MiB or more
  (the writer's concatenated batches) go back to the kernel. Measured under full
  load (traces, 1000-span requests, two runs each): mimalloc with glibc's default
  thresholds peaked at 531-548 MiB, the system pool with the 4 MiB threshold at
  456-475 MiB at the same throughput (both before decoded batches became
  mappings of their own, docs/DECODER.md "Memory"). A 256 KiB threshold peaked
  lower but cost 10-20 % of the throughput in page faults on fresh pages.

``ARROW_DEFAULT_MEMORY_POOL`` set by the user wins over the pool choice.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
POOL_VARIABLE = "ARROW_DEFAULT_MEMORY_POOL"

# What configure_process_memory() applied in this process (empty if not called).
APPLIED: dict = {}


def configure_process_memory() -> dict:
    """Use Arrow's system memory pool and glibc's mmap for blocks >= 4 MiB.

    Call it before pyarrow is imported: Arrow's C++ default pool is fixed at its
    first use. Returns what was applied, which is also kept in APPLIED for the
    daemon's status snapshot.
    """
    applied = APPLIED
    applied.clear()
    ours = not os.environ.get(POOL_VARIABLE)
    if ours:
        applied["arrow_cpp_pool"] = "system" if "pyarrow" not in sys.modules else "unchanged: pyarrow was loaded"
        os.environ[POOL_VARIABLE] = "system"  # read once by Arrow's C++ default pool; inherited by workers
    import pyarrow as pa

    if ours:
        pa.set_memory_pool(pa.system_memory_pool())  # pyarrow's own default, in case it was loaded
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
