from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from upocr.labeling import (
    LabelCollisionError,
    LabelStore,
    LabelTaskMismatchError,
    ReviewedLabelError,
    find_label_collisions,
    label_classes,
    merge_manifests,
    read_manifest_records,
)
from upocr.tasks import TAMPERED_TEXT_DETECTION, TEXT_REMOVAL, TEXT_SEGMENTATION


def _mask(seed: int = 0, shape=(12, 16)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) < 0.3


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"
        return np.asarray(im).copy()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_layout_and_record(tmp_path):
    store = LabelStore(tmp_path, "segmentation", model="upocr-base", revision="abc123")
    mask = _mask()
    record = store.write_label("scans/page 1.jpg", mask, record={"threshold": 0.4})
    label = tmp_path / "masks" / "scans" / "page 1.png"
    assert store.label_path("scans/page 1.jpg") == label
    assert set(_png(label).ravel()) <= {0, 255}
    assert ((_png(label) == 255) == mask).all()
    lines = _lines(tmp_path / "manifest.jsonl")
    assert lines == [record]
    assert record["file"] == "scans/page 1.jpg" and record["status"] == "done"
    assert record["task"] == TEXT_SEGMENTATION and record["label"] == "masks/scans/page 1.png"
    assert record["model"] == "upocr-base" and record["revision"] == "abc123" and record["threshold"] == 0.4
    assert record["time"].endswith("Z") and "T" in record["time"]
    assert store.status("scans/page 1.jpg") == "done" and store.is_done("scans/page 1.jpg")
    assert store.status("scans\\page 1.jpg") == "done"  # Windows separators name the same file
    assert store.status("other.jpg") is None and not store.is_done("other.jpg")
    assert (store.read_class_map("scans/page 1.jpg") == mask).all()


def test_tampering_label_map_values_kept(tmp_path):
    store = LabelStore(tmp_path, "tampering")
    labels = np.random.default_rng(3).integers(0, 3, (9, 7)).astype(np.uint8)
    store.write_label("a.png", labels)
    assert (_png(tmp_path / "masks" / "a.png") == labels).all()
    assert (store.read_label("a.png") == labels).all()
    with pytest.raises(ValueError, match="0 \\(background\\), 1 \\(real text\\) and 2"):
        store.write_label("b.png", labels + 1)
    assert store.status("b.png") is None and not (tmp_path / "masks" / "b.png").exists()
    assert [c.name for c in label_classes(TAMPERED_TEXT_DETECTION)] == ["background", "real text", "tampered text"]


def test_removal_writes_cleaned_image_and_mask(tmp_path):
    store = LabelStore(tmp_path, TEXT_REMOVAL)
    mask = _mask(1)
    cleaned = np.random.default_rng(2).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="cleaned"):
        store.write_label("x/p.jpg", mask)
    with pytest.raises(ValueError, match="cleaned image is"):
        store.write_label("x/p.jpg", mask, cleaned=cleaned[:5])
    assert store.records() == {} and not (tmp_path / "masks").exists()
    record = store.write_label("x/p.jpg", mask, cleaned=cleaned)
    assert record["cleaned"] == "cleaned/x/p.png" and record["label"] == "masks/x/p.png"
    assert (store.read_cleaned("x/p.jpg") == cleaned).all()
    assert ((store.read_label("x/p.jpg") > 0) == mask).all()
    (tmp_path / "cleaned" / "x" / "p.png").unlink()
    assert not store.is_done("x/p.jpg")


def test_reviewed_label_is_never_overwritten_silently(tmp_path):
    store = LabelStore(tmp_path, "segmentation")
    store.write_label("a.png", _mask(1))
    edited = _mask(2)
    store.mark_reviewed("a.png", edited)
    assert store.is_reviewed("a.png") and store.is_done("a.png")
    before = (tmp_path / "masks" / "a.png").read_bytes()

    other_process = LabelStore(tmp_path, "segmentation")
    for attempt in (
        lambda s: s.write_label("a.png", _mask(3)),
        lambda s: s.mark_reviewed("a.png", _mask(4)),
        lambda s: s.mark_failed("a.png", "model crashed"),
        lambda s: s.mark_skipped("a.png", "too small"),
    ):
        for s in (store, other_process):
            with pytest.raises(ReviewedLabelError, match="overwrite=True"):
                attempt(s)
    assert (tmp_path / "masks" / "a.png").read_bytes() == before
    assert store.status("a.png") == "reviewed"

    store.mark_reviewed("a.png", _mask(5), overwrite=True)
    assert ((store.read_label("a.png") > 0) == _mask(5)).all()
    store.write_label("a.png", _mask(6), overwrite=True)
    assert store.status("a.png") == "done"


