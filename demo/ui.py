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
    concurrency: int = 2,
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


def launch(demo: gr.Blocks, *, host: str | None = None, port: int | None = None, share: bool = False,
           **kwargs: Any):
    """Launch with the app's limits: upload size, and files served only from its own folders."""
    config: StudioConfig = demo.studio
    options = dict(server_name=host, server_port=port, share=share, max_file_size=config.max_file_size,
                   allowed_paths=config.allowed_paths, blocked_paths=config.blocked_paths,
                   footer_links=["api", "gradio"])
    options.update(kwargs)
    return demo.launch(**options)
