"""The mask editor never saves a wrong mask, for any sequence of images (headless Chromium).

Images of different sizes and shapes (wide, small, tall, large) one after another, in the
Segmentation tab and in Annotate (with navigation in every direction and a reload): on each one a
brush stroke and an eraser stroke at known places, then a save. The saved mask is checked pixel for
pixel: the model's mask everywhere outside the two strokes, painted along the brush stroke, cleared
along the eraser stroke. A layer drawn shifted or scaled, or strokes that never reached the label,
fail these checks at once. Screenshots of every step go to test-artifacts/editor-*.png.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _app_support import EXAMPLES, load_pipeline
from test_app_browser import (  # noqa: F401  (fixtures)
    _wait_status, browser, href, mask_at, open_tab, page, server, shot, upload, wait_idle, wait_layer,
    wait_new_file,
)

pytestmark = pytest.mark.browser

#: (width, height): wide, small, tall, large; each differs from the one before. (A tiny image right
#: after a tall one can leave Gradio 6.31's editor "processing" forever: an open bug, not tested.)
SIZES = [(1602, 682), (720, 477), (400, 900), (1800, 1300)]
#: Image pixels around a stroke's line that its brush may cover (the editor's brush is about 50
#: image pixels wide whatever the zoom), plus a few screen pixels of rounding.
REACH = 32


def _images(folder: Path, sizes=SIZES) -> list[Path]:
    source = Image.open(EXAMPLES / "receipt.png").convert("RGB")
    paths = []
    for i, (w, h) in enumerate(sizes):
        path = folder / f"{i}-{w}x{h}.png"
        source.resize((w, h), Image.BILINEAR).save(path)
        paths.append(path)
    return paths


def _zoom(page, editor: str) -> float:
    text = page.locator(f"#{editor}").get_by_text(re.compile(r"^\d+%$")).first.inner_text()
    return int(text[:-1]) / 100


def _saved_or_refused(page, old: str | None, timeout_s: float = 60) -> str | None:
    """After a save click: the new file's URL, or None when the app refused with its message."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        url = href(page, "#seg-edited-mask")
        if url and url != old:
            return url
        if any("nothing was saved" in text for text in page.locator(".toast-body").all_inner_texts()):
            return None
        page.wait_for_timeout(200)
    raise AssertionError("the save neither produced a file nor a message")


