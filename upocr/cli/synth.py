"""``upocr synth``: write a synthetic dataset with exact ground truth.

Example::

    upocr synth --task tampered-text-detection --count 1000 --seed 0 --out data/synth-tamper
    upocr synth --task text-removal --count 200 --seed 1 --out data/heldout --split heldout
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``synth`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser(
        "synth",
        help="render a synthetic dataset (text removal, segmentation or tampering) with exact labels",
        description=(
            "Render text onto photos, procedural textures and document pages, with exact ground truth: "
            "the text-free image (removal), the glyph strokes (segmentation) or real/tampered word boxes "
            "(tampering). Writes OUT/images, OUT/targets, OUT/masks, OUT/boxes (tampering) and OUT/meta.json. "
            "Sample i of a seed is the same whatever --count and --workers."
        ),
    )
    parser.add_argument("--task", required=True, help="text-removal, text-segmentation or tampered-text-detection")
    parser.add_argument("--count", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--fonts", nargs="+", default=None, metavar="PATH",
                        help="font files or folders (default: the fonts bundled with matplotlib)")
    parser.add_argument("--backgrounds", nargs="+", default=None, metavar="DIR",
                        help="photo files or folders (default: scikit-image's sample photos); "
                             "procedural textures and document pages are always used")
    parser.add_argument("--split", default="train", choices=("train", "heldout"),
                        help="train, or heldout: fonts and backgrounds never used in train (default train)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--tamper-labels", default="box", choices=("box", "pixel"),
                        help="tampering ground truth: filled word boxes (default) or stroke pixels")
    parser.add_argument("--overwrite", action="store_true", help="write into a folder holding another synthetic dataset")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from . import parse_task

    task = parse_task(args.task, "synth")
    if task is None:
        return 2
    if args.count < 0:
        print("upocr synth: error: --count must not be negative", file=sys.stderr)
        return 2
    if args.seed < 0:
        print("upocr synth: error: --seed must not be negative", file=sys.stderr)
        return 2
    if args.size < 16:
        print("upocr synth: error: --size must be at least 16", file=sys.stderr)
        return 2
    if args.workers < 1:
        print("upocr synth: error: --workers must be at least 1", file=sys.stderr)
        return 2

    from ..data.synth import write_dataset

    try:
        meta = write_dataset(task, args.count, args.seed, args.out, size=args.size, fonts=args.fonts,
                             backgrounds=args.backgrounds, split=args.split, workers=args.workers,
                             progress=not args.quiet, tamper_labels=args.tamper_labels, overwrite=args.overwrite)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"upocr synth: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {meta['count']} {task} samples ({meta['split']} split, seed {meta['seed']}, "
          f"{meta['size'][1]}x{meta['size'][0]}) to {args.out}")
    return 0
