"""``upocr predict``: run one task on image files or folders and write one PNG per image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..tasks import DEFAULT_SEGMENTATION_THRESHOLD, TASKS


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="run a task on images and write PNG results",
        description="Writes OUTPUT/<stem>.png per image (folders keep their structure): text-removal an RGB "
        "image of the input's size, text-segmentation an L mask 0/255, tampered-text-detection an L label "
        "map 0 background / 1 real text / 2 tampered text.")
    add_model_arguments(p)
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--output", "-o", required=True, help="output folder")
    background = p.add_mutually_exclusive_group()
    background.add_argument("--raw-removal", dest="preserve_background", action="store_false",
                            help="text removal: write the network's output for the whole image (default: only the "
                            "detected text changes; every pixel outside the dilated text mask stays the input's)")
    background.add_argument("--preserve-background", dest="preserve_background", action="store_true",
                            help="text removal: change only the detected text (the default)")
    p.set_defaults(preserve_background=True)
    p.set_defaults(func=run)


def add_model_arguments(p: argparse.ArgumentParser, *, text_height: float | None = None) -> None:
    """Options shared by every command that runs the model (``text_height``: this command's
    default for ``--text-height``)."""
    p.add_argument("--model", help="Hub repo id, model folder or official .pth (default: the bundled weights)")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--mode", choices=("resize", "tile", "auto"), default="auto",
                   help="resize: whole image at the model size; tile: native resolution; auto: tile large images")
    p.add_argument("--threshold", type=float, default=DEFAULT_SEGMENTATION_THRESHOLD,
                   help=f"segmentation threshold (default {DEFAULT_SEGMENTATION_THRESHOLD})")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="compute precision (bfloat16 is faster on CPUs that support it)")
    # upocr.engines.CHOICES, written out so that building the parser does not import torch
    p.add_argument("--engine", choices=("auto", "fp32", "bf16", "int8", "onnxruntime", "openvino", "openvino-bf16",
                                          "compile-bf16"),
                   default=None,
                   help="who runs the network on the CPU: auto (default, or $UPOCR_ENGINE) picks the fastest engine "
                   "whose outputs agree with fp32 on this host, from a calibration cached per host and model")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="refuse images with more pixels than this (default: 100 million)")
    p.add_argument("--max-work-pixels", type=int, default=None,
                   help="tile mode: run images larger than this many pixels at the largest scale within it and "
                   "bring the results back to their size (default: no limit)")
    default = "native resolution" if text_height is None else f"{text_height:g}"
    p.add_argument("--text-height", type=float, default=text_height, metavar="PIXELS",
                   help="tile mode: run each image larger than the model size at the scale where its letters are "
                   "about this many pixels high (a first pass finds them; small text keeps the native resolution; "
                   f"0: native resolution; default: {default})")
    p.add_argument("--no-stroke-refinement", dest="refine_strokes", action="store_false",
                   help="text masks as the network gives them, without the model's stroke refinement "
                   "(edges moved onto the strokes from the image's colours)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="tile mode: stop an image that takes longer than this and report it as failed "
                   "(default: no limit)")


def load_pipeline(args: argparse.Namespace, *, long_running: bool = False):
    """The pipeline the model options name; prints a clear message and returns None on failure.
    ``long_running``: the command runs many images (``auto`` may pick an engine that compiles)."""
    from ..engines import EngineError
    from ..pipeline import NoDefaultWeightsError, UPOCRPipeline

    try:
        pipe = UPOCRPipeline.from_pretrained(args.model, revision=args.revision, mode=args.mode,
                                             device=args.device, dtype=args.dtype,
                                             max_pixels=getattr(args, "max_pixels", None),
                                             max_work_pixels=getattr(args, "max_work_pixels", None),
                                             time_budget=getattr(args, "time_budget", None),
                                             engine=getattr(args, "engine", None),
                                             text_height=getattr(args, "text_height", None) or None,
                                             long_running=long_running,
                                             refine_strokes=getattr(args, "refine_strokes", True))
        _prepare_engine(pipe)
        return pipe
    except NoDefaultWeightsError as error:
        print(f"upocr: {error}", file=sys.stderr)
    except EngineError as error:
        print(f"upocr: {error}", file=sys.stderr)
    except (OSError, ValueError) as error:
        print(f"upocr: cannot load model {args.model!r}: {error}", file=sys.stderr)
    return None


def _prepare_engine(pipe) -> None:
    """Choose the engine before the first image, saying so when that takes a calibration."""
    from ..engines import needs_calibration

    calibrates = needs_calibration(pipe.engine_name, pipe.model, pipe.device, compiled=pipe.long_running)
    if calibrates:
        print("upocr: measuring which engine runs this model fastest on this host (once per host and model; "
              "about a minute, a few more where an engine compiles)...", file=sys.stderr)
    pipe.prepare_engine()
    if calibrates:
        print(f"upocr: {pipe.calibration.summary()}", file=sys.stderr)


def collect_inputs(inputs: list[str]) -> list[tuple[Path, str]]:
    """``(path, relative name)`` for every image named or found under a named folder."""
    from ..paths import iter_image_files

    found = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend((f, f.relative_to(path).as_posix()) for f in iter_image_files(path))
        else:
            found.append((path, path.name))
    return found


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..io import ImageReadError, save_png_atomic
    from ..paths import safe_relative_output
    from ..pipeline import WorkBudgetError
    from . import parse_task

    task = parse_task(args.task, "predict")
    if task is None:
        return 2
    try:
        items = collect_inputs(args.inputs)
    except OSError as error:
        print(f"upocr predict: error: {error}", file=sys.stderr)
        return 2
    if not items:
        print("upocr predict: error: no images found in " + ", ".join(args.inputs), file=sys.stderr)
        return 2
    targets: dict[Path, Path] = {}
    failures = []
    for path, rel in items:
        try:
            out = safe_relative_output(args.output, rel, ".png")
        except ValueError as error:  # a name no output file can have (control characters, escapes)
            failures.append(f"{str(path)!r}: cannot name an output file after it ({error})")
            continue
        if out in targets:
            print(f"upocr predict: error: {path} and {targets[out]} would both write {out}", file=sys.stderr)
            return 2
        targets[out] = path
    pipe = load_pipeline(args)
    if pipe is None:
        return 1
    total = len(items)
    for out, path in tqdm(list(targets.items()), desc=f"upocr {task}", unit="img"):
        try:
            result = pipe(path, task, threshold=args.threshold, preserve_background=args.preserve_background)
            save_png_atomic(out, result.to_pil())
        except ImageReadError as error:
            failures.append(str(error))
        except WorkBudgetError as error:
            failures.append(f"{path}: {error}")
        except OSError as error:  # this file's output cannot be written (e.g. a name too long)
            failures.append(f"{path}: cannot write {out.name}: {error.strerror or error}")
    done = total - len(failures)
    print(f"wrote {done} of {total} results to {args.output}")
    for message in failures:
        print(f"failed: {message}", file=sys.stderr)
    return 1 if failures else 0
