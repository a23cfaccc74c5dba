"""Result objects: what the pipeline returns and what the UI, the CLI and the exporters read.

Each result type lives with its task (:mod:`upocr.tasks`); this module gathers them. All arrays
are at the size of the user's image (after EXIF orientation): ``(H, W)`` or ``(H, W, 3)``.
"""

from __future__ import annotations

from .tasks.removal import TextRemovalResult, composite_inside_mask, dilate_mask
from .tasks.segmentation import TextSegmentationResult
from .tasks.tampering import TAMPER_OVERLAY_COLOURS, TamperedRegion, TamperingResult

TaskResult = TextRemovalResult | TextSegmentationResult | TamperingResult

__all__ = [
    "TAMPER_OVERLAY_COLOURS",
    "TaskResult",
    "TamperedRegion",
    "TamperingResult",
    "TextRemovalResult",
    "TextSegmentationResult",
    "composite_inside_mask",
    "dilate_mask",
]
