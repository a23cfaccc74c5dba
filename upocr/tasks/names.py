"""Task names, their aliases, the official prompt order and the pixel codes of the targets.

Every task is image-to-image: the network reads an RGB image in [0, 1] and writes a 3-channel
image in [0, 1]. Free of numpy and torch, so the command line can import it cheaply.
"""

from __future__ import annotations

from typing import Iterable, Sequence

TEXT_REMOVAL = "text-removal"
TEXT_SEGMENTATION = "text-segmentation"
TAMPERED_TEXT_DETECTION = "tampered-text-detection"

#: Task names in the official checkpoint's prompt order (index -> task).
OFFICIAL_TASK_ORDER: tuple[str, ...] = (TEXT_REMOVAL, TAMPERED_TEXT_DETECTION, TEXT_SEGMENTATION)
TASKS: tuple[str, ...] = (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION)

_ALIASES = {
    "removal": TEXT_REMOVAL,
    "remove": TEXT_REMOVAL,
    "text_removal": TEXT_REMOVAL,
    "erase": TEXT_REMOVAL,
    "segmentation": TEXT_SEGMENTATION,
    "segment": TEXT_SEGMENTATION,
    "text_segmentation": TEXT_SEGMENTATION,
    "tampering": TAMPERED_TEXT_DETECTION,
    "tampered": TAMPERED_TEXT_DETECTION,
    "tamper": TAMPERED_TEXT_DETECTION,
    "tampered_text_detection": TAMPERED_TEXT_DETECTION,
}

#: Segmentation: a pixel is text when the mean of the three output channels exceeds this.
DEFAULT_SEGMENTATION_THRESHOLD = 0.4

#: Tampered text detection: channel -> class (argmax over channels).
TAMPER_CLASSES: tuple[str, ...] = ("background", "real text", "tampered text")
#: RGB colour of each tampering class in the target image (red, green, blue).
TAMPER_TARGET_COLOURS: tuple[tuple[int, int, int], ...] = ((255, 0, 0), (0, 255, 0), (0, 0, 255))

#: Target value that means "ignore this pixel" in segmentation and tampering targets (128/255).
IGNORE_VALUE = 128 / 255
#: Target values closer than this to :data:`IGNORE_VALUE` (in every channel) are ignored.
IGNORE_TOLERANCE = 1e-3


def canonical_task(name: str) -> str:
    """Return the canonical task name for ``name`` (accepts aliases, ``_`` or ``-``)."""
    key = str(name).strip().lower()
    if key in TASKS:
        return key
    key_underscored = key.replace("-", "_").replace(" ", "_")
    if key_underscored in _ALIASES:
        return _ALIASES[key_underscored]
    if key_underscored.replace("_", "-") in TASKS:
        return key_underscored.replace("_", "-")
    raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")


def canonical_tasks(names: str | Iterable[str]) -> list[str]:
    """Canonical names for one task or many; ``"all"`` means every task."""
    if isinstance(names, str):
        if names.strip().lower() == "all":
            return list(TASKS)
        return [canonical_task(names)]
    return [canonical_task(n) for n in names]


def task_indices(tasks: str | Sequence[str], task_order: Sequence[str], batch_size: int) -> list[int]:
    """Prompt indices for a batch: one name for every image, or one name per image."""
    names = [tasks] * batch_size if isinstance(tasks, str) else list(tasks)
    if len(names) != batch_size:
        raise ValueError(f"got {len(names)} task names for a batch of {batch_size} images")
    order = list(task_order)
    indices = []
    for name in names:
        task = canonical_task(name)
        if task not in order:
            raise ValueError(f"this model has no prompt for task {task!r}; it knows {', '.join(order)}")
        indices.append(order.index(task))
    return indices
