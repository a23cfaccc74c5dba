"""Instances (words, lines) in the exports, instance scores and per-image confidence."""

from __future__ import annotations

import json
import os
import warnings

import cv2
import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from upocr.labeling import (
    HOLE_LABEL,
    Instance,
    LabelConfig,
    LabelStore,
    MAX_INSTANCES,
    find_instances,
    instance_outline,
    label_images,
    labelme_document,
    write_exports,
)
from upocr.tasks import TAMPERED_TEXT_DETECTION, TEXT_SEGMENTATION, get_task
from upocr.tasks.segmentation import TextSegmentationResult
from upocr.tasks.tampering import TamperingResult

FONT = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
LINES = ["Invoice total 12.50 due today", "Hello world from the street", "quick brown fox jumps"]


def _rendered(size: int) -> np.ndarray:
    """Three lines of words in DejaVu Sans, as a boolean mask."""
    font = ImageFont.truetype(FONT, size)
    canvas = Image.new("L", (40 * size, 6 * size), 0)
    draw = ImageDraw.Draw(canvas)
    for row, text in enumerate(LINES):
        draw.text((size, size // 2 + int(row * 1.6 * size)), text, font=font, fill=255)
    return np.asarray(canvas) > 127


@pytest.mark.parametrize("size", [14, 24, 40])
def test_words_and_lines_of_rendered_text(size):
    mask = _rendered(size)
    words = find_instances(mask, "words")
    assert len(words) == sum(len(line.split()) for line in LINES)
    assert len(find_instances(mask, "lines")) == len(LINES)
    # Reading order: the first line's words come first, left to right.
    first = words[: len(LINES[0].split())]
    assert [w.x0 for w in first] == sorted(w.x0 for w in first)
    assert max(w.y0 for w in first) < min(w.y0 for w in words[len(first):])


@pytest.mark.parametrize("seed", range(4))
def test_instances_partition_every_class(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((60, 90)) < 0.2).astype(np.uint8) * rng.integers(1, 3, (60, 90)).astype(np.uint8)
    for rule in ("words", "lines"):
        count = np.zeros(labels.shape, np.int32)
        for instance in find_instances(labels, rule):
            pixels = instance.full(*labels.shape)
            assert (labels[pixels] == instance.value).all()
            count += pixels
        assert (count == (labels != 0)).all()  # every labelled pixel in exactly one instance
    with pytest.raises(ValueError, match="unknown instance rule"):
        find_instances(labels, "paragraphs")


def test_outline_keeps_holes_and_few_points():
    yy, xx = np.mgrid[:120, :120]
    ring = ((yy - 60) ** 2 + (xx - 60) ** 2 <= 50**2) & ((yy - 60) ** 2 + (xx - 60) ** 2 > 30**2)
    (instance,) = find_instances(ring)
    outline, holes = instance_outline(instance)
    assert len(holes) == 1 and 3 <= len(outline) <= 64 and 3 <= len(holes[0]) <= 64
    doc = labelme_document(ring, "ring.png", 120, 120, {1: "text"})
    assert [s["label"] for s in doc["shapes"]] == ["text", HOLE_LABEL]
    assert doc["shapes"][0]["group_id"] == doc["shapes"][1]["group_id"]
    canvas = Image.new("L", (120, 120), 0)
    for shape, value in zip(doc["shapes"], (1, 0)):
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in shape["points"]], fill=value, outline=value)
    drawn = np.asarray(canvas, bool)
    assert not drawn[60, 60] and drawn[60, 15]  # the hole stays open, the ring is filled
    assert np.mean(drawn[ring]) > 0.97 and np.mean(drawn[~ring]) < 0.03
    # A long line of text is still one polygon of at most 64 points per word.
    mask = _rendered(24)
    doc = labelme_document(mask, "p.png", *mask.shape, {1: "text"})
    outlines = [s for s in doc["shapes"] if s["label"] == "text"]
    assert len(outlines) == len(find_instances(mask)) and all(len(s["points"]) <= 64 for s in doc["shapes"])


def test_noisy_masks_have_a_bounded_number_of_instances():
    """Specks fall back to lines, then to one instance per class; a real page keeps its words."""
    rng = np.random.default_rng(0)
    specks = rng.random((400, 600)) > 0.995  # ~1,200 isolated pixels: more than MAX_INSTANCES words
    assert cv2.connectedComponents(specks.astype(np.uint8))[0] - 1 > MAX_INSTANCES  # the rule would give that many
    assert len(find_instances(specks, "lines")) == 1
    (whole,) = find_instances(specks)
    assert (whole.full(*specks.shape) == specks).all()  # still exactly the mask's pixels
    lines = np.zeros((1300, 400), bool)
    for row in range(0, 1300, 4):  # 325 lines, each of 200 one-pixel "words": lines are kept
        lines[row, 0:400:2] = True
    found = find_instances(lines)
    assert len(found) == 325 and all(instance.bbox[1] % 4 == 0 for instance in found)


