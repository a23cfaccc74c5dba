"""Data order for training: deterministic per-task streams of positions, their shards across
processes, items loaded under seeded generators, and the collation of one task's batch.

Each task has an infinite, deterministic stream of item positions. Epoch ``e`` of a task is a
permutation of its (concatenated) datasets drawn from ``(seed, task, e)``; every item is loaded
with the Python, NumPy and torch random generators seeded from ``(seed, task, position)`` (and
restored afterwards), so random augmentations are reproducible whatever the number of workers.
With ``N`` processes, global positions ``[p, p + N * batch_size)`` are split into ``N``
consecutive shards.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..tasks import canonical_task, get_task
from .config import TrainingError


def _mix(*values: int) -> int:
    """A 63-bit seed from a few integers (stable across platforms and runs)."""
    return int(np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, np.uint64)[0] >> 1)


@contextmanager
def seeded_rng(seed: int):
    """Seed Python, NumPy and torch (CPU) generators inside the block; restore them afterwards."""
    py_state, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class TaskStream:
    """Infinite deterministic order over a dataset of ``length`` items: position ``k`` is item
    ``perm_e[k % length]`` with ``e = k // length`` and ``perm_e`` drawn from ``(seed, task_id, e)``."""

    def __init__(self, length: int, seed: int, task_id: int, shuffle: bool = True):
        if length < 1:
            raise TrainingError("a training dataset is empty")
        self.length, self.seed, self.task_id, self.shuffle = int(length), int(seed), int(task_id), shuffle
        self._cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            if self.shuffle:
                rng = np.random.default_rng([self.seed, self.task_id, epoch])
                self._cache[epoch] = rng.permutation(self.length)
            else:
                self._cache[epoch] = np.arange(self.length)
        return self._cache[epoch]

    def index(self, position: int) -> int:
        epoch, offset = divmod(int(position), self.length)
        return int(self.permutation(epoch)[offset])


class ShardedBatchSampler:
    """Yields this process's share of each global batch as ``[(position, index), ...]``, from
    global position ``start`` on. Global batch ``j`` covers positions
    ``start + j * B * W + [0, B * W)``; process ``r`` takes ``[r * B, (r + 1) * B)`` of it."""

    def __init__(self, stream: TaskStream, batch_size: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.stream, self.batch_size, self.start = stream, int(batch_size), int(start)
        self.rank, self.world_size = int(rank), int(world_size)

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __iter__(self):
        position = self.start + self.rank * self.batch_size
        while True:
            yield [(p, self.stream.index(p)) for p in range(position, position + self.batch_size)]
            position += self.global_batch


class PositionedDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that ``ds[(position, index)]`` loads ``index`` with the random
    generators seeded from ``(seed, task_id, position)``."""

    def __init__(self, dataset, seed: int, task_id: int):
        self.dataset, self.seed, self.task_id = dataset, int(seed), int(task_id)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        position, index = key
        with seeded_rng(_mix(self.seed, 1 + self.task_id, position)):
            return self.dataset[index]


def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        return torch.from_numpy(arr.astype(np.float32) / 255.0)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    if mode == "nearest":
        return F.interpolate(x[None], size=(size, size), mode="nearest")[0]
    return F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0].clamp_(0, 1)


class Collate:
    """Stacks items into ``{"image", "target", "mask", "task", "name"}``; items of another size
    are resized to ``image_size`` (images bilinearly, label targets and masks by nearest)."""

    def __init__(self, image_size: int):
        self.image_size = int(image_size)

    def __call__(self, items: Sequence[Mapping]) -> dict:
        images, targets, masks, tasks, names = [], [], [], [], []
        for item in items:
            task = canonical_task(item["task"])
            image = _as_tensor(item["image"]).float()
            target = _as_tensor(item["target"]).float()
            mask = item.get("mask")
            mask = torch.zeros_like(image[:1]) if mask is None else _as_tensor(mask).float()
            if mask.ndim == 2:
                mask = mask[None]
            images.append(_resize(image, self.image_size, "bilinear"))
            targets.append(_resize(target, self.image_size, "bilinear" if get_task(task).target_is_image else "nearest"))
            masks.append(_resize(mask, self.image_size, "nearest"))
            tasks.append(task)
            names.append(str(item.get("name", "")))
        return {"image": torch.stack(images), "target": torch.stack(targets), "mask": torch.stack(masks),
                "task": tasks, "name": names}


def build_task_dataset(specs: Sequence[Mapping], image_size: int):
    """One dataset for a task: its specs built with :func:`upocr.data.datasets.build_dataset` and
    concatenated. ``size`` defaults to ``image_size`` for specs that do not set it."""
    from ..data.datasets import build_dataset

    parts = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("size", image_size)
        parts.append(build_dataset(spec))
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
