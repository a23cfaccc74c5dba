"""``upocr label``: layout, manifest, exports, resuming after kill -9, reviewed labels, the
multi-process split and the bad-input corpus (also through ``upocr predict`` and the pipeline)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bad_inputs import make_bad_input_corpus
from helpers import TESTS
from upocr.cli import main as cli_main
from upocr.io import ImageReadError
from upocr.labeling import LabelConfig, ProcessGroup, find_inputs, label_files, label_folder, shard
from upocr.labeling import LabelStore, find_label_collisions, label_classes, read_manifest_records

SEG = "text-segmentation"
TAMPER = "tampered-text-detection"


# ---- helpers --------------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One model thread: the reader and writer threads share the few cores (and the machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def _text_image(seed: int, size=(96, 64)) -> Image.Image:
    """A light page with a few dark words: the micro model gives masks with real regions."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(200, 250, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x, y = (int(v) for v in rng.integers(0, [size[0] - 20, size[1] - 10]))
        draw.text((x, y), "Ab1", fill=tuple(int(v) for v in rng.integers(0, 60, 3)))
    draw.rectangle([4, 4, 14, 10], fill=(10, 10, 10))
    return image


def _write_images(root: Path, names: list[str], size=(96, 64), first_seed: int = 0) -> dict[str, tuple[int, int]]:
    """Save one image per relative name; returns ``{name: (height, width)}``."""
    sizes = {}
    for i, rel in enumerate(names):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        w, h = size[0] - 4 * (i % 3), size[1] - 2 * (i % 4)
        _text_image(first_seed + i, (w, h)).save(path)
        sizes[rel] = (h, w)
    return sizes


def _label(*args: str) -> list[str]:
    return ["label", "--no-progress", "--workers", "2", *args]


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return np.asarray(image).copy()


def _manifest_lines(path: Path) -> list[dict]:
    """Every complete JSON record of a manifest file (a line cut by a crash is not one)."""
    out = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        out.append(record)
    return out


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    tests = str(TESTS)
    env["PYTHONPATH"] = tests + os.pathsep + env.get("PYTHONPATH", "")
    return env


# ---- end to end -----------------------------------------------------------------------------


