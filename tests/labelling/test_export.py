from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask
from scipy import ndimage

from upocr.labeling import (
    HOLE_LABEL,
    LabelStore,
    coco_rle_to_mask,
    export_zip,
    label_classes,
    mask_to_coco_rle,
    mask_to_polygons,
    polygons_to_mask,
    read_labelme,
    write_coco,
    write_labelme,
)
from upocr.tasks import TAMPERED_TEXT_DETECTION, TEXT_REMOVAL


def _text_like_mask() -> np.ndarray:
    """Rings with holes, an island inside a hole, single pixels, thin lines, a border blob."""
    mask = np.zeros((48, 64), bool)
    yy, xx = np.mgrid[:48, :64]
    ring = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 15**2) & ((yy - 20) ** 2 + (xx - 20) ** 2 > 8**2)
    mask |= ring
    mask[18:23, 18:23] = True  # island inside the ring's hole
    mask[19:22, 19:22] = False  # ... with its own hole
    mask[20, 20] = True  # ... and an island in that
    mask[5, 50] = True  # single pixel
    mask[10, 45:60] = True  # horizontal line
    for i in range(8):  # diagonal line
        mask[30 + i, 45 + i] = True
    mask[40:48, 0:6] = True  # touches the border
    mask[44, 2] = False  # a one-pixel hole
    mask[2:6, 30:34] = True
    mask[6:9, 34:37] = True  # touches the previous block only at a corner
    return mask


def _random_masks(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = (int(v) for v in rng.integers(4, 40, 2))
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.7)
        if i % 2:
            mask = ndimage.binary_opening(mask) | (rng.random((h, w)) < 0.03)
        yield mask


def _labelme_rasterise(document: dict, values: dict[str, int]) -> np.ndarray:
    """What LabelMe's converters do: fill each polygon (outline included), in file order."""
    out = np.zeros((document["imageHeight"], document["imageWidth"]), np.int32)
    for shape in document["shapes"]:
        assert shape["shape_type"] == "polygon"
        assert len(shape["points"]) > 2
        canvas = Image.new("L", (document["imageWidth"], document["imageHeight"]), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in shape["points"]], outline=1, fill=1)
        out[np.asarray(canvas, dtype=bool)] = values[shape["label"]]
    return out


def _check_instances(annotations: list[dict], mask: np.ndarray) -> None:
    """COCO instance annotations of one class of one image: disjoint, adding up to the mask,
    each with the area and bbox of its own pixels."""
    union = np.zeros(mask.shape, np.int32)
    for ann in annotations:
        pixels = coco_rle_to_mask(ann["segmentation"])
        assert ann["iscrowd"] == 0 and ann["area"] == int(pixels.sum()) > 0
        ys, xs = np.nonzero(pixels)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        union += pixels
    assert union.max() <= 1 and (union.astype(bool) == mask).all()


def _check_instance_shapes(document: dict, labels: np.ndarray, values: dict[str, int], instances: int) -> None:
    """LabelMe instance polygons: one outline per instance (holes share its group), few points,
    covering nearly every labelled pixel with its class."""
    outlines = [s for s in document["shapes"] if s["label"] != HOLE_LABEL]
    assert len(outlines) == instances and len({s["group_id"] for s in outlines}) == instances
    assert all(3 <= len(s["points"]) <= 64 for s in document["shapes"])
    drawn = _labelme_rasterise(document, values)
    labelled = labels != 0
    assert np.mean(drawn[labelled] == labels[labelled]) >= 0.9


