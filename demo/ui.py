"""UPOCR Studio: the Gradio app (``build_demo``) and its launcher (``launch``).

The app is assembled from three layers: :class:`~demo.context.StudioContext` (the model, the
folders the app owns, the limits), the handlers (:mod:`demo.handlers`, plain methods over the
context) and the layout (:mod:`demo.layout`, one builder per tab and the public API). Every
prediction comes from :mod:`upocr`; the UI only arranges widgets and files.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from . import core, layout
from .annotate import browser_secret
from .context import DEFAULT_MODEL_NOTE, NO_WEIGHTS_MESSAGE, StudioContext
from .handlers import AnnotateHandlers, ApiHandlers, TaskHandlers

__all__ = ["DEFAULT_MODEL_NOTE", "NO_WEIGHTS_MESSAGE", "StudioConfig", "build_demo", "launch"]


@dataclass
class StudioConfig:
    paths: core.StudioPaths
    max_file_size: str | int
    data_dir: Path | None
    model_key: str | None
    allowed_paths: list[str] = field(default_factory=list)
    blocked_paths: list[str] = field(default_factory=list)


def build_demo(
    pipeline: Any | None,
    *,
    data_dir: str | os.PathLike | None = None,
    studio_dir: str | os.PathLike | None = None,
    max_file_size: str | int = "20mb",
    max_pixels: int = core.DEFAULT_MAX_PIXELS,
    load_error: str | None = None,
    queue_size: int = 32,
    concurrency: int = 1,
) -> gr.Blocks:
    """Build the app around a loaded :class:`upocr.pipeline.UPOCRPipeline` (``None``: no model;
    the app still starts, shows why, and every run answers with that message).

    ``data_dir``: a local folder of images for the Annotate tab (labels go to
    ``data_dir/.upocr-labels/<task>``). ``studio_dir``: the folder the app owns (outputs,
    uploaded workspaces, examples cache; default ``$UPOCR_STUDIO_DIR`` or a temp folder).
    """
    ctx = StudioContext.create(pipeline, studio_dir=studio_dir, data_dir=data_dir,
                               max_file_bytes=_parse_size(max_file_size), max_pixels=max_pixels, load_error=load_error)
    ctx.notify = gr.Info
    tasks, annotate, api = TaskHandlers(ctx), AnnotateHandlers(ctx), ApiHandlers(ctx)
    cache_dir = ctx.paths.examples_cache / (ctx.key or "none")
    examples = layout.Examples([[str(p)] for p in core.example_files()], cache=pipeline is not None,
                               cache_dir=cache_dir)

    with gr.Blocks(title="UPOCR Studio", analytics_enabled=False) as demo:
        gr.Markdown(
            "# UPOCR Studio\nOne image-to-image network for **text removal**, **text segmentation** and "
            "**tampered text detection** ([UPOCR, ICML 2024](https://arxiv.org/abs/2312.02694))."
        )
        if pipeline is None:
            gr.HTML(
                "<div id='no-model-banner' style='border:2px solid #d97706;background:#fffbeb;color:#78350f;"
                "padding:12px 16px;border-radius:8px'><b>No model loaded.</b> " + ctx.no_model_message + "</div>"
            )
        else:
            gr.Markdown(DEFAULT_MODEL_NOTE if ctx.is_default_model else f"Model: `{html.escape(ctx.model_name)}`",
                        elem_id="model-name")
        # outside the tabs: tab contents mount only when first opened, and this must be read on load
        remember = gr.BrowserState(None, storage_key="upocr-studio-annotate", secret=browser_secret(ctx.paths.workspaces))
        with gr.Tabs():
            layout.removal_tab(tasks, examples)
            layout.segmentation_tab(tasks, examples)
            layout.tampering_tab(tasks, examples)
            layout.all_tasks_tab(tasks, examples)
            layout.annotate_tab(annotate, remember, ctx.data_path)
        layout.public_api(api)
        demo.load(None, None, None, js=layout.SHORTCUTS_JS, **layout.PRIVATE)

    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    allowed = [str(ctx.paths.outputs), str(core.EXAMPLES_DIR), str(cache_dir)]
    blocked = [str(ctx.paths.workspaces)] + ([str(ctx.data_path)] if ctx.data_path else [])
    demo.studio = StudioConfig(paths=ctx.paths, max_file_size=max_file_size, data_dir=ctx.data_path,
                               model_key=ctx.key, allowed_paths=allowed, blocked_paths=blocked)
    demo.studio_context = ctx
    return demo


def _parse_size(value: str | int) -> int:
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3, "b": 1}
    for unit, factor in units.items():
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


#: The largest request body outside the upload route (JSON: file references, settings, state).
MAX_REQUEST_BODY = 4 * 1024 * 1024


class RequestBodyLimit:
    """ASGI middleware: a request body larger than its limit is refused with 413 before the
    app reads it (from its Content-Length), or cut off as soon as the bytes read pass the limit
    (bodies sent without a length). Uploads may carry up to ``max_upload`` bytes (Gradio checks
    each file against ``max_file_size`` as it streams); every other route ``max_body``."""

    def __init__(self, app, max_body: int, max_upload: int):
        self.app, self.max_body, self.max_upload = app, int(max_body), int(max_upload)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_upload if scope["path"].rstrip("/").endswith("/upload") else self.max_body
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _too_large(send, limit)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # the app sees the client go away and drops what it read
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, counted, send)


async def _too_large(send, limit: int) -> None:
    body = f'{{"error": "the request body is larger than {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def launch(demo: gr.Blocks, *, host: str | None = None, port: int | None = None, share: bool = False,
           mcp_server: bool = True, **kwargs: Any):
    """Launch with the app's limits: upload size, request body size, and files served only from
    its own folders. ``mcp_server``: the four public endpoints are also MCP tools (at
    ``/gradio_api/mcp/``), for agents and LLM clients."""
    from starlette.middleware import Middleware

    config: StudioConfig = demo.studio
    max_upload = demo.studio_context.upload_limits.max_total_bytes + MAX_REQUEST_BODY
    body_limit = Middleware(RequestBodyLimit, max_body=MAX_REQUEST_BODY, max_upload=max_upload)
    options = dict(server_name=host, server_port=port, share=share, max_file_size=config.max_file_size,
                   allowed_paths=config.allowed_paths, blocked_paths=config.blocked_paths,
                   footer_links=["api", "gradio"], app_kwargs={"middleware": [body_limit]}, mcp_server=mcp_server)
    options.update(kwargs)
    return demo.launch(**options)
