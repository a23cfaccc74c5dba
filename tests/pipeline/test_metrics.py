"""Metrics and the evaluator against values computed by hand on tiny arrays."""

import argparse
import json
import math
import sys
import types

import numpy as np
import pytest
import torch

from upocr.evaluation.evaluate import evaluate, ground_truth
from upocr.evaluation.metrics import (
    MSSSIM_WEIGHTS,
    RemovalMetrics,
    SegmentationMetrics,
    TamperingMetrics,
    ms_ssim,
    msssim_scales,
    removal_scores,
)
from upocr.results import TamperingResult, TextRemovalResult, TextSegmentationResult
from upocr.tasks import IGNORE_VALUE


def grey(values):
    """uint8 (H, W, 3) image with R = G = B = values."""
    v = np.asarray(values, dtype=np.uint8)
    return np.repeat(v[..., None], 3, axis=-1)


# --- removal -------------------------------------------------------------------------------


def test_psnr_and_mse_of_known_error():
    target = grey(np.zeros((2, 2)))
    pred = grey(np.full((2, 2), 51))  # 0.2 on [0, 1] -> MSE 0.04
    s = removal_scores(pred, target)
    assert math.isclose(s["mse"], 0.04, rel_tol=1e-12)
    assert math.isclose(s["psnr"], 10 * math.log10(1 / 0.04), rel_tol=1e-12)
    # float input in [0, 1] gives the same numbers
    f = removal_scores(np.full((2, 2, 3), 0.2), np.zeros((2, 2, 3)))
    assert math.isclose(f["mse"], 0.04, rel_tol=1e-12)
    assert removal_scores(target, target)["psnr"] == 100.0


def test_age_and_peps_use_luminance_and_strict_threshold():
    target = grey(np.zeros((2, 2)))
    pred = grey([[10, 30], [20, 0]])  # errors 10, 30, 20 (not > 20), 0
    s = removal_scores(pred, target)
    assert math.isclose(s["age"], 15.0)
    assert math.isclose(s["peps"], 0.25)
    # pure red 100: luminance 29.9, not the channel mean (33.3)
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 100
    s = removal_scores(red, np.zeros((1, 1, 3), np.uint8))
    assert math.isclose(s["age"], 29.9)


def test_pceps_cross_erosion():
    target = grey(np.zeros((5, 5)))
    err = np.zeros((5, 5))
    err[2, 1:4] = 200
    err[1:4, 2] = 200  # a plus sign: only its centre has all four neighbours erroneous
    s = removal_scores(grey(err), target)
    assert math.isclose(s["peps"], 5 / 25)
    assert math.isclose(s["pceps"], 1 / 25)
    # a full 3x3 error block in a corner: only (1, 1) survives (outside the image is not an error)
    err = np.zeros((5, 5))
    err[:3, :3] = 200
    s = removal_scores(grey(err), target)
    assert math.isclose(s["peps"], 9 / 25)
    assert math.isclose(s["pceps"], 1 / 25)


def test_official_peps_divide_by_512_squared():
    target = grey(np.zeros((5, 5)))
    err = np.zeros((5, 5))
    err[2, 1:4] = 200
    err[1:4, 2] = 200
    standard = removal_scores(grey(err), target, official=False)
    official = removal_scores(grey(err), target, official=True)
    assert math.isclose(standard["peps"], 5 / 25)
    assert math.isclose(official["peps"], 5 / (512 * 512))
    assert math.isclose(official["pceps"], 1 / (512 * 512))
    assert official["age"] == standard["age"] and official["psnr"] == standard["psnr"]


def test_msssim_identical_is_one_and_different_is_less():
    rng = np.random.default_rng(0)
    img = rng.random((64, 64, 3))
    noisy = np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1)
    assert math.isclose(ms_ssim(img, img), 1.0, rel_tol=1e-9)
    assert math.isclose(ms_ssim(img, img, official=True), 1.0, rel_tol=1e-9)
    standard, official = ms_ssim(img, noisy), ms_ssim(img, noisy, official=True)
    assert 0 < standard < 1 and 0 < official < 1
    assert not math.isclose(standard, official)  # official: no downsampling between scales


def test_msssim_scale_count_for_small_images():
    assert msssim_scales(176, 300) == 5  # 176 / 16 = 11: the 5th scale just fits
    assert msssim_scales(175, 300) == 4
    assert msssim_scales(32, 32) == 2
    assert msssim_scales(21, 40) == 1
    assert msssim_scales(5, 5) == 1
    assert msssim_scales(5, 5, official=True) == len(MSSSIM_WEIGHTS)
    tiny = np.random.default_rng(1).random((5, 7))
    assert math.isclose(ms_ssim(tiny, tiny), 1.0, rel_tol=1e-9)  # window shrunk to 5x5
    assert ms_ssim(tiny, 1 - tiny) < 1


def test_single_scale_msssim_equals_gaussian_ssim():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a = rng.random((16, 20))
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    reference = skimage_metrics.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert math.isclose(ms_ssim(a, b), reference, rel_tol=1e-6)


