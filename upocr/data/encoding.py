"""Turning label maps into the 3-channel targets the network is trained on (uint8 images).

* text segmentation: white (255) text on black (0); ignored pixels are 128.
* tampered text detection: red background, green real text, blue tampered text
  (:data:`upocr.tasks.TAMPER_TARGET_COLOURS`); ignored pixels are 128.
* text removal: the target is the text-free image itself.

Label maps use 255 for "ignore". Box lists are ``[x0, y0, x1, y1, class]`` with ``x1``/``y1``
exclusive and class 1 (real text) or 2 (tampered text).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from upocr.tasks import IGNORE_VALUE, TAMPER_TARGET_COLOURS

#: uint8 value of :data:`upocr.tasks.IGNORE_VALUE` (128).
IGNORE_BYTE = int(round(IGNORE_VALUE * 255))
#: Label-map value meaning "ignore this pixel".
IGNORE_LABEL = 255

REAL_TEXT = 1
TAMPERED_TEXT = 2

_TAMPER_PALETTE = np.zeros((256, 3), dtype=np.uint8)
for _index, _colour in enumerate(TAMPER_TARGET_COLOURS):
    _TAMPER_PALETTE[_index] = _colour
_TAMPER_PALETTE[IGNORE_LABEL] = IGNORE_BYTE


def segmentation_target(text: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
    """Boolean ``(H, W)`` text mask (and optional ignore mask) -> uint8 ``(H, W, 3)`` target."""
    text = np.asarray(text, dtype=bool)
    out = np.where(text, np.uint8(255), np.uint8(0)).astype(np.uint8)
    if ignore is not None:
        out[np.asarray(ignore, dtype=bool)] = IGNORE_BYTE
    return np.repeat(out[..., None], 3, axis=2)


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


def boxes_to_labels(
    boxes: Iterable[Sequence[float]], height: int, width: int, *, inclusive: bool = False
) -> np.ndarray:
    """Fill boxes ``[x0, y0, x1, y1, class]`` into a uint8 ``(H, W)`` label map.

    Real-text boxes are filled first and tampered boxes on top, so where they overlap the
    pixel is tampered. ``inclusive=True`` treats ``x1``/``y1`` as the last pixel inside the box
    (ICDAR convention) instead of one past it. Boxes are clipped to the image.
    """
    labels = np.zeros((height, width), dtype=np.uint8)
    rows = [list(b) for b in boxes]
    for wanted in (REAL_TEXT, TAMPERED_TEXT):
        for row in rows:
            cls = int(row[4]) if len(row) > 4 else REAL_TEXT
            cls = TAMPERED_TEXT if cls == TAMPERED_TEXT else REAL_TEXT
            if cls != wanted:
                continue
            x0, x1 = sorted((float(row[0]), float(row[2])))
            y0, y1 = sorted((float(row[1]), float(row[3])))
            extra = 1 if inclusive else 0
            c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
            c1, r1 = min(width, int(np.ceil(x1)) + extra), min(height, int(np.ceil(y1)) + extra)
            if c1 > c0 and r1 > r0:
                labels[r0:r1, c0:c1] = cls
    return labels


def text_region_from_target(target: np.ndarray, task: str) -> np.ndarray:
    """The text/foreground region (bool ``(H, W)``) of a uint8 segmentation or tampering target."""
    from upocr.tasks import TAMPERED_TEXT_DETECTION, TEXT_SEGMENTATION, canonical_task

    task = canonical_task(task)
    target = np.asarray(target)
    if task == TEXT_SEGMENTATION:
        return (target == 255).all(axis=-1)
    if task == TAMPERED_TEXT_DETECTION:
        ignore = (target == IGNORE_BYTE).all(axis=-1)
        return ~ignore & (target[..., 0] < 128)
    raise ValueError(f"no text region can be read from a {task} target")
