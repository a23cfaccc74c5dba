"""Throughput of ``upocr label``: images per second for labelling a folder.

    python benchmarks/label_throughput.py --preset tiny                  # overlapped reading/inference/writing
    python benchmarks/label_throughput.py --preset tiny --no-overlap     # the baseline: one thing at a time
    python benchmarks/label_throughput.py --preset tiny --compare        # both, on the same images and model
    python benchmarks/label_throughput.py --model path/or/repo --images 200 --size 512

The folder holds ``--images`` synthetic pages (``--size`` x ``--size``, JPEG) of dark words on
light paper. The model comes from ``--model``, else ``--preset`` (random weights: speed does not
depend on them), else the bundled default weights. Model loading, a warm-up image and the exports
are not timed: the time covers reading, inference and writing the labels and manifest. Prints
one JSON line per run (with the load average: other work on the machine slows it down).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_folder(folder: Path, count: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        paper = tuple(int(v) for v in rng.integers(200, 250, 3))
        image = Image.new("RGB", (size, size), paper)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(10, 30))):
            x, y = (int(v) for v in rng.integers(0, max(1, size - 60), 2))
            word = "".join(chr(int(c)) for c in rng.integers(65, 91, int(rng.integers(3, 9))))
            draw.text((x, y), word, fill=tuple(int(v) for v in rng.integers(0, 80, 3)))
        sub = folder / f"part{index % 4}"
        sub.mkdir(exist_ok=True)
        image.save(sub / f"page {index:04d}.jpg", quality=90)


def resolve_model(args: argparse.Namespace, scratch: Path) -> str:
    if args.model:
        return args.model
    if args.preset:
        import torch

        from upocr import UPOCR

        torch.manual_seed(0)
        folder = scratch / f"upocr-{args.preset}-random"
        UPOCR.from_preset(args.preset).save_pretrained(folder)
        return str(folder)
    from upocr.pipeline import default_model_source

    return default_model_source()


def run_once(pipe, inputs, folder: Path, out: Path, args: argparse.Namespace, overlap: bool, model: str) -> dict:
    import torch

    from upocr.labeling import LabelConfig, find_inputs, label_files

    if out.exists():
        shutil.rmtree(out)
    config = LabelConfig(task=args.task, mode=args.mode, overlap=overlap, progress=False, formats=("png",),
                         read_workers=args.workers, write_workers=args.workers)
    summary = label_files(pipe, find_inputs(folder, out), out, config)
    if summary.failed or summary.done != len(inputs):
        raise SystemExit(f"labelling went wrong: {summary.as_dict()}")
    return {
        "benchmark": "label_throughput",
        "images_per_second": round(summary.images_per_second, 3),
        "seconds": round(summary.seconds, 3),
        "images": summary.done,
        "size": args.size,
        "task": summary.task,
        "model": model,
        "preset": args.preset if not args.model else None,
        "mode": args.mode,
        "overlap": overlap,
        "threads": torch.get_num_threads(),
        "workers": args.workers,
        "device": str(pipe.device),
        "cpu_count": os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Hub repo id or model folder (default: --preset, else the bundled weights)")
    parser.add_argument("--preset", choices=("tiny", "small"), help="a freshly initialised network of this preset")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--task", default="text-segmentation")
    parser.add_argument("--mode", choices=("resize", "tile", "auto"), default="resize")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--workers", type=int, default=2, help="reader and writer threads each")
    parser.add_argument("--device", default=None)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--no-overlap", action="store_true", help="the baseline: read, infer and write in turn")
    group.add_argument("--compare", action="store_true", help="run the baseline, then the overlapped version")
    args = parser.parse_args(argv)

    import torch

    from upocr.pipeline import UPOCRPipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="upocr-label-bench-") as tmp:
        scratch = Path(tmp)
        model = resolve_model(args, scratch)
        folder = scratch / "images"
        make_folder(folder, args.images, args.size)
        pipe = UPOCRPipeline.from_pretrained(model, mode=args.mode, device=args.device)
        from upocr.labeling import find_inputs

        inputs = find_inputs(folder)
        pipe.run_all(pipe.read(inputs[0][0]), [args.task])  # warm-up
        runs = [False, True] if args.compare else [not args.no_overlap]
        results = []
        for overlap in runs:
            result = run_once(pipe, inputs, folder, scratch / "out", args, overlap, model if args.model else
                              (f"preset:{args.preset}" if args.preset else model))
            results.append(result)
            print(json.dumps(result), flush=True)
        if args.compare:
            print(json.dumps({"benchmark": "label_throughput", "overlap_speedup":
                              round(results[1]["images_per_second"] / results[0]["images_per_second"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
