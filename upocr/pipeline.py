"""UPOCRPipeline: any user image in, result objects out.

Flow: read (``upocr.io``) -> pre-process (resize to the model size, or tile at native
resolution) -> run the network once per image (all requested tasks share one encoder pass)
-> decode each task's output -> result objects (``upocr.results``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from .allocator import retain_freed_memory
from .io import read_image
from .modeling import SIZE_MULTIPLE, UPOCR
from .results import TaskResult, TextSegmentationResult
from .tasks import (
    DEFAULT_SEGMENTATION_THRESHOLD,
    TEXT_REMOVAL,
    TEXT_SEGMENTATION,
    canonical_task,
    canonical_tasks,
    get_task,
)
from .tasks.strokes import refine_strokes
from .tasks.tampering import shift_tampered
from .tiling import TileAccumulator, blend_weights, tile_windows

MODES = ("resize", "tile", "auto")
#: In tile mode an image of up to this many model-size windows' worth of pixels runs in one pass.
WHOLE_IMAGE_WINDOWS = 3

#: Folder of the project's bundled default weights (config.json + model.safetensors).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "upocr-tiny"
#: Environment variable naming a Hub repo id or folder to use instead of the bundled weights.
MODEL_ENV = "UPOCR_MODEL"


class NoDefaultWeightsError(RuntimeError):
    """Raised when no model is given and the bundled default weights are missing."""


def default_model_source() -> str:
    """The model used when none is named: ``$UPOCR_MODEL``, else the bundled trained weights."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return env
    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        return str(DEFAULT_MODEL_DIR)
    raise NoDefaultWeightsError(
        f"no trained default weights found: {DEFAULT_MODEL_DIR}/model.safetensors is missing. "
        "Pass a model (--model REPO_OR_DIR, or UPOCR_MODEL), convert the official checkpoint with "
        "`upocr convert`, or train one with `upocr train`. An untrained network is never used as a default."
    )


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class WorkBudgetError(RuntimeError):
    """An image took longer than the time budget it was given (:meth:`UPOCRPipeline.time_limit`)."""


_deadlines = threading.local()


