"""``upocr export onnx MODEL OUT``: the model as one ONNX file for tools that take ONNX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_EPILOG = """\
the ONNX file:
  inputs   images  float32 (B, 3, H, W), RGB in [0, 1]; H and W multiples of 32
           tasks   int64 (T,), indices into the task list kept in the file's metadata (upocr.tasks)
  output   outputs float32 (T, B, 3, H, W): each task's full-resolution output
  B, T, H and W are dynamic. The encoder runs once for all the tasks asked.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model to ONNX", epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              description="Export a model (Hub repo id, folder or official .pth) to another format.")
    p.add_argument("format", choices=("onnx",), help="onnx")
    p.add_argument("model", metavar="MODEL", help="Hub repo id, model folder or official .pth ('default': the bundled weights)")
    p.add_argument("output", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")
    p.add_argument("--check", action="store_true",
                   help="run the file with ONNX Runtime on a test image and compare with PyTorch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..engines import export_onnx
    from ..modeling import UPOCR
    from ..pipeline import NoDefaultWeightsError, default_model_source

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        print(f"upocr export: error: {out} exists (pass --overwrite to replace it)", file=sys.stderr)
        return 2
    if out.suffix.lower() != ".onnx":
        print(f"upocr export: error: {out}: the output file must end in .onnx", file=sys.stderr)
        return 2
    try:
        source = default_model_source() if args.model == "default" else args.model
        model = UPOCR.from_pretrained(source, **({"revision": args.revision} if args.revision else {}))
    except (NoDefaultWeightsError, OSError, ValueError) as error:
        print(f"upocr export: cannot load model {args.model!r}: {error}", file=sys.stderr)
        return 1
    export_onnx(model, out, opset=args.opset)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB; tasks {', '.join(model.tasks)})")
    if args.check:
        from ..engines import compare_with_pytorch, export_is_faithful

        onnx_error, torch_error = compare_with_pytorch(model, out)
        faithful = export_is_faithful(onnx_error, torch_error)
        print(f"largest difference from PyTorch float64: ONNX Runtime {onnx_error:.2e}, PyTorch float32 "
              f"{torch_error:.2e} ({'as accurate' if faithful else 'NOT as accurate: do not use this file'})")
        if not faithful:
            return 1
    return 0
