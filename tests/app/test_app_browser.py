"""End-to-end: the app in headless Chromium (Playwright), as a user clicks through it.

Run with ``pytest -m browser tests/app/test_app_browser.py``. Needs Debian's chromium at
/usr/bin/chromium (or $UPOCR_CHROMIUM). Screenshots of every step go to test-artifacts/.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import gradio  # noqa: F401  (a test dependency: requirements-dev.txt)
import playwright.sync_api as playwright_api

from _app_support import ARTIFACTS, EXAMPLES, launch, load_pipeline, open_png, save_tiny_model, values

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("UPOCR_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
TIMEOUT = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from demo import build_demo

    root = tmp_path_factory.mktemp("app-browser")
    pipeline = load_pipeline(save_tiny_model(root / "model"))
    demo = build_demo(pipeline, studio_dir=root / "studio")
    url = launch(demo)
    try:
        yield {"url": url, "root": root}
    finally:
        demo.close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install it (apt-get install chromium; `make test` does)")
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server["url"])
    page.wait_for_selector("#rm-run")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str, target: str | None = None, full: bool = False) -> None:
    """Save a screenshot (the viewport around ``target``, or the whole page: slower)."""
    ARTIFACTS.mkdir(exist_ok=True)
    if target:
        page.locator(target).first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def href(page, selector: str) -> str | None:
    link = page.locator(f"{selector} a[href]")
    return link.first.get_attribute("href") if link.count() else None


def wait_new_file(page, selector: str, old: str | None = None, timeout_ms: float = TIMEOUT) -> str:
    """Wait until the gr.File at ``selector`` links a file other than ``old``; its URL."""
    page.wait_for_function(
        """([sel, old]) => { const a = document.querySelector(sel + ' a[href]');
                             return a && a.href !== old; }""",
        arg=[selector, old or ""], timeout=timeout_ms,
    )
    return page.locator(f"{selector} a[href]").first.get_attribute("href")


def fetch(page, url: str) -> bytes:
    response = page.request.get(url)
    assert response.ok, f"{url}: HTTP {response.status}"
    return response.body()


def mask_at(page, url: str) -> np.ndarray:
    image = open_png(fetch(page, url))
    assert image.mode == "L" and values(image) <= {0, 255}
    return np.asarray(image) > 0


def same_mask(mask: np.ndarray, probability: np.ndarray, threshold: float) -> bool:
    """``mask`` is ``probability > threshold`` (the map came as a 16-bit PNG: pixels within its
    rounding of the threshold may go either way)."""
    certain = np.abs(probability - threshold) > 2e-5
    return bool((mask[certain] == (probability[certain] > threshold)).all())


def wait_mask(page, selector: str, probability: np.ndarray, threshold: float, timeout_s: float = 60) -> str:
    """Poll the gr.File at ``selector`` until it holds the mask at ``threshold`` (the events of a
    slider moved step by step arrive one after another); the URL of that mask."""
    import time

    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        url = href(page, selector)
        if url and url != seen:
            seen = url
            if same_mask(mask_at(page, url), probability, threshold):
                return url
        page.wait_for_timeout(200)
    raise AssertionError(f"{selector} never showed the expected mask")


def upload(page, prefix: str, path: Path) -> None:
    page.locator(f"#{prefix}-input input[type=file]").set_input_files(str(path))
    page.wait_for_selector(f"#{prefix}-input img")


def stroke(page, editor: str, tool: str, dy: float = 0.0, width: float = 0.6) -> None:
    """Drag across the middle of the editor's canvas with ``tool`` ("Brush" or "Erase")."""
    page.locator(f"#{editor} button[aria-label='{tool}']").first.click(force=True)
    canvas = page.locator(f"#{editor} canvas").first
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + dy
    half = box["width"] * width / 2
    page.mouse.move(cx - min(half, 80), cy)
    page.mouse.down()
    page.mouse.move(cx + min(half, 80), cy, steps=4)
    page.mouse.up()


def test_removal_tab_example_and_erase(page):
    shot(page, "01-start", full=True)
    open_tab(page, "Text removal")
    # an example (lazily cached on first use) fills the input and the outputs
    page.locator("#rm-examples img").last.click()
    url = wait_new_file(page, "#rm-file")
    removed = open_png(fetch(page, url))
    assert removed.mode == "RGB" and removed.size == Image.open(EXAMPLES / "street_sign.jpg").size
    page.wait_for_selector("#rm-slider img")
    shot(page, "02-removal-example", "#rm-slider")
    # erase only inside the (model's) mask shown in the editor, after painting more of it
    stroke(page, "rm-editor", "Brush")
    page.click("#rm-erase")
    erased_url = wait_new_file(page, "#rm-file", url)
    assert erased_url.endswith("street_sign-erased.png")
    erased = open_png(fetch(page, erased_url))
    assert erased.size == removed.size
    shot(page, "03-removal-erased", "#rm-editor")


