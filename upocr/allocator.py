"""How the process gets memory from the kernel when the network runs on the CPU.

With glibc's defaults, every allocation above the mmap threshold (adaptive, 32 MiB at most) is
a fresh mapping that is returned to the kernel when freed. A network whose activations are tens
of MiB each then touches brand-new pages on every pass: a 512x512 pass of the paper network
takes 108,000-159,000 page faults, 0.24-0.48 s of kernel time on a 2-core virtual machine, and
the next pass takes them all again.

:func:`retain_freed_memory` makes glibc serve every allocation from its heap and keep freed
memory there, so the pages of one pass's activations are reused by the next (no page faults
after the first pass). Threads that start after the call share that one heap (one arena): a
server whose requests run on a pool of worker threads would otherwise keep a pass's memory once
per thread (the tiny preset at 512x512, 12 requests on 6 threads, 2-core host: 220-590 MiB more
resident with glibc's defaults, 40-210 MiB with the shared heap; the figure moves with the heap's
layout from run to run). The cost is the one every
caching allocator has: the process keeps the memory of its largest pass instead of handing it
back between passes. The pipeline and the trainer call it when they run on the CPU;
``UPOCR_RETAIN_MEMORY=0`` turns it off. Elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

#: mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
#: Free memory at the top of the heap is handed back only above this (the largest int mallopt takes).
TRIM_THRESHOLD = 2**31 - 1


@functools.cache
def retain_freed_memory() -> bool:
    """Serve large allocations from glibc's heap, shared by all threads, and keep freed memory for
    reuse. Returns whether the setting is in force. The first call decides (later calls return
    its answer); a no-op (False) off glibc, or with ``UPOCR_RETAIN_MEMORY=0`` set at that first
    call."""
    if os.environ.get("UPOCR_RETAIN_MEMORY", "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success; mmap is turned off last, so a failure before leaves it as it was
    return (bool(mallopt(M_ARENA_MAX, 1)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
            and bool(mallopt(M_MMAP_MAX, 0)))