def test_approve_existing_label(tmp_path):
    store = LabelStore(tmp_path, "segmentation")
    with pytest.raises(FileNotFoundError):
        store.mark_reviewed("a.png")
    store.write_label("a.png", _mask(1))
    before = (tmp_path / "masks" / "a.png").read_bytes()
    record = store.mark_reviewed("a.png", record={"reviewer": "kim"})
    assert record["status"] == "reviewed" and record["reviewer"] == "kim"
    assert (tmp_path / "masks" / "a.png").read_bytes() == before


def test_truncated_last_line_is_ignored_and_repaired(tmp_path):
    store = LabelStore(tmp_path, "segmentation")
    store.write_label("a.png", _mask(1))
    store.mark_failed("b.png", "not an image")
    manifest = tmp_path / "manifest.jsonl"
    with open(manifest, "ab") as handle:  # what a kill -9 in the middle of a write leaves
        handle.write(b'{"file": "c.png", "status": "do')
    fresh = LabelStore(tmp_path, "segmentation")
    assert set(fresh.records()) == {"a.png", "b.png"}
    assert fresh.status("c.png") is None
    assert fresh.counts() == {"done": 1, "reviewed": 0, "failed": 1, "skipped": 0, "labelled": 1, "total": 2}
    fresh.write_label("c.png", _mask(2))
    assert LabelStore(tmp_path, "segmentation").status("c.png") == "done"
    raw = manifest.read_bytes()
    assert raw.endswith(b"\n") and b'"do\n{' in raw  # the broken line was closed, not glued to
    # A garbage line in the middle is skipped too.
    with open(manifest, "ab") as handle:
        handle.write(b"\x00\x01 not json\n[1, 2]\n")
    fresh.mark_skipped("d.png", "blank page")
    assert set(LabelStore(tmp_path, "segmentation").records()) == {"a.png", "b.png", "c.png", "d.png"}


def test_latest_record_wins_and_counts(tmp_path):
    store = LabelStore(tmp_path, "segmentation")
    store.mark_failed("a.png", "out of memory")
    store.write_label("a.png", _mask(1))
    store.write_label("b.png", _mask(2))
    store.mark_failed("b.png", "second run failed")
    store.mark_reviewed("c.png", _mask(3))
    records = store.records()
    assert list(records) == ["a.png", "b.png", "c.png"]
    assert [r["status"] for r in records.values()] == ["done", "failed", "reviewed"]
    assert records["b.png"]["reason"] == "second run failed"
    assert store.counts() == {"done": 1, "reviewed": 1, "failed": 1, "skipped": 0, "labelled": 2, "total": 3}
    assert len(_lines(tmp_path / "manifest.jsonl")) == 5  # append-only history


def test_store_sees_records_appended_by_others(tmp_path):
    first = LabelStore(tmp_path, "segmentation")
    second = LabelStore(tmp_path, "segmentation")
    second.write_label("a.png", _mask(1))
    assert first.status("a.png") == "done"
    second.mark_reviewed("a.png", _mask(2))
    with pytest.raises(ReviewedLabelError):
        first.write_label("a.png", _mask(3))


def test_rank_manifests_are_read_together_and_merged(tmp_path):
    main = LabelStore(tmp_path, "segmentation")
    main.write_label("shared.png", _mask(0))
    rank0 = LabelStore(tmp_path, "segmentation", rank=0)
    rank1 = LabelStore(tmp_path, "segmentation", rank=1)
    rank0.write_label("r0/a.png", _mask(1))
    rank1.write_label("r1/b.png", _mask(2))
    rank1.mark_failed("r1/c.png", "unreadable")
    rank0.write_label("shared.png", _mask(3))  # later than the main manifest's record
    rank1.write_label("r1/c.png", _mask(4))  # a retry: later line in the same file wins
    assert (tmp_path / "manifest.rank0.jsonl").is_file() and (tmp_path / "manifest.rank1.jsonl").is_file()

    reader = LabelStore(tmp_path, "segmentation")
    before = reader.records()
    assert set(before) == {"shared.png", "r0/a.png", "r1/b.png", "r1/c.png"}
    assert before["r1/c.png"]["status"] == "done"
    assert before["shared.png"]["time"] == rank0.record("shared.png")["time"]

    assert merge_manifests(tmp_path) == 4
    assert not list(tmp_path.glob("manifest.rank*.jsonl"))
    lines = _lines(tmp_path / "manifest.jsonl")
    assert sorted(r["file"] for r in lines) == sorted(before)  # one line per file
    assert read_manifest_records(tmp_path) == before
    assert reader.records() == before  # a store notices the rewrite
    # Ranks can keep going after a merge.
    rank1.write_label("r1/d.png", _mask(5))
    assert LabelStore(tmp_path, "segmentation").status("r1/d.png") == "done"
    with pytest.raises(ValueError):
        LabelStore(tmp_path, "segmentation", rank=-1)