def test_end_to_end_nested_folder(micro_model_dir, tmp_path, capsys):
    root = tmp_path / "in put"
    sizes = _write_images(root, ["a.png", "sub dir/b ü.jpg", "sub dir/deep/c 文字.png", "x/é 1.tif"])
    (root / "sub dir" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    out = root / "labels"  # inside the input folder: must not be scanned
    code = cli_main(_label("--task", "segmentation", "--model", str(micro_model_dir), str(root), str(out)))
    captured = capsys.readouterr()
    assert code == 1
    assert "done 4 | failed 1 | skipped 0 | reviewed kept 0 | already done 0" in captured.out
    assert "images/s" in captured.out
    assert "failed: sub dir/broken.png: truncated or corrupt" in captured.err

    masks = {p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png")}
    assert masks == {"a.png", "sub dir/b ü.png", "sub dir/deep/c 文字.png", "x/é 1.png"}
    for rel, (h, w) in sizes.items():
        mask = _png(out / "masks" / (rel.rsplit(".", 1)[0] + ".png"))
        assert mask.shape == (h, w) and set(np.unique(mask)) <= {0, 255}

    records = read_manifest_records(out)
    assert set(records) == set(sizes) | {"sub dir/broken.png"}
    for rel in sizes:
        record = records[rel]
        assert record["status"] == "done" and record["task"] == SEG
        assert record["model"] == str(micro_model_dir) and "revision" in record
        assert record["threshold"] == 0.4 and record["time"].endswith("Z")
        assert (record["height"], record["width"]) == sizes[rel]
    failed = records["sub dir/broken.png"]
    assert failed["status"] == "failed" and "truncated or corrupt" in failed["reason"]
    assert (out / "coco.json").is_file() and not _temp_files(out)

    # a second run finds everything finished, labels nothing again and does not scan OUTPUT_DIR
    code = cli_main(_label("--task", "segmentation", "--model", str(micro_model_dir), str(root), str(out)))
    captured = capsys.readouterr()
    assert code == 1  # the broken file is tried again and fails again
    assert "done 0 | failed 1 | skipped 0 | reviewed kept 0 | already done 4" in captured.out
    assert set(read_manifest_records(out)) == set(records)


def test_removal_writes_masks_and_cleaned_images(micro_model_dir, tmp_path, capsys):
    root = tmp_path / "in"
    sizes = _write_images(root, ["p.png", "q/r.jpg"])
    out = tmp_path / "out"
    assert cli_main(_label("--task", "removal", "--model", str(micro_model_dir), str(root), str(out))) == 0
    for rel, (h, w) in sizes.items():
        stem = rel.rsplit(".", 1)[0]
        assert _png(out / "masks" / f"{stem}.png").shape == (h, w)
        assert _png(out / "cleaned" / f"{stem}.png").shape == (h, w, 3)
        assert read_manifest_records(out)[rel]["cleaned"] == f"cleaned/{stem}.png"
    assert "done 2 | failed 0" in capsys.readouterr().out


def test_usage_errors(micro_model_dir, tmp_path, capsys):
    root = tmp_path / "in"
    _write_images(root, ["a.png"])
    assert cli_main(_label("--task", "ocr", str(root), str(tmp_path / "o"))) == 2
    assert "unknown task" in capsys.readouterr().err
    assert cli_main(_label("--task", "segmentation", "--format", "png,voc", str(root), str(tmp_path / "o"))) == 2
    assert "unknown format" in capsys.readouterr().err
    assert cli_main(_label("--task", "segmentation", str(tmp_path / "nowhere"), str(tmp_path / "o"))) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(_label("--task", "segmentation", str(tmp_path / "empty"), str(tmp_path / "o"))) == 2
    assert "no images found" in capsys.readouterr().err
    assert cli_main(_label("--task", "segmentation", "--model", str(micro_model_dir), str(root), str(root))) == 2
    assert "must differ" in capsys.readouterr().err
    # one output folder holds the labels of one task
    assert cli_main(_label("--task", "segmentation", "--model", str(micro_model_dir), str(root), str(tmp_path / "o"))) == 0
    assert cli_main(_label("--task", "tampering", "--model", str(micro_model_dir), str(root), str(tmp_path / "o"))) == 2
    assert "holds text-segmentation labels" in capsys.readouterr().err


# ---- exports --------------------------------------------------------------------------------


def _edge_pixels(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4- or 8-neighbour of another class (the outline of every region)."""
    padded = np.pad(labels, 1, mode="edge")
    h, w = labels.shape
    edge = np.zeros((h, w), bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            edge |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] != labels
    return edge


@pytest.mark.parametrize("task", ["segmentation", "tampering"])
def test_exports_read_back(micro_model_dir, tmp_path, capsys, task):
    from pycocotools import mask as coco_mask

    from upocr.labeling import labelme_to_labels

    root = tmp_path / "in"
    _write_images(root, ["a.png", "sub/b c.png", "sub/d.jpg"])
    out = tmp_path / "out"
    args = _label("--task", task, "--model", str(micro_model_dir), "--threshold", "0.1",
                  "--format", "png,coco,labelme", str(root), str(out))
    assert cli_main(args) == 0
    store = LabelStore(out, task)
    # a reviewed label with a hole is exported like the others
    ring = np.zeros((64, 96), np.uint8)
    ring[10:40, 20:70] = 1
    ring[20:30, 35:55] = 0
    if store.task == TAMPER:
        ring[12:16, 22:30] = 2
    _write_images(root, ["e.png"], first_seed=7)  # 96 x 64, like the ring
    store.mark_reviewed("e.png", ring)
    _write_images(root, ["f new.png"], first_seed=9)  # appears after the first run
    assert cli_main(args) == 0
    assert "(2 new)" in capsys.readouterr().out  # only e's and f's LabelMe files are new

    classes = {c.value: c.name for c in label_classes(task) if c.value}
    coco = json.loads((out / "coco.json").read_text(encoding="utf-8"))
    assert {c["id"] for c in coco["categories"]} == set(classes)
    expected_files = {"a.png", "sub/b c.png", "sub/d.jpg", "e.png", "f new.png"}
    assert {im["file_name"] for im in coco["images"]} == expected_files
    regions = 0
    for image in coco["images"]:
        rel = image["file_name"]
        labels = store.read_class_map(rel)
        assert (image["height"], image["width"]) == labels.shape
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        for value in classes:
            truth = labels == value
            mine = [a for a in anns if a["category_id"] == value]
            if not truth.any():
                assert not mine
                continue
            union = np.zeros(truth.shape, np.int32)
            for ann in mine:  # one annotation per word; together they are the PNG's pixels
                union += coco_mask.decode(ann["segmentation"]).astype(np.int32)
            assert union.max() == 1 and (union.astype(bool) == truth).all(), f"{rel}: COCO class {value} differs from the PNG"
            regions += 1

        doc_path = out / "labelme" / (rel.rsplit(".", 1)[0] + ".json")
        document = json.loads(doc_path.read_text(encoding="utf-8"))
        assert (doc_path.parent / document["imagePath"]).resolve() == (root / rel).resolve()
        assert sum(shape["label"] != "_background_" for shape in document["shapes"]) == len(anns)
        for value, name in classes.items():  # one polygon per word covers the word's pixels
            groups = {shape["group_id"] for shape in document["shapes"] if shape["label"] == name}
            own = dict(document, shapes=[shape for shape in document["shapes"] if shape["group_id"] in groups])
            drawn = labelme_to_labels(own, {name: value})
            truth = labels == value
            if truth.any():
                assert np.mean(drawn[truth] == value) >= 0.9, f"{rel}: LabelMe polygons miss class {value}"
    assert regions >= 5  # the masks were not all empty


# ---- kill -9 and resume ---------------------------------------------------------------------

_SLOW_RUNNER = """
import sys, time
import torch
torch.set_num_threads(1)
from upocr.pipeline import UPOCRPipeline
_run_all = UPOCRPipeline.run_all
def slow(self, *args, **kwargs):
    time.sleep(0.12)
    return _run_all(self, *args, **kwargs)
UPOCRPipeline.run_all = slow
from upocr.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.reliability
def test_kill_9_then_resume(micro_model_dir, tmp_path, capsys, monkeypatch):
    root = tmp_path / "in"
    names = [f"{'a' if i % 2 else 'b ü'}/img {i:02d}.png" for i in range(24)]
    sizes = _write_images(root, names, size=(64, 48))
    out = tmp_path / "out"
    args = _label("--task", "segmentation", "--model", str(micro_model_dir), "--format", "png,coco", str(root), str(out))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUNNER, *args, "--threads", "1"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if manifest.is_file() and sum(r["status"] == "done" for r in _manifest_lines(manifest)) >= 5:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    before = read_manifest_records(out)
    finished = {rel for rel, r in before.items() if r["status"] == "done"}
    assert 5 <= len(finished) < len(names)
    saved = {rel: (out / r["label"]).read_bytes() for rel, r in before.items() if rel in finished}
    for png in (out / "masks").rglob("*.png"):  # whatever is on disk is a whole PNG
        if not png.name.startswith("."):
            assert _png(png).shape == sizes[png.relative_to(out / "masks").as_posix()]
    stale = out / "masks" / "a" / ".img 99.png.abcd1234.tmp"  # as an interrupted atomic write leaves it
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\x89PNG half")

    from upocr.pipeline import UPOCRPipeline

    calls = []
    run_all = UPOCRPipeline.run_all
    monkeypatch.setattr(UPOCRPipeline, "run_all", lambda self, *a, **k: calls.append(1) or run_all(self, *a, **k))
    assert cli_main(args) == 0
    captured = capsys.readouterr()
    assert f"already done {len(finished)}" in captured.out
    assert f"done {len(names) - len(finished)} | failed 0" in captured.out
    assert len(calls) == len(names) - len(finished)  # finished files are not run again

    after = read_manifest_records(out)
    assert set(after) == set(names) and all(r["status"] == "done" for r in after.values())
    for rel, data in saved.items():
        assert (out / after[rel]["label"]).read_bytes() == data, f"{rel} changed"
        assert after[rel]["time"] == before[rel]["time"]
    lines = [r for r in _manifest_lines(manifest) if r["status"] == "done"]
    assert sorted(r["file"] for r in lines) == sorted(names)  # each file recorded exactly once
    assert not _temp_files(out)
    masks = sorted(p.relative_to(out / "masks").as_posix() for p in (out / "masks").rglob("*.png"))
    assert masks == sorted(n[: -len(".png")] + ".png" for n in names)
    coco = json.loads((out / "coco.json").read_text(encoding="utf-8"))
    assert sorted(im["file_name"] for im in coco["images"]) == sorted(names)


@pytest.mark.reliability
def test_a_second_run_on_the_same_folder_stops_with_a_message(micro_model_dir, tmp_path, capsys):
    """While ``upocr label`` works on a folder, a second run on it stops at once (exit 2, the
    other run named) and writes nothing; once the first has finished, the second one runs."""
    root = tmp_path / "in"
    names = [f"img {i:02d}.png" for i in range(16)]
    _write_images(root, names, size=(64, 48))
    out = tmp_path / "out"
    args = _label("--task", "segmentation", "--model", str(micro_model_dir), "--format", "png", str(root), str(out))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUNNER, *args, "--threads", "1"], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    manifest = out / "manifest.jsonl"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and proc.poll() is None and not manifest.is_file():
            time.sleep(0.02)
        assert proc.poll() is None, f"the first run ended too soon: {proc.communicate()}"
        lines_before = len(_manifest_lines(manifest))
        assert cli_main(args + ["--overwrite-unreviewed"]) == 2
        err = capsys.readouterr().err
        assert "another labelling run is writing to this folder" in err and f"process {proc.pid}" in err
        assert proc.poll() is None  # the first run goes on ...
        assert all(r["status"] == "done" for r in _manifest_lines(manifest))
        assert len(_manifest_lines(manifest)) >= lines_before
    finally:
        proc.wait(timeout=150)
    assert proc.returncode == 0  # ... and finishes
    assert cli_main(args) == 0  # the lock went with it
    assert f"already done {len(names)}" in capsys.readouterr().out
    lines = [r for r in _manifest_lines(manifest) if r["status"] == "done"]
    assert sorted(r["file"] for r in lines) == sorted(names)  # each file labelled exactly once


# ---- reviewed labels ------------------------------------------------------------------------


def test_reviewed_labels_are_never_overwritten(micro_model_dir, tmp_path, capsys):
    root = tmp_path / "in"
    sizes = _write_images(root, ["one.png", "two.png", "three.png"])
    out = tmp_path / "out"
    base = _label("--task", "segmentation", "--model", str(micro_model_dir), str(root), str(out))
    assert cli_main(base) == 0
    h, w = sizes["two.png"]
    checkerboard = ((np.indices((h, w)) // 4).sum(axis=0) % 2).astype(bool)
    LabelStore(out, SEG).mark_reviewed("two.png", checkerboard)
    reviewed_bytes = (out / "masks" / "two.png").read_bytes()
    before = read_manifest_records(out)
    capsys.readouterr()

    assert cli_main(base + ["--overwrite-unreviewed", "--threshold", "0.2"]) == 0
    assert "done 2 | failed 0 | skipped 0 | reviewed kept 1" in capsys.readouterr().out
    after = read_manifest_records(out)
    assert (out / "masks" / "two.png").read_bytes() == reviewed_bytes
    assert after["two.png"] == before["two.png"]
    assert (_png(out / "masks" / "two.png") == 255).tolist() == checkerboard.tolist()
    for rel in ("one.png", "three.png"):  # the others were labelled again
        assert after[rel]["time"] > before[rel]["time"] and after[rel]["threshold"] == 0.2


# ---- library ----------------------------------------------------------------------------------


def test_shard_and_process_group_from_env():
    items = list(range(11))
    parts = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(parts, [])) == items and parts[1] == [1, 4, 7, 10]
    group = ProcessGroup({"RANK": "2", "WORLD_SIZE": "4", "LOCAL_RANK": "0"})
    assert (group.rank, group.world_size, group.local_rank, group.distributed, group.is_main) == (2, 4, 0, True, False)
    assert not ProcessGroup({}).distributed
    with pytest.raises(ValueError):
        ProcessGroup({"RANK": "4", "WORLD_SIZE": "4"})


def test_overlap_gives_the_same_labels_as_the_baseline(micro_pipeline, tmp_path):
    root = tmp_path / "in"
    _write_images(root, [f"s/{i}.png" for i in range(6)])
    outs = {}
    for overlap in (True, False):
        out = tmp_path / f"out-{overlap}"
        config = LabelConfig(task="segmentation", overlap=overlap, progress=False, formats=("png", "coco"))
        summary = label_folder(micro_pipeline, root, out, config)
        assert summary.done == 6 and summary.failed == 0
        outs[overlap] = {p.name: p.read_bytes() for p in (out / "masks" / "s").iterdir()}
    assert outs[True] == outs[False]


class _FakePipe:
    """Fast readers, a slow model: tracks how many decoded images wait for the model."""

    tasks = [SEG]
    source = "fake"
    mode = "resize"
    read_kwargs: dict = {}

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = 0

    def run_all(self, rgb, tasks, mode=None, threshold=0.4):
        with self.lock:
            self.calls += 1
        if rgb[0, 0, 0] == 7:
            raise RuntimeError("CUDA out of memory (pretend)")
        time.sleep(0.01)
        from upocr.tasks.segmentation import TextSegmentationResult

        return {SEG: TextSegmentationResult(np.zeros(rgb.shape[:2], np.float32), rgb)}


def test_bounded_prefetch_and_one_bad_inference(tmp_path, monkeypatch):
    import upocr.labeling.runner as labeling

    root = tmp_path / "in"
    root.mkdir()
    for i in range(30):
        Image.new("RGB", (8, 6), (7 if i == 13 else 1, 0, 0)).save(root / f"{i:02d}.png")
    state = {"read": 0, "max_waiting": 0}
    pipe = _FakePipe()
    read_image = labeling.read_image

    def counting_read(path, **kwargs):
        out = read_image(path, **kwargs)
        with pipe.lock:
            state["read"] += 1
            state["max_waiting"] = max(state["max_waiting"], state["read"] - pipe.calls)
        return out

    monkeypatch.setattr(labeling, "read_image", counting_read)
    config = LabelConfig(task="segmentation", prefetch=3, read_workers=2, progress=False, formats=("png",))
    summary = label_files(pipe, find_inputs(root), tmp_path / "out", config)
    assert summary.done == 29 and summary.failed == 1
    assert summary.failures[0][0] == "13.png" and "inference failed" in summary.failures[0][1]
    assert state["max_waiting"] <= config.prefetch + 1  # never more decoded images than the queue holds


# ---- several processes ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_split_the_files(micro_model_dir, tmp_path):
    root = tmp_path / "in"
    names = [f"d{i % 2}/f {i}.png" for i in range(7)]
    _write_images(root, names, size=(48, 40))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           "-m", "upocr", *_label("--task", "segmentation", "--model", str(micro_model_dir), str(root), str(out))]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "done 7 | failed 0" in run.stdout and run.stdout.count("images/s") == 1  # one summary, from rank 0

    assert not list(out.glob("manifest.rank*.jsonl"))  # merged into manifest.jsonl
    lines = _manifest_lines(out / "manifest.jsonl")
    assert sorted(r["file"] for r in lines) == sorted(names)  # every file exactly once
    order = [rel for _, rel in find_inputs(root)]
    for record in lines:
        assert record["status"] == "done"
        assert record["rank"] == order.index(record["file"]) % 2  # file index modulo world size
    assert {r["rank"] for r in lines} == {0, 1}
    coco = json.loads((out / "coco.json").read_text(encoding="utf-8"))
    assert len(coco["images"]) == 7


# ---- the bad-input corpus -------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad inputs")
    return root, make_bad_input_corpus(root)


def test_corpus_through_the_pipeline(micro_pipeline, corpus):
    from upocr.pipeline import UPOCRPipeline

    _, cases = corpus
    for case in corpus[1]:
        pipe = micro_pipeline
        if case.read_kwargs:
            pipe = UPOCRPipeline(micro_pipeline.model, device="cpu", mode="resize", **case.read_kwargs)
        if case.ok:
            result = pipe(case.path, SEG)
            assert result.mask.shape == case.shape[:2], case.name
            if case.check is not None:
                case.check(pipe.read(case.path))
        else:
            with pytest.raises(ImageReadError, match=None) as info:
                pipe(case.path, SEG)
            assert case.message in str(info.value), f"{case.name}: {info.value}"
    assert len(cases) >= 40


def _predict_groups(cases) -> list[list]:
    """Cases in groups whose outputs (``<stem>.png``) do not collide."""
    groups: list[tuple[set, list]] = []
    for case in cases:
        stem = case.path.name.rsplit(".", 1)[0] if "." in case.path.name[1:] else case.path.name
        for names, members in groups:
            if stem not in names:
                names.add(stem)
                members.append(case)
                break
        else:
            groups.append(({stem}, [case]))
    return [members for _, members in groups]


def test_corpus_through_predict(micro_model_dir, corpus, tmp_path, capsys):
    _, cases = corpus
    for case in cases:
        if case.name == "directory-named-png":  # a folder is searched for images, and it holds none
            assert cli_main(["predict", "--task", "segmentation", "--model", str(micro_model_dir), str(case.path),
                             "-o", str(tmp_path / "dir")]) == 2
            assert "no images found" in capsys.readouterr().err
    files = [c for c in cases if c.name != "directory-named-png"]
    groups = _predict_groups([c for c in files if not c.read_kwargs]) + [[c] for c in files if c.read_kwargs]
    for index, group in enumerate(groups):
        out = tmp_path / f"o{index}"
        extra = [f"--{k.replace('_', '-')}={v}" for k, v in group[0].read_kwargs.items()]
        code = cli_main(["predict", "--task", "segmentation", "--model", str(micro_model_dir), *extra,
                         *[str(c.path) for c in group], "-o", str(out)])
        err = capsys.readouterr().err
        assert code == (1 if any(not c.ok for c in group) else 0)
        for case in group:
            if case.ok:
                stem = case.path.name.rsplit(".", 1)[0] if "." in case.path.name[1:] else case.path.name
                assert _png(out / f"{stem}.png").shape == case.shape[:2], case.name
            else:
                line = [ln for ln in err.splitlines() if ln.startswith(f"failed: {case.path}:")]
                assert line and case.message in line[0], f"{case.name}: {err}"


def test_corpus_through_label(micro_model_dir, corpus, tmp_path, capsys):
    root, cases = corpus
    out = tmp_path / "out"
    model = ["--model", str(micro_model_dir)]
    code = cli_main(_label("--task", "segmentation", *model, str(root), str(out)))
    capsys.readouterr()
    assert code == 1  # the run went through every file and some failed
    records = read_manifest_records(out)
    walked = {rel for _, rel in find_inputs(root, out)}
    assert set(records) == walked
    collisions = find_label_collisions(walked)
    losers = {f for files in collisions.values() for f in files[1:]}
    assert losers  # e.g. grey16.png / grey16.tif
    alone = []
    for case in cases:
        rel = os.path.relpath(case.path, root).replace(os.sep, "/")
        if rel not in walked:
            alone.append(case)  # hidden, no extension, a folder, missing, broken link: not found by the walk
            continue
        record = records[rel]
        if rel in losers:
            assert record["status"] == "skipped" and "would both be labelled as" in record["reason"], case.name
            alone.append(case)
        elif case.ok or case.read_kwargs:  # read_kwargs cases are fine without the small limit
            assert record["status"] == "done", f"{case.name}: {record}"
            assert _png(out / record["label"]).shape == (case.shape or (40, 50))[:2], case.name
        else:
            assert record["status"] == "failed" and case.message in record["reason"], f"{case.name}: {record}"
        if case.read_kwargs:
            alone.append(case)
    assert {c.name for c in alone} >= {"hidden-file", "no-extension", "missing-file", "broken-symlink"}

    # each of those, named on its own
    for index, case in enumerate(alone):
        single = tmp_path / f"single{index}"
        extra = ["--max-pixels", str(case.read_kwargs["max_pixels"])] if "max_pixels" in case.read_kwargs else []
        code = cli_main(_label("--task", "segmentation", *model, *extra, str(case.path), str(single)))
        err = capsys.readouterr().err
        if case.name == "directory-named-png":
            assert code == 2 and "no images found" in err
        elif case.name == "missing-file":
            assert code == 2 and case.message in err
        elif case.ok:
            assert code == 0, f"{case.name}: {err}"
            record = read_manifest_records(single)[case.path.name]
            assert record["status"] == "done" and _png(single / record["label"]).shape == case.shape[:2]
        else:
            assert code == 1, f"{case.name}: {err}"
            record = read_manifest_records(single)[case.path.name]
            assert record["status"] == "failed" and case.message in record["reason"], case.name
            assert case.message in err
