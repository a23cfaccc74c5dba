"""upocr.allocator: on glibc, large tensors come from the heap and their memory is kept for reuse
(the speed this buys is measured by benchmarks/inference_speed.py: ``page_faults_per_pass``).

Each case runs in a fresh interpreter: the setting is process-wide and decided once."""

from __future__ import annotations

import json
import os
import platform
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


def _probe(setup: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup)], capture_output=True, text=True,
                         check=True, env={**os.environ, **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


_RETAIN = "from upocr.allocator import retain_freed_memory\napplied = retain_freed_memory()"


def test_by_default_a_large_tensor_is_a_separate_mapping_returned_on_free():
    result = _probe("applied = None")
    assert result["mapped"] >= 64 * MIB
    assert result["heap_kept"] < 64 * MIB


def test_retained_a_large_tensor_comes_from_the_heap_which_keeps_its_memory():
    result = _probe(_RETAIN)
    assert result["applied"] is True
    assert result["mapped"] == 0
    assert result["heap_kept"] >= 64 * MIB


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
