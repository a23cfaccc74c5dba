"""Label formats: COCO (RLE) and LabelMe (polygons), written and read back. Whole exports of a
label folder (its COCO file, LabelMe files, a zip) are :mod:`.exports`.

Both formats carry instances (:mod:`.instances`): COCO has one annotation per word with the RLE
of exactly its pixels (the annotations of a class add up to the PNG mask), LabelMe one editable
polygon per word. The exact polygons below are LabelMe's ``shapes="exact"`` option.

Polygons
--------
:func:`mask_to_polygons` turns a mask or label map into polygons through the centres of each
region's boundary pixels (the convention of LabelMe, whose point ``(x, y)`` is the centre of
pixel column ``x``, row ``y``). Every connected region is its own polygon, small islands
included; a region of one or two pixels becomes a tiny triangle so that no polygon has fewer
than three points. Polygons come in drawing order: a polygon is filled (centres inside or on
its outline) and later polygons paint over earlier ones, as LabelMe's own converters do.

Holes
-----
A hole (background enclosed by a region, such as the inside of an "o") is a polygon of its own
that paints background: in LabelMe files it is a shape with label ``"_background_"`` (the name
LabelMe's converters map to value 0), listed right after the region that surrounds it and
sharing that region's ``group_id``. Text inside a hole is again a separate shape listed after the
hole. Opening the file in LabelMe shows the holes as their own polygons; converting it with
:func:`labelme_to_labels` (or LabelMe's ``labelme_export_json``) gives the mask back.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from ..io import atomic_write_json
from ..tasks.base import LabelClass
from .instances import find_instances, instance_outline

__all__ = [
    "HOLE_LABEL",
    "LABELME_SHAPES",
    "LABELME_VERSION",
    "Polygon",
    "mask_to_coco_rle",
    "coco_rle_to_mask",
    "mask_to_polygons",
    "polygons_to_mask",
    "CocoBuilder",
    "write_coco",
    "labelme_document",
    "write_labelme",
    "labelme_to_labels",
    "read_labelme",
    "labelme_image_path",
]

#: LabelMe label of a hole shape (LabelMe's converters map it to value 0).
HOLE_LABEL = "_background_"
#: The LabelMe file format version written.
LABELME_VERSION = "5.5.0"

# A region of one or two pixels is drawn as a triangle whose extra corner lies this far from a
# pixel centre: small enough that both rounding and truncation put it on the same pixel.
_TINY = 0.3


# --------------------------------------------------------------------------------------------
# COCO run-length encoding
# --------------------------------------------------------------------------------------------


def mask_to_coco_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a boolean ``(H, W)`` mask: ``{"size": [H, W], "counts": str}``."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be (H, W), got shape {arr.shape}")
    return _rle_dict(coco_mask.encode(np.asfortranarray(arr != 0, dtype=np.uint8)), arr.shape)


def _rle_dict(rle: dict, shape: tuple[int, ...]) -> dict:
    """pycocotools' RLE as JSON: ``{"size": [H, W], "counts": str}``."""
    counts = rle["counts"]
    return {"size": [int(shape[0]), int(shape[1])], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _instance_rle(canvas: np.ndarray, instance) -> dict:
    """COCO RLE of one instance, drawn into ``canvas`` (a zeroed Fortran-order ``uint8`` image,
    left zeroed again), which spares a whole-image mask and its copy per instance."""
    window = canvas[instance.y0 : instance.y0 + instance.mask.shape[0], instance.x0 : instance.x0 + instance.mask.shape[1]]
    window[instance.mask] = 1
    try:
        return _rle_dict(coco_mask.encode(canvas), canvas.shape)
    finally:
        window[...] = 0


def coco_rle_to_mask(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list counts) to a boolean mask."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (list, tuple)):
        runs = [int(c) for c in counts]
        if any(c < 0 for c in runs) or sum(runs) != height * width:
            raise ValueError(f"COCO RLE runs do not cover a {height} x {width} mask")
        encoded = coco_mask.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    else:
        encoded = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}
        if int(coco_mask.area(encoded)) > height * width:
            raise ValueError(f"COCO RLE runs do not cover a {height} x {width} mask")
    with warnings.catch_warnings():  # pycocotools' decoder warns under numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(encoded).astype(bool)


