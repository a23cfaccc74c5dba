"""Inference engines side by side on this host: latency, all-tasks ratio, labelling throughput on
real-size images, peak memory and agreement with fp32.

    python benchmarks/engines.py                               # default model, every engine here
    python benchmarks/engines.py --model default --model paper --engine fp32 --engine onnxruntime
    python benchmarks/engines.py --label-images 0              # latency only

Each (model, engine) runs in its own process, so its peak memory is its own; the rounds of one
process interleave one task and all three tasks, so a slow spell of a shared host falls on both
alike. ``paper`` is the paper network (``small`` preset, random weights: speed does not depend on
them; its agreement is not measured, random weights put much of a map near the threshold).
``default`` is the bundled model. The labelling figure is ``upocr label`` (auto mode: tiles at
native resolution, or at the text's scale with ``--text-height``) over ``--label-images``
photographed pages of ``--label-size`` pixels with text ``--label-text-px`` high, timed on a second
run over the same pages (the first, whose seconds are printed too, meets every shape: an engine
that compiles per shape does it there). Prints one JSON line
per run, then a Markdown table with the host's CPU features and fp32 GEMM throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _load(name: str):
    from upocr import UPOCR
    from upocr.pipeline import DEFAULT_MODEL_DIR

    if name == "paper":
        torch.manual_seed(0)
        return UPOCR.from_preset("small").eval()
    return UPOCR.from_pretrained(DEFAULT_MODEL_DIR if name == "default" else name).eval()


def one(model_name: str, engine_name: str, size: int, repeat: int, label_images: int, label_size: str,
        text_height: float | None = None, text_px: int = 40) -> dict:
    """Measured in this process: latency of one task and of all tasks at ``size`` x ``size``,
    labelling throughput, peak resident memory."""
    from inference_speed import _times

    from upocr.engines import build_engine

    model = _load(model_name)
    started = time.perf_counter()
    engine = build_engine(engine_name, model, "cpu")
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    one_task = [model.tasks[-1]]
    timed, _ = _times({"one": lambda: engine.run(x, one_task), "all": lambda: engine.run(x, model.tasks)}, repeat)
    info = {"model": model_name, "engine": engine_name, "size": size, "threads": torch.get_num_threads(),
            "prepare_seconds": round(time.perf_counter() - started, 1),
            "one_task_seconds": round(timed["one"][0], 4), "all_tasks_seconds": round(timed["all"][0], 4),
            "all_tasks_ratio": round(timed["all"][0] / timed["one"][0], 2)}
    if label_images:
        info.update(label_throughput(model, engine_name, label_images, label_size, text_height, text_px))
    info["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def make_pages(folder: Path, count: int, width: int, height: int, text_px: int) -> None:
    """Photos of pages: dark words ``text_px`` high (DejaVu Sans) on light, unevenly lit paper, JPEG."""
    import numpy as np
    from matplotlib import font_manager
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), text_px)
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    light = np.linspace(0.8, 1.0, width)[None, :, None] * np.linspace(0.85, 1.0, height)[:, None, None]
    for index in range(count):
        image = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(205, 245, 3)))
        draw = ImageDraw.Draw(image)
        y = int(text_px * 0.8)
        while y < height - text_px * 1.5:
            x = int(text_px * rng.uniform(0.5, 2))
            while x < width - text_px * 4:
                word = "".join(chr(int(c)) for c in rng.integers(97, 123, int(rng.integers(2, 9))))
                draw.text((x, y), word, font=font, fill=tuple(int(v) for v in rng.integers(0, 70, 3)))
                x += int(draw.textlength(word + " ", font=font))
            y += int(text_px * rng.uniform(1.4, 2.2))
        photo = np.clip(np.asarray(image, np.float32) * light, 0, 255).astype(np.uint8)
        Image.fromarray(photo).save(folder / f"page {index:03d}.jpg", quality=90)


def label_throughput(model, engine_name: str, count: int, label_size: str, text_height: float | None,
                     text_px: int) -> dict:
    from upocr.labeling import LabelConfig, find_inputs, label_files
    from upocr.pipeline import UPOCRPipeline

    width, height = (int(v) for v in label_size.split("x"))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        make_pages(folder, count, width, height, text_px)
        pipe = UPOCRPipeline(model, device="cpu", mode="auto", engine=engine_name, batch_size=4,
                             text_height=text_height)
        config = LabelConfig(task=model.tasks[-1], mode="auto", progress=False, formats=("png",))
        # a first run over the same pages meets every shape (an engine that compiles does it here)
        first = label_files(pipe, find_inputs(folder, Path(scratch) / "first"), Path(scratch) / "first", config)
        summary = label_files(pipe, find_inputs(folder, Path(scratch) / "labels"), Path(scratch) / "labels", config)
    return {"label_images_per_second": round(summary.images_per_second, 3), "label_size": label_size,
            "label_first_run_seconds": round(first.seconds, 1),
            "label_images": summary.done, "label_text_px": text_px, "text_height": text_height}


def host() -> dict:
    from inference_speed import gemm_gflops

    from upocr.engines import available_engines, cpu_features

    return {**cpu_features(), "fp32_gemm_gflops": round(gemm_gflops(), 1), "threads": torch.get_num_threads(),
            "engines": available_engines("cpu")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="default, paper, or a model folder (repeatable)")
    parser.add_argument("--engine", action="append", help="an engine of upocr.engines.ENGINES (default: all here)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--label-images", type=int, default=8)
    parser.add_argument("--label-size", default="1600x1200", help="WIDTHxHEIGHT of the labelled pages")
    parser.add_argument("--label-text-px", type=int, default=40, help="height of the text on the labelled pages")
    parser.add_argument("--text-height", type=float, default=None,
                        help="label at the scale where text is this high (the pipeline's text_height)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "ENGINE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one(*args.one, args.size, args.repeat, args.label_images, args.label_size,
                             args.text_height, args.label_text_px)))
        return 0

    from upocr.engines import available_engines, calibrate

    info = host()
    print(json.dumps({"host": info}), flush=True)
    rows = []
    for model_name in args.model or ["default"]:
        for engine_name in args.engine or available_engines("cpu"):
            command = [sys.executable, __file__, "--one", model_name, engine_name, "--size", str(args.size),
                       "--repeat", str(args.repeat), "--label-images", str(args.label_images),
                       "--label-size", args.label_size, "--threads", str(torch.get_num_threads()),
                       "--label-text-px", str(args.label_text_px)]
            if args.text_height:
                command += ["--text-height", str(args.text_height)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                print(json.dumps({"model": model_name, "engine": engine_name,
                                  "error": (done.stderr.strip().splitlines() or ["?"])[-1]}), flush=True)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    agreement = {}
    if "default" in (args.model or ["default"]):
        verdict = calibrate(_load("default"), "cpu", engines=args.engine)
        agreement = {n: {t.split("-")[-1]: round(a["value"], 4) for t, a in found.items()}
                     for n, found in verdict.agreement.items()}
        print(json.dumps({"calibration": verdict.summary()}), flush=True)
    print(f"\nhost: {info['cpu']}; {', '.join(info['flags'])}; fp32 GEMM {info['fp32_gemm_gflops']} GFLOP/s; "
          f"{info['threads']} threads\n")
    print("| model | engine | one task (s) | all tasks (s) | ratio | label img/s | peak MiB | agreement |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        eager = next((x for x in rows if x["model"] == r["model"] and x["engine"] == "fp32"), r)
        speed = eager["one_task_seconds"] / r["one_task_seconds"]
        found = agreement.get(r["engine"], {}) if r["model"] == "default" else {}
        print(f"| {r['model']} | {r['engine']} | {r['one_task_seconds']:.3f} ({speed:.2f}x) | "
              f"{r['all_tasks_seconds']:.3f} | {r['all_tasks_ratio']:.2f} | {r.get('label_images_per_second', '-')} | "
              f"{r['peak_rss_mib']} | {', '.join(f'{k} {v}' for k, v in found.items()) or '-'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
