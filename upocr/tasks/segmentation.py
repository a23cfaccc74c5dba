"""Text segmentation: a text probability per pixel. Labels are 0/255 masks; targets white on black."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np
from PIL import Image

from .base import IGNORE_BYTE, IGNORE_LABEL, Agreement, Proposal, TextMaskTask, ignored_pixels, unit_float
from .names import DEFAULT_SEGMENTATION_THRESHOLD, TEXT_SEGMENTATION
from .strokes import refine_strokes


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


def segmentation_target(text: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Boolean ``(H, W)`` text mask (and optional ignore mask) -> uint8 ``(H, W, 3)`` target:
    white (255) text on black (0), ignored pixels 128."""
    text = np.asarray(text, dtype=bool)
    out = np.where(text, np.uint8(255), np.uint8(0)).astype(np.uint8)
    if ignore is not None:
        out[np.asarray(ignore, dtype=bool)] = IGNORE_BYTE
    return np.repeat(out[..., None], 3, axis=2)


def text_mask_proposal(result: TextSegmentationResult, cleaned: np.ndarray | None = None) -> Proposal:
    """A text mask with its scores (``p`` on text, ``1 - p`` elsewhere) and margins (distance of
    ``p`` from the threshold, as a share of the way to 0 or 1)."""
    p, t = result.probability, result.threshold
    mask = result.mask
    span = np.where(mask, max(1.0 - t, 1e-6), max(t, 1e-6)).astype(np.float32)
    return Proposal(mask, cleaned, scores=np.where(mask, p, 1.0 - p), margins=np.abs(p - t) / span)


class TextSegmentation(TextMaskTask):
    name = TEXT_SEGMENTATION
    short_name = "seg"
    colour_jitter = True
    labelled_from = (TEXT_SEGMENTATION,)
    validation_metric = "fgiou"

    def loss(self, outputs, batch, vgg=None, **options):
        """Smooth-L1 on the three outputs, ignoring 128/255 target pixels."""
        from ..training.losses import masked_smooth_l1_loss

        return masked_smooth_l1_loss(outputs, batch["target"], **options)

    def decode(self, output, rgb, *, threshold, mask=None, dilation=7) -> TextSegmentationResult:
        probability = np.clip(output.mean(axis=-1), 0, 1).astype(np.float32)
        return TextSegmentationResult(probability=probability, original=rgb, threshold=float(threshold))

    def label_of(self, results: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        return results[self.name].mask, None

    def propose(self, results: Mapping[str, Any]) -> Proposal:
        return text_mask_proposal(results[self.name])

    def synthetic_pair(self, composite, clean, text_support, strokes, labels):
        return composite, segmentation_target(strokes)

    def training_pair(self, classes, cleaned):
        text = np.asarray(classes) == 1
        return segmentation_target(text), text.astype(np.uint8) * 255

    def ground_truth(self, target: np.ndarray) -> np.ndarray:
        t = unit_float(target)
        labels = (t.mean(axis=-1) > 0.5).astype(np.uint8)
        labels[ignored_pixels(t)] = IGNORE_LABEL
        return labels

    def prediction(self, output: np.ndarray, threshold: float, *, image: np.ndarray | None = None,
                   stroke_refinement: float | None = None, **decision) -> np.ndarray:
        probability = np.asarray(output).mean(0)
        if stroke_refinement is not None and image is not None:
            probability = refine_strokes(np.clip(probability, 0, 1), image, stroke_refinement)
        return probability > threshold

    def agreement(self, reference: np.ndarray, candidate: np.ndarray) -> Agreement:
        union = np.logical_or(reference, candidate).sum()
        iou = 1.0 if union == 0 else float(np.logical_and(reference, candidate).sum() / union)
        return Agreement("mask IoU", iou, ">= 0.99", iou >= 0.99)

    def scored(self, result: TextSegmentationResult) -> tuple[np.ndarray, str]:
        return np.asarray(result.mask).astype(bool), "mask"

    def metrics(self, official: bool = False):
        from ..evaluation.metrics import SegmentationMetrics

        return SegmentationMetrics()

    def score(self, accumulator, prediction, truth, name):
        return accumulator.scores_from_confusion(accumulator.update(prediction, truth))
