"""upocr.allocator: on glibc, large tensors come from the heap and their memory is kept for reuse
(the speed this buys is measured by benchmarks/inference_speed.py: ``page_faults_per_pass``).

Each case runs in a fresh interpreter: the setting is process-wide and decided once."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the allocator setting exists on Linux with glibc only")

#: After an optional set-up, holds a 64 MiB tensor and reports, from glibc's mallinfo2, how many of
#: its bytes were mapped outside the heap, and how much the heap grew for it and kept once it is freed.
_PROBE = """
import ctypes, json, torch
{setup}
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2()
t = torch.empty(16 * 2**20)  # 64 MiB of float32
t.fill_(1.0)
mapped = libc.mallinfo2().hblkhd - before.hblkhd
del t
print(json.dumps({{"mapped": mapped, "heap_kept": libc.mallinfo2().arena - before.arena, "applied": applied}}))
"""

MIB = 2**20


def _last_line(code: str, **env) -> str:
    """Run ``code`` in a fresh interpreter and return the last line it printed."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    return out.stdout.strip().splitlines()[-1]


def _probe(setup: str, **env) -> dict:
    return json.loads(_last_line(_PROBE.format(setup=setup), **env))


_RETAIN = "from upocr.allocator import retain_freed_memory\napplied = retain_freed_memory()"


def test_by_default_a_large_tensor_is_a_separate_mapping_returned_on_free():
    result = _probe("applied = None")
    assert result["mapped"] >= 64 * MIB
    assert result["heap_kept"] < 16 * MIB


def test_retained_a_large_tensor_comes_from_the_heap_which_keeps_its_memory():
    result = _probe(_RETAIN)
    assert result["applied"] is True
    assert result["mapped"] == 0
    assert result["heap_kept"] >= 48 * MIB  # the heap may have had some room for it already


def test_the_environment_can_turn_it_off():
    result = _probe(_RETAIN, UPOCR_RETAIN_MEMORY="0")
    assert result["applied"] is False
    assert result["mapped"] >= 64 * MIB


def test_a_cpu_pipeline_turns_it_on(micro_model_dir):
    setup = (
        "from upocr.pipeline import UPOCRPipeline\n"
        f"UPOCRPipeline.from_pretrained({str(micro_model_dir)!r}, device='cpu')\n"
        "from upocr.allocator import retain_freed_memory\n"
        "applied = retain_freed_memory.cache_info().currsize == 1"
    )
    result = _probe(setup)
    assert result["applied"] is True
    assert result["mapped"] == 0


def test_requests_on_many_threads_share_one_retained_pool():
    """A server runs requests on a pool of worker threads: the memory kept for reuse is shared by
    all of them (request threads add no glibc arena), not one pool per thread as with glibc's
    defaults. The verdict counts arenas before and after the requests, which does not depend on
    how busy the host is; how much resident memory the requests added (12 requests on 6 threads,
    the tiny preset at 512x512) is in the message only, as it moves with the heap's layout."""
    code = """
import ctypes, queue, sys, threading, numpy as np, torch
from upocr import UPOCR
from upocr.pipeline import UPOCRPipeline
torch.manual_seed(0)
pipe = UPOCRPipeline(UPOCR.from_preset("tiny", img_size=512), device="cpu", mode="resize")
image = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
pipe(image)
base = resident_mib()
libc = ctypes.CDLL("libc.so.6")
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
print("requests", file=sys.stderr, flush=True)
inboxes, done = [queue.Queue() for _ in range(6)], queue.Queue()
def worker(inbox):
    while inbox.get() is not None:
        pipe(image)
        done.put(1)
threads = [threading.Thread(target=worker, args=(q,)) for q in inboxes]
for t in threads:
    t.start()
for _ in range(2):
    for inbox in inboxes:
        inbox.put(1)
        done.get()
print(resident_mib() - base, flush=True)
libc.malloc_stats()
for inbox in inboxes:
    inbox.put(None)
"""

    def run(**env) -> tuple[float, int]:
        """Resident growth (MiB) and the number of arenas the request threads added."""
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                             env={**os.environ, "OMP_NUM_THREADS": "2", **env})
        before, after = out.stderr.split("requests\n")[-2:]
        added = _arenas(after) - _arenas(before)
        return float(out.stdout.strip().splitlines()[-1]), added

    (shared, shared_added), (default, default_added) = run(), run(UPOCR_RETAIN_MEMORY="0")
    note = f"resident memory grew by {shared:.0f} MiB (shared) and {default:.0f} MiB (glibc's defaults)"
    assert shared_added == 0, f"6 request threads added {shared_added} arenas; {note}"
    assert default_added >= 3, f"with glibc's defaults they added only {default_added} (the comparison is void); {note}"


def _arenas(malloc_stats: str) -> int:
    return sum(1 for line in malloc_stats.splitlines() if re.fullmatch(r"Arena \d+:", line.strip()))
