"""Annotation workspaces of the app (no server, no model: a stand-in predictor)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from demo.annotate import LABELS_FOLDER, Workspace
from upocr.labeling import ReviewedLabelError


def _images(folder, names, size=(24, 16)):
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (200, 200, 200)).save(path)


def _predict_text(rgb):
    mask = np.zeros(rgb.shape[:2], bool)
    mask[2:6, 3:9] = True
    return mask, None


def test_data_folder_resumes_and_keeps_reviewed_labels(tmp_path):
    data = tmp_path / "data"
    _images(data, ["a.png", "scans/b.jpg", "scans/c.png"])
    (data / "notes.txt").write_text("not an image")
    ws = Workspace.for_data_dir(data, "text-segmentation")
    assert ws.items == ["a.png", "scans/b.jpg", "scans/c.png"]
    assert ws.prelabel(_predict_text)["labelled"] == 3
    assert (data / LABELS_FOLDER / "text-segmentation" / "masks" / "scans" / "b.png").is_file()

    edited = np.zeros((16, 24), bool)
    edited[0, 0] = True
    ws.accept("scans/b.jpg", edited)
    with pytest.raises(ReviewedLabelError):
        ws.accept("scans/b.jpg", np.zeros((16, 24), bool))
    ws.accept("scans/b.jpg", edited | np.eye(16, 24, dtype=bool), overwrite=True)

    # reopening the folder (a new process) resumes: counts, next unreviewed, labels kept
    again = Workspace.for_data_dir(data, "text-segmentation")
    assert again.items == ws.items  # the label folder is not listed as images
    assert again.counts() == {"total": 3, "reviewed": 1, "labelled": 3, "failed": 0}
    assert again.first_unreviewed(1) == 2
    summary = again.prelabel(_predict_text, redo=True)
    assert summary["reviewed_kept"] == 1 and summary["labelled"] == 2
    assert again.label("scans/b.jpg")[0, 0] == 1


def test_review_goes_to_the_least_confident_label_next(tmp_path):
    """Pre-labelling records each image's confidence; "least confident" visits the model labels
    from the least to the most confident and skips those a person reviewed."""
    from upocr.tasks import TEXT_SEGMENTATION, get_task
    from upocr.tasks.segmentation import TextSegmentationResult

    data = tmp_path / "data"
    data.mkdir()
    names = ["a.png", "b.png", "c.png", "d.png"]
    for shade, name in enumerate(names):
        Image.new("RGB", (24, 16), (shade, 0, 0)).save(data / name)
    # a: sure; b: text barely over the threshold; c: a few doubtful pixels; d: sure, no text
    text = np.zeros((16, 24), bool)
    text[4:10, 3:20] = True
    probabilities = {0: np.where(text, 0.95, 0.01), 1: np.where(text, 0.45, 0.01),
                     2: np.where(text, 0.95, 0.01), 3: np.full((16, 24), 0.01)}
    probabilities[2][12:14, 3:10] = 0.35

    def predict(rgb):
        result = TextSegmentationResult(probabilities[int(rgb[0, 0, 0])].astype(np.float32), rgb, threshold=0.4)
        return get_task(TEXT_SEGMENTATION).propose({TEXT_SEGMENTATION: result})

    ws = Workspace.for_data_dir(data, TEXT_SEGMENTATION)
    ws.prelabel(predict)
    confidence = {name: ws.confidence(name) for name in names}
    assert confidence["d.png"] == 1.0 and confidence["a.png"] == pytest.approx(0.55 / 0.6, abs=1e-3)
    assert confidence["b.png"] == pytest.approx(0.05 / 0.6, abs=1e-3)
    assert confidence["b.png"] < confidence["c.png"] < confidence["a.png"]
    assert ws.least_confident_unreviewed(0) == 1  # b
    assert ws.least_confident_unreviewed(1) == 2  # from b: c, the next least confident
    ws.accept("b.png", text)
    assert ws.confidence("b.png") is None  # a person's label has no model confidence
    assert ws.least_confident_unreviewed(0) == 2
    for name in ("a.png", "c.png", "d.png"):
        ws.accept(name, text)
    assert ws.least_confident_unreviewed(0) is None


@pytest.mark.reliability
def test_prelabel_stops_with_a_message_while_upocr_label_runs_on_the_folder(tmp_path):
    import subprocess
    import sys

    from upocr.labeling import LabelRunBusyError

    data = tmp_path / "data"
    _images(data, ["a.png", "b.png"])
    ws = Workspace.for_data_dir(data, "text-segmentation")
    holder = subprocess.Popen(  # another process holds the folder's run lock, as upocr label does
        [sys.executable, "-c", "import sys, time\nfrom upocr.labeling import labelling_run\n"
         "with labelling_run(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)",
         str(ws.store.output_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LabelRunBusyError, match="being labelled by another run") as caught:
            ws.prelabel(_predict_text)
        assert str(tmp_path) not in str(caught.value)  # no server path in what the page shows
        assert ws.counts()["labelled"] == 0
    finally:
        holder.kill()
        holder.wait()
    assert ws.prelabel(_predict_text)["labelled"] == 2


def test_unreadable_image_is_recorded_as_failed(tmp_path):
    data = tmp_path / "data"
    _images(data, ["good.png"])
    (data / "bad.png").write_text("text, not pixels")
    ws = Workspace.for_data_dir(data, "text-segmentation")
    summary = ws.prelabel(_predict_text)
    assert summary == {"labelled": 1, "kept": 0, "reviewed_kept": 0, "failed": 1}
    assert ws.status("bad.png") == "failed"
    assert ws.counts()["failed"] == 1


def test_tampering_and_removal_labels(tmp_path):
    data = tmp_path / "data"
    _images(data, ["r.png"])
    labels = np.zeros((16, 24), np.uint8)
    labels[1:4, 1:4] = 1
    labels[8:12, 10:20] = 2
    ws = Workspace.for_data_dir(data, "tampered-text-detection")
    ws.prelabel(lambda rgb: (labels, None))
    assert set(np.unique(ws.label("r.png")).tolist()) == {0, 1, 2}

    removal = Workspace.for_data_dir(data, "text-removal")
    removal.prelabel(lambda rgb: (_predict_text(rgb)[0], rgb.copy()))
    with pytest.raises(ValueError):
        removal.accept("r.png", np.zeros((16, 24), bool))  # removal labels need the cleaned image
    removal.accept("r.png", np.zeros((16, 24), bool), cleaned=np.zeros((16, 24, 3), np.uint8))
    assert removal.counts()["reviewed"] == 1


def test_export_names_files_after_their_sources(tmp_path):
    import json
    import zipfile

    data = tmp_path / "data"
    _images(data, ["scans/page 1.jpg", "x.png"])
    ws = Workspace.for_data_dir(data, "text-segmentation")
    ws.prelabel(_predict_text)
    ws.accept("x.png", _predict_text(np.zeros((16, 24, 3), np.uint8))[0])
    manifest = ws.export(tmp_path / "out.zip", include_images=True)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        names = set(archive.namelist())
        coco = json.loads(archive.read("coco.json"))
    assert {"masks/scans/page 1.png", "masks/x.png", "labelme/scans/page 1.json", "images/scans/page 1.jpg"} <= names
    assert manifest["counts"]["reviewed"] == 1
    assert sorted(i["file_name"] for i in coco["images"]) == ["scans/page 1.jpg", "x.png"]


def _zip_of_images(path: Path, count: int) -> Path:
    import io as _io

    with zipfile.ZipFile(path, "w") as archive:
        for i in range(count):
            buffer = _io.BytesIO()
            Image.fromarray(np.full((6, 8, 3), i % 256, np.uint8)).save(buffer, format="PNG")
            archive.writestr(f"batch/{i:04d}.png", buffer.getvalue())
    return path


@pytest.mark.reliability
def test_workspaces_are_private_to_their_owner(tmp_path):
    """Two browsers uploading the same files get two workspaces; neither opens the other's."""
    from demo.annotate import ingest_uploads, new_owner_key
    from demo.core import UserInputError

    archive = _zip_of_images(tmp_path / "same.zip", 3)
    root = tmp_path / "workspaces"
    alice, bob = new_owner_key(), new_owner_key()
    a_id, _ = ingest_uploads([archive], root, owner=alice)
    b_id, _ = ingest_uploads([archive], root, owner=bob)
    assert a_id != b_id
    assert ingest_uploads([archive], root, owner=alice)[0] == a_id  # the owner resumes
    mine = Workspace.for_upload(root, a_id, "text-segmentation", owner=alice)
    mine.prelabel(_predict_text)
    assert Workspace.for_upload(root, b_id, "text-segmentation", owner=bob).counts()["labelled"] == 0
    for intruder in (bob, None, ""):
        with pytest.raises(UserInputError, match="No workspace"):
            Workspace.for_upload(root, a_id, "text-segmentation", owner=intruder)


