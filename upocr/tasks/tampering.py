"""Tampered text detection: per-pixel scores for background, real text and tampered text.

Labels are class maps (PNG values 0, 1, 2); targets are red background, green real text and blue
tampered text (:data:`TAMPER_TARGET_COLOURS`), 128 where ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from PIL import Image
from scipy import ndimage

from .base import IGNORE_BYTE, IGNORE_LABEL, Agreement, LabelClass, Proposal, Task, ignored_pixels, unit_float
from .names import TAMPER_CLASSES, TAMPER_TARGET_COLOURS, TAMPERED_TEXT_DETECTION

REAL_TEXT = 1
TAMPERED_TEXT = 2
#: Display colours: real text green, tampered text red (background is left transparent).
TAMPER_OVERLAY_COLOURS = {REAL_TEXT: (30, 200, 80), TAMPERED_TEXT: (230, 40, 40)}
#: Tampering scores are a softmax of the raw outputs at this temperature: their argmax is the
#: official decoding (argmax over the channels), and a clean one-hot output scores about 1.
TAMPERING_TEMPERATURE = 0.1

_TAMPER_PALETTE = np.zeros((256, 3), dtype=np.uint8)
for _index, _colour in enumerate(TAMPER_TARGET_COLOURS):
    _TAMPER_PALETTE[_index] = _colour
_TAMPER_PALETTE[IGNORE_LABEL] = IGNORE_BYTE


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
        tampered = self.labels == TAMPERED_TEXT
        components, count = ndimage.label(tampered)
        regions = []
        for index, slices in enumerate(ndimage.find_objects(components), start=1):
            if slices is None:
                continue
            inside = components[slices] == index
            area = int(inside.sum())
            if area < min_area:
                continue
            score = float(self.probabilities[slices][..., TAMPERED_TEXT][inside].mean())
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


def tampering_target(labels: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` label map (0 background, 1 real, 2 tampered, 255 ignore) -> ``(H, W, 3)``.

    Any other value raises ``ValueError``.
    """
    labels = np.ascontiguousarray(labels)
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise ValueError("tampering labels must be whole numbers 0, 1, 2 or 255")
    if labels.dtype != np.uint8:
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"tampering labels must be 0, 1, 2 or {IGNORE_LABEL}; "
                             f"found values in [{labels.min()}, {labels.max()}]")
        labels = labels.astype(np.uint8)
    counts = np.bincount(labels.ravel(), minlength=256)
    counts[[0, 1, 2, IGNORE_LABEL]] = 0
    if counts.any():
        values = [int(v) for v in np.flatnonzero(counts)[:8]]
        raise ValueError(f"tampering labels must be 0, 1, 2 or {IGNORE_LABEL}; found {values}")
    return _TAMPER_PALETTE[labels]


def shift_tampered(output: np.ndarray, bias: float) -> np.ndarray:
    """A float32 copy of a tampering output ``(..., 3)`` with ``bias`` added to its tampered-text
    channel: the decision offset of a model's ``tampered_bias``."""
    shifted = np.array(output, dtype=np.float32)
    shifted[..., TAMPERED_TEXT] += np.float32(bias)
    return shifted


class TamperedTextDetection(Task):
    name = TAMPERED_TEXT_DETECTION
    short_name = "tam"
    classes = tuple(LabelClass(v, TAMPER_CLASSES[v], v, TAMPER_OVERLAY_COLOURS.get(v, (0, 0, 0))) for v in range(3))
    uses_threshold = False
    forges_text = True
    labelled_from = (TAMPERED_TEXT_DETECTION,)
    validation_metric = "mean_iou"

    def loss(self, outputs, batch, vgg=None, **options):
        """Smooth-L1 on the three outputs, ignoring 128/255 target pixels (red is background).
        ``tampered_weight``: how many times a tampered-text pixel counts (default: as real text)."""
        from ..training.losses import TAMPER_BACKGROUND, masked_smooth_l1_loss

        tampered_weight = options.pop("tampered_weight", None)
        if tampered_weight is not None:
            colour = tuple(c / 255 for c in TAMPER_TARGET_COLOURS[TAMPERED_TEXT])
            options["colour_weights"] = ((colour, float(tampered_weight)),)
        return masked_smooth_l1_loss(outputs, batch["target"], background=TAMPER_BACKGROUND, **options)

    def decode(self, output, rgb, *, threshold, mask=None, dilation=7) -> TamperingResult:
        logits = output / TAMPERING_TEMPERATURE
        scores = np.exp(logits - logits.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        return TamperingResult(probabilities=scores.astype(np.float32), original=rgb)

    def label_of(self, results: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        return results[self.name].labels, None

    def propose(self, results: Mapping[str, Any]) -> Proposal:
        """Scores: the winning class's probability; margins: its lead over the runner-up."""
        result = results[self.name]
        top_two = np.sort(result.probabilities, axis=-1)[..., -2:]
        return Proposal(result.labels, None, scores=top_two[..., 1], margins=top_two[..., 1] - top_two[..., 0])

    def encode_label(self, label: np.ndarray) -> np.ndarray:
        arr = self._check_label(label)
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > 2:
            raise ValueError(
                f"a tampering label map holds 0 (background), 1 (real text) and 2 (tampered text); "
                f"got values in [{low}, {high}]"
            )
        return np.ascontiguousarray(arr.astype(np.uint8))

    def decode_label(self, png: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(png), 0, 2).astype(np.uint8)

    def synthetic_pair(self, composite, clean, text_support, strokes, labels):
        return composite, tampering_target(labels)

    def training_pair(self, classes, cleaned):
        classes = np.asarray(classes)
        return tampering_target(classes), (classes > 0).astype(np.uint8) * 255

    def ground_truth(self, target: np.ndarray) -> np.ndarray:
        t = unit_float(target)
        labels = t.argmax(axis=-1).astype(np.uint8)
        labels[ignored_pixels(t)] = IGNORE_LABEL
        return labels

    def prediction(self, output: np.ndarray, threshold: float, *, tampered_bias: float = 0.0,
                   **decision) -> np.ndarray:
        output = np.moveaxis(np.asarray(output), 0, -1)
        return (shift_tampered(output, tampered_bias) if tampered_bias else output).argmax(-1).astype(np.uint8)

    def agreement(self, reference: np.ndarray, candidate: np.ndarray) -> Agreement:
        same = float(np.mean(np.asarray(reference) == np.asarray(candidate)))
        return Agreement("pixels with the same label", same, ">= 0.99", same >= 0.99)

    def scored(self, result: TamperingResult) -> tuple[np.ndarray, str]:
        return np.asarray(result.labels), "label map"

    def metrics(self, official: bool = False):
        from ..evaluation.metrics import TamperingMetrics

        return TamperingMetrics()

    def score(self, accumulator, prediction, truth, name):
        return accumulator.scores_from_confusion(accumulator.update(prediction, truth))
