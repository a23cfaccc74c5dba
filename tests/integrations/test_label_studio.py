"""``upocr label --format labelstudio`` against a real Label Studio server (see conftest.py):
the project is created and the tasks imported through the Label Studio SDK, and the
pre-annotations Label Studio gives back decode to exactly the PNG masks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from _app_support import EXAMPLES
from upocr.cli import main as cli_main

pytestmark = pytest.mark.slow


def _decode(result: dict) -> np.ndarray:
    """What Label Studio holds for a brush region, as a boolean mask (the SDK's own decoder)."""
    from label_studio_sdk.converter.brush import decode_rle

    height, width = result["original_height"], result["original_width"]
    return decode_rle(result["value"]["rle"]).reshape(height, width, 4)[:, :, 3] > 0


@pytest.mark.parametrize("task", ["segmentation", "tampering"])
def test_label_studio_imports_the_pre_annotations_as_the_png_masks(label_studio, micro_model_dir, tmp_path, task):
    from label_studio_sdk import LabelStudio

    folder = label_studio["document_root"] / f"pages-{task}"
    (folder / "scans").mkdir(parents=True)
    shutil.copy(EXAMPLES / "receipt.png", folder / "receipt.png")
    shutil.copy(EXAMPLES / "document.png", folder / "scans" / "page 1.png")
    out = tmp_path / "labels"
    assert cli_main(["label", "--model", str(micro_model_dir), "--task", task, "--threshold", "0.1",
                     "--format", "png,labelstudio", "--ls-document-root", str(label_studio["document_root"]),
                     "--no-progress", str(folder), str(out)]) == 0
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    config = (out / "labelstudio" / "config.xml").read_text()

    client = LabelStudio(base_url=label_studio["url"], api_key=label_studio["token"])
    project = client.projects.create(title=f"UPOCR {task}", label_config=config)
    # Label Studio serves local files that lie under a local storage of the project (not synced:
    # the tasks come from the import)
    client.import_storage.local.create(project=project.id, path=str(folder), title="images")
    client.projects.import_tasks(id=project.id, request=tasks)
    imported = list(client.tasks.list(project=project.id, fields="all"))
    assert len(imported) == 2

    from upocr.labeling import LabelStore

    store = LabelStore(out, task)
    names = {c.name: c.value for c in store.classes if c.value}
    regions = 0
    for item in imported:
        rel = item.data["upocr_file"]
        labels = store.read_class_map(rel)
        # the image URL is served by Label Studio (local files) and is the source image
        image = label_studio["session"].get(label_studio["url"] + item.data["image"], timeout=60)
        assert image.status_code == 200 and image.content == (folder / rel).read_bytes()
        (prediction,) = item.predictions
        prediction = prediction if isinstance(prediction, dict) else prediction.dict()
        assert prediction["model_version"] == str(micro_model_dir)
        seen = set()
        for result in prediction["result"]:
            (name,) = result["value"]["brushlabels"]
            assert (_decode(result) == (labels == names[name])).all(), f"{rel}: {name} differs from the PNG"
            seen.add(names[name])
            regions += 1
        assert seen == {int(v) for v in np.unique(labels) if v}  # every class present, none extra
    assert regions >= 2


def test_the_labelling_config_is_valid_for_label_studio(label_studio):
    from label_studio_sdk import LabelStudio

    from upocr.labeling.labelstudio import labeling_config
    from upocr.tasks import get_task

    client = LabelStudio(base_url=label_studio["url"], api_key=label_studio["token"])
    for name in ("text-segmentation", "tampered-text-detection"):
        task = get_task(name)
        project = client.projects.create(title=name, label_config=labeling_config(task.classes, task.colours))
        assert project.id and all(c.name in project.label_config for c in task.classes if c.value)
    Image.new("RGB", (4, 4)).save(label_studio["document_root"] / "unused.png")  # the folder is writable


def test_label_studio_fetches_predictions_from_the_ml_backend(label_studio, micro_model_dir, tmp_path):
    """`upocr serve label-studio` connected to a project: Label Studio asks it for the
    predictions of a new task and stores a brush mask that is the pipeline's own; an image that
    cannot be read is answered with an error naming it."""
    import subprocess
    import sys
    import time

    import requests
    from label_studio_sdk import LabelStudio

    from _app_support import free_port
    from upocr.labeling.labelstudio import labeling_config
    from upocr.pipeline import UPOCRPipeline
    from upocr.tasks import TEXT_SEGMENTATION, get_task

    folder = label_studio["document_root"] / "backend"
    folder.mkdir()
    shutil.copy(EXAMPLES / "receipt.png", folder / "receipt.png")
    (folder / "notes.png").write_text("not an image")
    port = free_port()
    backend_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "upocr", "serve", "label-studio", "--model", str(micro_model_dir),
                               "--port", str(port), "--threshold", "0.1", "--label-studio-url", label_studio["url"],
                               "--label-studio-token", label_studio["token"]],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode(errors="replace")
            try:
                if requests.get(backend_url + "/health", timeout=5).json()["status"] == "UP":
                    break
            except (requests.RequestException, ValueError):
                pass
            assert time.monotonic() < deadline, "the backend did not start"
            time.sleep(0.5)

        spec = get_task(TEXT_SEGMENTATION)
        client = LabelStudio(base_url=label_studio["url"], api_key=label_studio["token"])
        project = client.projects.create(title="UPOCR backend", label_config=labeling_config(spec.classes, spec.colours))
        client.import_storage.local.create(project=project.id, path=str(folder), title="images")
        rel = f"{folder.name}/receipt.png"
        client.projects.import_tasks(id=project.id, request=[{"data": {"image": f"/data/local-files/?d={rel}"}}])
        client.ml.create(project=project.id, url=backend_url, title="UPOCR", is_interactive=False)
        client.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []})
        deadline = time.monotonic() + 120
        while True:
            (item,) = list(client.tasks.list(project=project.id, fields="all"))
            if item.predictions:
                break
            assert time.monotonic() < deadline, "Label Studio got no prediction from the backend"
            time.sleep(1)
        prediction = item.predictions[0]
        prediction = prediction if isinstance(prediction, dict) else prediction.dict()
        (region,) = prediction["result"]
        assert region["value"]["brushlabels"] == ["text"] and region["from_name"] == "label"
        pipeline = UPOCRPipeline.from_pretrained(str(micro_model_dir))
        expected = pipeline(str(folder / "receipt.png"), TEXT_SEGMENTATION, threshold=0.1).mask
        assert (_decode(region) == expected).all()

        # several requests at once: each answered, all the same (one model, taking turns)
        from concurrent.futures import ThreadPoolExecutor

        request = {"tasks": [{"id": 1, "data": {"image": f"/data/local-files/?d={rel}"}}],
                   "label_config": labeling_config(spec.classes)}
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: requests.post(backend_url + "/predict", json=request, timeout=120),
                                    range(4)))
        assert all(a.status_code == 200 for a in answers)
        rles = [a.json()["results"][0]["result"][0]["value"]["rle"] for a in answers]
        assert all(r == rles[0] for r in rles) and (_decode(answers[0].json()["results"][0]["result"][0]) == expected).all()

        bad = requests.post(backend_url + "/predict", json={
            "tasks": [{"id": 7, "data": {"image": f"/data/local-files/?d={folder.name}/notes.png"}}],
            "label_config": labeling_config(spec.classes)}, timeout=60)
        assert bad.status_code == 422 and "notes.png" in bad.json()["error"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_labelling_page_shows_the_brush_pre_annotation(label_studio, tmp_path):
    """Open the imported task in Label Studio's labelling page (headless Chromium): the
    prediction is loaded as a brush region with its score; the screenshot is kept as
    test-artifacts/label-studio-pre-annotation.png."""
    import os
    import time
    from pathlib import Path

    from label_studio_sdk import LabelStudio
    from playwright.sync_api import sync_playwright

    from _app_support import ARTIFACTS

    folder = label_studio["document_root"] / "page-shot"
    folder.mkdir()
    shutil.copy(EXAMPLES / "receipt.png", folder / "receipt.png")
    out = tmp_path / "labels"
    # the bundled default weights, so that the screenshot shows a real pre-annotation
    assert cli_main(["label", "--task", "segmentation", "--format", "png,labelstudio",
                     "--ls-document-root", str(label_studio["document_root"]), "--no-progress", str(folder),
                     str(out)]) == 0
    (task,) = json.loads((out / "labelstudio" / "tasks.json").read_text())
    client = LabelStudio(base_url=label_studio["url"], api_key=label_studio["token"])
    project = client.projects.create(title="UPOCR page", label_config=(out / "labelstudio" / "config.xml").read_text())
    client.import_storage.local.create(project=project.id, path=str(folder), title="images")
    client.projects.import_tasks(id=project.id, request=[task])
    (item,) = list(client.tasks.list(project=project.id))

    chromium = os.environ.get("UPOCR_CHROMIUM", "/usr/bin/chromium")
    assert Path(chromium).exists(), f"no chromium at {chromium}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(label_studio["url"] + "/user/login/")
            page.fill("input[name=email]", label_studio["email"])
            page.fill("input[name=password]", label_studio["password"])
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
            page.goto(f"{label_studio['url']}/projects/{project.id}/data?task={item.id}")
            score = f"{task['predictions'][0]['score']:.2f}"
            page.get_by_text("Regions").first.wait_for(timeout=120_000)
            page.get_by_text(score, exact=True).first.wait_for(timeout=120_000)  # the region's score
            time.sleep(2)  # the brush layer is drawn on a canvas after the region list
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "label-studio-pre-annotation.png"))
        finally:
            browser.close()
