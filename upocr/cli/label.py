"""``upocr label``: pre-label a folder of images, resumably, for review and training.

Several processes share the work when started with ``torchrun``::

    torchrun --nproc_per_node 4 -m upocr label --task segmentation scans/ labels/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..tasks import TASKS
from .predict import add_model_arguments, load_pipeline

#: ``upocr label`` runs large images at the scale where their letters are this many pixels high:
#: on held-out 1024x1024 scenes the bundled model's masks are as good as at native resolution
#: (fgIoU 0.504 against 0.503) in two thirds of the time (docs/default-model.md).
LABEL_TEXT_HEIGHT = 16.0

_EPILOG = """\
output folder:
  masks/<folders>/<stem>.png     the labels (text: 0/255; tampering: 0 background, 1 real, 2 tampered)
  cleaned/<folders>/<stem>.png   text removal: the text-free image
  manifest.jsonl                 one record per file: done / failed (reason) / skipped (reason),
                                 model, revision, threshold, time
  coco.json                      --format coco: COCO with RLE masks, file_name = source path
  labelme/<folders>/<stem>.json  --format labelme: LabelMe polygons

Run it again to continue an interrupted run: finished files are not redone, failed ones are
tried again, and labels reviewed by hand are never replaced. Exit status: 0 when every file was
labelled (or kept), 1 when any file failed, 2 for a usage error.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "label", help="pre-label a folder of images (resumable; COCO / LabelMe exports)",
        description="Run one task over every image under INPUT_DIR (recursively) and keep the labels in "
        "OUTPUT_DIR with the same folder structure.", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help=f"one of {', '.join(TASKS)}")
    p.add_argument("input_dir", metavar="INPUT_DIR", help="folder of images (a single image file also works)")
    p.add_argument("output_dir", metavar="OUTPUT_DIR", help="label folder (may lie inside INPUT_DIR; it is not scanned)")
    p.add_argument("--format", default="png,coco",
                   help="comma-separated outputs: png (the label PNGs, always written), coco, labelme, "
                   "labelstudio (default: png,coco)")
    p.add_argument("--ls-document-root", metavar="DIR", default=None,
                   help="labelstudio: Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: INPUT_DIR's parent)")
    p.add_argument("--ls-url-prefix", metavar="URL", default=None,
                   help="labelstudio: image URLs are this prefix + the image's path under INPUT_DIR "
                   "(instead of Label Studio's local files)")
    p.add_argument("--instances", choices=("words", "lines"), default="words",
                   help="what one COCO annotation or LabelMe polygon is: a word (default) or a line of text")
    add_model_arguments(p, text_height=LABEL_TEXT_HEIGHT)
    p.add_argument("--overwrite-unreviewed", action="store_true",
                   help="label again files a model already labelled (reviewed labels are always kept)")
    p.add_argument("--workers", type=int, default=2, help="reader threads and writer threads each (default 2)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _labelstudio_options(args: argparse.Namespace) -> dict | None:
    if args.ls_url_prefix is not None:
        return {"url_prefix": args.ls_url_prefix}
    if args.ls_document_root is not None:
        return {"document_root": args.ls_document_root}
    return None


def _error(message: str) -> int:
    print(f"upocr label: error: {message}", file=sys.stderr)
    return 2


def _device_for(args: argparse.Namespace, local_rank: int, distributed: bool) -> str | None:
    """One accelerator per process on a machine: cuda:LOCAL_RANK."""
    if not distributed:
        return args.device
    if args.device not in (None, "cuda"):
        return args.device
    import torch

    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return args.device or "cpu"


def run(args: argparse.Namespace) -> int:
    from ..labeling import LabelConfig, LabelStoreError, ProcessGroup, find_inputs, label_folder

    if args.workers < 1:
        return _error("--workers must be at least 1")
    try:
        config = LabelConfig(
            task=args.task, formats=tuple(args.format.split(",")), threshold=args.threshold, mode=args.mode,
            overwrite_unreviewed=args.overwrite_unreviewed,
            read_workers=args.workers, write_workers=args.workers,
            progress=not args.no_progress, revision=args.revision, instances=args.instances,
            labelstudio=_labelstudio_options(args))
    except ValueError as error:
        return _error(str(error))
    input_dir, output_dir = Path(args.input_dir), Path(args.output_dir)
    if input_dir.is_dir() and output_dir.exists() and os.path.samefile(input_dir, output_dir):
        return _error("OUTPUT_DIR must differ from INPUT_DIR")
    if output_dir.exists() and not output_dir.is_dir():
        return _error(f"{output_dir}: exists and is not a folder")
    try:
        items = find_inputs(input_dir, output_dir)
    except OSError as error:
        return _error(str(error))
    if not items:
        return _error(f"no images found in {input_dir}")

    try:
        group = ProcessGroup()
    except ValueError as error:
        return _error(str(error))
    if args.threads:
        import torch

        torch.set_num_threads(max(1, args.threads))
    args.device = _device_for(args, group.local_rank, group.distributed)
    if group.distributed:
        config.progress_desc = f"upocr label {config.task} [rank {group.rank}/{group.world_size}]"
        config.progress = config.progress and group.is_main
    pipe = load_pipeline(args, long_running=True)
    if pipe is None:
        return 1
    if config.task not in pipe.tasks:
        return _error(f"the model {pipe.source} has no {config.task} output (it serves {', '.join(pipe.tasks)})")

    try:
        total = label_folder(pipe, input_dir, output_dir, config, items=items, group=group)
    except LabelStoreError as error:
        return _error(str(error))
    except (RuntimeError, ValueError) as error:
        return _error(f"cannot join the other processes: {error}" if group.distributed else str(error))
    if not group.is_main:
        return 0 if total.ok else 1
    print(total.text())
    exports = total.exports
    outputs = [f"{output_dir / 'masks'}", f"{output_dir / 'manifest.jsonl'}"]
    if "coco" in exports:
        outputs.append(str(exports["coco"]))
    if "labelme" in exports:
        outputs.append(f"{output_dir / 'labelme'} ({exports['labelme']} new)")
    if "labelstudio" in exports:
        outputs.append(f"{exports['labelstudio']} ({exports['labelstudio_tasks']} tasks)")
    print("  wrote " + ", ".join(outputs))
    return 0 if total.ok else 1