def test_outline_of_a_tall_instance_is_bounded_work_and_holds_every_pixel(monkeypatch):
    yy, xx = np.mgrid[:1200, :1000]
    blob = ((yy - 600) ** 2 / 580**2 + (xx - 500) ** 2 / 480**2 <= 1) & ((yy - 600) ** 2 / 450**2 + (xx - 500) ** 2 / 380**2 > 1)
    blob |= (abs(yy - 600) < 10) & (xx >= 990)  # a piece 10 px right of the ring: closed over
    instance = Instance(1, 0, 0, blob)  # one instance of separate pieces, 1,200 px high
    sizes = []
    close = cv2.morphologyEx
    monkeypatch.setattr(cv2, "morphologyEx", lambda image, op, kernel: sizes.append(kernel.shape) or close(image, op, kernel))
    outline, holes = instance_outline(instance)
    assert sizes and max(max(size) for size in sizes) <= 2 * 128 + 3  # closed at 128 px high, not 1,200
    canvas = Image.new("L", (1000, 1200), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in outline], fill=1, outline=1)
    drawn = np.asarray(canvas, bool)
    assert np.mean(drawn[blob]) > 0.995 and len(outline) <= 64  # the 64-point simplification cuts a little
    assert len(holes) == 1
    hole = Image.new("L", (1000, 1200), 0)
    ImageDraw.Draw(hole).polygon([tuple(p) for p in holes[0]], fill=1)
    assert np.asarray(hole, bool)[600, 500] and not np.asarray(hole, bool)[blob].mean() > 0.01


def _segmentation_predictor(probabilities: dict[str, np.ndarray]):
    task = get_task(TEXT_SEGMENTATION)

    def predict(rgb: np.ndarray):
        key = int(rgb[0, 0, 0])
        return {TEXT_SEGMENTATION: TextSegmentationResult(probabilities[key], rgb, threshold=0.4)}

    return predict, task.propose


def test_labelled_folder_exports_instances_with_scores(tmp_path):
    """A labelled folder: confidence in the manifest, COCO instances with the model's mean
    probability as score (1.0 once a person reviewed them), read back with pycocotools."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    mask = _rendered(20)
    sure = np.where(mask, 0.95, 0.02).astype(np.float32)
    unsure = np.where(mask, 0.55, 0.3).astype(np.float32)
    images = tmp_path / "images"
    images.mkdir()
    for key, name in ((1, "sure.png"), (2, "unsure.png")):
        Image.fromarray(np.full(mask.shape + (3,), key, np.uint8)).save(images / name)
    predict, propose = _segmentation_predictor({1: sure, 2: unsure})
    store = LabelStore(tmp_path / "out", TEXT_SEGMENTATION)
    config = LabelConfig(TEXT_SEGMENTATION, formats=("png", "coco", "labelme"), overlap=False, progress=False)
    summary = label_images(predict, [(images / "sure.png", "sure.png"), (images / "unsure.png", "unsure.png")],
                           store, config, to_label=propose)
    assert summary.done == 2
    sure_record, unsure_record = store.record("sure.png"), store.record("unsure.png")
    # margins: (0.95 - 0.4) / 0.6 on text; (0.55 - 0.4) / 0.6 on text and (0.4 - 0.3) / 0.4 around it
    assert sure_record["confidence"] == pytest.approx(0.55 / 0.6, abs=1e-3)
    assert unsure_record["confidence"] == pytest.approx(0.25, abs=1e-3)
    scores = store.read_scores("unsure.png")  # the probability of each pixel's class
    assert np.abs(scores[mask] - 0.55).max() <= 1 / 255 and np.abs(scores[~mask] - 0.7).max() <= 1 / 255
    store.mark_reviewed("sure.png")
    exports = write_exports(tmp_path / "out", TEXT_SEGMENTATION, ("coco", "labelme"))
    assert exports["labelme"] == 2
    doc = json.loads((tmp_path / "out" / "coco.json").read_text())
    by_file = {i["file_name"]: i["id"] for i in doc["images"]}
    words = len(find_instances(mask))
    for name, expected in (("sure.png", 1.0), ("unsure.png", 0.55)):
        anns = [a for a in doc["annotations"] if a["image_id"] == by_file[name]]
        assert len(anns) == words
        assert all(abs(a["score"] - expected) <= 1 / 255 for a in anns)
    labelme = json.loads((tmp_path / "out" / "labelme" / "unsure.json").read_text())
    assert sum(s["label"] == "text" for s in labelme["shapes"]) == words
    assert abs(float(labelme["shapes"][0]["description"].removeprefix("score ")) - 0.55) <= 1 / 255

    with warnings.catch_warnings():  # pycocotools warns under numpy 2
        warnings.simplefilter("ignore", DeprecationWarning)
        coco = COCO(str(tmp_path / "out" / "coco.json"))
        union = np.zeros(mask.shape, bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[by_file["unsure.png"]])):
            union |= coco.annToMask(ann).astype(bool)
        assert (union == mask).all()
        # The annotations, given as detections with their scores, score AP 1 against themselves.
        detections = coco.loadRes([dict(a) for a in doc["annotations"]])
        evaluation = COCOeval(coco, detections, "segm")
        evaluation.params.maxDets = [1, 10, 100]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_tampering_proposal_scores_and_confidence():
    probabilities = np.zeros((20, 30, 3), np.float32)
    probabilities[..., 0] = 1.0
    probabilities[5:10, 5:15] = (0.0, 0.9, 0.1)  # real text, sure
    probabilities[12:16, 5:15] = (0.1, 0.45, 0.45)  # a coin toss between real and tampered
    result = TamperingResult(probabilities, np.zeros((20, 30, 3), np.uint8))
    proposal = get_task(TAMPERED_TEXT_DETECTION).propose({TAMPERED_TEXT_DETECTION: result})
    assert proposal.scores[7, 7] == pytest.approx(0.9) and proposal.margins[7, 7] == pytest.approx(0.8)
    assert proposal.margins[14, 7] == pytest.approx(0.0)
    # 50 text pixels with a margin of 0.8, 40 with none: the mean margin over them.
    assert proposal.confidence() == pytest.approx(50 * 0.8 / 90)
    instances = find_instances(proposal.label)
    assert {i.value for i in instances} == {1}