@pytest.mark.reliability
def test_the_workspace_salt_is_one_value_under_racing_first_uses(tmp_path):
    """The first uploads to a fresh server race to create the salt that workspace ids hash
    with: every one of them must read the same complete value, or one upload gets an id
    that nobody can find again."""
    from concurrent.futures import ThreadPoolExecutor

    from demo.annotate import _salt

    for trial in range(20):
        root = tmp_path / f"root{trial}"
        with ThreadPoolExecutor(8) as pool:
            salts = set(pool.map(lambda _: _salt(root), range(8)))
        assert len(salts) == 1 and len(salts.pop()) == 32
        assert [p.name for p in root.iterdir()] == [".salt"]


@pytest.mark.reliability
def test_identical_uploads_at_once_all_see_the_whole_workspace(tmp_path):
    """Racing uploads of one zip by one owner: every upload ends with every image, and no staging
    folder is left behind."""
    from concurrent.futures import ThreadPoolExecutor

    from demo.annotate import ingest_uploads, new_owner_key

    archive = _zip_of_images(tmp_path / "big.zip", 300)
    root = tmp_path / "workspaces"
    owner = new_owner_key()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: ingest_uploads([archive], root, owner=owner), range(4)))
    idents = {ident for ident, _ in results}
    assert len(idents) == 1
    ws_root = root / idents.pop()
    assert len(list((ws_root / "images").rglob("*.png"))) == 300
    assert not [p for p in ws_root.iterdir() if p.name.startswith(".incoming")]