def _edge_band(labels: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of a boundary between different values."""
    band = np.zeros(labels.shape, bool)
    for value in np.unique(labels):
        region = labels == value
        band |= ndimage.binary_dilation(region, np.ones((3, 3))) & ~ndimage.binary_erosion(region, np.ones((3, 3)), border_value=1)
    return band


# ---- COCO RLE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["empty", "full", "text", "random"])
def test_coco_rle_round_trip(kind):
    mask = {
        "empty": np.zeros((7, 9), bool),
        "full": np.ones((7, 9), bool),
        "text": _text_like_mask(),
        "random": np.random.default_rng(4).random((33, 17)) < 0.5,
    }[kind]
    rle = mask_to_coco_rle(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    json.dumps(rle)
    decoded = coco_rle_to_mask(json.loads(json.dumps(rle)))
    assert decoded.shape == mask.shape and (decoded == mask).all()
    with warnings.catch_warnings():  # the reference decoder warns under numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert (reference.astype(bool) == mask).all()
    assert int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()})) == int(mask.sum())


def test_coco_rle_decoder_handles_long_runs_and_rejects_bad_sizes():
    mask = np.zeros((300, 400), bool)
    mask[10:290, 17:399] = True
    mask[150, 200] = False
    assert (coco_rle_to_mask(mask_to_coco_rle(mask)) == mask).all()
    with pytest.raises(ValueError, match="do not cover"):
        coco_rle_to_mask({"size": [3, 3], "counts": [2, 3]})


def test_coco_rle_uncompressed_counts():
    # Column-major runs: 2 zeros, 3 ones, 1 zero on a 3 x 2 image.
    mask = coco_rle_to_mask({"size": [3, 2], "counts": [2, 3, 1]})
    assert mask.tolist() == [[False, True], [False, True], [True, False]]


# ---- polygons ---------------------------------------------------------------------------------


def test_polygons_round_trip_text_like_mask():
    mask = _text_like_mask()
    polygons = mask_to_polygons(mask)
    assert all(len(p.points) >= 3 for p in polygons)
    back = polygons_to_mask(polygons, *mask.shape)
    assert (back.astype(bool) == mask).all()
    holes = [p for p in polygons if p.hole]
    assert len(holes) >= 3  # the ring's hole, the island's hole, the one-pixel hole
    for hole in holes:
        assert hole.parent is not None and hole.parent < polygons.index(hole)
        assert polygons[hole.parent].value == 1 and hole.group == polygons[hole.parent].group
    single = [p for p in polygons if not p.hole and np.allclose(p.points.min(0), (50, 5))]
    assert single, "the single pixel has a polygon of its own"


def test_ring_is_outer_polygon_plus_hole():
    mask = np.zeros((9, 9), bool)
    mask[1:8, 1:8] = True
    mask[3:6, 3:6] = False
    polygons = mask_to_polygons(mask)
    assert [p.value for p in polygons] == [1, 0]
    outer, hole = polygons
    assert sorted(map(tuple, outer.points.tolist())) == [(1, 1), (1, 7), (7, 1), (7, 7)]
    assert sorted(map(tuple, hole.points.tolist())) == [(3, 3), (3, 5), (5, 3), (5, 5)]
    assert hole.parent == 0 and hole.group == outer.group


def test_polygons_round_trip_random_masks_exact():
    for mask in _random_masks(40):
        polygons = mask_to_polygons(mask)
        assert all(len(p.points) >= 3 for p in polygons)
        back = polygons_to_mask(polygons, *mask.shape)
        assert (back.astype(bool) == mask).all()


def test_polygons_round_trip_label_maps_exact():
    rng = np.random.default_rng(9)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(3, 30, 2))
        labels = rng.integers(0, 3, (h, w)).astype(np.uint8)
        back = polygons_to_mask(mask_to_polygons(labels), h, w)
        assert (back == labels).all()


def test_simplified_polygons_stay_within_one_pixel_of_edges():
    mask = _text_like_mask()
    simplified = mask_to_polygons(mask, tolerance=1.0)
    exact = mask_to_polygons(mask)
    assert sum(len(p.points) for p in simplified) < sum(len(p.points) for p in exact)
    back = polygons_to_mask(simplified, *mask.shape).astype(bool)
    wrong = back != mask
    assert wrong.sum() > 0
    assert not (wrong & ~_edge_band(mask)).any()


def test_empty_and_full_masks():
    assert mask_to_polygons(np.zeros((5, 5), bool)) == []
    full = mask_to_polygons(np.ones((5, 5), bool))
    assert len(full) == 1 and (polygons_to_mask(full, 5, 5) == 1).all()
    with pytest.raises(ValueError):
        mask_to_polygons(np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="at least 3 points"):
        polygons_to_mask([([(0, 0), (1, 1)], 1)], 3, 3)


# ---- LabelMe ----------------------------------------------------------------------------------


def test_labelme_file_structure_and_read_back(tmp_path):
    mask = _text_like_mask()
    path = tmp_path / "labelme" / "sub" / "page 1.json"
    image = tmp_path / "images" / "sub" / "page 1.jpg"
    doc = write_labelme(path, mask, image, mask.shape[0], mask.shape[1], {1: "text"}, shapes="exact")
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk == doc
    assert doc["imagePath"] == "../../images/sub/page 1.jpg"
    assert doc["imageData"] is None and doc["flags"] == {}
    assert (doc["imageHeight"], doc["imageWidth"]) == mask.shape
    assert isinstance(doc["version"], str)
    labels = {s["label"] for s in doc["shapes"]}
    assert labels == {"text", HOLE_LABEL}
    by_group: dict = {}
    for index, shape in enumerate(doc["shapes"]):
        assert shape["shape_type"] == "polygon" and len(shape["points"]) >= 3
        by_group.setdefault(shape["group_id"], []).append((index, shape["label"]))
    for members in by_group.values():  # a group is one text region first, then its holes
        assert members[0][1] == "text"
        assert all(label == HOLE_LABEL for _, label in members[1:])
    # LabelMe's own way of rasterising gives the mask back ...
    assert (_labelme_rasterise(doc, {"text": 1, HOLE_LABEL: 0}) == mask).all()
    # ... and so does ours.
    assert (read_labelme(path, {"text": 1}) == mask).all()
    relative = write_labelme(tmp_path / "x.json", mask, "x.jpg", *mask.shape, ["background", "text"])
    assert relative["imagePath"] == "x.jpg"
    with pytest.raises(ValueError, match="image is"):
        write_labelme(tmp_path / "y.json", mask, "y.jpg", 10, 10, {1: "text"})


def test_labelme_tampering_classes(tmp_path):
    labels = np.zeros((30, 30), np.uint8)
    labels[2:28, 2:28] = 1
    labels[8:20, 8:20] = 2  # tampered text inside real text
    labels[12:16, 12:16] = 0  # a hole in the tampered text
    labels[13, 13] = 1
    names = {1: "real text", 2: "tampered text"}
    doc = write_labelme(tmp_path / "t.json", labels, "t.png", 30, 30, names, shapes="exact")
    assert {s["label"] for s in doc["shapes"]} == {"real text", "tampered text", HOLE_LABEL}
    values = {"real text": 1, "tampered text": 2, HOLE_LABEL: 0}
    assert (_labelme_rasterise(doc, values) == labels).all()
    with pytest.raises(ValueError, match="unknown LabelMe label"):
        read_labelme(tmp_path / "t.json", {"real text": 1})


# ---- COCO files -------------------------------------------------------------------------------


def test_write_coco_segmentation_and_tampering(tmp_path):
    mask = _text_like_mask()
    tamper = np.zeros((10, 12), np.uint8)
    tamper[1:4, 1:5] = 1
    tamper[6:9, 7:11] = 2
    seg_doc = write_coco(tmp_path / "seg.json", [("sub/a b.jpg", mask), {"file_name": "c.png", "labels": np.zeros((4, 4), bool)}],
                         label_classes("segmentation"))
    assert [c["name"] for c in seg_doc["categories"]] == ["text"]
    assert seg_doc["categories"][0]["id"] == 1 and len(seg_doc["categories"][0]["color"]) == 3
    assert [i["file_name"] for i in seg_doc["images"]] == ["sub/a b.jpg", "c.png"]
    assert (seg_doc["images"][0]["height"], seg_doc["images"][0]["width"]) == mask.shape
    assert {a["image_id"] for a in seg_doc["annotations"]} == {1}  # the empty image has none
    _check_instances(seg_doc["annotations"], mask)

    doc = write_coco(tmp_path / "tamper.json", [("t.png", tamper)], label_classes(TAMPERED_TEXT_DETECTION))
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "real text"), (2, "tampered text")]
    assert doc["categories"][0]["color"] != doc["categories"][1]["color"]
    for value in (1, 2):
        _check_instances([a for a in doc["annotations"] if a["category_id"] == value], tamper == value)
    (tampered,) = [a for a in doc["annotations"] if a["category_id"] == 2]
    assert tampered["area"] == 12 and tampered["bbox"] == [7.0, 6.0, 4.0, 3.0]

    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "tamper.json"))
    with warnings.catch_warnings():  # the reference decoder warns under numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        assert (coco.annToMask(coco.loadAnns(coco.getAnnIds(imgIds=[1], catIds=[2]))[0]) == (tamper == 2)).all()


# ---- zip export -------------------------------------------------------------------------------


def _filled_store(tmp_path: Path, task: str = "segmentation") -> tuple[LabelStore, dict[str, np.ndarray]]:
    store = LabelStore(tmp_path / "out", task)
    masks = {
        "a.jpg": _text_like_mask(),
        "sub/dir/page 1.png": np.random.default_rng(1).random((20, 30)) < 0.3,
        "ünï/文字 😀.JPG": np.random.default_rng(2).random((16, 16)) < 0.5,
    }
    for rel, mask in masks.items():
        if task == TEXT_REMOVAL:
            store.write_label(rel, mask, cleaned=np.full(mask.shape + (3,), 200, np.uint8))
        else:
            store.write_label(rel, mask)
    store.mark_reviewed("a.jpg")
    store.mark_failed("broken.png", "truncated or corrupt image data")
    return store, masks


def test_export_zip_contents(tmp_path):
    store, masks = _filled_store(tmp_path)
    images = tmp_path / "images"
    for rel, mask in masks.items():
        target = images / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).save(target, format="PNG")
    zip_path = tmp_path / "export" / "labels.zip"
    zip_path.parent.mkdir()
    zip_path.write_bytes(b"an older export")
    manifest = export_zip(tmp_path / "out", zip_path, image_root=images)
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        expected = {
            "masks/a.png", "masks/sub/dir/page 1.png", "masks/ünï/文字 😀.png",
            "labelme/a.json", "labelme/sub/dir/page 1.json", "labelme/ünï/文字 😀.json",
            "images/a.jpg", "images/sub/dir/page 1.png", "images/ünï/文字 😀.JPG",
            "coco.json", "manifest.json", "labelstudio/tasks.json", "labelstudio/config.xml",
        }
        assert names == expected
        tasks = {t["data"]["upocr_file"]: t for t in json.loads(archive.read("labelstudio/tasks.json"))}
        assert set(tasks) == set(masks)
        assert tasks["a.jpg"]["data"]["image"] == "/data/local-files/?d=images/a.jpg"
        assert "annotations" in tasks["a.jpg"] and "predictions" not in tasks["a.jpg"]  # reviewed: a person's
        assert [p["model_version"] for p in tasks["sub/dir/page 1.png"]["predictions"]] == ["upocr"]
        for rel, mask in masks.items():
            stem = rel.rsplit(".", 1)[0]
            assert archive.read(f"masks/{stem}.png") == store.label_path(rel).read_bytes()
            doc = json.loads(archive.read(f"labelme/{stem}.json"))
            coco = json.loads(archive.read("coco.json"))
            (image_id,) = [i["id"] for i in coco["images"] if i["file_name"] == rel]
            anns = [a for a in coco["annotations"] if a["image_id"] == image_id]
            _check_instance_shapes(doc, mask.astype(np.uint8), {"text": 1, HOLE_LABEL: 0}, len(anns))
            # imagePath, resolved from the JSON's folder inside the zip, is the copied image.
            resolved = (Path("/z/labelme") / stem).parent / doc["imagePath"]
            assert resolved.resolve().as_posix() == f"/z/images/{rel}"
        coco = json.loads(archive.read("coco.json"))
        assert sorted(i["file_name"] for i in coco["images"]) == sorted(masks)
        for image in coco["images"]:
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            _check_instances(anns, masks[image["file_name"]])
        on_disk = json.loads(archive.read("manifest.json"))
    assert on_disk == json.loads(json.dumps(manifest))
    assert manifest["task"] == "text-segmentation"
    assert [(c["value"], c["name"], c["png_value"]) for c in manifest["classes"]] == [(0, "background", 0), (1, "text", 255)]
    assert manifest["files"]["a.jpg"]["status"] == "reviewed"
    assert manifest["files"]["broken.png"] == {"status": "failed", "time": manifest["files"]["broken.png"]["time"],
                                               "reason": "truncated or corrupt image data"}
    assert manifest["counts"]["exported"] == 3 and manifest["counts"]["failed"] == 1 and manifest["counts"]["total"] == 4
    assert sorted(p.name for p in zip_path.parent.iterdir()) == ["labels.zip"]  # no temp files left


def test_export_zip_without_images_and_subset(tmp_path):
    store, masks = _filled_store(tmp_path, TEXT_REMOVAL)
    zip_path = tmp_path / "png_only.zip"
    export_zip(store, zip_path, formats=("png",))
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert "coco.json" not in names and not any(n.startswith("labelme/") for n in names)
    assert {"cleaned/a.png", "cleaned/sub/dir/page 1.png", "masks/ünï/文字 😀.png"} <= names
    export_zip(store, tmp_path / "lm.zip", formats=("labelme",))
    with zipfile.ZipFile(tmp_path / "lm.zip") as archive:
        doc = json.loads(archive.read("labelme/sub/dir/page 1.json"))
    assert doc["imagePath"] == "page 1.png"  # meant to sit next to the source image
    with pytest.raises(ValueError, match="unknown export format"):
        export_zip(store, tmp_path / "bad.zip", formats=("png", "voc"))
    assert not (tmp_path / "bad.zip").exists()


def test_export_zip_tampering(tmp_path):
    store = LabelStore(tmp_path / "out", TAMPERED_TEXT_DETECTION)
    labels = np.zeros((12, 12), np.uint8)
    labels[1:5, 1:5] = 1
    labels[6:11, 6:11] = 2
    labels[8, 8] = 0
    store.write_label("doc.png", labels)
    manifest = export_zip(store, tmp_path / "t.zip")
    with zipfile.ZipFile(tmp_path / "t.zip") as archive:
        coco = json.loads(archive.read("coco.json"))
        doc = json.loads(archive.read("labelme/doc.json"))
    assert [c["name"] for c in coco["categories"]] == ["real text", "tampered text"]
    assert [c["colour"] for c in manifest["classes"]][1:] == [c["color"] for c in coco["categories"]]
    values = {"real text": 1, "tampered text": 2, HOLE_LABEL: 0}
    _check_instance_shapes(doc, labels, values, len(coco["annotations"]))
    for value in (1, 2):
        _check_instances([a for a in coco["annotations"] if a["category_id"] == value], labels == value)
