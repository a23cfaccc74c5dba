"""Window attention kernels on the CPU: the fused ``F.scaled_dot_product_attention`` against the
explicit form (two batched matmuls and a softmax), for every stage of a preset at 512x512.

    python benchmarks/attention_kernels.py                      # paper network, float32 and bfloat16
    python benchmarks/attention_kernels.py --preset tiny --dtype float32

One JSON line per stage and dtype: the shape ``(windows, heads, N, head_dim)``, the median time of
each kernel in milliseconds, and which one ``upocr.modeling.swinv2.explicit_attention_is_faster``
picks for it. Both kernels get the same inputs as in the model: unit q (times the logit scale) and
k, and bias + shift mask broadcast over the images of the batch.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F


def _median_ms(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(sorted(times)[len(times) // 2] * 1e3, 3)


def stage_shapes(preset: str, size: int = 512) -> list[tuple[str, int, int, int, int]]:
    """``(stage, windows, heads, N, head_dim)`` of every attention stage of ``preset``, read from
    what the first block of each stage receives in a pass at ``size`` x ``size``."""
    from upocr import UPOCR

    model = UPOCR.from_preset(preset).eval()
    shapes = []

    def record(name):
        def hook(attn, args):
            windows, n, c = args[0].shape
            shapes.append((name, windows, attn.num_heads, n, c // attn.num_heads))
        return hook

    for part in ("encoder", "decoder"):
        for i, stage in enumerate(getattr(model, part).stages):
            stage.blocks[0].attn.register_forward_pre_hook(record(f"{part}.{i}"))
    with torch.inference_mode():
        model(torch.zeros(1, 3, size, size), model.tasks[0])
    return shapes


def main() -> None:
    from upocr.allocator import retain_freed_memory
    from upocr.modeling.swinv2 import explicit_attention, explicit_attention_is_faster

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small", choices=("small", "tiny"))
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"], choices=("float32", "bfloat16"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_memory()
    generator = torch.Generator().manual_seed(0)
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        for stage, windows, heads, n, d in stage_shapes(args.preset):
            q, k, v = (torch.randn(windows, heads, n, d, generator=generator) for _ in range(3))
            q = F.normalize(q, dim=-1) * 10
            k = F.normalize(k, dim=-1)
            mask = torch.rand(windows, heads, n, n, generator=generator) * 16
            q, k, v, mask = (t.to(dtype) for t in (q, k, v, mask))
            with torch.inference_mode():
                fused = _median_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0),
                                   args.repeat)
                explicit = _median_ms(lambda: explicit_attention(q, k, v, mask), args.repeat)
                picks = "explicit" if explicit_attention_is_faster(q) else "fused"
            print(json.dumps({"preset": args.preset, "stage": stage, "dtype": dtype_name,
                              "shape": [windows, heads, n, d], "fused_ms": fused, "explicit_ms": explicit,
                              "model_uses": picks}), flush=True)


if __name__ == "__main__":
    main()
