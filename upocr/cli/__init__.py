"""The ``upocr`` command: one subcommand per module in this package, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand modules, in the order ``upocr --help`` lists them.
COMMANDS = ("predict", "label", "convert", "export", "synth", "train", "evaluate", "serve")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="upocr", description="Unified pixel-level OCR: text removal, "
                                     "text segmentation and tampered text detection.")
    parser.add_argument("--version", action="version", version=f"upocr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def parse_task(name: str, command: str) -> str | None:
    """The canonical task name, or None after printing ``upocr COMMAND: error: ...``."""
    from ..tasks import canonical_task

    try:
        return canonical_task(name)
    except ValueError as error:
        print(f"upocr {command}: error: {error}", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
