"""``upocr train``: joint multi-task training (or fine-tuning) of a UPOCR model.

Examples::

    upocr train --config configs/tiny-cpu.yaml --output-dir runs/tiny
    upocr train --output-dir runs/tiny --resume                 # continue after a stop
    upocr train --config cfg.yaml --init-from runs/tiny/model --steps 2000 --lr 1e-4
    torchrun --nproc_per_node 4 -m upocr train --config cfg.yaml   # several GPUs

Options come from the dataclass defaults, then the YAML file, then the flags. Every training
option is a flag (``--batch-size``, ``--warmup-steps``, ...); mappings and lists are given as
YAML, e.g. ``--model-overrides '{drop_path_rate: 0.1}'``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

_NONE = {"none", "null", "~"}


def _parser_for(type_name: str):
    """A flag value parser for a TrainConfig field annotation (given as a string)."""
    optional = "None" in type_name
    base = type_name.replace("| None", "").replace("None |", "").strip()

    def parse(text: str):
        if optional and text.strip().lower() in _NONE:
            return None
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        # a mapping or list, or a union such as "int | dict" (batch_size 8 or {segmentation: 8, ...})
        if base in ("dict", "list") or "|" in base:
            import yaml

            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as error:
                raise argparse.ArgumentTypeError(f"not valid YAML: {error}") from None
            expected = {"dict": dict, "list": list}.get(base)
            if expected is not None and not isinstance(value, expected):
                raise argparse.ArgumentTypeError(f"expected a YAML {base}, got {text!r}")
            return value
        return text

    parse.__name__ = base
    return parse


def register(subparsers) -> argparse.ArgumentParser:
    from ..training.config import TrainConfig

    p = subparsers.add_parser(
        "train", help="train or fine-tune a model on all tasks jointly",
        description="Joint multi-task training: each step takes one batch per task and sums the task losses. "
        "Writes OUTPUT_DIR/log.jsonl, OUTPUT_DIR/checkpoints/last.pt and, at the end, OUTPUT_DIR/model "
        "(a save_pretrained folder with a model card). Several processes: torchrun --nproc_per_node N -m upocr train.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", "-c", help="YAML file of training options")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUTPUT_DIR from checkpoints/last.pt (its saved config.yaml is used "
                   "unless --config is given)")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the run already in OUTPUT_DIR (checkpoint, log, models) and start again")
    p.add_argument("--stop-at", type=int, metavar="STEP",
                   help="stop after this step (with a checkpoint) without finishing the schedule")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    group = p.add_argument_group("training options (override the YAML file)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=_parser_for(str(f.type)), default=argparse.SUPPRESS,
                               metavar=f.name.upper(), help=help_text)
    p.set_defaults(func=run)
    return p


def resolve_config(args: argparse.Namespace):
    """The run's :class:`TrainConfig`: defaults < YAML (or the resumed run's config.yaml) < flags."""
    import yaml

    from ..training.config import CONFIG_NAME, TrainConfig, TrainingError

    fields = TrainConfig.field_names()
    flags = {name: getattr(args, name) for name in fields if hasattr(args, name)}
    values: dict = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise TrainingError(f"config file not found: {path}")
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise TrainingError(f"{path}: expected a mapping of options at the top level")
    elif args.resume:
        output_dir = Path(flags.get("output_dir") or TrainConfig.output_dir)
        saved = output_dir / CONFIG_NAME
        if saved.is_file():
            values = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    return TrainConfig.from_dict({**values, **flags})


def run(args: argparse.Namespace) -> int:
    from ..training.config import TrainingError

    rank = int(os.environ.get("RANK", 0))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        config = resolve_config(args)
        from ..training.trainer import train

        summary = train(config, resume=args.resume, overwrite=args.overwrite, stop_at=args.stop_at)
    except TrainingError as error:
        print(f"upocr train: {error}", file=sys.stderr)
        return 2
    if rank == 0:
        where = Path(config.output_dir)
        if summary["finished"]:
            print(f"done: {summary['step']} steps in {summary['elapsed'] / 60:.1f} min; model in {where / 'model'}")
        else:
            print(f"stopped at step {summary['step']}; continue with: upocr train --output-dir {where} --resume")
    return 0
