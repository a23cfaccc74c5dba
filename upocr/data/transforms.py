"""The shared geometric and photometric transform of dataset items.

The same random geometry is applied to the image, the target and the text mask. Images are
resampled bilinearly; segmentation and tampering targets and masks with nearest neighbour, so
their codes (0, 128, 255 and the three tampering colours) stay exact. The removal target is an
image and is resampled like the image.

Training (``augment=True``): random scale, rotation (+-30 degrees with probability 0.3),
padding to ``size`` where smaller, random ``size x size`` crop, horizontal flip and, for text
segmentation only, colour jitter of the image. Evaluation (``augment=False``): resized to
``size x size`` (``size=None``: left as is).

Padding and the corners uncovered by rotation are black in the image (and in the removal
target) and "ignore" (128) in segmentation and tampering targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..tasks import canonical_task, get_task
from .encoding import IGNORE_BYTE


def default_rng() -> np.random.Generator:
    """A generator drawn from torch's global RNG (seeded per DataLoader worker and by the
    trainer), or from NumPy's when torch is missing."""
    try:
        import torch

        seed = int(torch.randint(0, 2**62, (1,)).item())
    except ImportError:  # pragma: no cover - torch is a dependency
        seed = int(np.random.randint(0, 2**62, dtype=np.int64))
    return np.random.default_rng(seed)


def _resize(arr: np.ndarray, w: int, h: int, nearest: bool) -> np.ndarray:
    if arr.shape[1] == w and arr.shape[0] == h:
        return arr
    if nearest:
        interp = cv2.INTER_NEAREST
    elif arr.shape[1] > w and arr.shape[0] > h:
        interp = cv2.INTER_AREA
    else:
        interp = cv2.INTER_LINEAR
    out = cv2.resize(arr, (w, h), interpolation=interp)
    if arr.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


