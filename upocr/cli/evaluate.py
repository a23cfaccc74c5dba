"""``upocr evaluate``: score a model on a test set.

Example::

    upocr evaluate --task text-removal --model path/or/hub-id --data /datasets/SCUT-EnsText \\
        --format scut-enstext --split test --output metrics.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DATA_FORMATS = ("synthetic", "scut-enstext", "textseg", "tampered-ic13", "labels")
MODES = ("resize", "tile", "auto")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on a test set (PSNR/MSSIM/AGE/pEPs/pCEPs, fgIoU/F, mIoU/mF)",
        description=(
            "Run the model over a test set and print its metrics. Text removal: PSNR, MSE, MSSIM, "
            "AGE, pEPs, pCEPs (FID is not computed). Text segmentation: fgIoU, precision, recall, "
            "F. Tampered text detection: per-class and mean IoU/precision/recall/F. Segmentation "
            "and tampering metrics come from one confusion matrix accumulated over the whole set."
        ),
    )
    parser.add_argument("--task", required=True, help="text-removal, text-segmentation or tampered-text-detection")
    parser.add_argument("--model", default=None, help="model folder, checkpoint file or hub id (default: the pipeline's default)")
    parser.add_argument("--data", required=True, help="dataset root folder")
    parser.add_argument("--format", required=True, choices=DATA_FORMATS, help="dataset layout")
    parser.add_argument("--split", default="test", help="dataset split (default: test)")
    parser.add_argument(
        "--official-metrics",
        action="store_true",
        help="reproduce the official evaluation code's choices (MSSIM without downsampling between "
        "scales, pEPs/pCEPs divided by 512*512) instead of the standard definitions",
    )
    parser.add_argument("--mode", default="auto", choices=MODES, help="how the pipeline handles image size (default: auto)")
    parser.add_argument("--device", default=None, help="torch device for the model (default: the pipeline's choice)")
    parser.add_argument("--output", default=None, help="write the metrics as JSON to this file")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--per-image", action="store_true", help="include each image's scores in the JSON output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _print_summary(report: dict) -> None:
    print(f"task: {report['task']}  images: {report['count']}  definitions: {report['definitions']}")
    for key, value in report["metrics"].items():
        if key == "confusion":
            continue
        if isinstance(value, float):
            print(f"  {key:>20}: {value:.6g}")
        else:
            print(f"  {key:>20}: {value}")


def run(args: argparse.Namespace) -> int:
    from ..evaluation.evaluate import evaluate
    from . import parse_task

    task = parse_task(args.task, "evaluate")
    if task is None:
        return 2
    if args.limit is not None and args.limit <= 0:
        print("error: --limit must be positive", file=sys.stderr)
        return 2

    from ..data.datasets import build_dataset
    from ..pipeline import UPOCRPipeline

    dataset = build_dataset({"format": args.format, "root": args.data, "split": args.split, "task": task})
    extra = {"device": args.device} if getattr(args, "device", None) else {}
    pipe = UPOCRPipeline.from_pretrained(args.model, mode=args.mode, **extra)

    def predict(image, task_name):
        return pipe(image, task_name)

    report = evaluate(
        predict,
        dataset,
        task,
        official=args.official_metrics,
        progress=not args.quiet,
        per_image=args.per_image,
        limit=args.limit,
    )
    report["model"] = args.model
    report["data"] = {"format": args.format, "root": str(args.data), "split": args.split}
    if report["count"] == 0:
        print("error: the dataset has no images", file=sys.stderr)
        return 1
    _print_summary(report)
    if args.output:
        path = Path(args.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"metrics written to {path}")
    return 0