@pytest.mark.reliability
def test_an_archive_claiming_too_much_is_refused_before_anything_is_written(tmp_path):
    """A zip bomb (30 entries of 1 MB of zeros, 30 KB compressed) against a 16 MB upload limit:
    refused from the sizes its entries claim, with nothing written."""
    from demo.annotate import UploadLimits, UserInputError, safe_extract_zip

    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(30):
            zf.writestr(f"page {i:02d}.png", b"\0" * (1 << 20))
    assert archive.stat().st_size < 100_000
    dest = tmp_path / "staging"
    dest.mkdir()
    limits = UploadLimits(max_total_bytes=16 << 20)
    with pytest.raises(UserInputError, match="add up to 30 MB, more than the 16 MB"):
        safe_extract_zip(archive, dest, limits, [limits.max_total_bytes])
    assert list(dest.rglob("*")) == []


@pytest.mark.reliability
def test_uploads_beyond_the_concurrent_limit_wait_then_get_a_message(tmp_path, monkeypatch):
    import threading

    import demo.annotate as annotate

    archive = _zip_of_images(tmp_path / "few.zip", 3)
    slots = threading.BoundedSemaphore(1)
    monkeypatch.setattr(annotate, "_INGESTING", slots)
    limits = annotate.UploadLimits(busy_wait_seconds=0.2)
    slots.acquire()  # another upload is being copied
    try:
        with pytest.raises(annotate.UserInputError, match="busy copying other uploads"):
            annotate.ingest_uploads([archive], tmp_path / "ws", limits, owner=annotate.new_owner_key())
    finally:
        slots.release()
    ident, _ = annotate.ingest_uploads([archive], tmp_path / "ws", limits, owner=annotate.new_owner_key())
    assert len(list((tmp_path / "ws" / ident / "images").rglob("*.png"))) == 3


