"""Decision settings of trained weights, chosen on held-out validation scenes.

Two settings in a model's ``config.json`` are not part of the network but of how its output
becomes a decision (see :class:`upocr.UPOCR`):

* ``tampered_bias``: added to the tampered-text channel before each pixel takes its class;
* ``stroke_refinement``: the ink-coverage offset with which text mask edges are moved onto the
  strokes (:func:`upocr.tasks.strokes.refine_strokes`), or ``None`` where that does not help.

Each is chosen from a grid for the best score on ``count`` held-out synthetic scenes of
:data:`CALIBRATION_SEED` (the seed training validates on; releases are measured on another), with
ties going to the value nearest doing nothing. Each scene runs through the network once; the grid
is scored on its outputs.
"""

from __future__ import annotations

import numpy as np

from ..data.datasets import SyntheticDataset
from ..modeling import UPOCR
from ..tasks import TAMPERED_TEXT_DETECTION, TEXT_SEGMENTATION
from ..tasks.names import DEFAULT_SEGMENTATION_THRESHOLD
from ..tasks.strokes import refine_strokes
from ..tasks.tampering import shift_tampered
from .evaluate import ground_truth, image_to_uint8
from .metrics import SegmentationMetrics, TamperingMetrics

#: Seed of the held-out scenes the settings are chosen on (training validates on it too).
CALIBRATION_SEED = 1
CALIBRATION_COUNT = 12
#: Scenes for the stroke refinement: its grid's neighbours differ by less than 12 scenes tell apart
#: (on the v3 default, 12 scenes chose 0.15 and 24 or 36 chose 0.1).
STROKE_CALIBRATION_COUNT = 24
#: The tampered-text offsets tried (raw output units: a clean one-hot output is 0 or 1); negative
#: ones for a model that marks too much as tampered.
BIAS_GRID = tuple(round(0.05 * k, 2) for k in range(-16, 17))
#: The stroke-refinement offsets tried; ``None`` is no refinement.
STROKE_GRID = (None,) + tuple(round(0.05 * k, 2) for k in range(0, 9))


def _scenes(pipe, task: str, size: int, count: int, fonts, backgrounds):
    """``(image, network output, ground truth)`` for ``count`` held-out scenes of ``task``."""
    data = SyntheticDataset(task, seed=CALIBRATION_SEED, length=count, size=size, split="heldout", fonts=fonts,
                            backgrounds=backgrounds)
    for index in range(count):
        item = data[index]
        image = image_to_uint8(item["image"])
        yield image, pipe.predict_outputs(image, [task])[task], ground_truth(item["target"], task)


def calibrate_tampered_bias(pipe, size: int, count: int = CALIBRATION_COUNT, fonts=None, backgrounds=None) -> dict:
    """The offset of :data:`BIAS_GRID` whose decisions give ``pipe``'s model the best mean IoU
    (real and tampered text)."""
    scored = [(output, truth) for _, output, truth in
              _scenes(pipe, TAMPERED_TEXT_DETECTION, size, count, fonts, backgrounds)]
    found = {}
    for bias in BIAS_GRID:
        metrics = TamperingMetrics()
        for output, truth in scored:
            metrics.update(shift_tampered(output, bias).argmax(-1), truth)
        found[bias] = metrics.compute()
    best = max(BIAS_GRID, key=lambda b: (round(found[b]["mean_iou"], 6), -abs(b)))
    return {"seed": CALIBRATION_SEED, "count": count, "size": size, "bias": best,
            "mean_iou": found[best]["mean_iou"], "tampered_iou": found[best]["tampered_iou"],
            "mean_iou_without": found[0.0]["mean_iou"], "tampered_iou_without": found[0.0]["tampered_iou"]}


def calibrate_stroke_refinement(pipe, size: int, count: int = STROKE_CALIBRATION_COUNT, fonts=None,
                                backgrounds=None) -> dict:
    """The setting of :data:`STROKE_GRID` whose masks (at the default threshold) give ``pipe``'s
    model the best text segmentation fgIoU; ``None`` when refinement does not beat the network's
    own masks."""
    scored = []
    for image, output, truth in _scenes(pipe, TEXT_SEGMENTATION, size, count, fonts, backgrounds):
        scored.append((image, np.clip(output.mean(axis=-1), 0, 1).astype(np.float32), truth))
    found = {}
    for offset in STROKE_GRID:
        metrics = SegmentationMetrics()
        for image, probability, truth in scored:
            if offset is not None:
                probability = refine_strokes(probability, image, offset)
            metrics.update(probability > DEFAULT_SEGMENTATION_THRESHOLD, truth)
        found[offset] = metrics.compute()["fgiou"]
    best = max(STROKE_GRID, key=lambda o: (round(found[o], 6), -1 if o is None else -abs(o) - 1))
    return {"seed": CALIBRATION_SEED, "count": count, "size": size, "offset": best,
            "fgiou": found[best], "fgiou_without": found[None]}


def with_settings(model: UPOCR, **settings) -> UPOCR:
    """``model`` with ``settings`` (e.g. ``tampered_bias``) changed in its configuration (what
    config.json will hold), sharing nothing with ``model``."""
    tuned = UPOCR(**{**model.config, **settings})
    tuned.load_state_dict(model.state_dict())
    return tuned.eval()
