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
    """``(stage, windows, heads, N, head_dim)`` of every attention stage of ``preset``."""
    from upocr.modeling.upocr import PRESETS

    cfg = PRESETS[preset]
    shapes = []
    dims = [cfg["embed_dim"] * 2**i for i in range(len(cfg["encoder_depths"]))]
    for i, (dim, heads) in enumerate(zip(dims, cfg["encoder_num_heads"])):
        side, ws = size // 4 // 2**i, cfg["encoder_window_size"]
        shapes.append((f"encoder.{i}", (-(-side // ws)) ** 2, heads, ws * ws, dim // heads))
    for i, heads in enumerate(cfg["decoder_num_heads"]):
        dim, side, ws = dims[-1] // 2**i, size // 32 * 2**i, cfg["decoder_window_size"]
        shapes.append((f"decoder.{i}", (-(-side // ws)) ** 2, heads, ws * ws, dim // heads))
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
            mask = torch.rand(1 if windows == 1 else windows, heads, n, n, generator=generator) * 16
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
