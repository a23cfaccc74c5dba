"""``upocr convert OFFICIAL.pth OUT_DIR``: official UPOCR / ViTEraser checkpoint -> a model folder."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="convert an official UPOCR or ViTEraser checkpoint",
                              description="Convert an official UPOCR or ViTEraser .pth into a folder that "
                              "UPOCR.from_pretrained loads (model.safetensors, config.json, README.md). "
                              "The configuration is inferred from the tensor shapes.")
    p.add_argument("checkpoint", help="official .pth file")
    p.add_argument("output", help="folder to write")
    p.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to this Hub repo")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    p.add_argument("--img-size", type=int, default=512, help="the model size the pipeline resizes to (default 512)")
    p.add_argument("--set", metavar="KEY=JSON", action="append", default=[],
                   help="override an inferred config field, e.g. --set encoder_pretrained_window_size=8")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..convert import CheckpointError, convert_checkpoint

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    try:
        model = convert_checkpoint(args.checkpoint, args.output, overwrite=args.overwrite,
                                   push_to_hub=args.push_to_hub, img_size=args.img_size, **overrides)
    except (CheckpointError, FileExistsError, TypeError) as error:
        print(f"upocr convert: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {model.num_parameters():,} parameters, tasks {', '.join(model.tasks)}")
    return 0
