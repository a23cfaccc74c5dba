"""Streaming evaluation metrics for text removal, text segmentation and tampered text detection.

Text removal (:class:`RemovalMetrics`), computed per image and averaged over images:

* ``psnr`` (dB) and ``mse`` on RGB scaled to [0, 1]. An exact match has MSE 0; its PSNR is capped
  at :data:`MAX_PSNR` (100 dB) so that averages stay finite.
* ``mssim``: multi-scale SSIM on RGB in [0, 1] (SSIM per channel, channels averaged). Gaussian
  window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, "valid" filtering (no padding), 5 scales with
  weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); between scales the image is downsampled by
  2x2 averaging. Contrast-structure terms of scales 1..M-1 and the full SSIM of scale M are
  combined as ``prod(v_j ** w_j)``, each ``v_j`` clipped at 0 first. When an image is too small for
  5 scales (a scale needs a side of at least 11 pixels), only the scales that fit are used and
  their weights are renormalised to sum to one; an image with a side below 11 pixels uses one
  scale with the window shrunk to that side (odd size, same sigma).
* ``age``: mean absolute error of the luminance ``0.299 R + 0.587 G + 0.114 B`` on 0-255.
* ``peps``: fraction of pixels whose luminance error exceeds 20.
* ``pceps``: fraction of pixels whose luminance error exceeds 20 and whose four neighbours
  (up, down, left, right) do too, i.e. the error map eroded by a 3x3 cross; pixels outside the
  image count as not erroneous, so border pixels never count.
* FID is not computed: it needs Inception weights, which are not shipped.

``official=True`` reproduces two choices of the official evaluation code instead of the standard
definitions: MS-SSIM computed at full resolution for all 5 scales (no downsampling between
scales), and pEPs/pCEPs divided by 512 * 512 whatever the image size. Outputs record the choice
under ``"definitions"``.

Text segmentation (:class:`SegmentationMetrics`) and tampered text detection
(:class:`TamperingMetrics`) accumulate ONE pixel-level confusion matrix over the whole test set,
at the ground truth's resolution, and derive the scores from it (not per-image means). Ignored
pixels (value 255 in an integer label map, or ``True`` in an ``ignore`` mask) are excluded.
A score whose denominator is zero (e.g. no text predicted or present) is ``nan``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ..tasks.base import IGNORE_LABEL  # 255: ignore this pixel

MSSSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Luminance error (0-255) above which a pixel is an error pixel for pEPs / pCEPs.
EP_THRESHOLD = 20.0
#: Denominator of pEPs / pCEPs in the official evaluation code.
OFFICIAL_EP_PIXELS = 512 * 512
MAX_PSNR = 100.0

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def _definitions(official: bool) -> str:
    return "official" if official else "standard"


# --------------------------------------------------------------------------------------------
# Image conversion helpers
# --------------------------------------------------------------------------------------------


def to_float255(image: Any) -> np.ndarray:
    """RGB ``(H, W, 3)`` as float64 on 0-255: uint8 as is, floats read as [0, 1] (not quantised)."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)  # (C, H, W) -> (H, W, C)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.dtype == np.uint8:
        return arr.astype(np.float64)
    if np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"integer images must be uint8, got {arr.dtype}")
    if arr.dtype == bool:
        raise ValueError("expected an RGB image, got a boolean array")
    return np.clip(arr.astype(np.float64), 0.0, 1.0) * 255.0


def luminance(rgb255: np.ndarray) -> np.ndarray:
    """``0.299 R + 0.587 G + 0.114 B`` of a float ``(H, W, 3)`` image on 0-255 (exact for greys)."""
    return (299.0 * rgb255[..., 0] + 587.0 * rgb255[..., 1] + 114.0 * rgb255[..., 2]) / 1000.0


# --------------------------------------------------------------------------------------------
# SSIM / MS-SSIM
# --------------------------------------------------------------------------------------------


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with a 1-D window along both axes."""
    size = window.size
    out = np.lib.stride_tricks.sliding_window_view(x, size, axis=0) @ window
    out = np.lib.stride_tricks.sliding_window_view(out, size, axis=1) @ window
    return out


def _ssim_and_cs(x: np.ndarray, y: np.ndarray, window: np.ndarray, data_range: float) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term of two 2-D arrays."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = _filter_valid(x, window)
    mu_y = _filter_valid(y, window)
    sxx = _filter_valid(x * x, window) - mu_x * mu_x
    syy = _filter_valid(y * y, window) - mu_y * mu_y
    sxy = _filter_valid(x * y, window) - mu_x * mu_y
    cs_map = (2.0 * sxy + c2) / (sxx + syy + c2)
    lum_map = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return float((lum_map * cs_map).mean()), float(cs_map.mean())


def _downsample2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling (an odd last row/column is dropped)."""
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def msssim_scales(height: int, width: int, official: bool = False) -> int:
    """Number of MS-SSIM scales used for an image of this size (at most 5, at least 1)."""
    if official:
        return len(MSSSIM_WEIGHTS)
    side = min(height, width)
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and (side >> scales) >= SSIM_WINDOW:
        scales += 1
    return scales


