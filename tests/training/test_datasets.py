"""Dataset readers on small fabricated copies of each official layout, and the shared transform."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from upocr.data.datasets import (
    DatasetLayoutError,
    LabelsDataset,
    SCUTEnsText,
    TamperedIC13,
    TextSeg,
    build_dataset,
)
from upocr.data.encoding import IGNORE_BYTE
from upocr.data.transforms import PairTransform
from upocr.labeling import LabelStore
from upocr.tasks import IGNORE_VALUE, TAMPERED_TEXT_DETECTION, TEXT_REMOVAL, TEXT_SEGMENTATION

RED, GREEN, BLUE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rgb(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pixel(tensor: torch.Tensor, y: int, x: int) -> tuple:
    return tuple(round(float(v), 4) for v in tensor[:, y, x])


# --------------------------------------------------------------------------------------------
# SCUT-EnsText
# --------------------------------------------------------------------------------------------


def _scut(root: Path, with_masks: bool = True) -> tuple[np.ndarray, np.ndarray]:
    label = np.full((40, 56, 3), 200, np.uint8)
    image = label.copy()
    image[10:20, 5:30] = (10, 20, 30)  # "text"
    _save(root / "train" / "image" / "img_1.png", image)
    _save(root / "train" / "label" / "img_1.png", label)
    if with_masks:
        mask = np.full((40, 56), 255, np.uint8)
        mask[8:22, 3:32] = 0  # black text polygon on white
        _save(root / "train" / "mask" / "img_1.png", mask)
    _save(root / "test" / "image" / "img_9.png", image)
    _save(root / "test" / "label" / "img_9.png", label)
    return image, label


def test_scut_enstext_reads_label_and_black_text_mask(tmp_path):
    image, label = _scut(tmp_path)
    dataset = SCUTEnsText(tmp_path, "train", size=None)
    assert len(dataset) == 1
    item = dataset[0]
    assert item["task"] == TEXT_REMOVAL and item["name"] == "img_1"
    assert torch.equal(item["image"], torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    assert torch.equal(item["target"], torch.from_numpy(label).permute(2, 0, 1).float() / 255)
    assert item["mask"].shape == (1, 40, 56)
    assert item["mask"][0, 8:22, 3:32].eq(1).all() and item["mask"].sum() == 14 * 29
    # resized for evaluation by default
    assert build_dataset({"format": "scut-enstext", "root": str(tmp_path), "split": "test",
                          "task": "text-removal"})[0]["image"].shape == (3, 512, 512)


def test_scut_enstext_without_masks_uses_the_difference(tmp_path):
    _scut(tmp_path, with_masks=False)
    item = SCUTEnsText(tmp_path, "train", size=None)[0]
    assert item["mask"][0, 10:20, 5:30].eq(1).all()
    assert item["mask"][0, 35, 50] == 0


def test_scut_enstext_layout_errors(tmp_path):
    _scut(tmp_path)
    with pytest.raises(DatasetLayoutError, match="valid"):
        SCUTEnsText(tmp_path, "valid")
    (tmp_path / "train" / "label" / "img_1.png").unlink()
    with pytest.raises(DatasetLayoutError, match="img_1"):
        SCUTEnsText(tmp_path, "train")
    with pytest.raises(DatasetLayoutError, match="nothing not found"):
        SCUTEnsText(tmp_path / "nothing", "train")
    (tmp_path / "test" / "label").rename(tmp_path / "test" / "gt")
    with pytest.raises(DatasetLayoutError, match="labels"):
        SCUTEnsText(tmp_path, "test")


# --------------------------------------------------------------------------------------------
# TextSeg
# --------------------------------------------------------------------------------------------


def _textseg(root: Path) -> None:
    for name in ("a00001", "a00002"):
        _save(root / "image" / f"{name}.jpg", _rgb(1))
        label = np.zeros((40, 56), np.uint8)
        label[5:10, 5:10] = 100  # text
        label[5:10, 20:25] = 200  # text effect: background
        label[30:35, 40:45] = 255  # ignore
        _save(root / "semantic_label" / f"{name}_maskfg.png", label)
    (root / "split.json").write_text(json.dumps({"train": ["a00001"], "val": [], "test": ["a00002"]}))


def test_textseg_codes_and_ignore_value(tmp_path):
    _textseg(tmp_path)
    dataset = build_dataset({"format": "textseg", "root": str(tmp_path), "split": "train", "size": None,
                             "augment": False})
    assert isinstance(dataset, TextSeg) and len(dataset) == 1
    item = dataset[0]
    assert item["task"] == TEXT_SEGMENTATION and item["name"] == "a00001"
    target = item["target"]
    assert _pixel(target, 7, 7) == (1.0, 1.0, 1.0)
    assert _pixel(target, 7, 22) == (0.0, 0.0, 0.0)
    assert _pixel(target, 32, 42) == (round(IGNORE_VALUE, 4),) * 3
    assert _pixel(target, 0, 0) == (0.0, 0.0, 0.0)
    assert torch.allclose(target[:, 32, 42], torch.full((3,), IGNORE_VALUE), atol=1e-6)
    assert item["mask"].sum() == 25 and item["mask"][0, 7, 7] == 1
    assert len(TextSeg(tmp_path, "test")) == 1 and len(TextSeg(tmp_path, "val")) == 0


def test_textseg_layout_errors(tmp_path):
    _textseg(tmp_path)
    with pytest.raises(DatasetLayoutError, match="'extra'"):
        TextSeg(tmp_path, "extra")
    (tmp_path / "semantic_label" / "a00002_maskfg.png").unlink()
    with pytest.raises(DatasetLayoutError, match="a00002_maskfg.png"):
        TextSeg(tmp_path, "test")
    (tmp_path / "split.json").unlink()
    with pytest.raises(DatasetLayoutError, match="split.json"):
        TextSeg(tmp_path, "train")


# --------------------------------------------------------------------------------------------
# Tampered-IC13
# --------------------------------------------------------------------------------------------


def test_tampered_ic13_fills_boxes(tmp_path):
    _save(tmp_path / "train_img" / "img_1.jpg", _rgb(2))
    (tmp_path / "train_gt").mkdir()
    (tmp_path / "train_gt" / "img_1.txt").write_text("\ufeff10,10,19,19,1\n30, 5, 39, 14, 2\n\n")
    item = TamperedIC13(tmp_path, "train", size=None)[0]
    assert item["task"] == TAMPERED_TEXT_DETECTION and item["target"].shape == (3, 40, 56)
    target = item["target"]
    assert all(_pixel(target, y, x) == GREEN for y in (10, 19) for x in (10, 19))  # corners inclusive
    assert _pixel(target, 20, 20) == RED and _pixel(target, 9, 9) == RED
    assert all(_pixel(target, y, x) == BLUE for y in (5, 14) for x in (30, 39))
    assert _pixel(target, 15, 40) == RED
    colours = {tuple(c) for c in target.permute(1, 2, 0).reshape(-1, 3).tolist()}
    assert colours == {RED, GREEN, BLUE}
    assert item["mask"].sum() == 200


def test_tampered_ic13_layout_errors(tmp_path):
    _save(tmp_path / "train_img" / "img_1.jpg", _rgb(2))
    with pytest.raises(DatasetLayoutError, match="train_gt"):
        TamperedIC13(tmp_path, "train")
    (tmp_path / "train_gt").mkdir()
    with pytest.raises(DatasetLayoutError, match="img_1.txt"):
        TamperedIC13(tmp_path, "train")
    (tmp_path / "train_gt" / "img_1.txt").write_text("1,2,3,4,1\n1,2,3,4,7\n")
    dataset = TamperedIC13(tmp_path, "train")
    with pytest.raises(DatasetLayoutError, match=r"img_1.txt:2"):
        dataset[0]


# --------------------------------------------------------------------------------------------
# Label folders
# --------------------------------------------------------------------------------------------


def test_labels_dataset_reads_the_label_store(tmp_path):
    images = tmp_path / "photos"
    for name in ("a.png", "sub/b.jpg", "c.png"):
        _save(images / name, _rgb(3, 24, 32))
    store = LabelStore(images / ".upocr-labels" / TEXT_SEGMENTATION, TEXT_SEGMENTATION)
    mask = np.zeros((24, 32), bool)
    mask[4:8, 4:12] = True
    store.write_label("a.png", mask)
    store.mark_reviewed("sub/b.jpg", mask)
    store.mark_failed("c.png", "unreadable")
    dataset = build_dataset({"format": "labels", "root": str(images), "task": "text-segmentation", "size": None,
                             "augment": False})
    assert isinstance(dataset, LabelsDataset) and dataset.names == ["a.png", "sub/b.jpg"]
    item = dataset[1]
    assert item["task"] == TEXT_SEGMENTATION and item["name"] == "sub/b.jpg"
    assert _pixel(item["target"], 5, 5) == (1.0, 1.0, 1.0) and _pixel(item["target"], 20, 20) == (0.0, 0.0, 0.0)
    assert item["mask"].sum() == 32
    reviewed = build_dataset({"format": "labels", "root": str(images), "size": None, "reviewed_only": True})
    assert reviewed.names == ["sub/b.jpg"]


def test_labels_dataset_tampering_and_removal(tmp_path):
    images = tmp_path / "in"
    _save(images / "x.png", _rgb(4, 24, 32))
    tamper = LabelStore(tmp_path / "tamper", TAMPERED_TEXT_DETECTION)
    classes = np.zeros((24, 32), np.uint8)
    classes[2:6, 2:10] = 1
    classes[10:14, 2:10] = 2
    tamper.write_label("x.png", classes)
    item = LabelsDataset(images, labels=tmp_path / "tamper", size=None)[0]
    assert _pixel(item["target"], 3, 3) == GREEN and _pixel(item["target"], 11, 3) == BLUE
    assert _pixel(item["target"], 20, 20) == RED

    removal = LabelStore(tmp_path / "removal", TEXT_REMOVAL)
    cleaned = np.full((24, 32, 3), 77, np.uint8)
    removal.write_label("x.png", classes == 1, cleaned=cleaned)
    item = LabelsDataset(images, labels=tmp_path / "removal", size=None)[0]
    assert item["task"] == TEXT_REMOVAL
    assert torch.allclose(item["target"], torch.full((3, 24, 32), 77 / 255))
    assert item["mask"].sum() == 32


def test_labels_dataset_errors(tmp_path):
    (tmp_path / "in").mkdir()
    with pytest.raises(DatasetLayoutError, match="label folder"):
        LabelsDataset(tmp_path / "in", labels=tmp_path / "missing")
    with pytest.raises(DatasetLayoutError, match="task"):
        LabelsDataset(tmp_path / "in")


# --------------------------------------------------------------------------------------------
# The transform and build_dataset
# --------------------------------------------------------------------------------------------


def test_augmentation_keeps_label_codes_exact():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    seg = np.zeros((50, 70, 3), np.uint8)
    seg[10:30, 10:40] = 255
    seg[40:45, 0:20] = IGNORE_BYTE
    mask = (seg[..., 0] == 255).astype(np.uint8) * 255
    transform = PairTransform("segmentation", size=64, augment=True, rotate_prob=1.0)
    for k in range(6):
        out_image, out_target, out_mask = transform(image, seg, mask, rng=np.random.default_rng(k))
        assert out_image.shape == (64, 64, 3) and out_target.shape == (64, 64, 3) and out_mask.shape == (64, 64)
        assert set(np.unique(out_target)) <= {0, IGNORE_BYTE, 255}
        assert set(np.unique(out_mask)) <= {0, 255}
        # padding and rotated-in corners are "ignore" in the target, never text
        assert (out_target[..., 0] == IGNORE_BYTE).any()
        # the mask moves with the target
        text = out_target[..., 0] == 255
        assert (out_mask[text] == 255).mean() > 0.95
    a = transform(image, seg, mask, rng=np.random.default_rng(5))
    b = transform(image, seg, mask, rng=np.random.default_rng(5))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))

    tamper = np.zeros((50, 70, 3), np.uint8)
    tamper[...] = (255, 0, 0)
    tamper[5:25, 5:35] = (0, 255, 0)
    tamper[30:45, 40:60] = (0, 0, 255)
    transform = PairTransform("tampering", size=48, augment=True, rotate_prob=1.0)
    allowed = {(255, 0, 0), (0, 255, 0), (0, 0, 255), (IGNORE_BYTE,) * 3}
    for k in range(4):
        _, out_target, _ = transform(image, tamper, mask, rng=np.random.default_rng(k))
        assert {tuple(c) for c in np.unique(out_target.reshape(-1, 3), axis=0)} <= allowed


def test_evaluation_transform_resizes_and_removal_pads_black():
    image = np.full((30, 20, 3), 90, np.uint8)
    target = image.copy()
    mask = np.zeros((30, 20), np.uint8)
    out = PairTransform("removal", size=16)(image, target, mask)
    assert out[0].shape == (16, 16, 3) and out[1].shape == (16, 16, 3) and out[2].shape == (16, 16)
    padded = PairTransform("removal", size=64, augment=True, rotate_prob=0.0, scale_range=(1.0, 1.0), hflip=0.0)
    img, tgt, _ = padded(image, target, mask, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(img, tgt)
    assert img.shape == (64, 64, 3) and (img[40:, :] == 0).all()


def test_build_dataset_rejects_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset format"):
        build_dataset({"format": "coco", "root": str(tmp_path)})
    with pytest.raises(ValueError, match="unknown key"):
        build_dataset({"format": "textseg", "root": str(tmp_path), "seed": 3})
    with pytest.raises(ValueError, match="text-segmentation data, not text-removal"):
        build_dataset({"format": "textseg", "root": str(tmp_path), "task": "removal"})
    with pytest.raises(ValueError, match="root"):
        build_dataset({"format": "tampered-ic13"})
    with pytest.raises(ValueError, match="task"):
        build_dataset({"format": "synthetic"})
    with pytest.raises(DatasetLayoutError, match="not found"):
        build_dataset({"format": "tampered-ic13", "root": str(tmp_path / "none")})
    with pytest.raises(FileNotFoundError, match="meta.json"):
        build_dataset({"format": "synthetic", "root": str(tmp_path)})


def test_encoding_rejects_unknown_tampering_codes():
    from upocr.data.encoding import boxes_to_labels, tampering_target

    labels = boxes_to_labels([[0, 0, 2, 2, 1], [1, 1, 3, 3, 2]], 4, 4)
    assert labels.tolist() == [[1, 1, 0, 0], [1, 2, 2, 0], [0, 2, 2, 0], [0, 0, 0, 0]]
    assert tampering_target(np.array([[255]], np.uint8)).tolist() == [[[IGNORE_BYTE] * 3]]
    for bad in (np.array([[3]]), np.array([[1.5]]), np.array([[-1]])):
        with pytest.raises(ValueError, match="tampering labels"):
            tampering_target(bad)


def test_synthetic_crop_is_a_window_of_the_full_render():
    full = build_dataset({"format": "synthetic", "task": "segmentation", "length": 4, "size": 96, "seed": 3})
    cropped = build_dataset({"format": "synthetic", "task": "segmentation", "length": 4, "size": 96, "seed": 3,
                             "crop": 64})
    torch.manual_seed(0)
    for index in range(4):
        whole, part = full[index], cropped[index]
        assert part["image"].shape == (3, 64, 64) and part["target"].shape == (3, 64, 64)
        assert part["mask"].shape[-2:] == (64, 64)
        # the crop (possibly flipped) is found in the full render, image and target at the same place
        found = False
        for flip in (False, True):
            image = whole["image"].flip(-1) if flip else whole["image"]
            target = whole["target"].flip(-1) if flip else whole["target"]
            for y in range(33):
                for x in range(33):
                    if torch.equal(image[:, y:y + 64, x:x + 64], part["image"]):
                        assert torch.equal(target[:, y:y + 64, x:x + 64], part["target"])
                        found = True
        assert found
    with pytest.raises(ValueError, match="crop must be between"):
        build_dataset({"format": "synthetic", "task": "segmentation", "size": 64, "crop": 96})


def _has_tampered_pixels(target: torch.Tensor) -> bool:
    # tampered text is blue in the tampering target (red background, green real text)
    return bool(((target[2] > 0.5) & (target[0] < 0.5)).any())


def test_synthetic_focus_draws_windows_around_the_tampered_words():
    def windows(focus):
        dataset = build_dataset({"format": "synthetic", "task": "tampering", "length": 12, "size": 256, "seed": 5,
                                 "crop": 64, "focus": focus})
        torch.manual_seed(0)
        return [_has_tampered_pixels(dataset[i]["target"]) for i in range(len(dataset))]

    anywhere, focused = windows(0.0), windows(1.0)
    # a 64x64 window of a 256x256 scene rarely holds the forgery; one drawn around it always does
    assert sum(focused) >= 10 and sum(focused) > sum(anywhere) + 3, (anywhere, focused)
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError, match="focus must be between 0 and 1"):
            build_dataset({"format": "synthetic", "task": "tampering", "size": 256, "crop": 64, "focus": bad})
    with pytest.raises(ValueError, match="needs crop"):
        build_dataset({"format": "synthetic", "task": "tampering", "size": 256, "focus": 0.5})
