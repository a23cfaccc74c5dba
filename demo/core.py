"""What the UI needs besides widgets: reading uploads, writing output files, overlays, and the
conversion between a label and the image editor's painted layer.

No gradio import here and no model logic: results come from :mod:`upocr`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from upocr.io import read_image, save_png_atomic
from upocr.tasks import TAMPERED_TEXT_DETECTION, get_task
from upocr.tasks.base import TEXT_COLOUR

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"

#: Alpha of a label painted into the editor layer (the image stays visible under it).
LAYER_ALPHA = 150
#: Layer pixels with at least this alpha count as painted (brush edges are anti-aliased).
PAINTED_ALPHA = 48
#: Alpha of the invisible fill under every unlabelled pixel of a layer the app sends: it marks
#: where the layer lies, so a layer the editor drew shifted, scaled or dropped is detected.
REGISTRATION_ALPHA = 4
#: Each edge of a returned layer must keep the fill (or paint) on this share of its pixels;
#: a layer drawn out of place leaves whole edges bare (an eraser rarely clears a whole edge).
MIN_EDGE_COVERAGE = 0.25

DEFAULT_MAX_PIXELS = 40_000_000


class UserInputError(ValueError):
    """A problem with what the user gave (the message is shown as is)."""


# ------------------------------------------------------------------------------------------
# Folders the app owns
# ------------------------------------------------------------------------------------------


@dataclass
class StudioPaths:
    """The folders the app writes to: ``root/outputs`` (downloads, pruned after ``max_age_s``),
    ``root/workspaces`` (annotation uploads and their labels) and ``root/examples-cache``."""

    root: Path
    max_age_s: float = 6 * 3600
    _last_prune: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        for folder in (self.outputs, self.workspaces, self.examples_cache):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def workspaces(self) -> Path:
        return self.root / "workspaces"

    @property
    def examples_cache(self) -> Path:
        return self.root / "examples-cache"

    def new_output_dir(self) -> Path:
        """A fresh folder for one request's files (old ones are pruned now and then)."""
        now = time.time()
        if now - self._last_prune > 600:
            self._last_prune = now
            self.prune(now)
        return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=self.outputs))

    def prune(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for entry in self.outputs.iterdir():
            try:
                if entry.is_dir() and now - entry.stat().st_mtime > self.max_age_s:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                continue


def default_studio_dir() -> Path:
    """``$UPOCR_STUDIO_DIR``, else a folder in the system temp directory."""
    env = os.environ.get("UPOCR_STUDIO_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / "upocr-studio"


def example_files() -> list[Path]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


# ------------------------------------------------------------------------------------------
# Inputs and outputs
# ------------------------------------------------------------------------------------------


def display_name(path: str | os.PathLike) -> str:
    """The name the user knows a file by (uploads keep their original base name)."""
    return Path(path).name


def output_stem(path: str | os.PathLike | None) -> str:
    stem = Path(path).stem if path else "image"
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem).strip("._")
    return (stem or "image")[:80]


def _size_text(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def read_upload(path: str | os.PathLike | None, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                max_bytes: int | None = None) -> np.ndarray:
    """An uploaded image as uint8 RGB; :class:`upocr.io.ImageReadError` explains any failure.

    ``max_bytes`` holds for every way an image arrives (an upload, an API call, an image sent
    inline as a ``data:`` URL, which Gradio writes to a file before the handler runs)."""
    if path is None or path == "":
        raise UserInputError("No image: upload or paste an image first.")
    if isinstance(path, dict):  # a FileData-like dict from an API call
        path = path.get("path")
    if max_bytes is not None:
        try:
            size = os.path.getsize(path)
        except (OSError, TypeError):
            size = 0  # read_image names the problem
        if size > max_bytes:
            raise UserInputError(f"{display_name(path)}: {_size_text(size)} is more than the "
                                 f"{_size_text(max_bytes)} an image may have")
    return read_image(path, name=display_name(path), max_pixels=max_pixels)


def save_png(folder: Path, name: str, image: np.ndarray) -> str:
    return str(save_png_atomic(folder / name, image))


def save_probability_png(folder: Path, name: str, probability: np.ndarray) -> str:
    """A probability map as a 16-bit greyscale PNG (0..65535), exact to 1.5e-5."""
    values = np.clip(np.rint(np.asarray(probability, np.float64) * 65535), 0, 65535).astype(np.uint16)
    return str(save_png_atomic(folder / name, values))


def mask_overlay(rgb: np.ndarray, mask: np.ndarray, opacity: float = 0.6,
                 colour: tuple[int, int, int] = TEXT_COLOUR) -> np.ndarray:
    """``rgb`` with ``mask`` tinted in ``colour`` at ``opacity`` (0: invisible, 1: solid)."""
    opacity = float(np.clip(opacity, 0.0, 1.0))
    out = rgb.astype(np.float32)
    where = np.asarray(mask, dtype=bool)
    out[where] = (1 - opacity) * out[where] + opacity * np.asarray(colour, np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def tamper_legend_colours() -> dict[str, str]:
    """AnnotatedImage colour map: class name -> hex colour (same colours as the library's overlay)."""
    return {c.name: "#%02x%02x%02x" % c.colour for c in get_task(TAMPERED_TEXT_DETECTION).classes if c.value}


def tamper_annotations(labels: np.ndarray) -> list[tuple[np.ndarray, str]]:
    """``[(mask, class name)]`` for gr.AnnotatedImage (real text, tampered text)."""
    classes = [c for c in get_task(TAMPERED_TEXT_DETECTION).classes if c.value]
    return [((labels == c.value).astype(np.float32), c.name) for c in classes]


def regions_table(result: Any, min_area: int = 16) -> list[list[Any]]:
    """Rows ``[#, x0, y0, x1, y1, area, score]`` of the tampered regions, best score first."""
    rows = []
    for index, region in enumerate(result.regions(min_area=min_area), start=1):
        x0, y0, x1, y1 = region.box
        rows.append([index, x0, y0, x1, y1, region.area, round(float(region.score), 3)])
    return rows


# ------------------------------------------------------------------------------------------
# Editor layer <-> label
# ------------------------------------------------------------------------------------------


def brush_colours(task: str) -> list[str]:
    return ["#%02x%02x%02x" % colour for colour in get_task(task).colours.values()]


def label_to_layer(label: np.ndarray, task: str, alpha: int = LAYER_ALPHA) -> np.ndarray:
    """An RGBA layer painting ``label`` (bool mask, or 0/1/2 class map for tampering)."""
    spec = get_task(task)
    values = spec.decode_label(spec.encode_label(label))  # any mask or class map -> class values
    layer = np.zeros(values.shape + (4,), np.uint8)
    layer[..., 3] = REGISTRATION_ALPHA
    for value, colour in spec.colours.items():
        layer[values == value] = (*colour, alpha)
    return layer


def editor_value(rgb: np.ndarray, label: np.ndarray | None, task: str) -> dict:
    """The ImageEditor value: the image as background, the label as the one paintable layer."""
    if label is None:
        label = np.zeros(rgb.shape[:2], np.uint8)
    return {"background": rgb, "layers": [label_to_layer(label, task)], "composite": None}


def _as_rgba(image: Any) -> np.ndarray | None:
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return np.asarray(im.convert("RGBA"))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGBA"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        return np.dstack([np.repeat(arr[..., None], 3, axis=2), np.full(arr.shape, 255, np.uint8)])
    if arr.shape[2] == 3:
        return np.dstack([arr, np.full(arr.shape[:2], 255, np.uint8)])
    return arr


def check_layers(layers: Sequence[np.ndarray], shape: tuple[int, int]) -> None:
    """Refuse layers that are not exactly where the app put them: another size than the image,
    or bare edges (the editor drew the label layer shifted or scaled, or dropped it)."""
    for layer in layers:
        if layer.shape[:2] != tuple(shape):
            raise UserInputError(
                f"The editor returned a {layer.shape[1]}x{layer.shape[0]} label for a {shape[1]}x{shape[0]} "
                "image; nothing was saved. Load the image again and redo the correction.")
    alpha = np.logical_or.reduce([layer[..., 3] > 0 for layer in layers])
    edges = (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1])
    if min(edge.mean() for edge in edges) < MIN_EDGE_COVERAGE:
        raise UserInputError(
            "The editor's label layer is no longer aligned with the image; nothing was saved. "
            "Load the image again and redo the correction.")


#: Largest mean absolute difference (0-255) between the editor's background and the image a
#: label is saved for: the editor returns the image losslessly, and another picture of the
#: same size differs by far more.
SAME_IMAGE_TOLERANCE = 2.0


def label_from_editor(value: dict | None, task: str, shape: tuple[int, int], image: np.ndarray | None = None) -> np.ndarray:
    """The label painted in the editor (all layers together), at the image size ``shape``.

    Text tasks: bool mask (painted = text). Tampering: uint8 0/1/2, each painted pixel takes the
    class whose brush colour is nearest. A layer that does not line up with the image exactly is
    refused (:func:`check_layers`), never fitted. ``image``: the RGB image the label is for; an
    editor whose background is another picture (one still on screen while the next loads) is
    refused, so one image's label can never be saved as another's.
    """
    if not value:
        raise UserInputError("The editor is empty: run the model (or load an image) first.")
    layers = [_as_rgba(layer) for layer in (value.get("layers") or [])]
    layers = [layer for layer in layers if layer is not None]
    if not layers:
        raise UserInputError("The editor has no label yet (the image may still be loading); nothing was saved.")
    check_layers(layers, shape)
    background = _as_rgba(value.get("background"))
    if background is not None and background.shape[:2] != tuple(shape):
        raise UserInputError("The editor shows another image than this one; nothing was saved. Load it again.")
    if (background is not None and image is not None
            and np.abs(background[..., :3].astype(np.int16) - image[..., :3]).mean() > SAME_IMAGE_TOLERANCE):
        raise UserInputError("The editor still showed the previous image (the next one was loading); "
                             "nothing was saved. Check the mask and press Accept again.")
    colours = get_task(task).colours
    if len(colours) == 1:  # a text mask: whatever is painted is text
        mask = np.zeros(shape, bool)
        for layer in layers:
            mask |= layer[..., 3] >= PAINTED_ALPHA
        return mask
    values = np.array(list(colours.keys()), np.uint8)
    palette = np.array(list(colours.values()), np.float32)
    labels = np.zeros(shape, np.uint8)
    for layer in layers:
        painted = layer[..., 3] >= PAINTED_ALPHA
        if not painted.any():
            continue
        pixels = layer[..., :3][painted].astype(np.float32)
        nearest = np.argmin(((pixels[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
        labels[painted] = values[nearest]
    return labels