class UPOCRPipeline:
    """Run a :class:`UPOCR` model on user images.

    Args:
        model: a loaded :class:`UPOCR`.
        device: ``"cuda"``, ``"cpu"``, ... (default: CUDA when available).
        mode: ``"resize"`` (the official way: the whole image at the model size, outputs resized
            back), ``"tile"`` (native resolution, overlapping windows blended smoothly) or
            ``"auto"`` (tile when the image is much larger than the model size).
        dtype: ``"float32"`` or ``"bfloat16"``/``"float16"`` (autocast; CUDA always autocasts).
        tile_overlap: overlap of neighbouring windows in pixels (default: a quarter window).
        batch_size: windows run together in tile mode.
        max_work_pixels: the most pixels the network processes for one image (``None``: no
            limit). A larger image is run at the largest scale within the budget and its results
            are brought back to its own size (:meth:`work_scale` says by how much), so no single
            image can hold the model for minutes.
        time_budget: seconds one image may take in tile mode (``None``: no limit); a slower one
            stops with :class:`WorkBudgetError` (see :meth:`time_limit`).
        engine: who runs the network (:mod:`upocr.engines`): ``"fp32"``, ``"bf16"``, ``"int8"``,
            ``"onnxruntime"`` or ``"auto"`` (default, or ``$UPOCR_ENGINE``: the fastest engine that
            agrees with fp32 on this host, from a calibration cached per host and model). It is
            chosen on first use; ``dtype`` other than float32 means the PyTorch model under autocast.
        text_height: in tile mode, run each image at the scale where its text is about this many
            pixels high (``None``: native resolution). A first pass at the model size finds the
            text (:meth:`text_scale`); large text on a large photo then costs a few windows
            instead of dozens. Small text, or none found, keeps the native resolution.
        long_running: this pipeline will run many images (the app, ``upocr label``): ``auto`` may
            then pick an engine that compiles the network for each new input shape
            (:data:`upocr.engines.COMPILED`), and :meth:`prepare_engine` in the background
            compiles the model-size shapes before the engine is used.
        refine_strokes: put the text mask's edges on the strokes with the model's calibrated
            stroke refinement (its ``stroke_refinement``; see :mod:`upocr.tasks.strokes`), where
            it has one. ``False``: the network's own text probability.
        whole_pixels: in tile mode, an image (after any shrinking) of at most this many pixels,
            padded to the network stride, runs as one window rather than overlapping tiles: the
            same network without the work the overlaps repeat, and without seams (default:
            :data:`WHOLE_IMAGE_WINDOWS` times the model size squared; 0: always tile).
    """

    def __init__(self, model: UPOCR, *, device: str | torch.device | None = None, mode: str = "auto",
                 dtype: str = "float32", tile_overlap: int | None = None, batch_size: int = 1,
                 max_pixels: int | None = None, source: str | None = None, max_work_pixels: int | None = None,
                 time_budget: float | None = None, engine: str | None = None, text_height: float | None = None,
                 whole_pixels: int | None = None, long_running: bool = False, refine_strokes: bool = True):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.device = _pick_device(device)
        if self.device.type == "cpu":
            retain_freed_memory()  # no page faults on every pass (see upocr.allocator)
        self.model = model.to(self.device).eval()
        #: Whether the model segments text (text removal is kept to it; text_height measures with it).
        self.finds_text = TEXT_SEGMENTATION in self.model.tasks
        self.mode = mode
        self.size = int(model.img_size)
        self.tile_overlap = self.size // 4 if tile_overlap is None else int(tile_overlap)
        self.batch_size = max(1, int(batch_size))
        self.dtype = {"float32": None, "fp32": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                      "float16": torch.float16, "fp16": torch.float16}[str(dtype)]
        self.read_kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
        self.source = source
        if max_work_pixels is not None and int(max_work_pixels) < self.size * self.size:
            raise ValueError(f"max_work_pixels must be at least the model size ({self.size}x{self.size})")
        self.max_work_pixels = None if max_work_pixels is None else int(max_work_pixels)
        if time_budget is not None and not float(time_budget) > 0:
            raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget}")
        self.time_budget = None if time_budget is None else float(time_budget)
        if text_height is not None and not float(text_height) >= 4:
            raise ValueError(f"text_height must be at least 4 pixels, got {text_height}")
        self.text_height = None if text_height is None else float(text_height)
        self.whole_pixels = WHOLE_IMAGE_WINDOWS * self.size**2 if whole_pixels is None else int(whole_pixels)
        from .engines import CHOICES, ENGINE_ENV

        self.engine_name = engine or os.environ.get(ENGINE_ENV) or "auto"
        if self.engine_name not in CHOICES:
            raise ValueError(f"engine must be one of {', '.join(CHOICES)}, got {self.engine_name!r}")
        if self.dtype is not None or self.device.type != "cpu":
            self.engine_name = "fp32"  # an explicit autocast dtype, or a GPU: the PyTorch model as asked
        self.long_running = bool(long_running)
        #: The ink-coverage offset of the stroke refinement, or None where the masks are the network's.
        offset = getattr(self.model, "stroke_refinement", None)
        self.stroke_refinement = offset if refine_strokes and self.finds_text else None
        self._engine = self._torch = self._preparing = None
        self.calibration = None
        self._engine_lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike | None = None, *, revision: str | None = None,
                        **kwargs: Any) -> "UPOCRPipeline":
        """A pipeline for a Hub repo id, a folder or an official ``.pth`` (default: bundled weights)."""
        source = str(model) if model is not None else default_model_source()
        load_kwargs = {"revision": revision} if revision else {}
        return cls(UPOCR.from_pretrained(source, **load_kwargs), source=source, **kwargs)

    # ------------------------------------------------------------------ public API
    @property
    def tasks(self) -> list[str]:
        return list(self.model.tasks)

    def __call__(self, image: Any, task: str = TEXT_SEGMENTATION, *, mode: str | None = None,
                 threshold: float = DEFAULT_SEGMENTATION_THRESHOLD, mask: np.ndarray | None = None,
                 preserve_background: bool = True, dilation: int = 7) -> TaskResult:
        """Run one task on one image.

        ``image``: a path, bytes, a PIL image or a numpy array (any common mode). Text removal
        changes only the detected text by default: the model's own text mask (at ``threshold``),
        dilated by ``dilation`` pixels, and every other pixel stays the input's (a model without
        text segmentation gives its raw output). ``mask``
        (``(H, W)`` bool, the input's size) names the region to erase instead;
        ``preserve_background=False`` returns the network's raw output for the whole image.
        """
        return self.run_all(image, [task], mode=mode, threshold=threshold, mask=mask,
                            preserve_background=preserve_background, dilation=dilation)[canonical_task(task)]

    def run_all(self, image: Any, tasks: str | Sequence[str] = "all", *, mode: str | None = None,
                threshold: float = DEFAULT_SEGMENTATION_THRESHOLD, mask: np.ndarray | None = None,
                preserve_background: bool = True, dilation: int = 7) -> dict[str, TaskResult]:
        """Every requested task on one image with a single encoder pass: ``{task: result}``.
        Text removal is kept to the detected text (or ``mask``) as in :meth:`__call__`."""
        rgb = self.read(image)
        names = [t for t in canonical_tasks(tasks) if t in self.model.tasks]
        if not names:
            raise ValueError(f"this model serves {', '.join(self.model.tasks)}; none of {tasks!r}")
        # a removal-only model (e.g. a converted ViTEraser) has no text mask to keep removal to
        restrict = (TEXT_REMOVAL in names and mask is None and preserve_background
                    and self.finds_text)
        run = names + ([TEXT_SEGMENTATION] if restrict and TEXT_SEGMENTATION not in names else [])
        outputs, seen = self._predict(rgb, run, mode)
        decoded, text = {}, outputs.get(TEXT_SEGMENTATION)
        if text is not None:  # the text mask once, for removal and (when asked for) as a result
            decoded[TEXT_SEGMENTATION] = self._segmentation(text, rgb, threshold, seen)
            mask = decoded[TEXT_SEGMENTATION].mask if restrict else mask
        return {t: decoded[t] if t in decoded else
                self._decode(t, self.decision_output(t, outputs[t]), rgb, threshold=threshold, mask=mask,
                             dilation=dilation) for t in names}

    def decision_output(self, task: str, output: np.ndarray) -> np.ndarray:
        """``output`` as its pixels take their class: the tampering output with the model's
        ``tampered_bias`` added to the tampered-text channel (see :class:`UPOCR`)."""
        bias = getattr(self.model, "tampered_bias", 0.0)
        if not bias or not get_task(task).forges_text:
            return output
        return shift_tampered(output, bias)

    def read(self, image: Any) -> np.ndarray:
        """The user's image as uint8 ``(H, W, 3)`` RGB (through :func:`upocr.io.read_image`)."""
        return read_image(image, **self.read_kwargs)

    def resolve_mode(self, height: int, width: int, mode: str | None = None) -> str:
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "auto":
            return "tile" if height * width > 4 * self.size * self.size else "resize"
        return mode

    @contextlib.contextmanager
    def time_limit(self, seconds: float | None):
        """Within this block (on this thread), an image whose tiles take longer than ``seconds``
        stops between two batches of windows with :class:`WorkBudgetError` (``None``: no limit,
        whatever the pipeline's own ``time_budget``).
        A batch already started finishes first, so the overrun is at most one batch."""
        previous = getattr(_deadlines, "value", None)
        limit = float("inf") if seconds is None else float(seconds)
        _deadlines.value = (time.monotonic() + limit, limit)
        try:
            yield
        finally:
            _deadlines.value = previous

    @staticmethod
    def _check_deadline(done: int, total: int) -> None:
        deadline = getattr(_deadlines, "value", None)
        if deadline is not None and time.monotonic() > deadline[0]:
            raise WorkBudgetError(f"stopped after {done} of {total} windows: the image took longer than its "
                                  f"time budget of {deadline[1]:g} s (give a smaller image, or a larger budget)")

    def work_scale(self, height: int, width: int, mode: str | None = None) -> float:
        """The factor (at most 1) by which an image of this size is shrunk before the network
        sees it, so that the work stays within ``max_work_pixels`` (1.0: no shrinking)."""
        if self.max_work_pixels is None or self.resolve_mode(height, width, mode) == "resize":
            return 1.0
        return min(1.0, (self.max_work_pixels / float(height * width)) ** 0.5)

    @torch.inference_mode()
    def predict_outputs(self, rgb: np.ndarray, tasks: Iterable[str], *, mode: str | None = None) -> dict[str, np.ndarray]:
        """Full-resolution model outputs ``{task: float32 (H, W, 3)}`` (raw, not clamped)."""
        return self._predict(rgb, tasks, mode)[0]

    def _predict(self, rgb: np.ndarray, tasks: Iterable[str],
                 mode: str | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """:meth:`predict_outputs`, and the image as tile mode gave it to the network: shrunk when
        the work or the text size asked for it, else ``rgb`` itself (also in resize mode)."""
        tasks = [canonical_task(t) for t in tasks]
        if self.time_budget is not None and getattr(_deadlines, "value", None) is None:
            with self.time_limit(self.time_budget):
                return self._predict(rgb, tasks, mode)
        h, w = rgb.shape[:2]
        if self.resolve_mode(h, w, mode) == "resize":
            return self._predict_resized(_to_unit_tensor(rgb[None]), tasks), rgb
        scale = self.work_scale(h, w, mode)
        if self.text_height is not None and self.finds_text and h * w > self.size**2:
            # (an image of one window: the first pass would cost as much as the job)
            scale = min(scale, self.text_scale(rgb))
        if scale >= 1.0:
            return self._predict_tiled(rgb, tasks), rgb
        small_size = (max(1, int(w * scale)), max(1, int(h * scale)))
        small = np.asarray(Image.fromarray(rgb).resize(small_size, Image.Resampling.LANCZOS))
        outputs = self._predict_tiled(small, tasks)
        return {t: _resize_output(o, h, w, get_task(t).target_is_image) for t, o in outputs.items()}, small

    @property
    def engine(self):
        """The engine that runs the network (resolved on first use: see ``engine=``). While
        :meth:`prepare_engine` resolves it in the background, passes run in float32."""
        if self._engine is None:
            preparing = self._preparing
            if preparing is not None and preparing.is_alive():
                return self._torch_engine()
            self.prepare_engine()
        return self._engine

    def prepare_engine(self, background: bool = False) -> None:
        """Resolve the engine now (calibrating when ``auto`` has no cached verdict for this host
        and model), or in a daemon thread with ``background=True`` (as the app does at start; an
        engine that compiles per shape then also compiles the model-size passes there first)."""
        if background:
            self._preparing = threading.Thread(target=self._resolve_engine, kwargs={"warm": True},
                                               name="upocr-engine", daemon=True)
            self._preparing.start()
            return
        self._resolve_engine(warm=False)

    def _resolve_engine(self, warm: bool) -> None:
        from .engines import resolve_engine

        with self._engine_lock:
            if self._engine is None:
                if self.engine_name == "fp32":
                    self._engine = self._torch_engine()
                else:
                    engine, self.calibration = resolve_engine(self.engine_name, self.model, self.device,
                                                              compiled=self.long_running)
                    if warm and hasattr(engine, "warm_up"):
                        engine.warm_up(self.size, self.model.tasks)
                    self._engine = engine

    def _torch_engine(self):
        """The PyTorch model as asked: float32, or under autocast for ``dtype`` (float16 by default
        on CUDA)."""
        from .engines import TorchEngine

        if self._torch is None:
            autocast = self.dtype or (torch.float16 if self.device.type == "cuda" else None)
            self._torch = TorchEngine(self.model, self.device, autocast=autocast,
                                      name="fp32" if autocast is None else f"autocast-{str(autocast)[6:]}")
        return self._torch

    def text_scale(self, rgb: np.ndarray, threshold: float = DEFAULT_SEGMENTATION_THRESHOLD) -> float:
        """The factor (at most 1) that brings the text of ``rgb`` to about ``text_height`` pixels.

        One text-segmentation pass at the model size; the median height of the text found there
        (pieces at least 3 pixels high, at least three of them), in the image's own rows, is the
        text height. Text too small to show at that size, or no text, gives 1.0. Never below the
        scale at which the image's longer side is the model size."""
        h, w = rgb.shape[:2]
        s = self.size
        small = self._at_model_size(_to_unit_tensor(rgb[None]))
        out = self._run(small, [TEXT_SEGMENTATION])[TEXT_SEGMENTATION][0].clamp(0, 1).mean(0).numpy()
        components, _ = ndimage.label(out > threshold)
        heights = [sl[0].stop - sl[0].start for sl in ndimage.find_objects(components) if sl is not None]
        heights = [x for x in heights if x >= 3]
        if len(heights) < 3:
            return 1.0
        text_px = float(np.median(heights)) * h / s
        return float(min(1.0, max(self.text_height / text_px, s / max(h, w))))

    # ------------------------------------------------------------------ internals
    def _run(self, batch: torch.Tensor, tasks: list[str]) -> dict[str, torch.Tensor]:
        """Final-scale outputs ``{task: (B, 3, h, w)}`` for a batch already at a valid size."""
        return self.engine.run(batch, tasks)

    def _at_model_size(self, image: torch.Tensor) -> torch.Tensor:
        """A float batch brought to the model size (bicubic, antialiased, kept in [0, 1])."""
        s = self.size
        return F.interpolate(image, size=(s, s), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)

    def _predict_resized(self, image: torch.Tensor, tasks: list[str]) -> dict[str, np.ndarray]:
        h, w = image.shape[-2:]
        same = (h, w) == (self.size, self.size)  # no resampling at all: interpolating to the same size is not exact
        outs = self._run(image if same else self._at_model_size(image), tasks)
        result = {}
        for task, out in outs.items():
            mode = "bicubic" if get_task(task).target_is_image else "bilinear"
            full = out.cpu() if same else F.interpolate(out.cpu(), size=(h, w), mode=mode, align_corners=False)
            result[task] = full[0].permute(1, 2, 0).numpy()
        return result

    def _predict_tiled(self, rgb: np.ndarray, tasks: list[str]) -> dict[str, np.ndarray]:
        """Windows are cut from the uint8 image and converted one batch at a time: a large photo
        is never held as a float copy (a 4096x4096 one would be 200 MB)."""
        h, w = rgb.shape[:2]
        # pad to multiples of the network stride (reflect where possible) so every window is valid
        ph, pw = -(-h // SIZE_MULTIPLE) * SIZE_MULTIPLE, -(-w // SIZE_MULTIPLE) * SIZE_MULTIPLE
        padded = _pad_to(rgb, ph, pw)
        tile = self.size
        whole = ph * pw <= self.whole_pixels
        th, tw = (ph, pw) if whole else (min(tile, ph), min(tile, pw))
        overlap = 0 if whole else min(self.tile_overlap, max(0, min(th, tw) - SIZE_MULTIPLE))
        windows = tile_windows(ph, pw, (th, tw), overlap)
        weights = blend_weights(th, tw, overlap)  # every window is th x tw: the image is padded to at least that
        acc = {t: TileAccumulator(ph, pw, 3) for t in tasks}
        for i in range(0, len(windows), self.batch_size):
            self._check_deadline(i, len(windows))
            group = windows[i : i + self.batch_size]
            crops = _to_unit_tensor(np.stack([padded[t:b, l:r] for (t, l, b, r) in group]))
            outs = self._run(crops, tasks)
            for task, out in outs.items():
                arr = out.cpu().permute(0, 2, 3, 1).numpy()
                for k, win in enumerate(group):
                    acc[task].add(win, arr[k], weights)
        return {t: a.result()[:h, :w] for t, a in acc.items()}

    @staticmethod
    def _decode(task: str, output: np.ndarray, rgb: np.ndarray, *, threshold: float,
                mask: np.ndarray | None = None, dilation: int = 7) -> TaskResult:
        return get_task(task).decode(output, rgb, threshold=threshold, mask=mask, dilation=dilation)

    def _segmentation(self, output: np.ndarray, rgb: np.ndarray, threshold: float,
                      seen: np.ndarray) -> TextSegmentationResult:
        """The text mask of ``output``, its edges refined (where the pipeline refines strokes) on
        ``seen``, the image as the network saw it: a page shrunk to the size of its letters is
        refined at that size, and the change is scaled back up."""
        result = get_task(TEXT_SEGMENTATION).decode(output, rgb, threshold=threshold)
        if self.stroke_refinement is None:
            return result
        probability = result.probability
        if seen.shape == rgb.shape:
            return dataclasses.replace(result, probability=refine_strokes(probability, rgb, self.stroke_refinement))
        h, w = probability.shape
        small = cv2.resize(probability, seen.shape[1::-1], interpolation=cv2.INTER_AREA)
        change = refine_strokes(small, seen, self.stroke_refinement) - small
        change = cv2.resize(change, (w, h), interpolation=cv2.INTER_LINEAR)
        return dataclasses.replace(result, probability=np.clip(probability + change, 0.0, 1.0))


def _to_unit_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(B, H, W, 3)`` -> float ``(B, 3, H, W)`` in [0, 1], contiguous: one memory layout
    whatever the batch size or where the pixels came from, so the convolutions pick the same
    kernels (and round the same way) for a window cut from a photo and for the whole image."""
    return torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(0, 3, 1, 2).float().div_(255).contiguous()


def _resize_output(output: np.ndarray, height: int, width: int, is_image: bool) -> np.ndarray:
    """A float ``(h, w, 3)`` output brought to ``(height, width)``: bicubic for images, bilinear
    for scores (as resize mode does)."""
    tensor = torch.from_numpy(np.ascontiguousarray(output)).permute(2, 0, 1)[None]
    full = F.interpolate(tensor, size=(height, width), mode="bicubic" if is_image else "bilinear", align_corners=False)
    return full[0].permute(1, 2, 0).numpy()


def _pad_to(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W, 3)`` padded at the bottom and right: mirrored (without repeating the edge) where the
    image is large enough, else the edge repeated."""
    h, w = rgb.shape[:2]
    if (h, w) == (height, width):
        return rgb
    mode = "reflect" if (height - h) < h and (width - w) < w else "edge"
    return np.pad(rgb, ((0, height - h), (0, width - w), (0, 0)), mode=mode)

