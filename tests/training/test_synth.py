"""The synthetic data engine: determinism, exact labels, held-out split, writer, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from upocr.data import synth
from upocr.data.backgrounds import resolve_backgrounds
from upocr.data.fonts import default_font_paths, fonts_for_split, resolve_fonts, typeface
from upocr.data.splits import partition
from upocr.data.synth import generate_sample, get_engine, write_dataset
from upocr.tasks import TAMPER_TARGET_COLOURS, TAMPERED_TEXT_DETECTION, TEXT_REMOVAL, TEXT_SEGMENTATION

SIZE = 96
TASKS = (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image).copy()


# --------------------------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_and_index_give_identical_samples(task):
    first = generate_sample(task, 3, 7, size=SIZE)
    generate_sample(task, 9, 7, size=SIZE)  # other samples in between must not matter
    generate_sample(task, 3, 8, size=SIZE)
    again = generate_sample(task, 3, 7, size=SIZE)
    for key in ("image", "target", "mask"):
        assert first[key].dtype == np.uint8
        np.testing.assert_array_equal(first[key], again[key])
    assert first["boxes"] == again["boxes"]
    assert first["image"].shape == (SIZE, SIZE, 3) and first["target"].shape == (SIZE, SIZE, 3)
    assert first["mask"].shape == (SIZE, SIZE)


def test_different_seed_or_index_gives_different_samples():
    base = generate_sample("removal", 0, 1, size=SIZE)["image"]
    assert not np.array_equal(base, generate_sample("removal", 0, 2, size=SIZE)["image"])
    assert not np.array_equal(base, generate_sample("removal", 1, 1, size=SIZE)["image"])
    assert not np.array_equal(base, generate_sample("removal", 0, 1, size=SIZE, split="heldout")["image"])


def test_authentic_scene_is_shared_between_tasks():
    removal = generate_sample("removal", 4, 5, size=SIZE, return_layers=True)
    segmentation = generate_sample("segmentation", 4, 5, size=SIZE, return_layers=True)
    np.testing.assert_array_equal(removal["strokes"], segmentation["strokes"])
    assert removal["texts"] == segmentation["texts"]


def test_sample_does_not_depend_on_worker_count(tmp_path):
    write_dataset("tampering", 5, 11, tmp_path / "one", size=64, workers=1, progress=False)
    write_dataset("tampering", 5, 11, tmp_path / "two", size=64, workers=2, progress=False)
    for sub in ("images", "targets", "masks", "boxes"):
        names = sorted(p.name for p in (tmp_path / "one" / sub).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "two" / sub).iterdir())
        assert len(names) == 5
        for name in names:
            assert (tmp_path / "one" / sub / name).read_bytes() == (tmp_path / "two" / sub / name).read_bytes()
    # and sample 3 of a dataset of 5 is sample 3 of the engine
    direct = generate_sample("tampering", 3, 11, size=64)
    np.testing.assert_array_equal(_png(tmp_path / "one" / "images" / "000003.png"), direct["image"])


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------


def test_removal_image_equals_target_outside_the_text_mask():
    with_text = 0
    for index in range(8):
        s = generate_sample("removal", index, 0, size=SIZE, return_layers=True)
        outside = s["mask"] == 0
        np.testing.assert_array_equal(s["image"][outside], s["target"][outside])
        assert set(np.unique(s["mask"])) <= {0, 255}
        # the mask covers every pixel the text touched
        assert not (s["text_support"] & outside).any()
        if s["strokes"].any():
            with_text += 1
            inside = s["mask"] > 0
            assert (inside & ~s["text_support"]).any()  # dilated a little beyond the text
            assert np.abs(s["image"][inside].astype(int) - s["target"][inside]).max() > 20
    assert with_text >= 6


def test_segmentation_target_is_binary_and_text_differs_from_background():
    for index in range(8):
        s = generate_sample("segmentation", index, 0, size=SIZE, return_layers=True)
        target = s["target"]
        assert set(np.unique(target)) <= {0, 255}
        assert (target[..., 0] == target[..., 1]).all() and (target[..., 1] == target[..., 2]).all()
        text = target[..., 0] == 255
        np.testing.assert_array_equal(text, s["strokes"])
        if text.sum() >= 20:
            diff = np.abs(s["image"].astype(float) - s["clean"].astype(float)).max(axis=2)
            assert diff[text].mean() > 15, f"sample {index}: text barely differs from its background"
        assert (s["mask"][text] == 255).all()


def test_tampering_target_colours_boxes_and_changed_pixels():
    pure = {tuple(c) for c in TAMPER_TARGET_COLOURS}
    tampered_seen = 0
    operations = set()
    for index in range(10):
        s = generate_sample("tampering", index, 0, size=128, return_layers=True)
        colours = {tuple(c) for c in np.unique(s["target"].reshape(-1, 3), axis=0)}
        assert colours <= pure
        operations.update(s["operations"])
        for x0, y0, x1, y1, cls in s["boxes"]:
            assert cls in (1, 2) and 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
            region = s["target"][y0:y1, x0:x1]
            if cls == 2:
                tampered_seen += 1
                assert (region == (0, 0, 255)).all(axis=-1).all()  # the whole box is filled
                changed = np.abs(s["image"][y0:y1, x0:x1].astype(int) - s["authentic"][y0:y1, x0:x1]).max()
                assert changed > 10, f"sample {index}: tampered box {[x0, y0, x1, y1]} holds no change"
            else:
                assert ((region == (0, 255, 0)) | (region == (0, 0, 255))).all(axis=-1).all()
        # pixels outside every box are background
        inside = np.zeros((128, 128), bool)
        for x0, y0, x1, y1, _ in s["boxes"]:
            inside[y0:y1, x0:x1] = True
        assert (s["target"][~inside] == (255, 0, 0)).all()
    assert tampered_seen >= 10
    assert len(operations) >= 2


def test_pixel_level_tampering_labels_follow_strokes():
    s = generate_sample("tampering", 2, 0, size=128, tamper_labels="pixel", return_layers=True)
    text = (s["target"] != (255, 0, 0)).any(axis=-1)
    np.testing.assert_array_equal(text, s["strokes"])


# --------------------------------------------------------------------------------------------
# Held-out split and sources
# --------------------------------------------------------------------------------------------


def test_heldout_split_uses_disjoint_fonts_and_backgrounds():
    train, heldout = get_engine(split="train"), get_engine(split="heldout")
    train_fonts = {f.path for f in train.fonts}
    heldout_fonts = {f.path for f in heldout.fonts}
    assert train_fonts and heldout_fonts and not (train_fonts & heldout_fonts)
    assert train_fonts | heldout_fonts == {f.path for f in resolve_fonts()}
    for kind in ("photos", "textures", "documents"):
        a, b = set(getattr(train.backgrounds, kind)), set(getattr(heldout.backgrounds, kind))
        assert a and b and not (a & b), kind
    # every fifth typeface is held out, with all its styles
    faces = sorted({typeface(f) for f in resolve_fonts()})
    assert {typeface(f) for f in heldout.fonts} == set(faces[4::5])
    assert {typeface(f) for f in train.fonts}.isdisjoint(typeface(f) for f in heldout.fonts)
    # samples report sources of their own split only
    for index in range(4):
        s = generate_sample("segmentation", index, 0, size=64, split="heldout", return_layers=True)
        if s["background_kind"] == "photo":
            assert s["background_name"] in {Path(p).name for p in heldout.backgrounds.photos}


def test_default_sources_ship_with_packages():
    for path in default_font_paths():
        assert "mpl-data" in path.as_posix()
    photos = resolve_backgrounds().photos
    assert len(photos) >= 10 and all("skimage" in Path(p).as_posix() for p in photos)
    assert not any(Path(p).name in ("text.png", "page.png") for p in photos)  # no unlabelled text


def test_application_screens_are_opt_in_and_carry_light_text_on_dark_themes():
    """``screens`` among the background sources adds screenshots (title bar, menu, cards,
    buttons) whose labels are exact targets; without it no scene is a screen, so every other
    configuration renders what it rendered before."""
    assert resolve_backgrounds().screens == () and resolve_backgrounds(["default"]).screens == ()
    plain = get_engine(split="train")
    assert all(plain.scene(i, 0, 128)[0].background.kind != "screen" for i in range(40))
    seen = {}
    for split in ("train", "heldout"):  # both splits draw screens (their fonts differ)
        engine = get_engine(backgrounds=["default", "screens"], split=split)
        for index in range(80):
            scene, _ = engine.scene(index, 0, 256)
            if scene.background.kind == "screen":
                seen.setdefault((split, scene.background.name), index)
    assert {("train", "dark"), ("train", "light"), ("heldout", "dark"), ("heldout", "light")} <= set(seen)
    engine = get_engine(backgrounds=["default", "screens"], split="train")
    sample = engine.sample(TEXT_SEGMENTATION, seen[("train", "dark")], 0, 256)
    text = sample["target"][..., 0] > 127
    assert text.sum() > 200  # the labels are written and their strokes are the target
    grey = sample["image"].astype(np.float64).mean(axis=-1)
    assert grey[text].mean() > grey[~text].mean() + 40  # light text on a dark screen
    removal = engine.sample(TEXT_REMOVAL, seen[("train", "light")], 0, 256)
    changed = np.abs(removal["image"].astype(int) - removal["target"].astype(int)).max(axis=-1) > 0
    assert changed.any() and not changed[removal["mask"] == 0].any()  # the clean screen is exact


def test_partition_rule():
    items = list(range(12))
    assert partition(items, "heldout") == [4, 9]
    assert partition(items, "test") == [4, 9]
    assert partition(items, "train") == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    assert partition([1, 2, 3], "heldout") == [3] and partition([1, 2, 3], "train") == [1, 2]
    assert partition(["only"], "heldout") == ["only"] == partition(["only"], "train")
    with pytest.raises(ValueError, match="split"):
        partition(items, "everything")


def test_user_fonts_and_backgrounds(tmp_path):
    fonts_dir = tmp_path / "fonts"
    fonts_dir.mkdir()
    for path in default_font_paths()[:2]:
        shutil.copy(path, fonts_dir / path.name)
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photos / f"p{k}.png")
    engine = get_engine(fonts=fonts_dir, backgrounds=[photos], split="train")
    assert len(engine.all_fonts) == 2 and len(engine.fonts) == 1
    assert [Path(p).name for p in engine.all_backgrounds.photos] == ["p0.png", "p1.png", "p2.png"]
    heldout = fonts_for_split(engine.all_fonts, "heldout")
    assert {f.path for f in heldout}.isdisjoint(f.path for f in engine.fonts)
    s = generate_sample("removal", 0, 0, size=64, fonts=fonts_dir, backgrounds=[photos])
    assert s["image"].shape == (64, 64, 3)


def test_bad_arguments_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        generate_sample("removal", 0, -1, size=64)
    with pytest.raises(ValueError, match="unknown task"):
        generate_sample("ocr", 0, 0, size=64)
    with pytest.raises(ValueError, match="no such font"):
        generate_sample("removal", 0, 0, size=64, fonts=[tmp_path / "missing.ttf"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a font file"):
        resolve_fonts([tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match="no such background"):
        generate_sample("removal", 0, 0, size=64, backgrounds=[tmp_path / "nowhere"])
    with pytest.raises(ValueError, match="tamper_labels"):
        generate_sample("tampering", 0, 0, size=64, tamper_labels="stroke")


# --------------------------------------------------------------------------------------------
# Writer, CLI and loaders
# --------------------------------------------------------------------------------------------


def test_cli_writes_the_layout_and_the_loader_reads_it_back(tmp_path, capsys):
    from upocr.cli import main
    from upocr.data.datasets import build_dataset

    out = tmp_path / "synth"
    code = main(["synth", "--task", "tampered-text-detection", "--count", "3", "--seed", "2", "--out", str(out),
                 "--size", "64", "--quiet"])
    assert code == 0
    assert "wrote 3" in capsys.readouterr().out
    for sub in ("images", "targets", "masks"):
        assert sorted(p.name for p in (out / sub).iterdir()) == ["000000.png", "000001.png", "000002.png"]
    boxes = json.loads((out / "boxes" / "000001.json").read_text())
    assert all(len(b) == 5 and b[4] in (1, 2) for b in boxes)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == TAMPERED_TEXT_DETECTION and meta["seed"] == 2 and meta["count"] == 3
    assert meta["split"] == "train" and meta["size"] == [64, 64] and meta["generator_version"] == synth.GENERATOR_VERSION
    assert meta["fonts"] and meta["backgrounds"]["photos"]

    dataset = build_dataset({"format": "synthetic", "root": str(out), "split": "test", "size": None})
    assert len(dataset) == 3
    item = dataset[1]
    assert item["task"] == TAMPERED_TEXT_DETECTION and item["name"] == "000001"
    assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    image = torch.from_numpy(_png(out / "images" / "000001.png")).permute(2, 0, 1).float() / 255
    target = torch.from_numpy(_png(out / "targets" / "000001.png")).permute(2, 0, 1).float() / 255
    assert torch.equal(item["image"], image) and torch.equal(item["target"], target)

    # a folder holding another dataset is refused
    assert main(["synth", "--task", "removal", "--count", "1", "--out", str(out), "--size", "64", "--quiet"]) == 1
    assert "already holds" in capsys.readouterr().err
    assert main(["synth", "--task", "ocr", "--count", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_synthetic_dataset_items_and_loader():
    from upocr.data.datasets import SyntheticDataset, build_dataset

    dataset = SyntheticDataset("segmentation", seed=4, length=6, size=64)
    assert len(dataset) == 6
    item = dataset[2]
    assert set(item) == {"image", "target", "mask", "task", "name"}
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert item["target"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
    assert item["task"] == TEXT_SEGMENTATION and item["name"] == "synthetic-train-4-000002"
    direct = generate_sample("segmentation", 2, 4, size=64)
    assert torch.equal(item["image"], torch.from_numpy(direct["image"]).permute(2, 0, 1).float() / 255)
    assert torch.equal(dataset[2]["target"], item["target"])
    with pytest.raises(IndexError):
        dataset[6]
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 3, 64, 64)
    # the same items from two worker processes
    parallel = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, multiprocessing_context="fork")
    assert torch.equal(torch.cat([b["image"] for b in parallel]), torch.stack([dataset[i]["image"] for i in range(6)]))

    default = build_dataset({"format": "synthetic", "split": "train", "task": "removal", "size": 64})
    assert isinstance(default, SyntheticDataset) and len(default) == 100_000
    heldout = build_dataset({"format": "synthetic", "split": "test", "task": "removal", "size": 64, "seed": 3})
    assert heldout.split == "heldout" and heldout[0]["name"].startswith("synthetic-heldout-3-")
