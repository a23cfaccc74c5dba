"""Label Studio: pre-annotated tasks and the labelling configuration that goes with them.

Label Studio shows a mask as a ``brushlabels`` region whose pixels are in its own run-length
format (not COCO's): an RGBA image of the original size, flattened and encoded. The encoding is
the Label Studio SDK's (``label_studio_sdk.converter.brush.mask2rle``), so what Label Studio
decodes is exactly the PNG mask. One region per class that has pixels: ``text`` for text
segmentation and text removal, ``real text`` and ``tampered text`` for tampering.

Files (``upocr label --format labelstudio``, and in the Annotate tab's zip)::

    labelstudio/tasks.json    one task per finished label: {"data": {"image": URL},
                              "predictions": [{"model_version", "score", "result": [...]}]}
    labelstudio/config.xml    the project's labelling configuration (Image + BrushLabels)

Image URLs follow Label Studio's local-files setup: ``/data/local-files/?d=<path>``, with the
path relative to ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` (by default the input folder's parent
folder, so ``d`` starts with the input folder's name). ``url_prefix`` replaces the whole prefix
for other setups (a web server, cloud storage): the URL is then ``url_prefix + relative path``.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from ..tasks.base import LabelClass

__all__ = ["FROM_NAME", "LOCAL_FILES_PREFIX", "TO_NAME", "labeling_config", "brush_regions", "image_url", "task_of"]

#: Names of the control and object tags in the labelling configuration (the regions refer to them).
FROM_NAME = "label"
TO_NAME = "image"
#: Label Studio's URL for files served from ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``.
LOCAL_FILES_PREFIX = "/data/local-files/?d="


def _hex(colour: Sequence[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in colour[:3])


def labeling_config(classes: Sequence[LabelClass], colours: dict[int, tuple[int, int, int]] | None = None) -> str:
    """The labelling configuration: the image and one brush label per foreground class."""
    colours = colours or {}
    labels = "\n".join(
        f"    <Label value={quoteattr(c.name)} background={quoteattr(_hex(colours.get(c.value, c.colour)))}/>"
        for c in classes if c.value
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="${TO_NAME}" zoom="true" zoomControl="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}\n  </BrushLabels>\n'
        "</View>\n"
    )


def brush_regions(labels: np.ndarray, classes: Sequence[LabelClass], *, score: float | None = None,
                  origin: str = "prediction") -> list[dict]:
    """One ``brushlabels`` region per class present in the class map ``labels``."""
    from label_studio_sdk.converter.brush import mask2rle

    height, width = labels.shape
    regions = []
    for cls in classes:
        if not cls.value:
            continue
        region = labels == cls.value
        if not region.any():
            continue
        result: dict[str, Any] = {
            "id": f"upocr-{cls.value}",
            "from_name": FROM_NAME,
            "to_name": TO_NAME,
            "type": "brushlabels",
            "origin": origin,
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"format": "rle", "rle": [int(v) for v in mask2rle(region.astype(np.uint8) * 255)],
                      "brushlabels": [cls.name]},
        }
        if score is not None:
            result["score"] = float(score)
        regions.append(result)
    return regions


def image_url(rel: str, *, input_dir: str | os.PathLike | None = None, document_root: str | os.PathLike | None = None,
              url_prefix: str | None = None) -> str:
    """The URL Label Studio loads the image ``rel`` (relative to ``input_dir``) from."""
    rel_posix = PurePosixPath(rel).as_posix()
    if url_prefix is not None:
        return url_prefix + quote(rel_posix)
    path = PurePosixPath(rel_posix)
    if input_dir is not None:
        source = Path(input_dir).resolve() / Path(*path.parts)
        root = Path(document_root).resolve() if document_root is not None else Path(input_dir).resolve().parent
        path = PurePosixPath(os.path.relpath(source, root).replace(os.sep, "/"))
    return LOCAL_FILES_PREFIX + quote(path.as_posix())


def task_of(rel: str, labels: np.ndarray, classes: Sequence[LabelClass], url: str, *, model_version: str | None,
            confidence: float | None = None, reviewed: bool = False) -> dict:
    """A Label Studio task for one image with its label as a prediction (a pre-annotation).

    A reviewed label is imported as an annotation instead (a person made it), so Label Studio
    counts it as done."""
    regions = brush_regions(labels, classes, score=None if reviewed else confidence,
                            origin="manual" if reviewed else "prediction")
    task: dict[str, Any] = {"data": {TO_NAME: url, "upocr_file": rel}}
    if reviewed:
        task["annotations"] = [{"result": regions, "ground_truth": False}]
    else:
        prediction: dict[str, Any] = {"model_version": model_version or "upocr", "result": regions}
        if confidence is not None:
            prediction["score"] = float(confidence)
        task["predictions"] = [prediction]
    return task