def stroke(page, editor: str, tool: str, size: tuple[int, int], fy: float, fx: float = 0.25) -> dict:
    """Drag ``tool`` horizontally across the image shown in ``editor``, at ``fy`` (a fraction of
    the height from the centre) from ``-fx`` to ``+fx`` of its width. Returns where the stroke
    went and how far its brush can reach, in image pixels."""
    button = page.locator(f"#{editor} button[aria-label='{tool}']").first
    if "highlight" not in (button.get_attribute("class") or ""):
        button.click(force=True)
    canvas = page.locator(f"#{editor} canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    scale = _zoom(page, editor)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    y = cy + fy * size[1] * scale
    half = fx * size[0] * scale
    page.mouse.move(cx - half, y)
    page.mouse.down()
    page.mouse.move(cx + half, y, steps=8)
    page.mouse.up()
    reach = REACH + 3 / scale
    return {"y": size[1] / 2 + fy * size[1], "x0": size[0] * (0.5 - fx), "x1": size[0] * (0.5 + fx), "reach": reach}


def _line_shows(page, editor: str, size: tuple[int, int], fy: float, pink: bool, fx: float = 0.25,
                timeout_s: float = 3) -> bool:
    """Whether the canvas shows the stroke along ``fy`` (pink for the brush, not pink for the
    eraser), as the user would see it, within ``timeout_s``."""
    import time

    canvas = page.locator(f"#{editor} canvas").first
    deadline = time.monotonic() + timeout_s
    while True:
        box, scale = canvas.bounding_box(), _zoom(page, editor)
        pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
        ratio = pixels.shape[1] / box["width"]
        y = int(round((box["height"] / 2 + fy * size[1] * scale) * ratio))
        half = 0.8 * fx * size[0] * scale * ratio
        xs = np.arange(int(pixels.shape[1] / 2 - half), int(pixels.shape[1] / 2 + half))
        row = pixels[y, xs]
        is_pink = (row[:, 0] > 170) & (row[:, 0] - row[:, 1] > 60) & (row[:, 2] - row[:, 1] > 10)
        if (is_pink.mean() > 0.9) if pink else (is_pink.mean() < 0.1):
            return True
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(200)


def _progress_over(page, editor: str) -> bool:
    """Whether an event's progress overlay is up over the editor (it would take the strokes)."""
    return page.evaluate(
        """(sel) => [...document.querySelectorAll(sel + ' [data-testid="status-tracker"]')]
                     .some((t) => !t.classList.contains('hide') && t.offsetParent !== null)""", f"#{editor}")


def _settle(page) -> None:
    """Gradio's editor hands the last stroke to the page a moment after it is drawn; a person
    pauses about as long before saving."""
    page.wait_for_timeout(1500)


def painted(page, editor: str, tool: str, size: tuple[int, int], fy: float) -> dict:
    """A stroke the user sees on the canvas: if the editor dropped it (it ignores input while it
    is still busy with the new layer), the user paints it again, as the test does once."""
    line = stroke(page, editor, tool, size, fy)
    if not _line_shows(page, editor, size, fy, pink=tool == "Brush"):
        line = stroke(page, editor, tool, size, fy)
    return line


def footprint(shape: tuple[int, int], line: dict) -> np.ndarray:
    """The pixels a stroke along ``line`` can have touched."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    r = line["reach"]
    return (np.abs(rows - line["y"]) <= r) & (cols >= line["x0"] - r) & (cols <= line["x1"] + r)


def check_edit(name: str, model: np.ndarray, saved: np.ndarray, brush: dict, eraser: dict) -> None:
    """``saved`` is ``model`` plus the brush stroke minus the eraser stroke, exactly."""
    assert saved.shape == model.shape, f"{name}: saved {saved.shape[::-1]} for an image of {model.shape[::-1]}"
    painted, erased = footprint(model.shape, brush), footprint(model.shape, eraser)
    outside = ~(painted | erased)
    changed = int((saved != model)[outside].sum())
    assert changed == 0, f"{name}: {changed} pixels changed where nobody painted (the layer is out of place)"
    added, removed = saved & ~model, model & ~saved
    assert added[painted].sum() > 0 and not removed[painted & ~erased].any(), f"{name}: the brush stroke is missing"
    assert not added[erased & ~painted].any(), f"{name}: the eraser added pixels"
    line = int(round(eraser["y"]))
    x0, x1 = int(eraser["x0"]) + 2, int(eraser["x1"]) - 2
    assert not saved[line, x0:x1].any(), f"{name}: the eraser's line is not clear"
    line = int(round(brush["y"]))
    assert saved[line, int(brush["x0"]) + 2:int(brush["x1"]) - 2].all(), f"{name}: the brush's line is not painted"


def test_segmentation_editor_saves_exact_masks_for_a_sequence_of_sizes(page, tmp_path):
    open_tab(page, "Text segmentation")
    paths = _images(tmp_path)
    mask_url = edited_url = None
    for i, (path, size) in enumerate(zip(paths, SIZES)):
        upload(page, "seg", path)
        # the previous image's results are gone as soon as the new one arrives
        page.wait_for_function("() => !document.querySelector('#seg-mask-file a[href]')")
        assert href(page, "#seg-edited-mask") is None
        page.click("#seg-run")
        mask_url = wait_new_file(page, "#seg-mask-file", mask_url)
        model = mask_at(page, mask_url)
        assert model.shape == size[::-1] and 0 < model.mean() < 1
        assert wait_layer(page, "seg-editor"), f"{path.name}: the editor never showed the label layer"
        assert not _progress_over(page, "seg-editor"), "a progress overlay covers the editor's canvas"
        brush = painted(page, "seg-editor", "Brush", size, -0.2)
        eraser = painted(page, "seg-editor", "Erase", size, +0.2)
        _settle(page)
        page.click("#seg-save-mask")
        saved = _saved_or_refused(page, edited_url)
        shot(page, f"editor-seg-{i}-{size[0]}x{size[1]}", "#seg-editor")
        assert saved is not None, f"{path.name}: the save was refused"
        edited_url = saved
        check_edit(path.name, model, mask_at(page, saved), brush, eraser)


def _current(page) -> str:
    return page.locator("#ann-current code").inner_text()


def _edit_and_accept(page, name: str, size: tuple[int, int], reviewed: int, edits: dict, step: str) -> None:
    """Paint and erase on the image the Annotate tab shows, accept it, remember the strokes."""
    assert _current(page) == name
    assert wait_layer(page, "ann-editor"), f"{name}: the editor never showed the label layer"
    assert not _progress_over(page, "ann-editor"), "a progress overlay covers the editor's canvas"
    brush = painted(page, "ann-editor", "Brush", size, -0.2)
    eraser = painted(page, "ann-editor", "Erase", size, +0.2)
    _settle(page)
    shot(page, f"editor-ann-{step}-{size[0]}x{size[1]}", "#ann-editor")
    page.click("#ann-accept")
    _wait_status(page, f"Reviewed {reviewed} / {len(SIZES)}")
    edits[name] = (brush, eraser)


def _go(page, button: str, expected: str) -> None:
    page.click(f"#ann-{button}")
    page.wait_for_function("(n) => { const c = document.querySelector('#ann-current code');"
                           " return c && c.innerText === n; }", arg=expected)
    wait_idle(page)
    assert wait_layer(page, "ann-editor"), f"{expected}: the editor never showed the label layer"


def test_annotate_editor_saves_exact_labels_across_navigation_and_reload(page, server, tmp_path):
    paths = _images(tmp_path)
    names = [p.name for p in paths]
    size_of = dict(zip(names, SIZES))
    pipeline = load_pipeline(server["root"] / "model")
    model = {p.name: pipeline(str(p), "text-segmentation").mask for p in paths}
    open_tab(page, "Annotate")
    page.locator("#ann-files input[type=file]").set_input_files([str(p) for p in paths])
    _wait_status(page, f"Reviewed 0 / {len(paths)}")
    page.click("#ann-prelabel")
    _wait_status(page, f"labelled {len(paths)}")
    assert _current(page) == names[0]
    edits: dict[str, tuple[dict, dict]] = {}

    # next: wide -> small
    _go(page, "next", names[1])
    _edit_and_accept(page, names[1], size_of[names[1]], 1, edits, "1-after-next")
    # accepting moves on to the next unreviewed image (the tall one); back twice: tall -> small -> wide
    assert _current(page) == names[2]
    _go(page, "prev", names[1])
    _go(page, "prev", names[0])
    _edit_and_accept(page, names[0], size_of[names[0]], 2, edits, "2-after-previous")
    # the least confident of the two left, then the other one after a reload
    page.click("#ann-least-confident")
    page.wait_for_timeout(500)
    wait_idle(page)
    assert wait_layer(page, "ann-editor")
    first = _current(page)
    assert first in (names[2], names[3])
    _edit_and_accept(page, first, size_of[first], 3, edits, "3-least-confident")
    page.reload()
    page.wait_for_selector("#rm-run")
    open_tab(page, "Annotate")
    _wait_status(page, f"Reviewed 3 / {len(paths)}")
    last = _current(page)
    assert last in (names[2], names[3]) and last != first
    _edit_and_accept(page, last, size_of[last], 4, edits, "4-after-reload")

    # what was stored (the files the exports pack) is exactly the model's label plus the brush
    # minus the eraser, at each image's own size
    ident = page.locator("#ann-workspace input, #ann-workspace textarea").first.input_value()
    masks = server["root"] / "studio" / "workspaces" / ident / "labels" / "text-segmentation" / "masks"
    for name in names:
        with Image.open(masks / name) as stored:
            saved = np.asarray(stored) > 0
        check_edit(name, model[name], saved, *edits[name])