def test_removal_metrics_average_over_images():
    m = RemovalMetrics()
    m.update(grey(np.full((2, 2), 51)), grey(np.zeros((2, 2))))  # MSE 0.04
    m.update(grey(np.zeros((2, 2))), grey(np.zeros((2, 2))))  # exact
    out = m.compute()
    assert out["count"] == 2 and out["definitions"] == "standard"
    assert math.isclose(out["mse"], 0.02)
    assert math.isclose(out["psnr"], (10 * math.log10(25) + 100) / 2)
    assert math.isclose(out["age"], 25.5)
    assert RemovalMetrics(official=True).compute()["definitions"] == "official"
    with pytest.raises(ValueError):
        m.update(grey(np.zeros((2, 3))), grey(np.zeros((2, 2))))


# --- segmentation / tampering --------------------------------------------------------------


def test_segmentation_scores_from_known_confusion():
    m = SegmentationMetrics()
    pred = np.array([[1, 1, 0], [1, 0, 0]], bool)
    gt = np.array([[1, 0, 1], [1, 0, 255]], np.uint8)  # last pixel ignored
    m.update(pred, gt)
    out = m.compute()
    assert out["confusion"] == [[1, 1], [1, 2]]  # TN FP / FN TP
    assert math.isclose(out["fgiou"], 0.5)
    assert math.isclose(out["precision"], 2 / 3)
    assert math.isclose(out["recall"], 2 / 3)
    assert math.isclose(out["f"], 2 / 3)
    # an ignore mask excludes pixels too: drop the false positive
    m2 = SegmentationMetrics()
    m2.update(pred, gt.astype(bool) & (gt == 1), ignore=np.array([[0, 1, 0], [0, 0, 1]], bool))
    assert m2.compute()["confusion"] == [[1, 0], [1, 2]]


def test_segmentation_confusion_is_accumulated_not_averaged():
    m = SegmentationMetrics()
    per_image = []
    a_gt = np.zeros((4, 4), bool)
    a_gt[0, 0] = True
    per_image.append(SegmentationMetrics.scores_from_confusion(m.update(a_gt, a_gt))["fgiou"])  # 1.0
    b_gt = np.zeros((4, 4), bool)
    b_gt[1:4, 1:4] = True
    per_image.append(SegmentationMetrics.scores_from_confusion(m.update(np.zeros((4, 4), bool), b_gt))["fgiou"])
    assert per_image == [1.0, 0.0]
    assert math.isclose(m.compute()["fgiou"], 1 / 10)  # TP 1, FN 9
    assert not math.isclose(m.compute()["fgiou"], np.mean(per_image))


def test_tampering_per_class_and_means():
    gt = np.array([[0, 1, 1, 2], [2, 2, 0, 255]], np.uint8)
    pred = np.array([[0, 1, 2, 2], [2, 1, 1, 2]], np.uint8)
    m = TamperingMetrics()
    m.update(pred, gt)
    out = m.compute()
    assert out["confusion"] == [[1, 1, 0], [0, 1, 1], [0, 1, 2]]
    assert math.isclose(out["real_iou"], 1 / 4)
    assert math.isclose(out["real_precision"], 1 / 3)
    assert math.isclose(out["real_recall"], 1 / 2)
    assert math.isclose(out["real_f"], 0.4)
    assert math.isclose(out["tampered_iou"], 1 / 2)
    assert math.isclose(out["tampered_precision"], 2 / 3)
    assert math.isclose(out["tampered_recall"], 2 / 3)
    assert math.isclose(out["tampered_f"], 2 / 3)
    assert math.isclose(out["mean_iou"], 0.375)
    assert math.isclose(out["mean_f"], (0.4 + 2 / 3) / 2)
    # the ignored pixel's prediction does not matter
    pred2 = pred.copy()
    pred2[1, 3] = 0
    m2 = TamperingMetrics()
    m2.update(pred2, gt)
    assert m2.compute()["confusion"] == out["confusion"]
    with pytest.raises(ValueError):
        TamperingMetrics().update(np.full((1, 1), 3), np.zeros((1, 1), np.uint8))


# --- evaluator -----------------------------------------------------------------------------


def _item(image, target, task, name, mask=None):
    h, w = target.shape[-2:]
    return {
        "image": torch.as_tensor(image, dtype=torch.float32),
        "target": torch.as_tensor(target, dtype=torch.float32),
        "mask": torch.zeros(1, h, w) if mask is None else mask,
        "task": task,
        "name": name,
    }


