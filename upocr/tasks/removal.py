"""Text removal: the text-free image. Labels are the text mask (0/255 PNG) plus the cleaned image."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from PIL import Image
from scipy import ndimage

from .base import TEXT_COLOUR, Agreement, Proposal, TextMaskTask, unit_float
from .segmentation import text_mask_proposal
from .names import TEXT_REMOVAL, TEXT_SEGMENTATION

__all__ = ["TEXT_COLOUR", "TextRemoval", "TextRemovalResult", "composite_inside_mask", "dilate_mask"]


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


class TextRemoval(TextMaskTask):
    name = TEXT_REMOVAL
    short_name = "rem"
    has_cleaned_image = True
    target_is_image = True
    labelled_from = (TEXT_REMOVAL, TEXT_SEGMENTATION)  # one encoder pass gives the text mask too
    validation_metric = "psnr"

    def loss(self, outputs, batch, vgg=None, **options):
        """The official multi-scale masked L1 (and, with ``vgg``, the perceptual and style terms)."""
        from ..training.losses import removal_loss

        if batch.get("mask") is None:
            raise ValueError("the text removal loss needs batch['mask'] (1 = text)")
        return removal_loss(outputs, batch["target"], batch["mask"], batch["image"], vgg=vgg, **options)

    def decode(self, output, rgb, *, threshold, mask=None, dilation=7) -> TextRemovalResult:
        cleaned = (np.clip(output, 0, 1) * 255 + 0.5).astype(np.uint8)
        result = TextRemovalResult(image=cleaned, original=rgb, raw=cleaned)
        return result if mask is None else result.restricted_to(mask, dilation)

    def label_of(self, results: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        removal = results[TEXT_REMOVAL]
        segmentation = results.get(TEXT_SEGMENTATION)
        mask = segmentation.mask if segmentation is not None else removal.changed_mask()
        return mask, removal.image

    def propose(self, results: Mapping[str, Any]) -> Proposal:
        """The text mask's scores and margins come from text segmentation when it ran."""
        segmentation = results.get(TEXT_SEGMENTATION)
        if segmentation is None:
            return super().propose(results)
        return text_mask_proposal(segmentation, results[TEXT_REMOVAL].image)

    def synthetic_pair(self, composite, clean, text_support, strokes, labels):
        text_free = clean()
        return np.where(text_support[..., None], composite, text_free), text_free

    def training_pair(self, classes, cleaned):
        if cleaned is None:
            raise ValueError("a text removal label needs the cleaned image")
        return cleaned, (np.asarray(classes) == 1).astype(np.uint8) * 255

    def ground_truth(self, target: np.ndarray) -> np.ndarray:
        t = np.asarray(target)
        if t.dtype != np.uint8:
            t = np.clip(np.rint(unit_float(t) * 255.0), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(t)

    def prediction(self, output: np.ndarray, threshold: float, **decision) -> np.ndarray:
        return np.moveaxis(np.asarray(output), 0, -1)

    def agreement(self, reference: np.ndarray, candidate: np.ndarray) -> Agreement:
        mae = float(np.mean(np.abs(np.asarray(reference, np.float64) - np.asarray(candidate, np.float64))))
        return Agreement("mean absolute difference (x 255)", mae * 255, "< 1", mae < 1 / 255,
                         higher_is_better=False)

    def scored(self, result: TextRemovalResult) -> tuple[np.ndarray, str]:
        return np.asarray(result.image), "image"

    def metrics(self, official: bool = False):
        from ..evaluation.metrics import RemovalMetrics

        return RemovalMetrics(official=official)

    def score(self, accumulator, prediction, truth, name):
        return accumulator.update(prediction, truth, name=name)