def test_segmentation_threshold_and_editor(page):
    open_tab(page, "Text segmentation")
    upload(page, "seg", EXAMPLES / "receipt.png")
    page.click("#seg-run")
    first_url = wait_new_file(page, "#seg-mask-file")
    first = mask_at(page, first_url)
    probability = np.asarray(open_png(fetch(page, href(page, "#seg-prob-file")))).astype(np.float64) / 65535
    assert same_mask(first, probability, 0.4)
    overlay_before = page.locator("#seg-overlay img").first.get_attribute("src")
    shot(page, "04-segmentation", "#seg-overlay")
    assert 0.05 < first.mean() < 0.95

    # the threshold slider re-thresholds the kept probability map (keyboard on the range input)
    page.locator("#seg-threshold input[type=range]").focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    assert page.input_value("#seg-threshold input[type=number]") == "0.6"
    second_url = wait_mask(page, "#seg-mask-file", probability, 0.6)
    second = mask_at(page, second_url)
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#seg-overlay img'); return i && i.src !== old; }",
        arg=overlay_before,
    )
    assert second.sum() < first.sum(), "a higher threshold must give a smaller mask"
    assert not (second & ~first).any(), "a higher threshold only removes pixels"
    shot(page, "05-segmentation-threshold", "#seg-overlay")

    # opacity changes the overlay but not the mask
    overlay_mid = page.locator("#seg-overlay img").first.get_attribute("src")
    page.locator("#seg-opacity input[type=range]").focus()
    page.keyboard.press("End")
    page.wait_for_function(
        "(old) => { const i = document.querySelector('#seg-overlay img'); return i && i.src !== old; }",
        arg=overlay_mid,
    )
    assert (mask_at(page, href(page, "#seg-mask-file")) == second).all()

    # paint in the editor: the edited mask that downloads grows with the brush...
    assert wait_layer(page, "seg-editor")
    page.click("#seg-save-mask")
    saved_url = wait_new_file(page, "#seg-edited-mask")
    saved = mask_at(page, saved_url)
    assert (saved == second).all(), "the editor starts from the thresholded mask"
    stroke(page, "seg-editor", "Brush", dy=-20)
    page.click("#seg-save-mask")
    painted_url = wait_new_file(page, "#seg-edited-mask", saved_url)
    painted = mask_at(page, painted_url)
    assert painted.sum() > saved.sum() + 50 and not (saved & ~painted).any()
    # ...and shrinks with the eraser
    stroke(page, "seg-editor", "Erase", dy=25)
    page.click("#seg-save-mask")
    erased_url = wait_new_file(page, "#seg-edited-mask", painted_url)
    erased = mask_at(page, erased_url)
    assert erased.sum() < painted.sum() - 50 and not (erased & ~painted).any()
    shot(page, "06-segmentation-painted", "#seg-editor")

    # undo brings the erased pixels back
    page.locator("#seg-editor button[aria-label='Undo']").first.click()
    page.click("#seg-save-mask")
    undone = mask_at(page, wait_new_file(page, "#seg-edited-mask", erased_url))
    assert (undone == painted).all()

    # "Erase this" runs removal inside the edited mask only
    page.click("#seg-erase")
    erased_image = open_png(fetch(page, wait_new_file(page, "#seg-erase-file")))
    original = np.asarray(Image.open(EXAMPLES / "receipt.png").convert("RGB"))
    changed = (np.abs(np.asarray(erased_image).astype(int) - original).max(-1) > 0)
    assert changed.any() and not changed.all()
    from upocr.results import dilate_mask

    assert not (changed & ~dilate_mask(undone, 7)).any(), "pixels outside the dilated mask must be kept"
    shot(page, "07-segmentation-erase-this", "#seg-erase-slider")

    # a new image clears the previous one's results and puts the threshold back to its default
    upload(page, "seg", EXAMPLES / "street_sign.jpg")
    page.wait_for_function("() => !document.querySelector('#seg-mask-file a[href]')")
    assert page.input_value("#seg-threshold input[type=number]") == "0.4"
    assert href(page, "#seg-edited-mask") is None and href(page, "#seg-erase-file") is None
    assert not page.locator("#seg-overlay img").count()
    shot(page, "07b-segmentation-new-image", "#seg-threshold")