# --------------------------------------------------------------------------------------------
# Polygons
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Polygon:
    """One polygon of a mask. ``points`` is ``(N, 2)`` float ``x, y`` (pixel centres), N >= 3.

    ``value`` is the class it paints (0 for a hole), ``parent`` the index of the polygon that
    encloses it (``None`` at the top level) and ``group`` the index of the region it belongs to
    (a hole's group is the region around it).
    """

    points: np.ndarray
    value: int
    parent: int | None
    group: int

    @property
    def hole(self) -> bool:
        return self.value == 0


def _as_label_map(mask_or_labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(mask_or_labels)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"expected an (H, W) mask or label map, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"expected a boolean or integer mask, got {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError("label values must lie in 0..255")
    return arr.astype(np.uint8)


def _outline(component: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre outline of one connected component (crop coordinates), as float points for
    the polygon and as the integer contour used to measure what the polygon covers."""
    padded = np.zeros((component.shape[0] + 2, component.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = component
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(-1, -1))
    contour = max(contours, key=len)
    if tolerance > 0 and len(contour) > 3:
        simplified = cv2.approxPolyDP(contour, float(tolerance), True)
        if len(simplified) >= 3:
            contour = simplified
    points = contour.reshape(-1, 2).astype(np.float64)
    if len(points) > 4:
        return points, contour
    unique = np.unique(points, axis=0)
    if len(unique) == 1:
        x, y = unique[0]
        points = np.array([[x, y], [x + _TINY, y], [x, y + _TINY]])
    elif len(unique) == 2:
        (x0, y0), (x1, y1) = unique
        points = np.array([[x0, y0], [x1, y1], [x1 + _TINY, y1 + _TINY]])
    return points, contour


def _covered(contour: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.drawContours(canvas, [contour], 0, 1, thickness=cv2.FILLED)
    return canvas.view(bool)


def _components(binary: np.ndarray, connectivity: int, skip_border: bool) -> Iterable[tuple[int, int, np.ndarray]]:
    """``(y0, x0, crop)`` of each connected component of a binary image."""
    height, width = binary.shape
    count, components, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=connectivity)
    for index in range(1, count):
        x0, y0, w, h = (int(v) for v in stats[index, :4])
        if skip_border and (x0 == 0 or y0 == 0 or x0 + w == width or y0 + h == height):
            continue
        yield y0, x0, components[y0 : y0 + h, x0 : x0 + w] == index


def mask_to_polygons(mask_or_labels: np.ndarray, tolerance: float = 0.0) -> list[Polygon]:
    """Polygons of a boolean mask or an integer label map, in drawing order.

    Regions of each non-zero value are 8-connected; holes are 4-connected background regions
    that do not touch the image border. Where regions meet only at a pixel corner and an
    outline covers a pixel of another region, small extra polygons restore it. ``tolerance`` > 0 simplifies
    outlines (Douglas-Peucker, in pixels); with 0, :func:`polygons_to_mask` gives the mask back
    exactly.
    """
    labels = _as_label_map(mask_or_labels)
    height, width = labels.shape
    values = [int(v) for v in np.unique(labels) if v != 0]
    pieces: list[tuple[int, int, int, int, np.ndarray, np.ndarray]] = []

    def add(y0: int, x0: int, crop: np.ndarray, value: int) -> None:
        points, contour = _outline(crop, tolerance)
        covered = _covered(contour, *crop.shape)
        pieces.append((int(np.count_nonzero(covered)), y0, x0, value, covered, points + (x0, y0)))

    for value in values:
        for y0, x0, crop in _components(labels == value, 8, False):
            add(y0, x0, crop, value)
    if values:
        for y0, x0, crop in _components(labels == 0, 4, True):
            add(y0, x0, crop, 0)

    owner = np.full((height, width), -1, dtype=np.int32)
    polygons: list[Polygon] = []

    def place(batch: list) -> None:
        batch.sort(key=lambda p: (-p[0], p[1], p[2], p[3]))
        for _, y0, x0, value, covered, points in batch:
            index = len(polygons)
            window = owner[y0 : y0 + covered.shape[0], x0 : x0 + covered.shape[1]]
            inside = window[covered]
            inside = inside[inside >= 0]
            # Drawing in order of decreasing covered area makes the region drawn last under a
            # polygon its innermost container.
            parent = int(np.bincount(inside).argmax()) if inside.size else None
            group = polygons[parent].group if (value == 0 and parent is not None) else index
            polygons.append(Polygon(points=points, value=value, parent=parent, group=group))
            window[covered] = index

    place(pieces)
    if tolerance > 0 or not values:
        return polygons
    # Where regions meet only at a pixel corner (a 2 x 2 checkerboard), an outline can cut the
    # corner and cover a pixel of another region; repaint what the drawing got wrong.
    for _ in range(4):
        wrong = polygons_to_mask(polygons, height, width) != labels
        if not wrong.any():
            break
        pieces = []
        for value in [0] + values:
            for y0, x0, crop in _components(wrong & (labels == value), 4, False):
                add(y0, x0, crop, value)
        place(pieces)
    return polygons


def polygons_to_mask(
    polygons: Iterable[Polygon | tuple[Sequence[Sequence[float]], int]], height: int, width: int
) -> np.ndarray:
    """Rasterise polygons in order into a ``uint8`` ``(H, W)`` label map (LabelMe's rule: a
    polygon covers the pixels whose centres lie inside or on it; later polygons paint over)."""
    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if isinstance(polygon, Polygon):
            points, value = polygon.points, polygon.value
        else:
            points, value = polygon
        xy = [(float(x), float(y)) for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2)]
        if len(xy) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(xy)}")
        draw.polygon(xy, fill=int(value), outline=int(value))
    return np.asarray(canvas, dtype=np.uint8).copy()


# --------------------------------------------------------------------------------------------
# COCO
# --------------------------------------------------------------------------------------------


def _categories(categories: Any) -> list[dict]:
    """COCO categories from LabelClass objects, dicts or a ``{value: name}`` mapping."""
    if isinstance(categories, Mapping):
        items = [{"id": int(k), "name": str(v)} for k, v in categories.items()]
    else:
        items = []
        for cat in categories:
            if isinstance(cat, LabelClass):
                items.append({"id": cat.value, "name": cat.name, "color": list(cat.colour)})
            else:
                entry = dict(cat)
                if "colour" in entry and "color" not in entry:
                    entry["color"] = list(entry.pop("colour"))
                if "value" in entry and "id" not in entry:
                    entry["id"] = entry.pop("value")
                items.append(entry)
    result = []
    for item in items:
        if int(item["id"]) == 0:
            continue  # background is not a COCO category
        entry = {"id": int(item["id"]), "name": str(item["name"]), "supercategory": item.get("supercategory", "text")}
        if "color" in item:
            entry["color"] = [int(c) for c in item["color"]]
        result.append(entry)
    return sorted(result, key=lambda c: c["id"])


class CocoBuilder:
    """Collects images and annotations one image at a time (label maps are not kept)."""

    def __init__(self, categories: Any, *, info: Mapping[str, Any] | None = None):
        self.categories = _categories(categories)
        self.info = dict(info or {})
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, file_name: str, labels: np.ndarray, *, scores: np.ndarray | float | None = None,
            rule: str = "words", instances: list | None = None) -> int:
        """Add one image with its label map (class values = category ids); returns its id.

        Each instance (a word or line, :mod:`.instances`) of each category becomes one
        annotation: RLE segmentation of exactly its pixels, ``bbox``, ``area``, ``iscrowd`` 0 and
        ``score``: the mean of ``scores`` (the model's per-pixel probability of each pixel's class,
        an ``(H, W)`` array in [0, 1]) over the instance, or ``scores`` itself when it is a number;
        with ``None`` the annotation has no score.
        """
        label_map = _as_label_map(labels)
        height, width = label_map.shape
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": str(file_name), "width": int(width), "height": int(height)})
        known = {category["id"] for category in self.categories}
        canvas = np.zeros((height, width), np.uint8, order="F")  # one buffer for every instance's RLE
        for instance in find_instances(label_map, rule) if instances is None else instances:
            if instance.value not in known:
                continue
            annotation = {
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": instance.value,
                "segmentation": _instance_rle(canvas, instance),
                "area": instance.area,
                "bbox": [float(v) for v in instance.bbox],
                "iscrowd": 0,
            }
            if scores is not None:
                value = instance.mean(scores) if isinstance(scores, np.ndarray) else float(scores)
                annotation["score"] = round(value, 4)
            self.annotations.append(annotation)
        return image_id

    def to_dict(self) -> dict:
        info = {"description": "UPOCR labels", "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        info.update(self.info)
        return {
            "info": info,
            "licenses": [],
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }


def write_coco(
    path: str | os.PathLike,
    items: Iterable[tuple[str, np.ndarray] | Mapping[str, Any]],
    categories: Any,
    *,
    info: Mapping[str, Any] | None = None,
) -> dict:
    """Write a COCO JSON file atomically and return its content.

    ``items``: ``(file_name, label_map)`` pairs or dicts with ``file_name`` and ``labels``; the
    file name is the source's relative path, the label map holds category ids (a boolean mask
    means category 1). Each instance (word) of each category becomes one annotation with an RLE
    segmentation of its pixels, its pixel ``area`` and ``bbox`` ``[x, y, w, h]`` (see
    :meth:`CocoBuilder.add`). ``categories``: :class:`~upocr.labeling.LabelClass` objects (e.g.
    ``label_classes(task)``), dicts with ``id``, ``name`` and ``color``, or ``{id: name}``.
    """
    builder = CocoBuilder(categories, info=info)
    for item in items:
        if isinstance(item, Mapping):
            builder.add(item["file_name"], item["labels"])
        else:
            file_name, labels = item
            builder.add(file_name, labels)
    document = builder.to_dict()
    atomic_write_json(path, document, indent=None)
    return document


# --------------------------------------------------------------------------------------------
# LabelMe
# --------------------------------------------------------------------------------------------


def _names(label_names: Mapping[int, str] | Sequence[str] | Iterable[LabelClass]) -> dict[int, str]:
    if isinstance(label_names, Mapping):
        return {int(k): str(v) for k, v in label_names.items()}
    names: dict[int, str] = {}
    for index, item in enumerate(label_names):
        if isinstance(item, LabelClass):
            names[item.value] = item.name
        else:
            names[index] = str(item)
    return names


#: LabelMe shapes: ``instances`` (one editable polygon per word, with its holes) or ``exact``
#: (polygons that rasterise back to the mask pixel for pixel).
LABELME_SHAPES: tuple[str, ...] = ("instances", "exact")


def _shape(label: str, points: np.ndarray, group: int, description: str) -> dict:
    return {
        "label": label,
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in points],
        "group_id": int(group),
        "description": description,
        "shape_type": "polygon",
        "flags": {},
        "mask": None,
    }


def labelme_document(
    mask_or_labels: np.ndarray,
    image_path: str,
    height: int,
    width: int,
    label_names: Mapping[int, str] | Sequence[str] | Iterable[LabelClass],
    *,
    tolerance: float = 0.0,
    shapes: str = "instances",
    rule: str = "words",
    scores: np.ndarray | float | None = None,
    max_points: int = 64,
    instances: list | None = None,
) -> dict:
    """The LabelMe JSON content for a mask or label map.

    ``shapes="instances"`` (the default): one polygon per instance (word or line, ``rule``; see
    :mod:`.instances`) around its pixels and letter gaps, at most ``max_points`` points, each
    hole it encloses a ``"_background_"`` polygon with the same ``group_id`` right after it; the
    description holds the instance's score when ``scores`` is given. ``shapes="exact"``: the
    pixel-exact polygons of :func:`mask_to_polygons` (``tolerance`` simplifies them), which
    rasterise back to the mask; for tools that need the exact pixels rather than editable shapes.
    ``instances``: those of ``labels`` already found with ``rule`` (they are not searched again).
    """
    labels = _as_label_map(mask_or_labels)
    if labels.shape != (int(height), int(width)):
        raise ValueError(f"the label is {labels.shape[1]} x {labels.shape[0]} but the image is {width} x {height}")
    if shapes not in LABELME_SHAPES:
        raise ValueError(f"unknown LabelMe shapes {shapes!r}; choose from {', '.join(LABELME_SHAPES)}")
    names = _names(label_names)
    if not names:
        names = {1: "text"}
    out = []
    if shapes == "exact":
        for polygon in mask_to_polygons(labels, tolerance=tolerance):
            label = HOLE_LABEL if polygon.hole else names.get(polygon.value, f"class {polygon.value}")
            out.append(_shape(label, polygon.points, polygon.group, "hole" if polygon.hole else ""))
    else:
        for group, instance in enumerate(find_instances(labels, rule) if instances is None else instances):
            outline, holes = instance_outline(instance, max_points=max_points)
            description = ""
            if scores is not None:
                score = instance.mean(scores) if isinstance(scores, np.ndarray) else float(scores)
                description = f"score {score:.3f}"
            out.append(_shape(names.get(instance.value, f"class {instance.value}"), outline, group, description))
            out.extend(_shape(HOLE_LABEL, hole, group, "hole") for hole in holes)
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": out,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": int(height),
        "imageWidth": int(width),
    }


def labelme_image_path(json_path: str | os.PathLike, image_path: str | os.PathLike) -> str:
    """``imagePath`` for a LabelMe file at ``json_path``: a relative path is kept (it is relative to
    the JSON file already); an absolute one is made relative to the JSON file's folder."""
    image_path = os.fspath(image_path)
    if os.path.isabs(image_path):
        image_path = os.path.relpath(image_path, start=os.path.dirname(os.path.abspath(json_path)))
    return image_path.replace(os.sep, "/")


def write_labelme(
    path: str | os.PathLike,
    mask_or_labels: np.ndarray,
    image_rel_path: str | os.PathLike,
    height: int,
    width: int,
    label_names: Mapping[int, str] | Sequence[str] | Iterable[LabelClass],
    **options: Any,
) -> dict:
    """Write a LabelMe JSON file atomically and return its content (``options``: those of
    :func:`labelme_document`: ``shapes``, ``rule``, ``scores``, ``tolerance``, ``max_points``).

    ``image_rel_path`` is stored as ``imagePath``: a relative path is taken as relative to the
    JSON file already; an absolute path is made relative to the JSON file's folder.
    ``label_names`` maps class values to names (``{1: "text"}``).
    """
    image_path = labelme_image_path(path, image_rel_path)
    document = labelme_document(mask_or_labels, image_path, height, width, label_names, **options)
    atomic_write_json(path, document, indent=2)
    return document


def labelme_to_labels(
    document: Mapping[str, Any], label_values: Mapping[str, int], *, height: int | None = None, width: int | None = None
) -> np.ndarray:
    """Rasterise a LabelMe document's polygon shapes, in file order, into a label map.

    ``label_values`` maps shape labels to values (``{"text": 1}``); ``"_background_"`` is 0.
    Shapes with unknown labels raise ``ValueError``; non-polygon shapes are ignored.
    """
    height = int(height if height is not None else document["imageHeight"])
    width = int(width if width is not None else document["imageWidth"])
    values = {HOLE_LABEL: 0, **{str(k): int(v) for k, v in label_values.items()}}
    polygons = []
    for shape in document.get("shapes", []):
        if shape.get("shape_type", "polygon") != "polygon":
            continue
        label = shape.get("label")
        if label not in values:
            raise ValueError(f"unknown LabelMe label {label!r}; expected one of {', '.join(sorted(values))}")
        polygons.append((shape["points"], values[label]))
    return polygons_to_mask(polygons, height, width)


def read_labelme(path: str | os.PathLike, label_values: Mapping[str, int]) -> np.ndarray:
    """Read a LabelMe JSON file into a label map (see :func:`labelme_to_labels`)."""
    with open(path, encoding="utf-8") as handle:
        return labelme_to_labels(json.load(handle), label_values)
