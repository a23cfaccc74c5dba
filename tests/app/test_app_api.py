"""The app's public API, called as users do: the app launched on a free port, gradio_client.

A tiny random model is used: these tests check files, sizes, modes and values, not quality.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import gradio  # noqa: F401  (a test dependency: requirements-dev.txt)
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from _app_support import EXAMPLES, launch, load_pipeline, open_png, save_tiny_model, values

MAX_PIXELS = 400 * 400


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from demo import build_demo

    root = tmp_path_factory.mktemp("app-api")
    pipeline = load_pipeline(save_tiny_model(root / "model"))
    demo = build_demo(pipeline, studio_dir=root / "studio", max_file_size="300kb", max_pixels=MAX_PIXELS)
    url = launch(demo)
    try:
        yield {"url": url, "client": Client(url, verbose=False), "root": root, "demo": demo}
    finally:
        demo.close()


@pytest.fixture
def client(app):
    return app["client"]


@pytest.fixture
def grey_jpeg(tmp_path):
    """A greyscale JPEG of an odd size (the app must give back the input's size)."""
    rng = np.random.default_rng(1)
    path = tmp_path / "odd size.jpg"
    Image.fromarray(rng.integers(0, 255, (77, 131), dtype=np.uint8), "L").save(path)
    return path


def test_public_api_is_exactly_the_four_endpoints(client):
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == {"/remove_text", "/segment_text", "/detect_tampering", "/run_all"}


def test_remove_text_returns_rgb_png_of_input_size(client):
    source = EXAMPLES / "street_sign.jpg"
    out = open_png(client.predict(handle_file(str(source)), api_name="/remove_text"))
    assert out.mode == "RGB"
    assert out.size == Image.open(source).size


def test_remove_text_keeps_odd_sizes_and_grey_inputs(client, grey_jpeg):
    out = open_png(client.predict(handle_file(str(grey_jpeg)), api_name="/remove_text"))
    assert (out.mode, out.size) == ("RGB", (131, 77))


def test_segment_text_returns_binary_mask(client):
    source = EXAMPLES / "document.png"
    path = client.predict(handle_file(str(source)), api_name="/segment_text")
    mask = open_png(path)
    assert mask.mode == "L"
    assert mask.size == Image.open(source).size
    assert values(mask) <= {0, 255}
    assert values(mask) == {0, 255}, "the test model should give a mask that is neither empty nor full"
    assert path.endswith("document-text-mask.png")


def test_detect_tampering_returns_labels_and_overlay(client):
    source = EXAMPLES / "receipt.png"
    labels_path, overlay_path = client.predict(handle_file(str(source)), api_name="/detect_tampering")
    labels, overlay = open_png(labels_path), open_png(overlay_path)
    size = Image.open(source).size
    assert labels.mode == "L" and labels.size == size
    assert values(labels) <= {0, 1, 2}
    assert overlay.mode == "RGB" and overlay.size == size


def test_run_all_matches_the_single_task_endpoints(client):
    source = str(EXAMPLES / "receipt.png")
    removed, mask, labels, overlay = client.predict(handle_file(source), api_name="/run_all")
    size = Image.open(source).size
    assert open_png(removed).mode == "RGB" and open_png(removed).size == size
    assert values(open_png(mask)) <= {0, 255}
    assert values(open_png(labels)) <= {0, 1, 2}
    assert open_png(overlay).size == size
    single = np.asarray(open_png(client.predict(handle_file(source), api_name="/segment_text")))
    shared = np.asarray(open_png(mask))
    assert (single == shared).mean() > 0.99  # one encoder pass gives the same segmentation


def test_text_file_renamed_png_gives_a_clear_error(client, tmp_path):
    bad = tmp_path / "photo.png"
    bad.write_text("this is not an image, just some text\n")
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), api_name="/segment_text")
    message = str(info.value)
    assert "photo.png" in message and "not an image" in message
    assert "Traceback" not in message


def test_truncated_png_gives_a_clear_error(client, tmp_path):
    data = (EXAMPLES / "document.png").read_bytes()
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(AppError) as info:
        client.predict(handle_file(str(bad)), api_name="/remove_text")
    assert "cut.png" in str(info.value)
    assert "corrupt" in str(info.value) or "truncated" in str(info.value)


@pytest.mark.reliability
def test_too_many_pixels_gives_a_clear_error(client, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (500, 500), "white").save(big)  # small file, 250k pixels > limit
    with pytest.raises(AppError, match="too large"):
        client.predict(handle_file(str(big)), api_name="/detect_tampering")


