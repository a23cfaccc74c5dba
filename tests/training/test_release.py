"""The release tool that turns a training run into the bundled default model."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from helpers import REPO

from upocr import UPOCR
from upocr.tasks import TAMPERED_TEXT_DETECTION, TEXT_REMOVAL, TEXT_SEGMENTATION

ROOT = REPO
TINY = dict(embed_dim=8, encoder_num_heads=[1, 1, 2, 2], decoder_num_heads=[2, 2, 1, 1, 1], img_size=64)


def _tool():
    spec = importlib.util.spec_from_file_location("release_default_model", ROOT / "tools" / "release_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tool():
    return _tool()


@pytest.fixture()
def run_dir(tmp_path):
    """A finished training run with an untrained micro model."""
    torch.manual_seed(0)
    run = tmp_path / "run"
    UPOCR.from_preset("tiny", **TINY).save_pretrained(run / "model")
    (run / "model" / "training.json").write_text(json.dumps({
        "step": 3, "elapsed_s": 7.0, "images": 54, "hardware": "CPU (test, 1 threads)",
        "config": {"steps": 3, "batch_size": 6, "image_size": 64, "lr": 5e-4, "lr_encoder_ratio": 1.0,
                   "warmup_steps": 1, "grad_clip": 1.0, "foreground_weight": {"text-segmentation": 4.0},
                   "datasets": {"text-segmentation": [{"format": "synthetic", "size": 64}]}},
    }))
    return run


def _report(fgiou, input_mae, output_mae, precision=None, recall=None):
    precision = fgiou if precision is None else precision
    recall = fgiou if recall is None else recall
    return {TEXT_SEGMENTATION: {"fgiou": fgiou, "precision": precision, "recall": recall},
            TEXT_REMOVAL: {"input": {"text_mae": input_mae}, "output": {"text_mae": output_mae}}}


def test_gate_on_exact_and_empty_answers(tool):
    assert tool.gate(_report(1.0, 80.0, 0.0), 0.3, 0.5, 0.3) == []  # perfect answers pass
    failures = tool.gate(_report(0.0, 80.0, 80.0), 0.3, 0.5, 0.3)  # "no text" and an untouched input fail
    assert len(failures) == 4 and "fgIoU 0.000 < 0.3" in failures[0] and "text pixels" in failures[-1]
    assert "precision 0.000 < 0.3" in failures[1] and "recall 0.000 < 0.3" in failures[2]
    assert tool.gate(_report(None, 80.0, 40.0), 0.3, 0.5) == ["segmentation fgIoU 0.000 < 0.3"]
    assert len(tool.gate(_report(0.9, 80.0, 40.1), 0.3, 0.5, 0.3)) == 1  # just over half the input's error


def test_gate_refuses_masks_that_are_mostly_noise_or_mostly_missing(tool):
    # "everything is text": recall 1, but precision is the text fraction
    assert tool.gate(_report(0.03, 80.0, 20.0, precision=0.03, recall=1.0), 0.3, 0.5, 0.3) == [
        "segmentation fgIoU 0.030 < 0.3", "segmentation precision 0.030 < 0.3"]
    # an IoU over its own floor cannot hide a one-sided mask (IoU = 1 / (1/P + 1/R - 1))
    assert tool.gate(_report(0.281, 80.0, 20.0, precision=0.9, recall=0.29), 0.25, 0.5, 0.3) == [
        "segmentation recall 0.290 < 0.3"]
    assert tool.gate(_report(0.35, 80.0, 20.0, precision=0.4, recall=0.6), 0.3, 0.5, 0.3) == []


def test_untrained_model_is_refused_and_nothing_is_written(tool, run_dir, tmp_path, capsys):
    out = tmp_path / "release"
    code = tool.main(["--run", str(run_dir), "--out", str(out), "--count", "2", "--size", "128", "--threads", "1"])
    assert code == 1
    assert "fails the release gate" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "release.tmp").exists()


def test_forced_release_reloads_strictly_and_card_reports_the_metrics(tool, run_dir, tmp_path):
    out = tmp_path / "release"
    report = tool.release(run_dir, out, count=2, size=128, force=True)
    assert report["gate"]["forced"] and not report["gate"]["passed"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.json", "examples", "metrics.json", "model.safetensors"]
    reloaded = UPOCR.from_pretrained(out)  # strict by default
    source = UPOCR.from_pretrained(run_dir / "model")
    for key, value in source.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key])
    metrics = json.loads((out / "metrics.json").read_text())
    card = (out / "README.md").read_text()
    assert "did not pass the release gate" in card
    seg = metrics[TEXT_SEGMENTATION]
    assert f"| {seg['fgiou']:.3f} / " in card
    assert f"{metrics[TEXT_REMOVAL]['input']['psnr']:.2f} |" in card
    assert f"| {metrics[TAMPERED_TEXT_DETECTION]['mean_iou']:.3f} (" in card
    assert metrics["held_out"] == {"split": "heldout", "seed": tool.RELEASE_SEED, "count": 2, "size": 128,
                                   "mode": "resize"}
    pictures = sorted(p.name for p in (out / "examples").iterdir())
    assert "skimage-page.jpg" in pictures and "street_sign.jpg" in pictures
    for name in pictures:
        assert f"(examples/{name})" in card
    # the input baseline is the same whatever the model: PSNR of the input against the clean target
    again = tool.release(run_dir, tmp_path / "again", count=2, size=128, force=True)
    assert again[TEXT_REMOVAL]["input"] == report[TEXT_REMOVAL]["input"]
    assert again[TEXT_SEGMENTATION] == report[TEXT_SEGMENTATION]


def test_existing_release_is_replaced_only_with_overwrite(tool, run_dir, tmp_path, capsys):
    out = tmp_path / "release"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"keep me")
    args = ["--run", str(run_dir), "--out", str(out), "--count", "1", "--size", "128", "--force"]
    assert tool.main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == b"keep me"
    assert tool.main(args + ["--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != b"keep me"
    assert not (tmp_path / "release.old").exists() and not (tmp_path / "release.tmp").exists()


def test_release_sets_the_previous_release_beside_the_new_one(tool, run_dir, tmp_path):
    """Replacing a release measures the old model on the same scenes and pictures it on the same
    images, so the card shows what changed; the old weights are gone only after the swap."""
    out = tmp_path / "release"
    torch.manual_seed(1)
    UPOCR.from_preset("tiny", **TINY).save_pretrained(out)  # the release in place: other weights
    old_weights = (out / "model.safetensors").read_bytes()
    report = tool.release(run_dir, out, count=2, size=128, force=True, overwrite=True, recipe="configs/x.yaml")
    assert (out / "model.safetensors").read_bytes() != old_weights
    previous, current = report["previous"], report
    assert previous[TEXT_SEGMENTATION] != current[TEXT_SEGMENTATION]  # two models, measured apart
    assert previous[TEXT_REMOVAL]["input"] == current[TEXT_REMOVAL]["input"]  # on the same scenes
    card = (out / "README.md").read_text()
    assert "| task | metric | previous release | this release |" in card and "`configs/x.yaml`" in card
    row = next(line for line in card.splitlines() if line.startswith("| text segmentation | fgIoU"))
    assert row.split(" | ")[2].startswith(f"{previous[TEXT_SEGMENTATION]['fgiou']:.3f}")
    assert row.split(" | ")[3].startswith(f"{current[TEXT_SEGMENTATION]['fgiou']:.3f}")
    pictures = sorted(p.name for p in (out / "examples").iterdir())
    assert "street_sign.jpg" in pictures and "street_sign-previous.jpg" in pictures
    for name in pictures:
        assert f"(examples/{name})" in card


def test_the_tampering_decision_is_calibrated_on_validation_scenes(tool, run_dir, tmp_path):
    """A model that ranks forged words just below real text (never first) gets the offset that
    makes them win; the offset is saved with the weights and stated on the card."""
    import numpy as np

    from upocr.data.datasets import SyntheticDataset
    from upocr.evaluation.evaluate import ground_truth

    data = SyntheticDataset(TAMPERED_TEXT_DETECTION, seed=tool.CALIBRATION_SEED, length=4, size=96, split="heldout")

    class ShyModel:  # one-hot answers, but tampered text scores 0.6 real and 0.45 tampered
        calls = 0

        def predict_outputs(self, image, tasks):
            labels = ground_truth(data[self.calls]["target"], TAMPERED_TEXT_DETECTION)
            self.calls += 1
            out = np.eye(3, dtype=np.float32)[np.where(labels == 255, 0, labels)]
            out[labels == 2] = (0.0, 0.6, 0.45)
            return {TAMPERED_TEXT_DETECTION: out}

    found = tool.calibrate_tampered_bias(ShyModel(), size=96, count=4)
    assert found["tampered_iou_without"] == 0.0 and found["tampered_iou"] == 1.0
    assert found["bias"] == 0.2  # the smallest offset of the grid that puts tampered text first
    assert found["mean_iou"] > found["mean_iou_without"] and found["seed"] != tool.RELEASE_SEED

    class Eager(ShyModel):  # the opposite: forged words are sure, real text scores 0.45 real and 0.6 tampered
        def predict_outputs(self, image, tasks):
            labels = ground_truth(data[self.calls]["target"], TAMPERED_TEXT_DETECTION)
            out = super().predict_outputs(image, tasks)[TAMPERED_TEXT_DETECTION]
            out[labels == 2] = (0.0, 0.0, 1.0)
            out[labels == 1] = (0.0, 0.45, 0.6)
            return {TAMPERED_TEXT_DETECTION: out}

    eager = tool.calibrate_tampered_bias(Eager(), size=96, count=4)
    assert eager["bias"] == -0.2 and eager["mean_iou"] == 1.0  # real text back first, tampered text kept

    out = tmp_path / "release"
    report = tool.release(run_dir, out, count=2, size=128, force=True)
    bias = report["tampering_calibration"]["bias"]
    assert UPOCR.from_pretrained(out).tampered_bias == bias
    assert json.loads((out / "metrics.json").read_text())["tampering_calibration"]["bias"] == bias
    assert f"`tampered_bias` {bias:g}" in (out / "README.md").read_text()


def test_stroke_refinement_is_calibrated_on_validation_scenes(tool, run_dir, tmp_path):
    """A model whose masks are the strokes grown by two pixels gets the refinement that puts them
    back on the strokes; one whose masks are exact keeps its own (``None``). The choice is saved
    with the weights and stated on the card."""
    import cv2
    import numpy as np

    from upocr.data.datasets import SyntheticDataset
    from upocr.evaluation.evaluate import ground_truth

    data = SyntheticDataset(TEXT_SEGMENTATION, seed=tool.CALIBRATION_SEED, length=4, size=128, split="heldout")

    class Exact:
        calls = 0

        def truth(self):
            labels = ground_truth(data[self.calls]["target"], TEXT_SEGMENTATION)
            self.calls += 1
            return (labels == 1).astype(np.float32)

        def predict_outputs(self, image, tasks):
            return {TEXT_SEGMENTATION: np.repeat(self.truth()[..., None], 3, axis=2)}

    class Thick(Exact):
        def predict_outputs(self, image, tasks):
            grown = cv2.dilate(self.truth(), np.ones((5, 5), np.uint8))
            return {TEXT_SEGMENTATION: np.repeat(grown[..., None], 3, axis=2)}

    thick = tool.calibrate_stroke_refinement(Thick(), size=128, count=4)
    assert thick["offset"] is not None and thick["fgiou"] > thick["fgiou_without"] + 0.2, thick
    assert thick["seed"] != tool.RELEASE_SEED
    exact = tool.calibrate_stroke_refinement(Exact(), size=128, count=4)
    assert exact["offset"] is None and exact["fgiou"] == exact["fgiou_without"] == 1.0

    out = tmp_path / "release"
    report = tool.release(run_dir, out, count=2, size=128, force=True)
    offset = report["stroke_calibration"]["offset"]
    assert UPOCR.from_pretrained(out).stroke_refinement == offset
    assert json.loads((out / "metrics.json").read_text())["stroke_calibration"]["offset"] == offset
    card = (out / "README.md").read_text()
    assert (f"`stroke_refinement` {offset:g}" if offset is not None else "masks are the network's own") in card


def test_a_run_on_packed_assets_is_measured_on_what_the_packing_held_out(tool, tmp_path):
    packed = tmp_path / "assets"
    for folder in ("fonts", "photos"):
        (packed / folder).mkdir(parents=True)
        (packed / folder / "packed-from.json").write_text(json.dumps({"sources": ["debian", "default"], "split": "train"}))
    info = {"config": {"datasets": {TEXT_SEGMENTATION: [
        {"format": "synthetic", "fonts": [str(packed / "fonts"), "extra.ttf"],
         "backgrounds": [str(packed / "photos"), "screens"]}]}}}
    assert tool.run_sources(info) == (["debian", "default", "extra.ttf"], ["debian", "default", "screens"])
    plain = {"config": {"datasets": {TEXT_SEGMENTATION: [{"format": "synthetic", "fonts": [str(tmp_path)]}]}}}
    assert tool.run_sources(plain) == ([str(tmp_path)], None)


def test_packed_fonts_keep_every_character_the_synthetic_text_draws(tmp_path):
    spec = importlib.util.spec_from_file_location("pack_training_assets", ROOT / "tools" / "pack_training_assets.py")
    pack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack)
    from upocr.data.fonts import default_font_paths, resolve_fonts

    source = next(p for p in default_font_paths() if p.name == "DejaVuSans.ttf")
    target = tmp_path / source.name
    pack.subset_font(source, target)
    original, packed = resolve_fonts([str(source)])[0], resolve_fonts([str(target)])[0]
    assert packed.charset == original.charset and packed.family == original.family
    assert target.stat().st_size < source.stat().st_size / 4
