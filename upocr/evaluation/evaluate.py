"""Run a predictor over a dataset and score it with the task's metrics.

Dataset items are dicts ``{"image": (3, H, W) float in [0, 1], "target": (3, H, W) float in
[0, 1] (task-encoded), "mask": (1, H, W), "task": str, "name": str}`` (torch tensors or numpy
arrays). The target is turned into ground truth at its own resolution:

* text removal: the target image as uint8 RGB (``round(255 * t)``);
* text segmentation: text where the channel mean exceeds 0.5; ignored where every channel equals
  128/255;
* tampered text detection: the argmax over the (background, real, tampered) channels; ignored
  where every channel equals 128/255.

``predict(image_uint8_HxWx3, task)`` must return a result object of :mod:`upocr.results` at the
image's size: ``TextRemovalResult.image``, ``TextSegmentationResult.mask`` and
``TamperingResult.labels`` are scored.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..tasks import canonical_task, get_task

def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _hwc(x: Any) -> np.ndarray:
    """Channel-first ``(C, H, W)`` (C = 1 or 3, the dataset layout) -> ``(H, W, C)``.

    Arrays whose first axis is not 1 or 3 are taken as already ``(H, W, C)``; 2-D arrays get a
    channel axis.
    """
    arr = _numpy(x)
    if arr.ndim == 2:
        return arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"expected a (3, H, W) image, got shape {arr.shape}")
    if arr.shape[0] in (1, 3):
        return np.moveaxis(arr, 0, -1)
    return arr


def image_to_uint8(image: Any) -> np.ndarray:
    """Float ``(3, H, W)`` in [0, 1] (or uint8) -> uint8 ``(H, W, 3)``."""
    arr = _hwc(image)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr)


def ground_truth(target: Any, task: str) -> np.ndarray:
    """Task-encoded target -> ground truth (see module docs). Labels use 255 for ignore."""
    return get_task(task).ground_truth(_hwc(target))


def _iterate(items: Any) -> Iterable[Any]:
    if hasattr(items, "__len__") and hasattr(items, "__getitem__") and not isinstance(items, (dict, str)):
        return (items[i] for i in range(len(items)))
    return iter(items)


def _progress(iterable: Iterable[Any], total: int | None, enabled: bool, desc: str) -> Iterable[Any]:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit="img")
    except ImportError:  # pragma: no cover - tqdm is a dependency

        def report():
            for index, item in enumerate(iterable, start=1):
                yield item
                if index % 10 == 0 or index == total:
                    print(f"{desc}: {index}/{total if total is not None else '?'}", file=sys.stderr)

        return report()


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by ``None`` and numpy scalars by Python ones (recursively)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_size(name: str, got: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    if tuple(got.shape[:2]) != tuple(expected[:2]):
        raise ValueError(
            f"{name}: predicted {what} is {got.shape[:2]} but the ground truth is {expected[:2]}; "
            "predictions must be returned at the input's size"
        )


def evaluate(
    predict: Callable[[np.ndarray, str], Any],
    dataset_items: Iterable[dict],
    task: str,
    official: bool = False,
    progress: bool = True,
    per_image: bool = False,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score ``predict`` on ``dataset_items`` for ``task``.

    Returns a JSON-able dict ``{"task", "count", "metrics", "definitions", "per_image"?}``;
    ``definitions`` is ``"official"`` or ``"standard"`` (removal metrics; see
    :mod:`upocr.evaluation.metrics`). Non-finite values are written as ``None``. ``per_image``
    adds each image's own scores (for segmentation and tampering these are that image's scores,
    the dataset metrics still come from the single accumulated confusion).
    """
    task = canonical_task(task)
    spec = get_task(task)
    acc = spec.metrics(official=official)

    total = None
    if hasattr(dataset_items, "__len__"):
        total = len(dataset_items)
        if limit is not None:
            total = min(total, int(limit))
    records: list[dict[str, Any]] = []
    iterator = _progress(_iterate(dataset_items), total, progress, f"evaluate {task}")
    count = 0
    for index, item in enumerate(iterator):
        if limit is not None and index >= int(limit):
            break
        name = str(item.get("name", index))
        item_task = item.get("task")
        if item_task is not None and canonical_task(item_task) != task:
            raise ValueError(f"{name}: item is for task {item_task!r}, evaluating {task!r}")
        image = image_to_uint8(item["image"])
        gt = ground_truth(item["target"], task)
        pred, what = spec.scored(predict(image, task))
        _check_size(name, pred, gt.shape, what)
        scores = spec.score(acc, pred, gt, name)
        if per_image:
            records.append({"name": name, **scores})
        count += 1

    metrics = acc.compute()
    metrics.pop("count", None)
    metrics.pop("definitions", None)
    out: dict[str, Any] = {
        "task": task,
        "count": count,
        "metrics": metrics,
        "definitions": "official" if official else "standard",
    }
    notes = getattr(acc, "notes", None)
    if notes:
        out["notes"] = notes
    if per_image:
        out["per_image"] = records
    return json_safe(out)


__all__ = ["evaluate", "ground_truth", "image_to_uint8", "json_safe"]