def test_tampering_and_all_tasks(page):
    open_tab(page, "Tampered text detection")
    upload(page, "tp", EXAMPLES / "receipt.png")
    page.click("#tp-run")
    page.wait_for_function("() => document.querySelectorAll('#tp-files a[href]').length >= 2")
    links = [a.get_attribute("href") for a in page.locator("#tp-files a[href]").all()]
    labels = open_png(fetch(page, next(u for u in links if "tamper-labels" in u)))
    assert labels.mode == "L" and values(labels) <= {0, 1, 2}
    legend = page.locator("#tp-annotated").inner_text()
    assert "real text" in legend and "tampered text" in legend
    page.wait_for_function("() => document.querySelectorAll('#tp-table tbody tr').length > 0")
    shot(page, "08-tampering", full=True)

    open_tab(page, "All tasks")
    upload(page, "all", EXAMPLES / "document.png")
    page.click("#all-run")
    page.wait_for_function("() => document.querySelectorAll('#all-files a[href]').length >= 4")
    page.wait_for_selector("#all-seg img")
    page.wait_for_selector("#all-slider img")
    shot(page, "09-all-tasks", full=True)


def test_corrupt_upload_shows_a_message(page, tmp_path):
    bad = tmp_path / "holiday.png"
    bad.write_text("not really a picture")
    open_tab(page, "Text segmentation")
    page.locator("#seg-input input[type=file]").set_input_files(str(bad))
    # the message comes with the upload, before any Run; the file name alone also appears in
    # the upload widget: wait for the message itself
    toast = page.get_by_text("not an image: this is a text file", exact=False).first
    toast.wait_for()
    assert "holiday.png" in toast.inner_text()
    assert "/tmp" not in toast.inner_text()  # no server paths in messages
    shot(page, "10-corrupt-upload")
    # an image beyond the app's pixel limit (a small file of 8000 x 6000 = 48 MP) is refused on arrival
    huge = tmp_path / "poster.png"
    Image.new("L", (8000, 6000), 255).save(huge)
    page.locator("#seg-input input[type=file]").set_input_files(str(huge))
    toast = page.get_by_text("image is too large", exact=False).first
    toast.wait_for()
    assert "poster.png" in toast.inner_text() and "8000 x 6000" in toast.inner_text()
    shot(page, "10-over-limit-upload")


def archive_open(data: bytes, name: str) -> Image.Image:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return Image.open(io.BytesIO(archive.read(name)))


def _status(page) -> str:
    return page.locator("#ann-status").inner_text()


def _wait_status(page, text: str, timeout_s: float = 90) -> None:
    """Wait for ``text`` in the annotation status, then for the event to finish (a click while an
    event of the same button is pending would be dropped). An error message the app shows instead
    fails at once, with its text."""
    import time

    deadline = time.monotonic() + timeout_s
    while text not in _status(page):
        errors = [t for t in page.locator(".toast-body.error").all_inner_texts() if t.strip()]
        assert not errors, f"waiting for {text!r}, the app said {errors}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout_s} s; status: {_status(page)}"
        page.wait_for_timeout(200)
    wait_idle(page)
    if page.locator("#ann-current").count() and "not labelled yet" not in _status(page):
        # an image with a label is shown: wait until the editor has the label too
        assert wait_layer(page, "ann-editor"), f"the editor never showed the label ({_status(page)})"


def wait_layer(page, editor: str, timeout_s: float = 10) -> bool:
    """Wait until the editor shows the label layer's colour (the test model's masks cover a good
    part of every image); False when it never does (the layer was drawn out of sight)."""
    import time

    wait_idle(page)
    canvas = page.locator(f"#{editor} canvas").first
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pixels = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)
        pink = (pixels[..., 0] > 170) & (pixels[..., 0] - pixels[..., 1] > 60) & (pixels[..., 2] - pixels[..., 1] > 10)
        if pink.mean() > 0.01:
            wait_idle(page)
            return True
        page.wait_for_timeout(200)
    return False


def wait_idle(page) -> None:
    page.wait_for_function(
        """() => [...document.querySelectorAll('[data-testid="status-tracker"]')]
                 .every((t) => t.classList.contains('hide') || t.offsetParent === null)"""
    )


