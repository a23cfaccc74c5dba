"""UPOCR Studio. ``python app.py [--model REPO_OR_DIR] [--engine E] [--data DIR] [--host H] [--port P] [--share]``

The model is ``--model``, else ``$UPOCR_MODEL``, else the bundled default weights. Without any
trained weights the app still starts and says how to pass a model.
"""

import argparse
import os

from demo import build_demo, launch
from demo.cli import DEFAULT_MAX_WORK_PIXELS, DEFAULT_TIME_BUDGET, load_pipeline
from upocr.engines import CHOICES as ENGINE_CHOICES

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", help="Hub repo id or folder (default: $UPOCR_MODEL, else the bundled weights)")
parser.add_argument("--data", help="a local folder of images to annotate (labels go to DATA/.upocr-labels)")
parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME"), help="e.g. 0.0.0.0 (default 127.0.0.1)")
parser.add_argument("--port", type=int, default=None, help="default: $GRADIO_SERVER_PORT or 7860")
parser.add_argument("--share", action="store_true", help="create a public gradio.live link (off by default)")
parser.add_argument("--max-file-size", default=os.environ.get("UPOCR_MAX_FILE_SIZE", "20mb"))
parser.add_argument("--studio-dir", default=None, help="folder the app owns (default $UPOCR_STUDIO_DIR or a temp folder)")
parser.add_argument("--max-work-pixels", type=int,
                    default=int(os.environ.get("UPOCR_MAX_WORK_PIXELS", DEFAULT_MAX_WORK_PIXELS)),
                    help="larger images are processed smaller (with a notice) and results brought back to their size")
parser.add_argument("--time-budget", type=float,
                    default=float(os.environ.get("UPOCR_TIME_BUDGET", DEFAULT_TIME_BUDGET)),
                    help="seconds one image may take before it is stopped with a message")
parser.add_argument("--engine", choices=ENGINE_CHOICES, default=None,
                    help="who runs the network on the CPU (default: $UPOCR_ENGINE, else auto: the fastest engine "
                    "that agrees with fp32, chosen in the background while requests run in fp32)")
parser.add_argument("--no-mcp", action="store_true",
                    help="do not serve the four endpoints as MCP tools (served at /gradio_api/mcp/ by default)")
args, _ = parser.parse_known_args()

pipeline, load_error = load_pipeline(args.model, max_work_pixels=args.max_work_pixels, time_budget=args.time_budget,
                                     engine=args.engine)
demo = build_demo(pipeline, data_dir=args.data, studio_dir=args.studio_dir, max_file_size=args.max_file_size,
                  load_error=load_error)

if __name__ == "__main__":
    launch(demo, host=args.host, port=args.port, share=args.share, mcp_server=not args.no_mcp)
