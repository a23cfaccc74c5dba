"""Turning label maps and boxes into the 3-channel targets the network is trained on (uint8 images).

The per-task encodings live with their tasks (:mod:`upocr.tasks`); this module gathers them for
the data loaders and adds box lists.

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

from ..tasks.base import IGNORE_BYTE, IGNORE_LABEL
from ..tasks.segmentation import segmentation_target
from ..tasks.tampering import REAL_TEXT, TAMPERED_TEXT, tampering_target

__all__ = ["IGNORE_BYTE", "IGNORE_LABEL", "REAL_TEXT", "TAMPERED_TEXT", "boxes_to_labels", "segmentation_target",
           "tampering_target"]


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
