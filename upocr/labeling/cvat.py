"""A CVAT auto-annotation function: UPOCR's masks in a CVAT task, one shape per word.

With ``cvat-cli`` (from the ``cvat-cli`` package, which uses this module through cvat-sdk)::

    cvat-cli --server-host http://localhost:8080 --auth user:pass task auto-annotate TASK_ID \\
        --function-module upocr.labeling.cvat -p model=str:path/to/model -p task=str:segmentation

The task's labels are matched by name: ``text`` (text segmentation, text removal) or ``real
text`` and ``tampered text`` (tampered text detection); add them to the CVAT task first (or
pass ``--allow-unmatched-labels``). Each word (:mod:`.instances`) becomes one ``mask`` shape,
or one ``polygon`` when CVAT asks for polygons (``--conv-mask-to-poly``); with
``--conf-threshold`` a word is kept only if the model's mean probability over it reaches it.

Parameters (``-p name=type:value``): ``model`` (Hub id or folder; default: the bundled weights),
``task`` (default ``segmentation``), ``threshold`` (segmentation threshold, default 0.4),
``instances`` (``words`` or ``lines``), ``device``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tasks import DEFAULT_SEGMENTATION_THRESHOLD, canonical_task, get_task
from .instances import find_instances, instance_outline

__all__ = ["UPOCRFunction", "create"]


class UPOCRFunction:
    """A cvat-sdk detection function (``spec`` and ``detect``) around a UPOCR pipeline."""

    def __init__(self, model: str | None = None, task: str = "segmentation",
                 threshold: float = DEFAULT_SEGMENTATION_THRESHOLD, instances: str = "words",
                 device: str | None = None, pipeline: Any = None):
        from ..pipeline import UPOCRPipeline

        self.task = get_task(canonical_task(task))
        self.threshold = float(threshold)
        self.instances = instances
        self.pipeline = pipeline or UPOCRPipeline.from_pretrained(model, device=device)
        if self.task.name not in self.pipeline.tasks:
            raise ValueError(f"this model has no {self.task.name} output")
        self.classes = [c for c in self.task.classes if c.value]

    @property
    def spec(self):
        import cvat_sdk.auto_annotation as cvataa

        return cvataa.DetectionFunctionSpec(
            labels=[cvataa.label_spec(c.name, c.value, type="any") for c in self.classes])

    def detect(self, context, image) -> list:
        """The shapes of one frame: a mask (or polygon) per word, each with its class's label id."""
        import cvat_sdk.auto_annotation as cvataa
        from cvat_sdk.masks import encode_mask

        rgb = np.asarray(image.convert("RGB"))
        results = self.pipeline.run_all(rgb, list(self.task.labelled_from), threshold=self.threshold)
        proposal = self.task.propose(results)
        labels = np.asarray(proposal.label).astype(np.uint8)
        height, width = labels.shape
        minimum = getattr(context, "conf_threshold", None)
        shapes = []
        for instance in find_instances(labels, self.instances):
            score = instance.mean(proposal.scores) if proposal.scores is not None else None
            if minimum is not None and score is not None and score < minimum:
                continue
            if getattr(context, "conv_mask_to_poly", False):
                outline, _ = instance_outline(instance)
                shapes.append(cvataa.polygon(instance.value, [float(v) for v in outline.reshape(-1)]))
            else:
                x, y, w, h = instance.bbox
                shapes.append(cvataa.mask(instance.value, encode_mask(instance.full(height, width),
                                                                      [x, y, x + w, y + h])))
        return shapes


def create(**parameters: Any) -> UPOCRFunction:
    """What ``cvat-cli ... --function-module upocr.labeling.cvat -p name=type:value`` calls."""
    return UPOCRFunction(**parameters)
