"""What every handler of the app shares: the model, the folders the app owns, the limits.

:class:`StudioContext` is built once per app by :func:`demo.ui.build_demo`; handlers
(:mod:`demo.handlers`) are plain methods over it, so they can be called (and tested) without a
browser. Model calls go through module-level functions that take a key instead of the pipeline,
so ZeroGPU can run them on a GPU worker (``spaces.GPU`` on a Hugging Face Space; harmless elsewhere).
"""

from __future__ import annotations

import hashlib
import html
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from upocr.pipeline import DEFAULT_MODEL_DIR
from upocr.tasks import DEFAULT_SEGMENTATION_THRESHOLD, TEXT_REMOVAL

from . import core
from .annotate import UploadLimits, Workspace
from .core import UserInputError

NO_WEIGHTS_MESSAGE = (
    "No model to run: the bundled default weights (<code>assets/upocr-tiny</code>) are missing from "
    "this copy of the app. Start it with a trained model: <code>python app.py --model "
    "REPO_ID_OR_FOLDER</code>, or set <code>UPOCR_MODEL=REPO_ID_OR_FOLDER</code> (a Hub repo id, a "
    "folder saved with <code>save_pretrained</code>, or a checkpoint converted with <code>upocr convert</code>)."
)

#: What the header says when the bundled default weights are in use.
DEFAULT_MODEL_NOTE = (
    "Model: the bundled default (`upocr-tiny`), a small model (5.8 M parameters) trained on synthetic "
    "scenes. Its masks follow the strokes of clear print but miss faint, small or busy-background text, "
    "and it erases large light text on photos only in part: correct the masks in the editor, or start "
    "the app with the paper model (`--model`). Its tampering "
    "results are weak: it finds few forged words and calls some real text tampered."
)

try:  # ZeroGPU on Hugging Face Spaces: a GPU is attached only while these functions run
    import spaces

    _gpu = spaces.GPU
except ImportError:  # elsewhere: no-op

    def _gpu(fn: Callable | None = None, **_kwargs: Any):
        return fn if fn is not None else (lambda f: f)


#: Work (pixels the network processes) above which a request counts as large: one large request
#: runs at a time, so a large image can never hold every worker while small ones wait.
HEAVY_WORK_PIXELS = 1_000_000
_HEAVY = threading.BoundedSemaphore(1)

# The pipelines by key; the GPU functions below take the key (cheap to pass to a GPU worker).
_PIPELINES: dict[str, Any] = {}


@_gpu(duration=60)
def _gpu_run(key: str, rgb: np.ndarray, tasks: tuple[str, ...], threshold: float, keep_background: bool = True) -> dict:
    return _PIPELINES[key].run_all(rgb, list(tasks), threshold=threshold, preserve_background=keep_background)


@_gpu(duration=60)
def _gpu_guided_removal(key: str, rgb: np.ndarray, mask: np.ndarray):
    return _PIPELINES[key](rgb, TEXT_REMOVAL, mask=mask)


def model_key(pipeline: Any) -> str:
    """Identifies the weights (for the examples cache): source name plus a sample of every tensor."""
    digest = hashlib.sha1(str(getattr(pipeline, "source", "")).encode())
    for name, tensor in pipeline.model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().reshape(-1)[:256].float().cpu().numpy()
        digest.update(flat.tobytes())
    return digest.hexdigest()[:16]


class NoModelError(UserInputError):
    """The app has no model to run; the message is the banner's (HTML, already escaped)."""


@dataclass
class StudioContext:
    """The app's shared state: model key, folders, limits, open annotation workspaces."""

    paths: core.StudioPaths
    key: str | None
    model_name: str | None
    data_path: Path | None
    upload_limits: UploadLimits
    max_pixels: int | None
    load_error: str | None = None
    workspaces: dict[tuple, Workspace] = field(default_factory=dict)
    #: Shows a short notice to the user (the app sets gr.Info; silent elsewhere).
    notify: Callable[[str], None] = field(default=lambda message: None)

    @classmethod
    def create(cls, pipeline: Any | None, *, studio_dir, data_dir, max_file_bytes: int, max_pixels: int | None,
               load_error: str | None) -> "StudioContext":
        paths = core.StudioPaths(Path(studio_dir) if studio_dir else core.default_studio_dir())
        data_path = Path(data_dir).resolve() if data_dir else None
        if data_path is not None and not data_path.is_dir():
            raise NotADirectoryError(f"--data {data_path}: not a folder")
        key = model_key(pipeline) if pipeline is not None else None
        if pipeline is not None:
            _PIPELINES[key] = pipeline
        model_name = str(getattr(pipeline, "source", None) or "custom model") if pipeline is not None else None
        return cls(paths=paths, key=key, model_name=model_name, data_path=data_path,
                   upload_limits=UploadLimits(max_file_bytes=max_file_bytes), max_pixels=max_pixels,
                   load_error=load_error)

    @property
    def is_default_model(self) -> bool:
        return self.model_name is not None and Path(self.model_name).resolve() == DEFAULT_MODEL_DIR.resolve()

    @property
    def no_model_message(self) -> str:
        return html.escape(self.load_error) if self.load_error else NO_WEIGHTS_MESSAGE

    # ---------------------------------------------------------------- model calls
    def need_model(self) -> str:
        if self.key is None:
            raise NoModelError(self.no_model_message)
        return self.key

    def read(self, path) -> np.ndarray:
        """An uploaded image, decoded once (``core.read_upload``: clear errors, size and pixel limits)."""
        return core.read_upload(path, max_pixels=self.max_pixels, max_bytes=self.upload_limits.max_file_bytes)

    def run_tasks(self, rgb: np.ndarray, tasks, threshold: float = DEFAULT_SEGMENTATION_THRESHOLD,
                  keep_background: bool = True) -> dict:
        """The pipeline's results; text removal changes only the detected text unless ``keep_background`` is off.
        An image beyond the pipeline's work budget is run smaller, and the user is told."""
        key = self.need_model()
        pipeline = _PIPELINES[key]
        height, width = rgb.shape[:2]
        scale = pipeline.work_scale(height, width)
        if scale < 1.0:
            self.notify(f"This {width}x{height} image was processed at {scale:.0%} of its size "
                        "(the app's work limit per image); the results are at its full size.")
        tiled = pipeline.resolve_mode(height, width) == "tile"
        work = int(height * width * scale * scale) if tiled else pipeline.size * pipeline.size
        if work <= HEAVY_WORK_PIXELS:
            return _gpu_run(key, rgb, tuple(tasks), float(threshold), bool(keep_background))
        # One large image at a time: the other worker stays free for small ones.
        if not _HEAVY.acquire(blocking=False):
            raise UserInputError("Another large image is being processed; try again in a moment "
                                 "(smaller images are served meanwhile).")
        try:
            return _gpu_run(key, rgb, tuple(tasks), float(threshold), bool(keep_background))
        finally:
            _HEAVY.release()

    def guided_removal(self, rgb: np.ndarray, mask: np.ndarray):
        if not mask.any():
            raise UserInputError("The mask is empty: paint over the text to erase first.")
        return _gpu_guided_removal(self.need_model(), rgb, mask)
