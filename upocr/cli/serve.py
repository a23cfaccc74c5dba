"""``upocr serve label-studio``: a Label Studio ML backend (predictions on demand).

Example::

    upocr serve label-studio --model path/to/model --port 9090 \\
        --label-studio-url http://localhost:8080 --label-studio-token "$LABEL_STUDIO_API_KEY"

then, in Label Studio, *Settings → Model → Connect model* with ``http://localhost:9090``.
"""

from __future__ import annotations

import argparse
import os
import sys

from .predict import add_model_arguments, load_pipeline


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to an ``argparse`` subparsers object."""
    parser = subparsers.add_parser("serve", help="serve the model to other tools (a Label Studio ML backend)")
    servers = parser.add_subparsers(dest="server", metavar="SERVER")
    ls = servers.add_parser(
        "label-studio", help="a Label Studio ML backend: brush pre-annotations on demand",
        description="Speak Label Studio's ML backend protocol (/health, /setup, /predict): Label Studio sends "
        "tasks, the backend answers with brush masks for the project's BrushLabels (text segmentation, or "
        "tampered text detection when a label is 'tampered text').")
    ls.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ls.add_argument("--port", type=int, default=9090, help="port (default 9090)")
    ls.add_argument("--label-studio-url", default=os.environ.get("LABEL_STUDIO_URL"),
                    help="Label Studio's address, to fetch the tasks' images (default $LABEL_STUDIO_URL)")
    ls.add_argument("--label-studio-token", default=os.environ.get("LABEL_STUDIO_API_KEY"),
                    help="a Label Studio access token (personal or legacy; default $LABEL_STUDIO_API_KEY)")
    add_model_arguments(ls)
    ls.set_defaults(func=run)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("upocr serve: error: needs fastapi and uvicorn (pip install 'upocr[serve]')", file=sys.stderr)
        return 2
    from ..labeling.ml_backend import LabelStudioBackend, create_app

    pipe = load_pipeline(args, long_running=True)
    if pipe is None:
        return 1
    backend = LabelStudioBackend(pipe, label_studio_url=args.label_studio_url, token=args.label_studio_token,
                                 threshold=args.threshold)
    print(f"upocr serve label-studio: {backend.model_version} on http://{args.host}:{args.port}", flush=True)
    config = uvicorn.Config(create_app(backend), host=args.host, port=args.port, log_level="warning")
    uvicorn.Server(config).run()
    return 0