def restaged(page, action, button: str = "#ann-accept") -> None:
    """Do ``action`` and wait until the editor it stages is filled again: ``button``, one of the
    buttons the staging locks, was disabled and is enabled again. The status changes before the
    editor is emptied, so waiting for the status alone can press a button in that moment."""
    page.evaluate("""(sel) => {
        const b = document.querySelector(sel);
        window.__upocrLocked = false;
        if (window.__upocrObserver) window.__upocrObserver.disconnect();
        window.__upocrObserver = new MutationObserver(() => { if (b.disabled) window.__upocrLocked = true; });
        window.__upocrObserver.observe(b, {attributes: true, attributeFilter: ['disabled']});
    }""", button)
    action()
    page.wait_for_function("(sel) => window.__upocrLocked && !document.querySelector(sel).disabled", arg=button)


def test_annotate_three_images_and_resume(page, server, tmp_path):
    images = []
    for i, name in enumerate(["street_sign.jpg", "document.png", "receipt.png"]):
        path = tmp_path / f"img{i} {name}"
        path.write_bytes((EXAMPLES / name).read_bytes())
        images.append(path)
    open_tab(page, "Annotate")
    page.locator("#ann-files input[type=file]").set_input_files([str(p) for p in images])
    _wait_status(page, "Reviewed 0 / 3")
    page.click("#ann-prelabel")
    _wait_status(page, "labelled 3")
    page.wait_for_selector("#ann-editor canvas")
    shot(page, "11-annotate-prelabelled", "#ann-status")

    # accept with the button, then with the keyboard shortcut (A); each moves to the next image
    restaged(page, lambda: page.click("#ann-accept"))
    _wait_status(page, "Reviewed 1 / 3")
    page.locator("#ann-status").click()  # focus on the page, not on a text field
    restaged(page, lambda: page.keyboard.press("a"))
    _wait_status(page, "Reviewed 2 / 3")
    shot(page, "12-annotate-two-accepted", "#ann-status")

    # a reviewed label is not replaced without confirmation
    restaged(page, lambda: page.keyboard.press("p"))  # back to the image accepted just before
    page.wait_for_function("() => document.querySelector('#ann-status').innerText.includes('(reviewed)')")
    page.click("#ann-accept")
    page.get_by_text("already reviewed", exact=False).first.wait_for()
    assert "Reviewed 2 / 3" in _status(page)

    # reload: the browser reopens its workspace and the progress is still there
    page.reload()
    page.wait_for_selector("#rm-run")
    open_tab(page, "Annotate")
    _wait_status(page, "Reviewed 2 / 3")
    shot(page, "13-annotate-after-reload", full=True)
    page.keyboard.press("u")  # next unreviewed
    page.wait_for_function("() => !document.querySelector('#ann-status').innerText.includes('(reviewed)')")
    current = page.locator("#ann-current").inner_text().split("(")[0]
    page.click("#ann-least-confident")  # the one model label left is the least confident one
    page.wait_for_selector("#ann-confidence")
    page.wait_for_timeout(500)
    wait_idle(page)
    assert wait_layer(page, "ann-editor")
    assert page.locator("#ann-current").inner_text().startswith(current)
    assert 0.0 <= float(page.locator("#ann-confidence").inner_text().split()[-1]) <= 1.0
    shot(page, "13b-annotate-least-confident", "#ann-status")
    stroke(page, "ann-editor", "Brush")
    page.click("#ann-accept")
    _wait_status(page, "Reviewed 3 / 3")

    # export: PNG masks named after the sources, COCO RLE, LabelMe, manifest
    page.click("#ann-export")
    data = fetch(page, wait_new_file(page, "#ann-zip"))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        coco = json.loads(archive.read("coco.json"))
    for path in images:
        assert f"masks/{path.stem}.png" in names
        assert f"labelme/{path.stem}.json" in names
    assert manifest["counts"]["reviewed"] == 3
    # the two images accepted unchanged keep exactly the model's pre-label (the editor kept the layer)
    pipeline = load_pipeline(server["root"] / "model")
    unchanged = 0
    for path in images:
        with archive_open(data, f"masks/{path.stem}.png") as stored:
            mask = np.asarray(stored) > 0
        unchanged += bool((mask == pipeline(str(path), "text-segmentation").mask).all())
    assert unchanged >= 2
    assert {img["file_name"] for img in coco["images"]} == {p.name for p in images}
    assert all(isinstance(a["segmentation"]["counts"], str) for a in coco["annotations"])
    shot(page, "14-annotate-exported", "#ann-zip")

    # uploading the same files again resumes the same workspace
    page.reload()
    page.wait_for_selector("#rm-run")
    open_tab(page, "Annotate")
    page.locator("#ann-files input[type=file]").set_input_files([str(p) for p in images])
    _wait_status(page, "Reviewed 3 / 3")
