"""Result objects: what the pipeline returns and what the UI, the CLI and the exporters read.

All arrays are at the size of the user's image (after EXIF orientation): ``(H, W)`` or ``(H, W, 3)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image
from scipy import ndimage

from .tasks import (
    DEFAULT_SEGMENTATION_THRESHOLD,
    TAMPER_CLASSES,
    TAMPERED_TEXT_DETECTION,
    TEXT_REMOVAL,
    TEXT_SEGMENTATION,
)

#: Overlay colours for the tampering classes (background is left transparent).
TAMPER_OVERLAY_COLOURS = {1: (30, 200, 80), 2: (230, 40, 40)}


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a boolean ``(H, W)`` mask by a disk of ``radius`` pixels."""
    mask = np.asarray(mask, dtype=bool)
    if radius <= 0 or not mask.any():
        return mask.copy()
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = (yy * yy + xx * xx) <= radius * radius
    return ndimage.binary_dilation(mask, structure=disk)


def composite_inside_mask(original: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``edited`` where ``mask`` is true, ``original`` elsewhere (uint8 RGB, same size)."""
    mask = np.asarray(mask, dtype=bool)
    if original.shape != edited.shape or mask.shape != original.shape[:2]:
        raise ValueError(
            f"sizes differ: original {original.shape}, edited {edited.shape}, mask {mask.shape}"
        )
    out = original.copy()
    out[mask] = edited[mask]
    return out


@dataclass
class TextRemovalResult:
    """Text removal: ``image`` is the text-free RGB image (uint8, the input's size).

    ``raw`` is the model's output before any compositing; ``mask`` is the region that was
    allowed to change when the result was composited with the input (``None``: every pixel).
    """

    image: np.ndarray
    original: np.ndarray
    raw: np.ndarray | None = None
    mask: np.ndarray | None = None
    task: str = field(default=TEXT_REMOVAL, init=False)

    def restricted_to(self, mask: np.ndarray, dilation: int = 7) -> "TextRemovalResult":
        """This result with changes kept to ``mask`` (bool ``(H, W)``) dilated by ``dilation``
        pixels: every other pixel is the original's. No model run."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.original.shape[:2]:
            h, w = self.original.shape[:2]
            raise ValueError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {w}x{h}")
        raw = self.raw if self.raw is not None else self.image
        region = dilate_mask(mask, dilation)
        return TextRemovalResult(image=composite_inside_mask(self.original, raw, region), original=self.original,
                                 raw=raw, mask=region)

    def changed_mask(self, tolerance: int = 24) -> np.ndarray:
        """Pixels whose value changed by more than ``tolerance`` in any channel."""
        diff = np.abs(self.image.astype(np.int16) - self.original.astype(np.int16)).max(axis=-1)
        return diff > tolerance

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.image)


@dataclass
class TextSegmentationResult:
    """Text segmentation: a text probability per pixel and a mask at ``threshold``.

    ``probability`` is float32 ``(H, W)`` in [0, 1] (mean of the output channels); changing the
    threshold (:meth:`with_threshold`) never re-runs the model.
    """

    probability: np.ndarray
    original: np.ndarray
    threshold: float = DEFAULT_SEGMENTATION_THRESHOLD
    task: str = field(default=TEXT_SEGMENTATION, init=False)

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``(H, W)`` text mask."""
        return self.probability > self.threshold

    def with_threshold(self, threshold: float) -> "TextSegmentationResult":
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        return replace(self, threshold=float(threshold))

    def mask_image(self) -> np.ndarray:
        """uint8 ``(H, W)`` mask with values 0 and 255."""
        return self.mask.astype(np.uint8) * 255

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.mask_image(), mode="L")


@dataclass
class TamperedRegion:
    """One connected region of tampered text: box ``(x0, y0, x1, y1)`` (x1, y1 exclusive)."""

    box: tuple[int, int, int, int]
    area: int
    score: float


@dataclass
class TamperingResult:
    """Tampered text detection: per-class scores ``(H, W, 3)`` (background, real, tampered).

    Scores sum to one per pixel (the pipeline uses a softmax of the raw outputs, so their argmax
    is the official decoding); ``labels`` is that argmax: 0 background, 1 real text, 2 tampered text.
    """

    probabilities: np.ndarray
    original: np.ndarray
    task: str = field(default=TAMPERED_TEXT_DETECTION, init=False)
    classes: tuple[str, ...] = field(default=TAMPER_CLASSES, init=False)

    @property
    def labels(self) -> np.ndarray:
        return self.probabilities.argmax(axis=-1).astype(np.uint8)

    def label_image(self) -> np.ndarray:
        """uint8 ``(H, W)`` label map with values 0, 1, 2."""
        return self.labels

    def regions(self, min_area: int = 16) -> list[TamperedRegion]:
        """Connected regions labelled tampered, largest score first."""
        tampered = self.labels == 2
        components, count = ndimage.label(tampered)
        regions = []
        for index, slices in enumerate(ndimage.find_objects(components), start=1):
            if slices is None:
                continue
            inside = components[slices] == index
            area = int(inside.sum())
            if area < min_area:
                continue
            score = float(self.probabilities[slices][..., 2][inside].mean())
            ys, xs = slices
            regions.append(TamperedRegion((xs.start, ys.start, xs.stop, ys.stop), area, score))
        return sorted(regions, key=lambda r: r.score, reverse=True)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The input with real text tinted green and tampered text red (uint8 RGB)."""
        out = self.original.astype(np.float32)
        labels = self.labels
        for value, colour in TAMPER_OVERLAY_COLOURS.items():
            where = labels == value
            out[where] = (1 - alpha) * out[where] + alpha * np.asarray(colour, np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def to_pil(self) -> Image.Image:
        return Image.fromarray(self.label_image(), mode="L")


TaskResult = TextRemovalResult | TextSegmentationResult | TamperingResult
