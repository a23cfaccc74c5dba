"""A Label Studio ML backend: Label Studio asks it for predictions and shows them as brush
pre-annotations (``upocr serve label-studio``).

The protocol is Label Studio's: ``GET /health``, ``POST /setup`` (a project connects) and
``POST /predict`` (``{"tasks": [...], "label_config": ...}`` in, ``{"results": [one prediction
per task]}`` out). The task comes from the project's labelling configuration: a ``BrushLabels``
with ``tampered text`` runs tampered text detection, any other runs text segmentation (its
label values name the regions). Images are read from their task URL: a path on the Label Studio
server (``/data/local-files/...``, ``/data/upload/...``) is fetched from ``label_studio_url``
with ``token`` (a personal access token or a legacy token), an ``http(s)`` URL as it is.

The model is loaded once; requests are served by a thread pool and take turns on the model.
An image that cannot be fetched or read is answered with an HTTP error naming the image, which
Label Studio shows in its log and in the ML settings.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from ..io import ImageReadError, read_image
from ..tasks import TAMPERED_TEXT_DETECTION, TEXT_SEGMENTATION, get_task
from .labelstudio import brush_regions

__all__ = ["LabelStudioBackend", "create_app"]


class BackendError(Exception):
    """A request the backend cannot answer: ``status`` and a message naming what failed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _brush_tags(label_config: str) -> tuple[str, str, list[str]]:
    """``(from_name, to_name, label values)`` of the first BrushLabels in a labelling config."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as error:
        raise BackendError(400, f"the labelling configuration is not valid XML ({error})") from None
    for tag in root.iter():
        if tag.tag == "BrushLabels":
            values = [label.get("value", "") for label in tag.iter("Label")]
            return tag.get("name", "label"), tag.get("toName", "image"), values
    raise BackendError(400, "the labelling configuration has no BrushLabels: UPOCR predicts brush masks")


class LabelStudioBackend:
    """Predictions for Label Studio tasks from a :class:`~upocr.pipeline.UPOCRPipeline`."""

    def __init__(self, pipeline: Any, *, label_studio_url: str | None = None, token: str | None = None,
                 threshold: float | None = None, max_image_bytes: int = 50 * 1024 * 1024):
        self.pipeline = pipeline
        self.label_studio_url = (label_studio_url or "").rstrip("/") or None
        self.token = token
        self.threshold = threshold
        self.max_image_bytes = int(max_image_bytes)
        self.model_version = str(getattr(pipeline, "source", None) or "upocr")
        self._model = threading.Lock()
        self._auth: tuple[str, float] | None = None
        self._auth_lock = threading.Lock()

    # ------------------------------------------------------------------ images
    def _headers(self) -> dict[str, str]:
        if not self.token:
            return {}
        if self.token.count(".") != 2:  # a legacy token
            return {"Authorization": f"Token {self.token}"}
        import httpx

        with self._auth_lock:  # a personal access token is exchanged for a short-lived access token
            if self._auth is None or self._auth[1] < time.monotonic():
                response = httpx.post(f"{self.label_studio_url}/api/token/refresh", json={"refresh": self.token},
                                      timeout=30)
                if response.status_code != 200:
                    raise BackendError(502, f"Label Studio refused the token ({response.status_code})")
                self._auth = (response.json()["access"], time.monotonic() + 240)
            return {"Authorization": f"Bearer {self._auth[0]}"}

    def fetch(self, url: str) -> np.ndarray:
        """The image of a task as RGB; :class:`BackendError` names the image when it fails."""
        import httpx

        if url.startswith("/"):
            if not self.label_studio_url:
                raise BackendError(400, f"{url}: a Label Studio path, but the backend was started without "
                                        "--label-studio-url")
            full, headers = self.label_studio_url + url, self._headers()
        elif url.startswith(("http://", "https://")):
            full, headers = url, {}
        else:
            raise BackendError(400, f"{url}: not an image URL")
        try:
            with httpx.stream("GET", full, headers=headers, timeout=60, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise BackendError(502, f"{url}: the image could not be fetched (HTTP {response.status_code})")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data.extend(chunk)
                    if len(data) > self.max_image_bytes:
                        raise BackendError(413, f"{url}: larger than {self.max_image_bytes // 2**20} MB")
        except httpx.HTTPError as error:
            raise BackendError(502, f"{url}: the image could not be fetched ({error})") from None
        try:
            return read_image(bytes(data), name=url)
        except ImageReadError as error:
            raise BackendError(422, str(error)) from None

    # ------------------------------------------------------------------ predictions
    def predict(self, tasks: list[dict], label_config: str) -> list[dict]:
        """One prediction per task: a brush region per class, the image's confidence as score."""
        from_name, to_name, values = _brush_tags(label_config)
        name = TAMPERED_TEXT_DETECTION if "tampered text" in values else TEXT_SEGMENTATION
        if name not in self.pipeline.tasks:
            raise BackendError(400, f"this model has no {name} output")
        spec = get_task(name)
        classes = [c for c in spec.classes if c.value]
        if len(classes) == 1 and values:  # one text class: the regions carry the project's own name for it
            classes = [replace(classes[0], name=values[0])]
        results = []
        for task in tasks:
            data = task.get("data") or {}
            url = data.get(to_name) or next((v for v in data.values() if isinstance(v, str)), None)
            if not url:
                raise BackendError(400, f"task {task.get('id')}: no image in its data")
            rgb = self.fetch(url)
            kwargs = {} if self.threshold is None else {"threshold": self.threshold}
            with self._model:
                proposal = spec.propose(self.pipeline.run_all(rgb, list(spec.labelled_from), **kwargs))
            confidence = proposal.confidence()
            regions = brush_regions(np.asarray(proposal.label), classes, score=confidence)
            for region in regions:
                region["from_name"], region["to_name"] = from_name, to_name
            results.append({"result": regions, "score": confidence, "model_version": self.model_version})
        return results


def create_app(backend: LabelStudioBackend):
    """The HTTP app (FastAPI) that speaks Label Studio's ML backend protocol."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="UPOCR Label Studio ML backend")

    @app.exception_handler(BackendError)
    async def _failed(request: Request, error: BackendError):  # noqa: ARG001
        return JSONResponse({"status": "error", "error": str(error)}, status_code=error.status)

    @app.get("/health")
    @app.get("/")
    def health():
        return {"status": "UP", "model_class": "UPOCR", "model_version": backend.model_version}

    @app.post("/setup")
    def setup(body: dict):
        if body.get("schema"):
            _brush_tags(body["schema"])  # refuse a project UPOCR cannot serve, at connection time
        return {"model_version": backend.model_version}

    @app.post("/predict")
    def predict(body: dict):
        tasks = body.get("tasks") or []
        if not isinstance(tasks, list) or len(tasks) > 100:
            raise BackendError(400, "send between 0 and 100 tasks at a time")
        return {"results": backend.predict(tasks, body.get("label_config") or "")}

    @app.post("/webhook")
    def webhook(body: dict):  # noqa: ARG001 - training on submitted annotations is not offered
        return {"status": "ignored", "reason": "UPOCR is fine-tuned with upocr train, not from webhooks"}

    return app
