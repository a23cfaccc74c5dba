"""UPOCRPipeline: any user image in, result objects of the input's size out."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from upocr.io import ImageReadError
from upocr.results import TamperingResult, TextRemovalResult, TextSegmentationResult, dilate_mask
from upocr.tasks import TAMPERED_TEXT_DETECTION, TEXT_REMOVAL, TEXT_SEGMENTATION
from upocr.tiling import TileAccumulator, blend_weights, tile_windows


def _photo(h=90, w=140, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, np.full_like(xx, 120.0)], -1)
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def _encoded(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _sources(tmp_path):
    rgb = _photo()
    pil = Image.fromarray(rgb)
    path = tmp_path / "photo one.png"
    pil.save(path)
    grey16 = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).convert("I;16")
    return {
        "path": path,
        "str path": str(path),
        "bytes": path.read_bytes(),
        "pil RGB": pil,
        "pil L": pil.convert("L"),
        "pil LA": pil.convert("LA"),
        "pil P": pil.convert("P"),
        "pil RGBA": pil.convert("RGBA"),
        "pil CMYK": pil.convert("CMYK"),
        "pil I;16": grey16,
        "jpeg bytes": _encoded(pil, "JPEG", quality=90),
        "numpy HxWx3": rgb,
        "numpy HxW": rgb[..., 1],
        "numpy RGBA": np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]),
        "numpy float": rgb.astype(np.float32) / 255,
    }


@pytest.mark.parametrize("task", [TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION])
def test_every_input_kind_gives_a_result_of_the_input_size(micro_pipeline, tmp_path, task):
    for label, source in _sources(tmp_path).items():
        result = micro_pipeline(source, task)
        assert result.original.shape == (90, 140, 3), label
        if task == TEXT_REMOVAL:
            assert isinstance(result, TextRemovalResult) and result.image.shape == (90, 140, 3)
            assert result.image.dtype == np.uint8
        elif task == TEXT_SEGMENTATION:
            assert isinstance(result, TextSegmentationResult) and result.mask.shape == (90, 140)
            assert set(np.unique(result.mask_image())) <= {0, 255}
        else:
            assert isinstance(result, TamperingResult) and result.labels.shape == (90, 140)
            assert set(np.unique(result.labels)) <= {0, 1, 2}
            np.testing.assert_allclose(result.probabilities.sum(-1), 1.0, atol=1e-4)


def test_exif_orientation_is_applied(micro_pipeline, tmp_path):
    rgb = _photo(60, 100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    result = micro_pipeline(path, TEXT_SEGMENTATION)
    assert result.mask.shape == (100, 60)
    # the displayed top-left corner is the stored bottom-left corner
    np.testing.assert_allclose(result.original[0, 0].astype(int), rgb[-1, 0].astype(int), atol=12)


@pytest.mark.parametrize("size", [(33, 47), (77, 131), (129, 64), (5, 300)])
def test_sizes_that_are_not_multiples_of_32(micro_pipeline, size):
    image = _photo(*size)
    for mode in ("resize", "tile"):
        result = micro_pipeline(image, TEXT_REMOVAL, mode=mode)
        assert result.image.shape == (*size, 3), mode


def test_tile_and_resize_agree_on_an_image_of_the_model_size(micro_pipeline):
    size = micro_pipeline.size
    image = _photo(size, size, seed=4)
    resized = micro_pipeline.predict_outputs(image, [TEXT_SEGMENTATION], mode="resize")[TEXT_SEGMENTATION]
    tiled = micro_pipeline.predict_outputs(image, [TEXT_SEGMENTATION], mode="tile")[TEXT_SEGMENTATION]
    np.testing.assert_allclose(resized, tiled, atol=1e-4)


def test_tile_mode_runs_windows_at_native_resolution(micro_pipeline, monkeypatch):
    size = micro_pipeline.size
    seen = []
    original = micro_pipeline._run

    def spy(batch, tasks):
        seen.append(tuple(batch.shape[-2:]))
        return original(batch, tasks)

    monkeypatch.setattr(micro_pipeline, "_run", spy)
    result = micro_pipeline(_photo(300, 500), TEXT_SEGMENTATION, mode="tile")
    assert result.mask.shape == (300, 500)
    assert len(seen) > 4 and all(s == (size, size) for s in seen)
    assert micro_pipeline.resolve_mode(300, 500, "auto") == "tile"
    assert micro_pipeline.resolve_mode(size, size, "auto") == "resize"


def test_tile_windows_cover_the_image_and_blending_is_exact_for_agreeing_windows():
    h, w, tile, overlap = 300, 517, 128, 32
    windows = tile_windows(h, w, tile, overlap)
    covered = np.zeros((h, w), int)
    for top, left, bottom, right in windows:
        assert bottom - top == tile and right - left == tile
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    truth = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    acc = TileAccumulator(h, w, 3)
    for win in windows:
        top, left, bottom, right = win
        acc.add(win, truth[top:bottom, left:right], blend_weights(tile, tile, overlap))
    np.testing.assert_allclose(acc.result(), truth, atol=1e-5)


def test_guided_removal_keeps_every_pixel_outside_the_dilated_mask(micro_pipeline):
    image = _photo(100, 160, seed=2)
    mask = np.zeros((100, 160), bool)
    mask[40:55, 30:90] = True
    result = micro_pipeline(image, TEXT_REMOVAL, mask=mask, dilation=4)
    outside = ~result.mask
    assert result.mask[mask].all() and result.mask.sum() > mask.sum()
    assert np.array_equal(result.image[outside], image[outside])
    assert not np.array_equal(result.image[mask], image[mask])  # the model output is used inside


def test_removal_changes_only_the_detected_text_by_default(micro_pipeline):
    image = _photo(64, 96, seed=3)
    seg = micro_pipeline(image, TEXT_SEGMENTATION, threshold=0.5)
    assert 0 < seg.mask.sum() < seg.mask.size  # the check below is not vacuous
    for result in (micro_pipeline(image, TEXT_REMOVAL, threshold=0.5),
                   micro_pipeline.run_all(image, threshold=0.5)[TEXT_REMOVAL],
                   micro_pipeline.run_all(image, [TEXT_REMOVAL], threshold=0.5)[TEXT_REMOVAL]):
        assert result.mask is not None and result.mask[seg.mask].all()
        outside = ~dilate_mask(seg.mask, 7)
        assert np.array_equal(result.image[outside], image[outside])
        assert np.array_equal(result.mask, ~outside)
    raw = micro_pipeline(image, TEXT_REMOVAL, preserve_background=False)
    assert raw.mask is None and not np.array_equal(raw.image[outside], image[outside])  # one option away


def test_threshold_changes_the_mask_without_running_the_model(micro_pipeline, monkeypatch):
    result = micro_pipeline(_photo(), TEXT_SEGMENTATION)
    monkeypatch.setattr(micro_pipeline.model, "forward", lambda *a, **k: pytest.fail("model re-ran"))
    low, high = result.with_threshold(0.0), result.with_threshold(1.0)
    assert low.mask.sum() >= result.mask.sum() >= high.mask.sum()
    assert high.mask.sum() == 0
    with pytest.raises(ValueError):
        result.with_threshold(1.5)


def test_run_all_matches_single_tasks(micro_pipeline):
    image = _photo(70, 110, seed=5)
    every = micro_pipeline.run_all(image)
    assert set(every) == {TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION}
    single = micro_pipeline(image, TEXT_SEGMENTATION)
    np.testing.assert_allclose(every[TEXT_SEGMENTATION].probability, single.probability, atol=2e-3)


def test_tampering_regions_and_overlay():
    probs = np.zeros((40, 60, 3), np.float32)
    probs[..., 0] = 1
    probs[5:15, 10:30] = (0.1, 0.1, 0.8)
    probs[25:35, 40:50] = (0.1, 0.7, 0.2)
    result = TamperingResult(probabilities=probs, original=np.full((40, 60, 3), 200, np.uint8))
    regions = result.regions()
    assert len(regions) == 1 and regions[0].box == (10, 5, 30, 15) and regions[0].area == 200
    assert regions[0].score == pytest.approx(0.8)
    overlay = result.overlay()
    assert tuple(overlay[0, 0]) == (200, 200, 200) and overlay[10, 20, 0] > overlay[10, 20, 1]


def test_bfloat16_mode_runs(micro_model_dir):
    from upocr.pipeline import UPOCRPipeline

    pipe = UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", dtype="bfloat16")
    assert pipe(_photo(), TEXT_SEGMENTATION).mask.shape == (90, 140)


def test_bad_input_names_the_file(micro_pipeline, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(ImageReadError, match="notes.png"):
        micro_pipeline(bad, TEXT_SEGMENTATION)
    with pytest.raises(ValueError, match="unknown task"):
        micro_pipeline(_photo(), "ocr")


def test_no_default_weights_is_said_plainly(monkeypatch, tmp_path):
    from upocr import pipeline

    monkeypatch.delenv(pipeline.MODEL_ENV, raising=False)
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path / "missing")
    with pytest.raises(pipeline.NoDefaultWeightsError, match="no trained default weights"):
        pipeline.UPOCRPipeline.from_pretrained()


def test_removal_restricted_to_a_mask_keeps_every_other_pixel():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    raw = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[10, 15] = True
    kept = TextRemovalResult(image=raw, original=original, raw=raw).restricted_to(mask, dilation=2)
    yy, xx = np.mgrid[:20, :30]
    inside = (yy - 10) ** 2 + (xx - 15) ** 2 <= 4
    np.testing.assert_array_equal(kept.mask, inside)
    np.testing.assert_array_equal(kept.image[inside], raw[inside])
    np.testing.assert_array_equal(kept.image[~inside], original[~inside])
    assert kept.raw is raw
    with pytest.raises(ValueError, match="mask is 3x2 but the image is 30x20"):
        kept.restricted_to(np.zeros((2, 3), bool))


def test_a_work_budget_bounds_what_one_huge_image_costs(micro_model_dir, monkeypatch):
    """A small file can hold a huge image: with max_work_pixels the network sees a shrunken copy
    (never more than the budget, plus padding to the stride), and the results keep the input's size."""
    from upocr.pipeline import UPOCRPipeline

    pipe = UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", mode="tile", max_work_pixels=4 * 128 * 128)
    seen = []
    run = pipe._run
    monkeypatch.setattr(pipe, "_run", lambda batch, tasks: seen.append(batch.shape) or run(batch, tasks))
    image = _photo(700, 900, seed=6)
    scale = pipe.work_scale(700, 900)
    assert 0 < scale < 0.5
    result = pipe(image, TEXT_SEGMENTATION)
    assert result.mask.shape == (700, 900)
    windows = len(seen)
    unlimited = UPOCRPipeline.from_pretrained(micro_model_dir, device="cpu", mode="tile")
    full = tile_windows(704, 928, (unlimited.size, unlimited.size), unlimited.tile_overlap)
    assert windows * 4 <= len(full)  # at most a quarter of the work
    assert pipe.work_scale(100, 100) == 1.0 and unlimited.work_scale(700, 900) == 1.0
    with pytest.raises(ValueError, match="max_work_pixels"):
        UPOCRPipeline.from_pretrained(micro_model_dir, max_work_pixels=100)