@dataclass
class PairTransform:
    """Applies one random geometry to ``(image, target, mask)`` uint8 arrays.

    ``image`` and ``target`` are ``(H, W, 3)``, ``mask`` ``(H, W)``. ``scale_range``: random
    zoom around the base scale, which shrinks large images so their shorter side is about
    1.25 x ``size`` (never enlarging).
    """

    task: str
    size: int | None = 512
    augment: bool = False
    hflip: float = 0.5
    rotate_prob: float = 0.3
    max_rotation: float = 30.0
    scale_range: tuple[float, float] = (0.8, 1.25)
    colour_jitter: float = 0.25

    def __post_init__(self):
        self.task = canonical_task(self.task)
        if self.size is not None:
            self.size = int(self.size)
            if self.size < 1:
                raise ValueError(f"size must be positive, got {self.size}")

    @property
    def target_is_image(self) -> bool:
        return get_task(self.task).target_is_image

    @property
    def target_fill(self) -> int:
        return 0 if self.target_is_image else IGNORE_BYTE

    def __call__(self, image: np.ndarray, target: np.ndarray, mask: np.ndarray,
                 rng: np.random.Generator | None = None):
        if image.shape[:2] != target.shape[:2] or image.shape[:2] != mask.shape[:2]:
            raise ValueError(f"image {image.shape[:2]}, target {target.shape[:2]} and mask {mask.shape[:2]} "
                             "must have the same size")
        if not self.augment:
            if self.size is None:
                return image, target, mask
            s = self.size
            return (_resize(image, s, s, False), _resize(target, s, s, not self.target_is_image),
                    _resize(mask, s, s, True))
        rng = rng if rng is not None else default_rng()
        image, target, mask = self._scale(rng, image, target, mask)
        if rng.random() < self.rotate_prob:
            image, target, mask = self._rotate(rng.uniform(-self.max_rotation, self.max_rotation), image, target, mask)
        if self.size is not None:
            image, target, mask = self._crop(rng, image, target, mask)
        if rng.random() < self.hflip:
            image, target, mask = image[:, ::-1], target[:, ::-1], mask[:, ::-1]
        if get_task(self.task).colour_jitter and self.colour_jitter > 0:
            image = jitter_colours(rng, image, self.colour_jitter)
        return np.ascontiguousarray(image), np.ascontiguousarray(target), np.ascontiguousarray(mask)

    def _scale(self, rng, image, target, mask):
        h, w = image.shape[:2]
        base = 1.0 if self.size is None else min(1.0, 1.25 * self.size / min(h, w))
        scale = base * rng.uniform(*self.scale_range)
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        return (_resize(image, nw, nh, False), _resize(target, nw, nh, not self.target_is_image),
                _resize(mask, nw, nh, True))

    def _rotate(self, angle, image, target, mask):
        h, w = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), float(angle), 1.0)

        def warp(arr, nearest, fill):
            out = cv2.warpAffine(arr, matrix, (w, h), flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))
            return out[..., None] if arr.ndim == 3 and out.ndim == 2 else out

        return (warp(image, False, 0), warp(target, not self.target_is_image, self.target_fill),
                warp(mask, True, 0))

    def _crop(self, rng, image, target, mask):
        s = self.size
        h, w = image.shape[:2]
        if h < s or w < s:  # pad (bottom/right) to at least size
            ph, pw = max(0, s - h), max(0, s - w)
            image = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            fill = self.target_fill
            target = cv2.copyMakeBorder(target, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(fill, fill, fill))
            mask = cv2.copyMakeBorder(mask, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
        return random_crop(rng, s, image, target, mask, hflip=0.0)


def random_crop(rng: np.random.Generator, size: int, *arrays: np.ndarray, hflip: float = 0.5,
                around: tuple[int, int] | None = None) -> tuple[np.ndarray, ...]:
    """The same random ``size x size`` window of each array (all at least that large), flipped
    horizontally with probability ``hflip`` (``hflip=0`` draws no flip from ``rng``).
    ``around=(x, y)``: the window is drawn among those that contain that pixel."""
    h, w = arrays[0].shape[:2]
    if any(a.shape[:2] != (h, w) for a in arrays) or h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from arrays of sizes {[a.shape[:2] for a in arrays]}")
    if around is None:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    else:
        x, y = min(max(int(around[0]), 0), w - 1), min(max(int(around[1]), 0), h - 1)
        y0 = int(rng.integers(max(0, y - size + 1), min(h - size, y) + 1))
        x0 = int(rng.integers(max(0, x - size + 1), min(w - size, x) + 1))
    flip = hflip > 0 and rng.random() < hflip
    out = []
    for a in arrays:
        view = a[y0:y0 + size, x0:x0 + size]
        out.append(np.ascontiguousarray(view[:, ::-1] if flip else view))
    return tuple(out)


def jitter_colours(rng: np.random.Generator, image: np.ndarray, strength: float = 0.25) -> np.ndarray:
    """Random brightness, contrast, saturation (each by up to +-``strength``) and hue shift."""
    out = image.astype(np.float32)
    out *= np.float32(1 + rng.uniform(-strength, strength))
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
    mean = float(grey.mean())
    out = (out - mean) * np.float32(1 + rng.uniform(-strength, strength)) + mean
    grey = out @ np.array([0.299, 0.587, 0.114], np.float32)
    out = grey[..., None] + (out - grey[..., None]) * np.float32(1 + rng.uniform(-strength, strength))
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    shift = int(round(rng.uniform(-0.04, 0.04) * 180))
    if shift:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + shift) % 180).astype(np.uint8)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def to_item(image: np.ndarray, target: np.ndarray, mask: np.ndarray, task: str, name: str) -> dict:
    """uint8 arrays -> the dataset item: float32 tensors in [0, 1], channels first."""
    import torch

    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        mask = mask.astype(np.uint8) * 255
    scale = np.float32(255.0)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32) / scale),
        "target": torch.from_numpy(np.ascontiguousarray(target.transpose(2, 0, 1)).astype(np.float32) / scale),
        "mask": torch.from_numpy((np.ascontiguousarray(mask)[None] > 127).astype(np.float32)),
        "task": canonical_task(task),
        "name": str(name),
    }
