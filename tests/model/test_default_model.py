"""The bundled default weights (assets/upocr-tiny): they load strictly, are what every entry point
uses without a model, and find text on scenes rendered here, never seen in training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from upocr import UPOCR, UPOCRPipeline
from upocr.data.synth import get_engine
from upocr.evaluation.metrics import SegmentationMetrics
from upocr.pipeline import DEFAULT_MODEL_DIR, MODEL_ENV, default_model_source
from upocr.tasks import TASKS, TEXT_REMOVAL, TEXT_SEGMENTATION

#: A seed neither training (0), validation (1) nor the release metrics (2) used.
TEST_SEED = 5


@pytest.fixture(scope="module")
def pipe():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield UPOCRPipeline.from_pretrained(str(DEFAULT_MODEL_DIR), mode="resize")
    torch.set_num_threads(threads)


def test_weights_are_bundled_small_and_load_strictly():
    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size <= 30 * 2**20
    model = UPOCR.from_pretrained(DEFAULT_MODEL_DIR, strict=True)
    assert sorted(model.tasks) == sorted(TASKS) and model.img_size % 32 == 0
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert config["tasks"] == model.tasks  # the prompt order of the official checkpoint


def test_release_passed_its_gate_and_the_card_says_what_it_is():
    metrics = json.loads((DEFAULT_MODEL_DIR / "metrics.json").read_text())
    assert metrics["gate"]["passed"] and not metrics["gate"]["forced"]
    card = (DEFAULT_MODEL_DIR / "README.md").read_text()
    assert "did not pass" not in card
    for needed in ("## Training", "## Held-out metrics", "## On real images", "configs/default-v4.yaml"):
        assert needed in card
    for line in card.splitlines():
        if line.startswith("![") and "](examples/" in line:
            assert (DEFAULT_MODEL_DIR / line.split("](")[1].rstrip(")")).is_file()


def test_default_source_is_the_bundled_weights(monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    assert default_model_source() == str(DEFAULT_MODEL_DIR)


def test_finds_text_on_unseen_rendered_scenes(pipe):
    engine = get_engine(split="heldout")
    raw_pipe = UPOCRPipeline(pipe.model, mode="resize", refine_strokes=False, engine=pipe.engine_name)
    metrics, raw = SegmentationMetrics(), SegmentationMetrics()
    for index in range(4):
        sample = engine.sample(TEXT_SEGMENTATION, index, TEST_SEED, 512)
        truth = sample["target"][..., 0] > 127
        result = pipe(sample["image"], TEXT_SEGMENTATION)
        assert result.mask.shape == truth.shape
        metrics.update(result.mask, truth)
        raw.update(raw_pipe(sample["image"], TEXT_SEGMENTATION).mask, truth)
    scores, raw_scores = metrics.compute(), raw.compute()
    # Four scenes in typefaces the training never used. The shipped weights score fgIoU 0.66
    # (precision 0.74, recall 0.87) here with their stroke refinement, 0.51 (0.56, 0.85) without it,
    # the first default 0.33 (0.42, 0.59): these bounds hold the release to its strokes, and the
    # earlier defaults fail them. Predicting "all text" scores ~0.03.
    assert scores["fgiou"] >= 0.6, scores
    assert scores["precision"] >= 0.65 and scores["recall"] >= 0.75, scores
    assert scores["fgiou"] > raw_scores["fgiou"] + 0.1, (scores, raw_scores)  # the refinement is in use


def test_removal_brings_text_pixels_closer_to_the_background(pipe):
    engine = get_engine(split="heldout")
    before, after = [], []
    for index in range(3):
        sample = engine.sample(TEXT_REMOVAL, index, TEST_SEED, 512)
        text = sample["mask"] > 0
        clean = sample["target"].astype(np.float64)
        output = pipe(sample["image"], TEXT_REMOVAL).image.astype(np.float64)
        before.append(np.abs(sample["image"].astype(np.float64) - clean)[text].mean())
        after.append(np.abs(output - clean)[text].mean())
    # the error left on the text pixels: 0.18 of the input's with the shipped weights, 0.29 with
    # the first default
    assert np.mean(after) < 0.25 * np.mean(before), (before, after)


def test_predict_without_model_uses_the_bundled_weights(monkeypatch, tmp_path):
    from PIL import Image

    from upocr.cli import main as cli_main

    monkeypatch.delenv(MODEL_ENV, raising=False)
    sample = get_engine(split="heldout").sample(TEXT_SEGMENTATION, 7, TEST_SEED, 384)
    Image.fromarray(sample["image"]).save(tmp_path / "scene.png")
    assert cli_main(["predict", "--task", "segmentation", str(tmp_path / "scene.png"), "-o", str(tmp_path / "o"),
                     "--mode", "resize"]) == 0
    mask = np.asarray(Image.open(tmp_path / "o" / "scene.png"))
    assert mask.shape == (384, 384) and set(np.unique(mask)) <= {0, 255}
    truth = sample["target"][..., 0] > 127
    assert (mask[truth] == 255).mean() > 0.3  # a good part of the text is found
    assert (mask[~truth] == 0).mean() > 0.95  # and little else


def test_app_header_names_the_bundled_default(monkeypatch, tmp_path):
    import httpx
    from _app_support import launch

    from demo import build_demo
    from demo.cli import load_pipeline
    from demo.ui import DEFAULT_MODEL_NOTE

    monkeypatch.delenv(MODEL_ENV, raising=False)
    pipeline, error = load_pipeline(None)
    assert error is None and pipeline.source == str(DEFAULT_MODEL_DIR)
    demo = build_demo(pipeline, studio_dir=tmp_path / "studio")
    url = launch(demo)
    try:
        config = httpx.get(url.rstrip("/") + "/config", timeout=30)
        header = [c["props"].get("value") for c in config.json()["components"]
                  if c.get("props", {}).get("elem_id") == "model-name"]
        assert header == [DEFAULT_MODEL_NOTE] and "correct the masks" in DEFAULT_MODEL_NOTE
        assert "no-model-banner" not in config.text
        assert str(DEFAULT_MODEL_DIR) not in config.text  # no server path in what the page reads
    finally:
        demo.close()
