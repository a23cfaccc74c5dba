"""Inference speed and memory of the UPOCR network on this machine.

    python benchmarks/inference_speed.py                 # every case, JSON lines on stdout
    python benchmarks/inference_speed.py --case small-fp32 --repeat 5

Cases: small-fp32 (paper network, one task, 512x512), small-bf16 (bfloat16 autocast, with the
IoU of its segmentation mask against fp32, for random weights and for the bundled default weights
on the bundled examples), small-all (three tasks, one encoder pass), tiny-fp32,
tile-4096 (a 4096x4096 image through the pipeline in tile mode with the paper network; peak
resident memory measured in a child process). Weights are random: speed does not depend on them.

Like the pipeline, the benchmark first calls ``upocr.allocator.retain_freed_memory()`` (glibc keeps
freed memory for reuse instead of mapping fresh pages on every pass); ``--system-malloc`` leaves
glibc's defaults, for comparison. Each line carries ``page_faults_per_pass`` (minor faults of the
timed runs, per run) and ``retain_freed_memory``.

Hosts of the same name differ: each line also carries ``gemm_gflops``, this machine's float32
matrix-multiply throughput at the same thread count (2048x2048, median of 10), so results from
different machines can be compared (the paper network's 512x512 pass is 254 GFLOP).
``seconds`` is the median of ``--repeat`` runs and ``best_seconds`` the fastest; small-all
interleaves its two measurements, so a slow spell on a shared host hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

CASES = ("small-fp32", "small-bf16", "small-all", "tiny-fp32", "tile-4096")


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _times(fns: dict, repeat: int) -> tuple[dict, float]:
    """Median and best time of each function, the functions interleaved round by round so that a
    slow spell of a shared host falls on all of them alike; and the minor page faults per round
    of the timed runs."""
    for fn in fns.values():
        fn()  # warm-up: caches, allocator, oneDNN primitives
    times = {name: [] for name in fns}
    before = _minor_faults()
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    faults = (_minor_faults() - before) / repeat
    return {name: (sorted(t)[len(t) // 2], min(t)) for name, t in times.items()}, faults


def _time(fn, repeat: int) -> float:
    return _times({"fn": fn}, repeat)[0]["fn"][0]


def _record(info: dict, fn, repeat: int) -> None:
    timed, faults = _times({"fn": fn}, repeat)
    info["seconds"], info["best_seconds"] = timed["fn"]
    info["page_faults_per_pass"] = round(faults)


def gemm_gflops(size: int = 2048, repeat: int = 10) -> float:
    """float32 matrix-multiply throughput of this machine at the current thread count."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator)
    b = torch.randn(size, size, generator=generator)
    return 2 * size**3 / _time(lambda: a @ b, repeat) / 1e9


def _model(preset: str):
    from upocr import UPOCR

    torch.manual_seed(0)
    return UPOCR.from_preset(preset).eval()


def _iou(a, b) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def _default_weights_bf16_agreement() -> dict:
    """Segmentation-mask IoU of bfloat16 against float32 for trained weights: the bundled default
    model on each bundled example image, through the pipeline (random weights put much of the
    map near the threshold, trained ones do not)."""
    from pathlib import Path

    from upocr.pipeline import DEFAULT_MODEL_DIR, UPOCRPipeline

    examples = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.*"))
    pipes = {dtype: UPOCRPipeline.from_pretrained(DEFAULT_MODEL_DIR, device="cpu", mode="resize", dtype=dtype)
             for dtype in ("float32", "bfloat16")}
    masks = {path.name: [torch.from_numpy(pipe(path, "text-segmentation").mask) for pipe in pipes.values()]
             for path in examples}
    return {name: round(_iou(*pair), 4) for name, pair in masks.items()}


def run_case(case: str, repeat: int) -> dict:
    x = torch.rand(1, 3, 512, 512, generator=torch.Generator().manual_seed(0))
    info = {"case": case, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if case in ("small-fp32", "tiny-fp32"):
        model = _model(case.split("-")[0])
        with torch.inference_mode():
            _record(info, lambda: model(x, "text-segmentation"), repeat)
    elif case == "small-bf16":
        model = _model("small")
        with torch.inference_mode():
            ref = model(x, "text-segmentation")[-1].mean(1) > 0.4

            def run():
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(x, "text-segmentation")[-1].float()

            _record(info, run, repeat)
            low = run().mean(1) > 0.4
        info["mask_iou_vs_fp32"] = _iou(ref, low)
        info["default_weights_mask_iou_vs_fp32"] = _default_weights_bf16_agreement()
    elif case == "small-all":
        model = _model("small")
        with torch.inference_mode():
            timed, _ = _times({"all": lambda: model.forward_tasks(x), "one": lambda: model(x, "text-segmentation")},
                              repeat)
        (info["seconds"], info["best_seconds"]), (info["one_task_seconds"], best_one) = timed["all"], timed["one"]
        info["ratio_to_one_task"] = info["seconds"] / info["one_task_seconds"]
        info["best_ratio_to_one_task"] = info["best_seconds"] / best_one
    elif case == "tile-4096":
        code = (
            "import resource, time, numpy as np, torch\n"
            "from upocr import UPOCR\nfrom upocr.pipeline import UPOCRPipeline\n"
            "torch.manual_seed(0)\n"
            "pipe = UPOCRPipeline(UPOCR.from_preset('small'), device='cpu', mode='tile')\n"
            "img = np.random.default_rng(0).integers(0, 255, (4096, 4096, 3), dtype=np.uint8)\n"
            "t = time.perf_counter(); r = pipe(img, 'text-segmentation'); t = time.perf_counter() - t\n"
            "print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, r.mask.shape)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, peak_kib, _ = out.stdout.strip().split(" ", 2)
        info["seconds"] = float(seconds)
        info["peak_rss_gib"] = int(peak_kib) / 2**20
    else:
        raise ValueError(case)
    info["load_average_1min"] = os.getloadavg()[0]
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=CASES, action="append")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's default allocation (fresh pages for every large tensor)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retained = False
    if args.system_malloc:
        os.environ["UPOCR_RETAIN_MEMORY"] = "0"  # the tile-4096 child process builds a pipeline too
    else:
        from upocr.allocator import retain_freed_memory

        retained = retain_freed_memory()
    gemm = round(gemm_gflops(), 1)
    for case in args.case or CASES:
        info = run_case(case, args.repeat)
        print(json.dumps({**info, "gemm_gflops": gemm, "retain_freed_memory": retained}), flush=True)


if __name__ == "__main__":
    main()
