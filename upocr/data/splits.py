"""Deterministic train / held-out partition of font and background sources.

The synthetic engine draws its fonts and backgrounds from sorted lists of sources. The
``heldout`` split uses every fifth source (positions 4, 9, 14, ... of the sorted list) and the
``train`` split uses the others, so a model evaluated on ``heldout`` samples never saw their
fonts or backgrounds in training.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

T = TypeVar("T")

TRAIN = "train"
HELDOUT = "heldout"
#: Every ``HELDOUT_EVERY``-th source (1-based) belongs to the held-out split.
HELDOUT_EVERY = 5

_SPLIT_ALIASES = {
    "train": TRAIN,
    "training": TRAIN,
    "heldout": HELDOUT,
    "held-out": HELDOUT,
    "held_out": HELDOUT,
    "test": HELDOUT,
    "val": HELDOUT,
    "valid": HELDOUT,
    "validation": HELDOUT,
    "eval": HELDOUT,
}


def canonical_split(split: str) -> str:
    """``"train"`` or ``"heldout"``; ``test``/``val``/``validation`` mean ``heldout``."""
    key = str(split).strip().lower()
    if key not in _SPLIT_ALIASES:
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'heldout' (or test/val)")
    return _SPLIT_ALIASES[key]


def is_heldout_position(position: int, count: int) -> bool:
    """Whether the source at ``position`` of a sorted list of ``count`` belongs to ``heldout``.

    Positions 4, 9, 14, ... are held out. A list shorter than five still holds out its last
    source (when it has at least two); a single source serves both splits.
    """
    if count < 2:
        return True
    if count < HELDOUT_EVERY:
        return position == count - 1
    return position % HELDOUT_EVERY == HELDOUT_EVERY - 1


def partition(items: Sequence[T], split: str) -> list[T]:
    """The items of ``split`` from an already sorted sequence (see the module documentation).

    With a single item both splits get it (there is nothing to hold out).
    """
    split = canonical_split(split)
    count = len(items)
    if count == 1:
        return list(items)
    wanted = split == HELDOUT
    return [item for i, item in enumerate(items) if is_heldout_position(i, count) == wanted]


def partition_groups(items: Sequence[T], split: str, key) -> list[T]:
    """The items of ``split`` when items of one group (``key(item)``) must stay together: the
    group keys are sorted and partitioned as :func:`partition` does, and each item follows its
    group. With a single group the items themselves are partitioned."""
    items = list(items)
    groups = sorted({key(item) for item in items})
    if len(groups) < 2:
        return partition(items, split)
    kept = set(partition(groups, split))
    return [item for item in items if key(item) in kept]
