"""``upocr predict`` end to end on a folder, through the installed entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from upocr.cli import main as cli_main


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "in"
    (root / "sub dir").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 120, 3), dtype=np.uint8)).save(root / "sub dir" / "b ü.jpg")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(root / "grey.tif")
    return root


@pytest.mark.parametrize("task, mode, values", [
    ("text-removal", "RGB", None),
    ("text-segmentation", "L", {0, 255}),
    ("tampered-text-detection", "L", {0, 1, 2}),
])
def test_predict_writes_one_png_per_image(micro_model_dir, image_folder, tmp_path, task, mode, values):
    out = tmp_path / "out"
    code = cli_main(["predict", "--task", task, "--model", str(micro_model_dir), str(image_folder), "--output", str(out)])
    assert code == 0
    expected = {"a.png": (90, 70), "sub dir/b ü.png": (120, 50), "grey.png": (40, 40)}
    written = {p.relative_to(out).as_posix(): p for p in out.rglob("*.png")}
    assert set(written) == set(expected)
    for rel, size in expected.items():
        with Image.open(written[rel]) as im:
            assert im.size == size and im.mode == mode
            if values is not None:
                assert set(np.unique(np.asarray(im))) <= values


def test_bad_files_give_a_clear_message_and_a_nonzero_exit(micro_model_dir, image_folder, tmp_path, capsys):
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = tmp_path / "out"
    code = cli_main(["predict", "--task", "segmentation", "--model", str(micro_model_dir), str(image_folder), "-o", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png" in err
    assert (out / "a.png").is_file() and not (out / "broken.png").exists()


def test_input_errors(micro_model_dir, tmp_path, capsys):
    assert cli_main(["predict", "--task", "ocr", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert cli_main(["predict", "--task", "removal", str(tmp_path / "nowhere.png"), "--model", str(micro_model_dir),
                     "-o", str(tmp_path / "o")]) == 1
    assert "nowhere.png" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["predict", "--task", "removal", str(empty), "-o", str(tmp_path / "o")]) == 2
    assert "no images found" in capsys.readouterr().err


def test_missing_default_weights_are_reported(monkeypatch, image_folder, tmp_path, capsys):
    from upocr import pipeline

    monkeypatch.delenv(pipeline.MODEL_ENV, raising=False)
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path / "none")
    assert cli_main(["predict", "--task", "removal", str(image_folder), "-o", str(tmp_path / "o")]) == 1
    assert "no trained default weights" in capsys.readouterr().err


def test_python_dash_m_and_console_script(micro_model_dir, image_folder, tmp_path):
    run = subprocess.run([sys.executable, "-m", "upocr", "predict", "--task", "text-segmentation", "--model",
                          str(micro_model_dir), str(image_folder / "a.png"), "--output", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "o" / "a.png").is_file()
    script = Path(sys.executable).with_name("upocr")  # the console script installed beside this interpreter
    helptext = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert helptext.returncode == 0 and "predict" in helptext.stdout and "convert" in helptext.stdout


@pytest.mark.reliability
def test_a_file_name_no_output_can_have_is_reported_and_the_rest_is_written(micro_model_dir, tmp_path, capsys):
    """A newline in a file name (legal on Linux) cannot name an output file: that file is
    reported by name, the others are written, and the exit status says something failed."""
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("bad\nname.png", "fine.png"):
        Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / name)
    for command in (["predict", "--task", "segmentation", str(folder), "-o", str(tmp_path / "pred")],
                    ["label", "--task", "segmentation", "--format", "png,coco,labelme", "--no-progress", str(folder),
                     str(tmp_path / "lab")]):
        code = cli_main([*command[:1], "--model", str(micro_model_dir), *command[1:]])
        err = capsys.readouterr().err
        assert code == 1, command[0]
        assert "bad\\nname.png" in err and "control characters" in err and "Traceback" not in err
    assert (tmp_path / "pred" / "fine.png").is_file()
    assert (tmp_path / "lab" / "masks" / "fine.png").is_file() and (tmp_path / "lab" / "coco.json").is_file()


@pytest.mark.reliability
def test_a_name_too_long_for_its_labelme_file_keeps_its_label_and_the_other_exports(micro_model_dir, tmp_path, capsys):
    """A 255-byte file name labels fine but its LabelMe file (".json" is longer than ".png")
    cannot exist: that export is reported, COCO and the other LabelMe files are written, the
    counts stay whole (3 files, 3 done) and the exit status is 1; a rerun says the same."""
    folder = tmp_path / "in"
    folder.mkdir()
    long_name = "n" * 251 + ".png"
    for name in (long_name, "a.png", "b.png"):
        Image.new("RGB", (60, 40), "white").save(folder / name)
    args = ["label", "--model", str(micro_model_dir), "--task", "segmentation", "--format", "png,coco,labelme",
            "--no-progress", str(folder), str(tmp_path / "lab")]
    for _ in range(2):
        assert cli_main(args) == 1
        captured = capsys.readouterr()
        assert "LabelMe file not written" in captured.err and "Traceback" not in captured.err
        assert "1 label(s) could not be exported" in captured.out
    assert "3 files" in captured.out and "already done 3" in captured.out
    coco = json.loads((tmp_path / "lab" / "coco.json").read_text())
    assert len(coco["images"]) == 3
    assert sorted(p.name for p in (tmp_path / "lab" / "labelme").iterdir()) == ["a.json", "b.json"]


def test_label_runs_large_images_at_the_scale_of_their_letters_by_default(micro_model_dir):
    from upocr.cli import build_parser
    from upocr.cli.label import LABEL_TEXT_HEIGHT
    from upocr.cli.predict import load_pipeline

    parser = build_parser()
    label = parser.parse_args(["label", "--task", "segmentation", "in", "out", "--model", str(micro_model_dir)])
    assert label.text_height == LABEL_TEXT_HEIGHT
    assert load_pipeline(label).text_height == LABEL_TEXT_HEIGHT
    native = parser.parse_args(["label", "--task", "segmentation", "in", "out", "--text-height", "0",
                                "--model", str(micro_model_dir), "--engine", "fp32"])
    assert load_pipeline(native).text_height is None  # 0: native resolution
    predict = parser.parse_args(["predict", "--task", "segmentation", "in", "-o", "out", "--model", str(micro_model_dir)])
    assert predict.text_height is None


def test_predict_and_label_refine_strokes_unless_told_not_to(tmp_path):
    from helpers import make_micro_model

    from upocr import UPOCR
    from upocr.cli import build_parser
    from upocr.cli.predict import load_pipeline

    model = make_micro_model()
    UPOCR(**{**model.config, "stroke_refinement": 0.1}).save_pretrained(tmp_path / "m")
    parser = build_parser()
    for command in (["predict", "--task", "segmentation", "in", "-o", "out"],
                    ["label", "--task", "segmentation", "in", "out"]):
        common = command + ["--model", str(tmp_path / "m"), "--engine", "fp32"]
        assert load_pipeline(parser.parse_args(common)).stroke_refinement == 0.1
        assert load_pipeline(parser.parse_args(common + ["--no-stroke-refinement"])).stroke_refinement is None
