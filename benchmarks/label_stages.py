"""Where the time of pre-labelling a real-size page goes, stage by stage.

    python benchmarks/label_stages.py --engine compile-bf16 --threads 2
    python benchmarks/label_stages.py --engine fp32 --pages 4 --size 2400x1800 --text-px 60

Renders ``--pages`` photos of pages (``--size``, dark words ``--text-px`` high on unevenly lit
paper: the pages of ``benchmarks/engines.py``), runs the bundled default model over them once
(an engine that compiles meets every shape there), then times, per page and one page at a time:
the first pass that finds the letters' height, the pass at the working size, stroke refinement,
and the whole ``run_all``; then ``upocr label`` over the same pages with reading and writing
overlapped and without. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class StageTimer:
    """Seconds spent in some methods of one object, summed while ``timed`` is on."""

    def __init__(self, target, names: dict[str, str]):
        self.seconds = {label: 0.0 for label in names.values()}
        for method, label in names.items():
            setattr(target, method, self._wrap(getattr(target, method), label))

    def _wrap(self, fn, label: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
        return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="compile-bf16")
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--size", default="1600x1200", help="WIDTHxHEIGHT of the pages")
    parser.add_argument("--text-px", type=int, default=40, help="height of the text on the pages")
    parser.add_argument("--text-height", type=float, default=16.0, help="letter height of the working size")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from engines import make_pages

    from upocr import UPOCR
    from upocr.io import read_image
    from upocr.labeling import LabelConfig, find_inputs, label_files
    from upocr.pipeline import DEFAULT_MODEL_DIR, UPOCRPipeline
    from upocr.tasks import TEXT_SEGMENTATION

    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "pages"
        make_pages(folder, args.pages, width, height, args.text_px)
        pipe = UPOCRPipeline(UPOCR.from_pretrained(DEFAULT_MODEL_DIR), device="cpu", mode="auto",
                             engine=args.engine, text_height=args.text_height, long_running=True)
        pages = [read_image(path) for path in sorted(folder.glob("*.jpg"))]
        scales = [pipe.text_scale(page) for page in pages]
        for page in pages:  # meets every shape (compiling engines compile here)
            pipe.run_all(page, [TEXT_SEGMENTATION])
        timer = StageTimer(pipe, {"text_scale": "first_pass", "_predict_tiled": "working_pass",
                                  "_segmentation": "stroke_refinement"})
        start = time.perf_counter()
        for page in pages:
            pipe.run_all(page, [TEXT_SEGMENTATION])
        total = time.perf_counter() - start
        report = {"engine": args.engine, "threads": torch.get_num_threads(), "pages": len(pages),
                  "size": args.size, "text_px": args.text_px, "text_height": args.text_height,
                  "working_sizes": sorted({f"{int(width * s)}x{int(height * s)}" for s in scales}),
                  **{f"{k}_s": round(v / len(pages), 3) for k, v in timer.seconds.items()},
                  "run_all_s": round(total / len(pages), 3)}
        for overlap in (True, False):
            out = Path(scratch) / f"labels-{overlap}"
            config = LabelConfig(task=TEXT_SEGMENTATION, mode="auto", progress=False, formats=("png",),
                                 overlap=overlap)
            summary = label_files(pipe, find_inputs(folder, out), out, config)
            report[f"label_images_per_second_{'overlapped' if overlap else 'sequential'}"] = round(
                summary.images_per_second, 3)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