def test_a_removal_only_model_gives_its_raw_output_by_default():
    """A converted ViTEraser serves text removal alone: with no text mask to keep the change to,
    the default is its raw output (not an error)."""
    from helpers import make_micro_model
    from upocr.pipeline import UPOCRPipeline

    pipe = UPOCRPipeline(make_micro_model(tasks=["text-removal"], task_prompt=False), device="cpu", mode="resize")
    image = _photo(64, 96, seed=8)
    result = pipe(image, TEXT_REMOVAL)
    assert result.mask is None and result.image.shape == image.shape
    assert np.array_equal(result.image, pipe(image, TEXT_REMOVAL, preserve_background=False).image)


@pytest.mark.reliability
def test_a_time_budget_stops_a_slow_image_between_windows(micro_model_dir, tmp_path):
    """An image that takes longer than its time budget stops with a message (a budget far below
    one window's time always trips; without a budget the same image runs)."""
    from upocr.cli import main as cli_main
    from upocr.pipeline import UPOCRPipeline, WorkBudgetError

    rgb = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    pipe = UPOCRPipeline.from_pretrained(str(micro_model_dir), mode="tile", time_budget=1e-9)
    with pytest.raises(WorkBudgetError, match="time budget of 1e-09 s"):
        pipe(rgb, TEXT_SEGMENTATION)
    with pipe.time_limit(None):  # a caller's own limit (here: none) takes precedence
        assert pipe(rgb, TEXT_SEGMENTATION).mask.shape == (300, 400)
    with pytest.raises(ValueError, match="time_budget"):
        UPOCRPipeline.from_pretrained(str(micro_model_dir), time_budget=0)

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "big.png")
    Image.fromarray(rgb[:40, :60]).save(folder / "small.png")  # resize mode: one pass, no windows
    code = cli_main(["predict", "--model", str(micro_model_dir), "--task", "segmentation", "--mode", "auto",
                     "--time-budget", "1e-9", str(folder), "-o", str(tmp_path / "out")])
    assert code == 1 and not (tmp_path / "out" / "big.png").exists() and (tmp_path / "out" / "small.png").is_file()