@pytest.mark.reliability
def test_a_signed_in_user_owns_their_workspaces_in_any_browser(tmp_path):
    """With Hugging Face sign-in (a Space with hf_oauth), uploads belong to the user: the same
    user in another browser reopens them, another user (or a browser key) cannot, and the key
    cannot be made from the user name without the server's secret."""
    import gradio as gr

    from demo.annotate import user_owner_key
    from demo.context import StudioContext
    from demo.handlers import AnnotateHandlers

    ctx = StudioContext.create(None, studio_dir=tmp_path / "studio", data_dir=None, max_file_bytes=1 << 20,
                               max_pixels=None, load_error=None)
    handlers = AnnotateHandlers(ctx)
    alice = gr.OAuthProfile({"preferred_username": "alice", "name": "Alice", "profile": "", "picture": ""})
    bob = gr.OAuthProfile({"preferred_username": "bob", "name": "Bob", "profile": "", "picture": ""})
    browser_one, browser_two = {"owner": "1" * 32}, {"owner": "2" * 32}
    assert handlers.owner_of(browser_one, alice) == handlers.owner_of(browser_two, alice)
    assert handlers.owner_of(browser_one, alice) != handlers.owner_of(browser_one, bob)
    assert handlers.owner_of(browser_one, None) == "1" * 32  # not signed in: the browser's key
    key = user_owner_key(ctx.paths.workspaces, "alice")
    assert "alice" not in key and user_owner_key(tmp_path / "other-server", "alice") != key

    archive = _zip_of_images(tmp_path / "pages.zip", 2)
    state = handlers.upload([str(archive)], "Text segmentation", browser_one, alice)[2]
    ident = state["source"]
    # Alice in another browser: the tab reopens her workspace from what that browser remembers.
    reopened = handlers.restore({"source": ident, "task": "text-segmentation", "owner": "2" * 32},
                                "Text segmentation", None, alice)
    assert reopened[2]["source"] == ident
    # Bob, or the first browser without signing in, cannot open it.
    for profile, remembered in ((bob, browser_two), (None, browser_one)):
        skipped = handlers.restore({**remembered, "source": ident, "task": "text-segmentation"},
                                   "Text segmentation", None, profile)
        assert all(isinstance(v, dict) and v.get("__type__") == "update" for v in skipped)


@pytest.mark.reliability
def test_accept_pressed_before_the_next_image_reaches_the_editor_saves_nothing(tmp_path):
    """Accept right after Next: the browser still shows image 0 and its mask while the state
    already names image 1. The label of one image is never saved as another's, whatever the
    timing; once the editor holds image 1, the same press saves image 1's mask."""
    from demo import core
    from demo.context import StudioContext
    from demo.handlers import AnnotateHandlers

    ctx = StudioContext.create(None, studio_dir=tmp_path / "studio", data_dir=None, max_file_bytes=1 << 20,
                               max_pixels=None, load_error=None)
    handlers = AnnotateHandlers(ctx)
    archive = tmp_path / "pages.zip"
    with zipfile.ZipFile(archive, "w") as zipped:  # two pages of the same size, dark and light
        for i, level in enumerate((40, 200)):
            buffer = io.BytesIO()
            Image.fromarray(np.full((6, 8, 3), level, np.uint8)).save(buffer, format="PNG")
            zipped.writestr(f"batch/{i:04d}.png", buffer.getvalue())
    state = handlers.upload([str(archive)], "Text segmentation", {"owner": "1" * 32}, None)[2]
    ws = handlers.workspace_for(state)
    first, second = ws.items[0], ws.items[1]
    painted = np.zeros((6, 8), bool)
    painted[1:4, 2:6] = True
    on_screen = core.editor_value(ws.read_image(first), painted, "text-segmentation")
    moved = handlers.next(state)[2]
    assert moved["index"] == 1
    with pytest.raises(core.UserInputError, match="still showed the previous image"):
        handlers.accept(moved, on_screen, False)
    assert not ws.store.is_reviewed(second) and not ws.store.is_reviewed(first)
    loaded = core.editor_value(ws.read_image(second), painted, "text-segmentation")
    handlers.accept(moved, loaded, False)
    assert ws.store.is_reviewed(second) and ((ws.store.read_label(second) > 0) == painted).all()