def ms_ssim(pred: np.ndarray, target: np.ndarray, official: bool = False, data_range: float = 1.0) -> float:
    """MS-SSIM of two images ``(H, W)`` or ``(H, W, C)`` (channels averaged); see module docs."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {target.shape}")
    if pred.ndim == 2:
        pred, target = pred[..., None], target[..., None]
    height, width = pred.shape[:2]
    scales = msssim_scales(height, width, official)
    weights = np.asarray(MSSSIM_WEIGHTS[:scales], dtype=np.float64)
    weights = weights / weights.sum()
    side = min(height, width)
    size = SSIM_WINDOW if side >= SSIM_WINDOW else (side if side % 2 == 1 else side - 1)
    size = max(size, 1)
    window = gaussian_window(size, SSIM_SIGMA)

    values = []
    for c in range(pred.shape[-1]):
        x, y = pred[..., c], target[..., c]
        per_scale = []
        if official:  # every "scale" is the full-resolution image: compute its terms once
            ssim, cs = _ssim_and_cs(x, y, window, data_range)
            per_scale = [cs] * (scales - 1) + [ssim]
        else:
            for j in range(scales):
                if j > 0:
                    x, y = _downsample2(x), _downsample2(y)
                ssim, cs = _ssim_and_cs(x, y, window, data_range)
                per_scale.append(ssim if j == scales - 1 else cs)
        v = np.clip(np.asarray(per_scale), 0.0, None)
        values.append(float(np.prod(v ** weights)))
    return float(np.mean(values))


# --------------------------------------------------------------------------------------------
# Text removal
# --------------------------------------------------------------------------------------------


def removal_scores(pred: Any, target: Any, official: bool = False) -> dict[str, float]:
    """All removal metrics of one image pair (see module docs)."""
    p = to_float255(pred)
    t = to_float255(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in size")
    mse = float(np.mean(((p - t) / 255.0) ** 2))
    psnr = MAX_PSNR if mse <= 0 else min(MAX_PSNR, 10.0 * math.log10(1.0 / mse))
    err = np.abs(luminance(p) - luminance(t))
    error_pixels = err > EP_THRESHOLD
    connected = ndimage.binary_erosion(error_pixels, structure=_CROSS, border_value=0)
    denom = OFFICIAL_EP_PIXELS if official else error_pixels.size
    return {
        "psnr": psnr,
        "mse": mse,
        "mssim": ms_ssim(p / 255.0, t / 255.0, official=official, data_range=1.0),
        "age": float(err.mean()),
        "peps": float(error_pixels.sum()) / denom,
        "pceps": float(connected.sum()) / denom,
    }


class RemovalMetrics:
    """Per-image removal metrics averaged over images.

    ``update(pred, target)`` takes RGB ``(H, W, 3)`` (or ``(3, H, W)``) images, uint8 on 0-255 or
    float in [0, 1], of the same size. ``compute()`` returns the means (``nan`` when empty).
    """

    KEYS = ("psnr", "mse", "mssim", "age", "peps", "pceps")
    #: Said alongside the scores (what the metrics leave out).
    notes = "FID is not computed (it needs Inception weights, which are not shipped)."

    def __init__(self, official: bool = False):
        self.official = bool(official)
        self.reset()

    def reset(self) -> None:
        self.per_image: list[dict[str, float]] = []

    def update(self, pred: Any, target: Any, name: str | None = None) -> dict[str, float]:
        scores = removal_scores(pred, target, official=self.official)
        record = dict(scores)
        if name is not None:
            record = {"name": name, **record}
        self.per_image.append(record)
        return scores

    @property
    def count(self) -> int:
        return len(self.per_image)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in self.KEYS:
            vals = [r[key] for r in self.per_image]
            out[key] = float(np.mean(vals)) if vals else float("nan")
        out["count"] = self.count
        out["definitions"] = _definitions(self.official)
        return out


# --------------------------------------------------------------------------------------------
# Confusion-matrix metrics
# --------------------------------------------------------------------------------------------


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _safe_div(num: float, den: float) -> float:
    return float(num) / float(den) if den else float("nan")


def _f_score(precision: float, recall: float) -> float:
    if math.isnan(precision) or math.isnan(recall):
        return float("nan")
    return 2.0 * precision * recall / (precision + recall) if (precision + recall) > 0 else 0.0


def class_scores(confusion: np.ndarray, cls: int) -> dict[str, float]:
    """IoU, precision, recall and F of class ``cls`` from a confusion (rows truth, cols prediction)."""
    tp = confusion[cls, cls]
    fp = confusion[:, cls].sum() - tp
    fn = confusion[cls, :].sum() - tp
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    return {
        "iou": _safe_div(tp, tp + fp + fn),
        "precision": precision,
        "recall": recall,
        "f": _f_score(precision, recall),
    }


class ConfusionMetrics:
    """Accumulates a ``num_classes`` x ``num_classes`` pixel confusion (rows truth, cols prediction)."""

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.reset()

    def reset(self) -> None:
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.count = 0

    @staticmethod
    def image_confusion(pred: np.ndarray, target: np.ndarray, valid: np.ndarray, num_classes: int) -> np.ndarray:
        p = pred[valid].astype(np.int64)
        t = target[valid].astype(np.int64)
        if p.size and (p.min() < 0 or p.max() >= num_classes):
            raise ValueError(f"predicted labels must lie in [0, {num_classes - 1}]")
        if t.size and (t.min() < 0 or t.max() >= num_classes):
            raise ValueError(f"ground-truth labels must lie in [0, {num_classes - 1}] or be {IGNORE_LABEL}")
        return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)

    def _prepare(self, pred: Any, target: Any, ignore: Any | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = _to_numpy(pred)
        t = _to_numpy(target)
        p = np.squeeze(p) if p.ndim > 2 else p
        t = np.squeeze(t) if t.ndim > 2 else t
        if p.shape != t.shape:
            raise ValueError(f"prediction {p.shape} and ground truth {t.shape} differ in size")
        valid = np.ones(t.shape, dtype=bool)
        if t.dtype != bool:
            valid &= t != IGNORE_LABEL
        if ignore is not None:
            ig = _to_numpy(ignore).astype(bool)
            ig = np.squeeze(ig) if ig.ndim > 2 else ig
            if ig.shape != t.shape:
                raise ValueError(f"ignore mask {ig.shape} and ground truth {t.shape} differ in size")
            valid &= ~ig
        return p, t, valid

    def update(self, pred: Any, target: Any, ignore: Any | None = None) -> np.ndarray:
        """Add one image; returns its own confusion matrix."""
        p, t, valid = self._prepare(pred, target, ignore)
        conf = self.image_confusion(p, t, valid, self.num_classes)
        self.confusion += conf
        self.count += 1
        return conf


class SegmentationMetrics(ConfusionMetrics):
    """Text segmentation: foreground IoU, precision, recall and F from one accumulated confusion.

    ``update(pred, target, ignore=None)``: ``pred`` boolean ``(H, W)`` (or 0/1); ``target``
    boolean, or an integer label map with 0/1 and 255 = ignore; ``ignore`` optional boolean mask.
    """

    def __init__(self):
        super().__init__(2)

    def update(self, pred: Any, target: Any, ignore: Any | None = None) -> np.ndarray:
        p = _to_numpy(pred)
        if p.dtype != bool:
            p = p.astype(np.int64)
        return super().update(p, target, ignore)

    @staticmethod
    def scores_from_confusion(confusion: np.ndarray) -> dict[str, float]:
        s = class_scores(confusion, 1)
        return {"fgiou": s["iou"], "precision": s["precision"], "recall": s["recall"], "f": s["f"]}

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = self.scores_from_confusion(self.confusion)
        out["count"] = self.count
        out["confusion"] = self.confusion.tolist()
        return out


class TamperingMetrics(ConfusionMetrics):
    """Tampered text detection over label maps (0 background, 1 real text, 2 tampered text).

    Per class (real, tampered): IoU, precision, recall, F; ``mean_iou``, ``mean_precision``,
    ``mean_recall`` and ``mean_f`` average the two text classes. ``update(pred, target,
    ignore=None)``: 255 in ``target`` or ``True`` in ``ignore`` excludes a pixel.
    """

    CLASS_NAMES = {1: "real", 2: "tampered"}

    def __init__(self):
        super().__init__(3)

    @classmethod
    def scores_from_confusion(cls, confusion: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        per_class = {}
        for index, name in cls.CLASS_NAMES.items():
            s = class_scores(confusion, index)
            per_class[name] = s
            for key, value in s.items():
                out[f"{name}_{key}"] = value
        for key in ("iou", "precision", "recall", "f"):
            out[f"mean_{key}"] = float(np.mean([per_class[n][key] for n in cls.CLASS_NAMES.values()]))
        return out

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = self.scores_from_confusion(self.confusion)
        out["count"] = self.count
        out["confusion"] = self.confusion.tolist()
        return out


__all__ = [
    "MSSSIM_WEIGHTS",
    "ConfusionMetrics",
    "RemovalMetrics",
    "SegmentationMetrics",
    "TamperingMetrics",
    "class_scores",
    "luminance",
    "ms_ssim",
    "msssim_scales",
    "removal_scores",
    "to_float255",
]
