"""Stroke refinement: text mask edges moved onto the strokes from the image's own colours."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont

from upocr.evaluation.metrics import SegmentationMetrics
from upocr.tasks.strokes import REACH, refine_strokes

THRESHOLD = 0.4


def _coverage(size=(160, 320), text="Refine 42 px", height=30, scale=4) -> np.ndarray:
    """Geometric ink coverage of ``text`` (float (H, W) in [0, 1]), drawn 4x larger and averaged."""
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), height * scale)
    big = Image.new("L", (size[1] * scale, size[0] * scale), 0)
    ImageDraw.Draw(big).text((12 * scale, 20 * scale), text, fill=255, font=font)
    ImageDraw.Draw(big).text((12 * scale, 90 * scale), "thin strokes", fill=255, font=font)
    return np.asarray(big.resize((size[1], size[0]), Image.BOX), dtype=np.float32) / 255


def _scene(coverage, ink=(200, 30, 40)) -> np.ndarray:
    """Ink composited by its coverage onto a lit, grainy background."""
    h, w = coverage.shape
    rng = np.random.default_rng(0)
    background = np.linspace(150, 235, w, dtype=np.float32)[None, :, None] * np.array([1.0, 0.95, 0.8])
    background = background + rng.normal(0, 4, (h, w, 3))
    a = coverage[..., None]
    return np.clip(a * np.array(ink, np.float32) + (1 - a) * background, 0, 255).round().astype(np.uint8)


def _thick(truth: np.ndarray) -> np.ndarray:
    """A network-like probability: the strokes grown by two pixels, with soft edges."""
    grown = cv2.dilate(truth.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(np.float32)
    return cv2.GaussianBlur(grown, (5, 5), 1.0)


def _iou(mask, truth) -> float:
    metrics = SegmentationMetrics()
    metrics.update(mask, truth)
    return metrics.compute()["fgiou"]


def test_refinement_puts_a_thick_mask_on_the_strokes():
    coverage = _coverage()
    truth = coverage >= 0.5
    probability = _thick(truth)
    refined = refine_strokes(probability, _scene(coverage), offset=0.1)
    before, after = _iou(probability > THRESHOLD, truth), _iou(refined > THRESHOLD, truth)
    assert before < 0.6 and after > 0.85, (before, after)
    assert refined.dtype == np.float32 and refined.min() >= 0 and refined.max() <= 1
    # only pixels near the model's mask move: refinement never finds text the model did not
    far = cv2.dilate((probability >= 0.5).astype(np.uint8), np.ones((2 * REACH + 3,) * 2, np.uint8)) == 0
    assert np.array_equal(refined[far], probability[far])


def test_light_text_on_dark_is_refined_like_dark_text_on_light():
    coverage = _coverage(text="NIGHT 24h")
    truth = coverage >= 0.5
    dark = 255 - _scene(coverage, ink=(250, 250, 210))  # an inverted scene: light ink on a dark ground
    refined = refine_strokes(_thick(truth), 255 - dark, offset=0.1)
    assert _iou(refined > THRESHOLD, truth) > 0.85


def test_where_ink_and_background_are_alike_the_model_decides():
    coverage = _coverage()
    truth = coverage >= 0.5
    flat = np.full(coverage.shape + (3,), 128, np.uint8)  # the ink has the background's colour
    probability = _thick(truth)
    assert np.array_equal(refine_strokes(probability, flat, offset=0.1), probability)
    empty = np.zeros_like(probability)  # no mask: nothing to refine
    assert np.array_equal(refine_strokes(empty, _scene(coverage), offset=0.1), empty)


def test_the_offset_moves_the_edge_between_ink_and_background():
    coverage = _coverage()
    probability, scene = _thick(coverage >= 0.5), _scene(coverage)
    areas = [(refine_strokes(probability, scene, offset) > THRESHOLD).sum() for offset in (-0.2, 0.0, 0.2)]
    assert areas[0] > areas[1] > areas[2]


def test_sizes_must_match():
    with pytest.raises(ValueError, match="differ in size"):
        refine_strokes(np.zeros((10, 10), np.float32), np.zeros((10, 12, 3), np.uint8), 0.1)


def test_a_word_is_refined_the_same_whatever_text_lies_far_away():
    """Parts of the image are refined on their own; the result near one word does not depend on
    text elsewhere (nor on where the parts are cut)."""
    top = _coverage(size=(160, 320))
    coverage = np.zeros((480, 320), np.float32)
    coverage[:160], coverage[320:] = top, top[:, ::-1]
    probability, scene = _thick(coverage >= 0.5), _scene(coverage)
    alone = probability.copy()
    alone[240:] = 0  # the bottom text taken away
    both, one = refine_strokes(probability, scene, 0.1), refine_strokes(alone, scene, 0.1)
    assert np.array_equal(both[:160], one[:160])
    assert not np.array_equal(both[320:], one[320:])  # (the bottom text is refined where it is)


def test_refining_by_parts_gives_what_refining_the_whole_image_gives():
    from upocr.tasks import strokes

    coverage = np.zeros((400, 700), np.float32)
    coverage[:160, :320] = _coverage()
    coverage[230:390, 370:690] = _coverage(text="second part")
    probability, scene = _thick(coverage >= 0.5), _scene(coverage)
    near = cv2.dilate((probability >= strokes.MODEL_MASK).astype(np.uint8),
                      cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * REACH + 1,) * 2)) > 0
    whole = np.where(near, strokes._refine(probability, scene, near, 0.1), probability)
    assert np.array_equal(refine_strokes(probability, scene, 0.1), whole)


def test_a_tiny_change_of_the_probabilities_moves_the_refined_mask_by_little():
    """Outlined digits (a light fill, a dark outline, a third background colour) under the bundled
    model's blob of 0.5-0.7: with hard cuts between sure and unsure pixels, which colour was
    "ink" could flip, and noise of 0.003 moved the mask by 1 % (so did bfloat16 inference)."""
    from helpers import REPO

    from upocr import UPOCR, UPOCRPipeline
    from upocr.data.synth import generate_sample

    model = UPOCR.from_pretrained(REPO / "assets" / "upocr-tiny")
    pipe = UPOCRPipeline(model, device="cpu", mode="resize", engine="fp32", refine_strokes=False)
    image = np.ascontiguousarray(generate_sample("text-segmentation", 0, seed=2024, size=512)["image"])
    probability = pipe(image, "text-segmentation").probability.astype(np.float32)
    rng = np.random.default_rng(0)
    for offset in (0.1, model.stroke_refinement):
        mask = refine_strokes(probability, image, offset) > THRESHOLD
        for _ in range(3):
            noisy = np.clip(probability + rng.uniform(-0.003, 0.003, probability.shape), 0, 1).astype(np.float32)
            moved = refine_strokes(noisy, image, offset) > THRESHOLD
            assert (mask & moved).sum() / (mask | moved).sum() >= 0.995
