"""The task layer: everything that differs between the three pixel-level OCR tasks.

* :mod:`.names`: names, aliases, the official prompt order and the pixel codes (no numpy);
* :mod:`.base`: :class:`Task`, the interface, and :class:`LabelClass`;
* :mod:`.removal`, :mod:`.segmentation`, :mod:`.tampering`: one module per task, each with
  its result type, how raw outputs decode into it, its label encoding on disk, its training
  target, its classes and colours.

``get_task(name)`` returns the task object for a name or alias. Code elsewhere asks the task
instead of comparing task names.
"""

from __future__ import annotations

from .names import (
    DEFAULT_SEGMENTATION_THRESHOLD,
    IGNORE_TOLERANCE,
    IGNORE_VALUE,
    OFFICIAL_TASK_ORDER,
    TAMPER_CLASSES,
    TAMPER_TARGET_COLOURS,
    TAMPERED_TEXT_DETECTION,
    TASKS,
    TEXT_REMOVAL,
    TEXT_SEGMENTATION,
    canonical_task,
    canonical_tasks,
    task_indices,
)

from .base import Agreement, Proposal

_REGISTRY: dict = {}


def get_task(name: str):
    """The :class:`~upocr.tasks.base.Task` for a task name or alias (``ValueError`` if unknown)."""
    task = canonical_task(name)
    if not _REGISTRY:
        from .removal import TextRemoval
        from .segmentation import TextSegmentation
        from .tampering import TamperedTextDetection

        _REGISTRY.update({t.name: t() for t in (TextRemoval, TextSegmentation, TamperedTextDetection)})
    return _REGISTRY[task]


__all__ = [
    "DEFAULT_SEGMENTATION_THRESHOLD",
    "IGNORE_TOLERANCE",
    "IGNORE_VALUE",
    "OFFICIAL_TASK_ORDER",
    "Agreement",
    "Proposal",
    "TAMPER_CLASSES",
    "TAMPER_TARGET_COLOURS",
    "TAMPERED_TEXT_DETECTION",
    "TASKS",
    "TEXT_REMOVAL",
    "TEXT_SEGMENTATION",
    "canonical_task",
    "canonical_tasks",
    "get_task",
    "task_indices",
]