@pytest.mark.reliability
def test_oversized_upload_is_refused(app, client, tmp_path):
    import httpx

    big = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (360, 360, 3), dtype=np.uint8)).save(big)  # ~390 KB > 300 KB
    assert big.stat().st_size > 300 * 1024
    with pytest.raises(ValueError, match="maximum file size"):
        client.predict(handle_file(str(big)), api_name="/remove_text")
    # the server refuses it too (for clients that do not check)
    response = httpx.post(app["url"] + "gradio_api/upload", files={"files": ("noise.png", big.read_bytes())})
    assert response.status_code == 413


@pytest.mark.reliability
def test_an_image_sent_inline_is_refused_and_every_read_obeys_the_size_limit(app, tmp_path):
    """An image sent inline as a data: URL never reaches a handler (the server refuses it), and
    every image a handler reads, whichever way it came, obeys the file-size limit."""
    import base64

    import httpx

    from demo import core

    small = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(small, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(small.getvalue()).decode()
    payload = {"data": [{"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}]}
    event = httpx.post(app["url"] + "gradio_api/call/segment_text", json=payload, timeout=60).json()["event_id"]
    answer = httpx.get(app["url"] + f"gradio_api/call/segment_text/{event}", timeout=120).text
    assert "event: error" in answer and "event: complete" not in answer

    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (360, 360, 3), dtype=np.uint8)).save(path)
    with pytest.raises(core.UserInputError, match=r"noise.png: \d+ KB is more than the 300 KB an image may have"):
        core.read_upload(str(path), max_bytes=300 * 1024)
    assert core.read_upload(str(path), max_bytes=1 << 20).shape == (360, 360, 3)


@pytest.mark.reliability
def test_files_outside_the_app_folders_are_not_served(app):
    import httpx

    for target in ("/etc/passwd", str(app["root"] / "model" / "config.json")):
        response = httpx.get(app["url"] + "gradio_api/file=" + target)
        assert response.status_code in (403, 404), target


def test_outputs_are_written_in_the_app_folder(app, client):
    client.predict(handle_file(str(EXAMPLES / "receipt.png")), api_name="/segment_text")
    outputs = app["root"] / "studio" / "outputs"
    assert any(outputs.rglob("receipt-text-mask.png"))


def test_app_without_weights_starts_and_explains(tmp_path):
    from demo import build_demo

    demo = build_demo(None, studio_dir=tmp_path / "studio")
    url = launch(demo)
    try:
        import httpx

        page = httpx.get(url).text
        assert "UPOCR Studio" in page
        client = Client(url, verbose=False)
        with pytest.raises(AppError) as info:
            client.predict(handle_file(str(EXAMPLES / "receipt.png")), api_name="/remove_text")
        message = str(info.value)
        assert "bundled default weights" in message and "missing" in message
        assert "--model" in message and "UPOCR_MODEL" in message
    finally:
        demo.close()


def test_editor_layer_round_trip():
    """The mask painted in the editor is the mask that downloads (both label kinds)."""
    from demo import core

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    mask = rng.random((20, 30)) > 0.5
    value = core.editor_value(rgb, mask, "text-segmentation")
    assert (core.label_from_editor(value, "text-segmentation", (20, 30)) == mask).all()
    labels = rng.integers(0, 3, (20, 30)).astype(np.uint8)
    value = core.editor_value(rgb, labels, "tampered-text-detection")
    assert (core.label_from_editor(value, "tampered-text-detection", (20, 30)) == labels).all()
    # painting and erasing: the model's mask plus the brush minus the eraser, pixel for pixel
    value = core.editor_value(rgb, mask, "text-segmentation")
    layer = value["layers"][0].copy()
    layer[2:5, 3:20] = (255, 0, 128, 255)  # a brush stroke
    layer[10:14, 8:25] = 0  # the eraser
    expected = mask.copy()
    expected[2:5, 3:20] = True
    expected[10:14, 8:25] = False
    assert (core.label_from_editor({**value, "layers": [layer]}, "text-segmentation", (20, 30)) == expected).all()


def _refused(value, shape, match):
    from demo import core

    with pytest.raises(core.UserInputError, match=match):
        core.label_from_editor(value, "text-segmentation", shape)


def test_editor_layers_out_of_place_are_refused_never_fitted():
    """A layer of another size, a layer drawn shifted or scaled (bare edges), a dropped layer,
    or another image in the editor: the save is refused with a message, nothing is guessed."""
    from demo import core

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    mask = rng.random((40, 60)) > 0.7
    value = core.editor_value(rgb, mask, "text-segmentation")
    layer = value["layers"][0]
    _refused({**value, "layers": [np.pad(layer, ((0, 1), (0, 1), (0, 0)))]}, (40, 60), "61x41 label for a 60x40")
    shifted = np.zeros_like(layer)
    shifted[7:, 12:] = layer[:-7, :-12]  # drawn right and down of its place
    _refused({**value, "layers": [shifted]}, (40, 60), "no longer aligned")
    scaled = np.zeros_like(layer)
    scaled[10:30, 15:45] = layer[::2, ::2]  # drawn at half size in the middle
    _refused({**value, "layers": [scaled]}, (40, 60), "no longer aligned")
    stroke_only = np.zeros_like(layer)
    stroke_only[20:24, 5:50] = (255, 0, 128, 255)  # the model's layer dropped, a new one painted
    _refused({**value, "layers": [stroke_only]}, (40, 60), "no longer aligned")
    _refused({**value, "layers": []}, (40, 60), "no label yet")
    _refused({**value, "background": rgb[:20]}, (40, 60), "another image")
    # an eraser along part of an edge is a correction, not a misplaced layer
    erased = layer.copy()
    erased[:3, :30] = 0
    assert not core.label_from_editor({**value, "layers": [erased]}, "text-segmentation", (40, 60))[:3, :30].any()


@pytest.mark.reliability
def test_zip_upload_is_extracted_safely(tmp_path):
    import stat
    import zipfile

    from demo.annotate import UploadLimits, ingest_uploads

    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("scans/page 1.png", png.getvalue())
        zf.writestr("../escape.png", png.getvalue())
        zf.writestr("/abs/root.png", png.getvalue())
        zf.writestr("notes.txt", "hello")
        zf.writestr("__MACOSX/scans/._page 1.png", b"junk")
        zf.writestr("huge.png", b"\x89PNG" + b"\0" * 5000)
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    root = tmp_path / "workspaces"
    ident, notes = ingest_uploads([archive], root, UploadLimits(max_file_bytes=4096), owner="a" * 32)
    images = root / ident / "images"
    found = sorted(p.relative_to(images).as_posix() for p in images.rglob("*") if p.is_file())
    assert found == ["scans/page 1.png"]
    assert not (tmp_path / "escape.png").exists() and not (root / "escape.png").exists()
    assert any("huge.png" in n for n in notes) and any("escape" in n for n in notes)
    assert any("link.png" in n and "not a regular file" in n for n in notes)
    # the same upload again reopens the same workspace
    assert ingest_uploads([archive], root, UploadLimits(max_file_bytes=4096), owner="a" * 32)[0] == ident


@pytest.mark.reliability
def test_one_large_image_at_a_time_and_small_ones_meanwhile(tmp_path, monkeypatch):
    """While a large image holds the model, a second large one gets a message at once (it does
    not take the other worker) and small images still run."""
    import demo.context as context
    from demo.context import StudioContext

    monkeypatch.setattr(context, "HEAVY_WORK_PIXELS", 100_000)  # "large": more than 0.1 megapixels

    pipeline = load_pipeline(save_tiny_model(tmp_path / "model"))
    ctx = StudioContext.create(pipeline, studio_dir=tmp_path / "studio", data_dir=None, max_file_bytes=1 << 20,
                               max_pixels=None, load_error=None)
    large = np.zeros((400, 300, 3), np.uint8)  # tiled: 0.12 megapixels of work
    small = np.zeros((120, 100, 3), np.uint8)
    assert context._HEAVY.acquire(blocking=False)  # a large image is being processed
    try:
        with pytest.raises(context.UserInputError, match="Another large image is being processed"):
            ctx.run_tasks(large, ["text-segmentation"])
        assert ctx.run_tasks(small, ["text-segmentation"])["text-segmentation"].mask.shape == (120, 100)
    finally:
        context._HEAVY.release()
    assert ctx.run_tasks(large, ["text-segmentation"])["text-segmentation"].mask.shape == (400, 300)


@pytest.mark.reliability
def test_the_load_benchmark_runs_the_app_with_concurrent_clients():
    """benchmarks/load_test.py, small: the app as its own process, 3 clients at once calling the
    four endpoints; every request answers (timings are the benchmark's business, not a verdict)."""
    import importlib.util

    from _app_support import REPO

    spec = importlib.util.spec_from_file_location("load_test", REPO / "benchmarks" / "load_test.py")
    load_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load_test)
    (result,) = load_test.run(3, 1, None, EXAMPLES / "receipt.png")
    assert result["requests"] == 12 and result["errors"] == 0, result.get("first_error")
    assert result["rss_mib"] > 0 and result["p95_s"] >= result["p50_s"] > 0


@pytest.mark.reliability
def test_request_bodies_are_bounded_at_every_route(app, client):
    """A body larger than the app's limit is refused with 413, whether it says its length or
    not, and the app goes on serving."""
    import httpx

    from demo.ui import MAX_REQUEST_BODY

    url = app["url"] + "gradio_api/queue/join"
    big = b'{"data": ["' + b"x" * (MAX_REQUEST_BODY + 1024) + b'"], "fn_index": 0, "session_hash": "abc"}'
    response = httpx.post(url, content=big, headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 413 and "larger than" in response.text

    def chunks():  # no Content-Length: the body is counted as it is read
        for start in range(0, len(big), 1 << 16):
            yield big[start : start + (1 << 16)]

    try:
        streamed = httpx.post(url, content=chunks(), headers={"content-type": "application/json"}, timeout=60)
        assert streamed.status_code >= 400
    except httpx.HTTPError:
        pass  # the server stopped reading: refused as well
    # the app still serves
    mask = open_png(client.predict(handle_file(str(EXAMPLES / "receipt.png")), api_name="/segment_text"))
    assert mask.size[0] > 0


def test_with_the_zerogpu_package_present_every_endpoint_answers(client):
    """`spaces` (ZeroGPU) is installed in the test environment: the model calls go through its
    decorator, which is harmless on a machine without ZeroGPU, and every endpoint answers."""
    import spaces

    import demo.context as context

    assert context._gpu is spaces.GPU
    image = handle_file(str(EXAMPLES / "receipt.png"))
    for endpoint in ("/remove_text", "/segment_text", "/detect_tampering", "/run_all"):
        outputs = client.predict(image, api_name=endpoint)
        files = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        assert files and all(open_png(f).size[0] > 0 for f in files if f), endpoint


def test_the_endpoints_are_mcp_tools_a_real_client_can_call(app):
    """The app is an MCP server: a client of the `mcp` package lists the four tools (described,
    with a described image parameter) and calls text segmentation on an image sent as base64;
    the mask it gets back is the pipeline's, pixel for pixel."""
    import asyncio
    import base64

    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    image_path = EXAMPLES / "receipt.png"

    async def session():
        async with streamablehttp_client(app["url"] + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as client:
                await client.initialize()
                tools = (await client.list_tools()).tools
                data = "data:image/png;base64," + base64.b64encode(image_path.read_bytes()).decode()
                return tools, await client.call_tool("segment_text", {"image_file": data})

    tools, answer = asyncio.run(session())
    by_name = {tool.name: tool for tool in tools}
    assert set(by_name) == {"remove_text", "segment_text", "detect_tampering", "run_all"}
    for tool in tools:
        parameter = tool.inputSchema["properties"]["image_file"]
        assert tool.description and parameter["type"] == "string" and "image" in parameter["description"]
        assert tool.inputSchema["required"] == ["image_file"]
    assert not answer.isError
    (image,) = [c for c in answer.content if c.type == "image"]
    assert image.mimeType == "image/png"
    mask = np.asarray(open_png(base64.b64decode(image.data)).convert("L")) > 127
    expected = load_pipeline(app["root"] / "model")(str(image_path), "text-segmentation").mask
    assert mask.shape == expected.shape and (mask == expected).all()


def test_only_the_staging_events_write_an_editor_and_they_show_no_progress():
    """Every editor value goes through its staging state (emptied first, then filled), and no
    event draws a progress overlay over an editor (a late one would take the user's strokes)."""
    import gradio as gr

    from demo import build_demo

    demo = build_demo(None)
    writers = [fn for fn in demo.fns.values() if any(isinstance(o, gr.ImageEditor) for o in fn.outputs)]
    assert len(writers) == 6  # blank and fill for each of the three editors
    assert {fn.name for fn in writers} == {"blank", "fill"}
    assert all(fn.show_progress == "hidden" for fn in writers)
    # whatever reads an editor (save, erase, accept) is a button that the blank step disables
    # and the fill step enables again: nothing can read an editor between the two
    for fn in demo.fns.values():
        for editor in (i for i in fn.inputs if isinstance(i, gr.ImageEditor)):
            steps = [w for w in writers if editor in w.outputs]
            for target_id, _event in fn.targets:
                assert all(any(o._id == target_id for o in w.outputs) for w in steps), (fn.name, target_id)