def test_merge_respects_time_across_files(tmp_path):
    (tmp_path / "manifest.jsonl").write_text(
        json.dumps({"file": "a.png", "status": "reviewed", "task": TEXT_SEGMENTATION, "time": "2030-01-01T00:00:00.000000Z"}) + "\n"
    )
    (tmp_path / "manifest.rank3.jsonl").write_text(
        json.dumps({"file": "a.png", "status": "done", "task": TEXT_SEGMENTATION, "time": "2029-01-01T00:00:00.000000Z"}) + "\n"
    )
    assert LabelStore(tmp_path, "segmentation").status("a.png") == "reviewed"
    merge_manifests(tmp_path)
    assert [r["status"] for r in _lines(tmp_path / "manifest.jsonl")] == ["reviewed"]


def test_task_mismatch_and_open(tmp_path):
    LabelStore(tmp_path, "segmentation").write_label("a.png", _mask(1))
    with pytest.raises(LabelTaskMismatchError, match="text-segmentation"):
        LabelStore(tmp_path, "tampering")
    opened = LabelStore.open(tmp_path)
    assert opened.task == TEXT_SEGMENTATION and opened.status("a.png") == "done"
    with pytest.raises(ValueError, match="no label manifest"):
        LabelStore.open(tmp_path / "empty")


def test_label_collisions(tmp_path):
    assert find_label_collisions(["a.jpg", "a.png", "b.png", "sub/a.png"]) == {"masks/a.png": ["a.jpg", "a.png"]}
    store = LabelStore(tmp_path, "segmentation")
    store.write_label("a.jpg", _mask(1))
    with pytest.raises(LabelCollisionError, match="a.png and a.jpg"):
        store.write_label("a.png", _mask(2))
    assert ((store.read_label("a.jpg") > 0) == _mask(1)).all()
    store.write_label("a.jpg", _mask(3))  # the owner may rewrite its own label


def test_rejects_paths_outside_the_output(tmp_path):
    store = LabelStore(tmp_path / "out", "segmentation")
    for rel in ("../evil.png", "/etc/x.png", "C:\\x.png"):
        with pytest.raises(ValueError):
            store.write_label(rel, _mask(1))
    assert not (tmp_path / "evil.png").exists()
    with pytest.raises(FileNotFoundError, match="no label"):
        store.read_label("never.png")


def _review_all(output_dir: str, names: list, ready, go) -> None:
    """A reviewer in another process: accepts a painted label for every file, in order."""
    from upocr.labeling import LabelStore

    store = LabelStore(output_dir, "text-segmentation")
    ready.set()
    go.wait()
    for name in names:
        store.mark_reviewed(name, np.ones((8, 8), bool))


@pytest.mark.reliability
def test_a_reviewer_racing_the_batch_labeller_in_another_process_keeps_every_label(tmp_path):
    """The app's reviewer and ``upocr label`` on one folder at once (two processes): every
    label the reviewer accepted stays reviewed with the reviewer's pixels, however the model's
    writes interleave with it."""
    import multiprocessing

    from upocr.labeling import LabelStore, ReviewedLabelError

    names = [f"img{i:03d}.png" for i in range(60)]
    context = multiprocessing.get_context("spawn")
    ready, go = context.Event(), context.Event()
    reviewer = context.Process(target=_review_all, args=(str(tmp_path), names, ready, go))
    reviewer.start()
    store = LabelStore(tmp_path, "text-segmentation")
    kept = 0
    try:
        assert ready.wait(120), "the reviewer process did not start"
        go.set()
        passes = 0
        while reviewer.is_alive() or passes < 2:  # the batch labeller passes over the folder meanwhile
            passes += 1
            for name in names:
                try:
                    store.write_label(name, np.zeros((8, 8), bool))
                except ReviewedLabelError:
                    kept += 1
    finally:
        reviewer.join(120)
    assert reviewer.exitcode == 0
    assert kept > 0, "the two processes never overlapped: the race was not exercised"
    final = LabelStore(tmp_path, "text-segmentation")
    for name in names:
        assert final.status(name) == "reviewed", name
        assert final.read_label(name).all(), f"{name}: the reviewer's label was replaced by the model's"