def test_evaluate_removal_with_fake_predict():
    items = [
        _item(torch.rand(3, 4, 4), torch.full((3, 4, 4), 0.2), "text-removal", "a"),  # pred 0 -> MSE 0.04
        _item(torch.rand(3, 4, 6), torch.zeros(3, 4, 6), "text-removal", "b"),  # exact
    ]
    seen = []

    def predict(image, task):
        assert image.dtype == np.uint8 and image.shape[-1] == 3
        seen.append((image.shape, task))
        return TextRemovalResult(image=np.zeros_like(image), original=image)

    out = evaluate(predict, items, "removal", progress=False, per_image=True)
    json.dumps(out, allow_nan=False)
    assert seen == [((4, 4, 3), "text-removal"), ((4, 6, 3), "text-removal")]
    assert out["task"] == "text-removal" and out["count"] == 2 and out["definitions"] == "standard"
    assert math.isclose(out["metrics"]["mse"], 0.02, rel_tol=1e-9)
    assert math.isclose(out["metrics"]["age"], 25.5, rel_tol=1e-9)
    assert math.isclose(out["metrics"]["peps"], 0.5)
    assert [r["name"] for r in out["per_image"]] == ["a", "b"]
    official = evaluate(predict, items, "text-removal", official=True, progress=False, limit=1)
    assert official["definitions"] == "official" and official["count"] == 1
    assert math.isclose(official["metrics"]["peps"], 16 / (512 * 512))


def test_evaluate_segmentation_accumulates_and_ignores():
    a = torch.zeros(3, 2, 2)
    a[:, 0, 0] = 1.0
    b = torch.zeros(3, 2, 3)
    b[:, 0, :] = 1.0
    b[:, 1, 0] = IGNORE_VALUE
    assert ground_truth(b, "text-segmentation").tolist() == [[1, 1, 1], [255, 0, 0]]
    items = [_item(torch.zeros(3, 2, 2), a, "text-segmentation", "a"), _item(torch.ones(3, 2, 3), b, "text-segmentation", "b")]

    def predict(image, task):
        prob = np.zeros(image.shape[:2], np.float32)
        if image.shape[1] == 2:
            prob[0, 0] = 0.9  # exact on image a
        else:
            prob[1, 0] = 1.0  # only on the ignored pixel of image b
        return TextSegmentationResult(probability=prob, original=image)

    out = evaluate(predict, items, "text-segmentation", progress=False, per_image=True)
    json.dumps(out, allow_nan=False)
    assert out["metrics"]["confusion"] == [[5, 0], [3, 1]]  # TN: 3 in a, 2 in b
    assert math.isclose(out["metrics"]["fgiou"], 0.25)
    assert math.isclose(out["metrics"]["precision"], 1.0)
    assert math.isclose(out["metrics"]["recall"], 0.25)
    assert [r["fgiou"] for r in out["per_image"]] == [1.0, 0.0]


def test_evaluate_tampering_and_task_mismatch():
    target = torch.zeros(3, 2, 2)
    target[0, 0, 0] = 1  # background
    target[1, 0, 1] = 1  # real
    target[2, 1, 0] = 1  # tampered
    target[:, 1, 1] = IGNORE_VALUE
    items = [_item(torch.zeros(3, 2, 2), target, "tampered-text-detection", "t")]

    def predict(image, task):
        labels = np.array([[0, 2], [2, 1]])
        return TamperingResult(probabilities=np.eye(3, dtype=np.float32)[labels], original=image)

    out = evaluate(predict, items, "tampering", progress=False)
    assert out["metrics"]["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]
    assert math.isclose(out["metrics"]["tampered_precision"], 0.5)
    assert out["metrics"]["real_iou"] == 0.0
    assert out["metrics"]["real_precision"] is None  # no pixel predicted real: undefined
    with pytest.raises(ValueError):
        evaluate(predict, items, "text-segmentation", progress=False)


def test_cli_evaluate_end_to_end_with_stand_ins(tmp_path, monkeypatch):
    from upocr.cli import evaluate as cli

    target = torch.full((3, 4, 4), 0.2)
    calls = {}

    def build_dataset(config):
        calls["config"] = config
        return [_item(torch.zeros(3, 4, 4), target, config["task"], "x")]

    class FakePipeline:
        @classmethod
        def from_pretrained(cls, model, mode="auto"):
            calls["model"] = (model, mode)
            return cls()

        def __call__(self, image, task):
            return TextRemovalResult(image=np.zeros_like(image), original=image)

    monkeypatch.setitem(sys.modules, "upocr.data.datasets", types.SimpleNamespace(build_dataset=build_dataset))
    monkeypatch.setitem(sys.modules, "upocr.pipeline", types.SimpleNamespace(UPOCRPipeline=FakePipeline))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    output = tmp_path / "m.json"
    args = parser.parse_args(
        ["evaluate", "--task", "removal", "--data", "root", "--format", "synthetic", "--mode", "tile",
         "--official-metrics", "--output", str(output), "--quiet"]
    )
    assert args.func(args) == 0
    assert calls["config"] == {"format": "synthetic", "root": "root", "split": "test", "task": "text-removal"}
    assert calls["model"] == (None, "tile")
    report = json.loads(output.read_text())
    assert report["definitions"] == "official" and report["count"] == 1
    assert math.isclose(report["metrics"]["mse"], 0.04, rel_tol=1e-9)
