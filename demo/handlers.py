"""The app's event handlers: plain methods over a :class:`~demo.context.StudioContext`.

Each tab has a small class; :mod:`demo.layout` wires its methods to widgets through :func:`guard`,
which turns every failure into a short message (never a stack trace). Each upload is decoded once
per interaction, and a run's result lives in the session's state, never in file names.
"""

from __future__ import annotations

import functools
import html
import logging
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from upocr.io import ImageReadError
from upocr.labeling import LabelStoreError
from upocr.pipeline import WorkBudgetError
from upocr.results import TextSegmentationResult
from upocr.tasks import (
    DEFAULT_SEGMENTATION_THRESHOLD,
    TAMPERED_TEXT_DETECTION,
    TEXT_REMOVAL,
    TEXT_SEGMENTATION,
    get_task,
)

from . import core
from .annotate import (
    ANNOTATION_TASKS,
    Workspace,
    ingest_uploads,
    is_workspace_id,
    new_owner_key,
    owns_workspace,
    user_owner_key,
)
from .context import NoModelError, StudioContext
from .core import UserInputError

logger = logging.getLogger("upocr.studio")


def guard(fn: Callable) -> Callable:
    """Turn every failure of a handler into a short gr.Error (never a stack trace)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except NoModelError as exc:
            raise gr.Error(str(exc), title="No model", print_exception=False) from None
        except (ImageReadError, UserInputError, LabelStoreError, WorkBudgetError) as exc:
            raise gr.Error(html.escape(str(exc)), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged in full here
            logger.exception("handler %s failed", getattr(fn, "__name__", fn))
            raise gr.Error(html.escape(f"Something went wrong ({type(exc).__name__}: {exc})"),
                           print_exception=False) from None

    return wrapper


def _tamper_files(out: Path, stem: str, result) -> list[str]:
    return [core.save_png(out, f"{stem}-tamper-labels.png", result.label_image()),
            core.save_png(out, f"{stem}-tamper-overlay.png", result.overlay())]


class ApiHandlers:
    """The four public endpoints: an image file in, PNG files out."""

    def __init__(self, ctx: StudioContext):
        self.ctx = ctx

    def remove_text(self, image_file):
        """Remove the text from an image: only the detected text changes, every other pixel stays.

        Args:
            image_file: the image (PNG, JPEG, WebP, TIFF, BMP...; at most 20 MB and 40 megapixels by default).

        Returns:
            The text-free image, a PNG of the input's size.
        """
        ctx = self.ctx
        rgb = ctx.read(image_file)
        result = ctx.run_tasks(rgb, (TEXT_REMOVAL,))[TEXT_REMOVAL]
        return core.save_png(ctx.paths.new_output_dir(), f"{core.output_stem(image_file)}-text-removed.png", result.image)

    def segment_text(self, image_file):
        """Find the text strokes in an image.

        Args:
            image_file: the image (PNG, JPEG, WebP, TIFF, BMP...; at most 20 MB and 40 megapixels by default).

        Returns:
            The text mask, a PNG of the input's size: 255 on text, 0 elsewhere.
        """
        ctx = self.ctx
        rgb = ctx.read(image_file)
        result = ctx.run_tasks(rgb, (TEXT_SEGMENTATION,))[TEXT_SEGMENTATION]
        return core.save_png(ctx.paths.new_output_dir(), f"{core.output_stem(image_file)}-text-mask.png",
                             result.mask_image())

    def detect_tampering(self, image_file):
        """Find text that was edited or pasted into an image (tampered text).

        Args:
            image_file: the image (PNG, JPEG, WebP, TIFF, BMP...; at most 20 MB and 40 megapixels by default).

        Returns:
            The label PNG (0 background, 1 real text, 2 tampered text) and an overlay PNG (real text
            green, tampered text red).
        """
        ctx = self.ctx
        rgb = ctx.read(image_file)
        result = ctx.run_tasks(rgb, (TAMPERED_TEXT_DETECTION,))[TAMPERED_TEXT_DETECTION]
        labels, overlay = _tamper_files(ctx.paths.new_output_dir(), core.output_stem(image_file), result)
        return labels, overlay

    def run_all(self, image_file):
        """Text removal, text segmentation and tampered text detection in one pass.

        Args:
            image_file: the image (PNG, JPEG, WebP, TIFF, BMP...; at most 20 MB and 40 megapixels by default).

        Returns:
            The text-free image, the text mask, the tampering labels and the tampering overlay (PNGs).
        """
        ctx = self.ctx
        rgb = ctx.read(image_file)
        out = ctx.paths.new_output_dir()
        stem = core.output_stem(image_file)
        results = ctx.run_tasks(rgb, (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION))
        removed = core.save_png(out, f"{stem}-text-removed.png", results[TEXT_REMOVAL].image)
        mask = core.save_png(out, f"{stem}-text-mask.png", results[TEXT_SEGMENTATION].mask_image())
        labels, overlay = _tamper_files(out, stem, results[TAMPERED_TEXT_DETECTION])
        return removed, mask, labels, overlay


class TaskHandlers:
    """The removal, segmentation, tampering and all-tasks tabs, and the mask editor they share."""

    def __init__(self, ctx: StudioContext):
        self.ctx = ctx

    def check_upload(self, path) -> None:
        """Decode a new upload at once: a bad file gets its message when it arrives."""
        if path:
            self.ctx.read(path)

    def _editor_mask(self, editor, path) -> tuple[np.ndarray, np.ndarray]:
        rgb = self.ctx.read(path)
        return rgb, core.label_from_editor(editor, TEXT_SEGMENTATION, rgb.shape[:2], image=rgb)

    # ---------------------------------------------------------------- removal
    def remove(self, path, keep_background: bool = True, progress=gr.Progress()):
        progress(0.1, desc="Removing text")
        ctx = self.ctx
        rgb = ctx.read(path)
        results = ctx.run_tasks(rgb, (TEXT_REMOVAL, TEXT_SEGMENTATION), keep_background=keep_background)
        cleaned = results[TEXT_REMOVAL].image
        file = core.save_png(ctx.paths.new_output_dir(), f"{core.output_stem(path)}-text-removed.png", cleaned)
        editor = core.editor_value(rgb, results[TEXT_SEGMENTATION].mask, TEXT_SEGMENTATION)
        return (rgb, cleaned), file, editor

    def erase(self, path, editor, progress=gr.Progress()):
        progress(0.1, desc="Erasing inside the mask")
        rgb, mask = self._editor_mask(editor, path)
        result = self.ctx.guided_removal(rgb, mask)
        file = core.save_png(self.ctx.paths.new_output_dir(), f"{core.output_stem(path)}-erased.png", result.image)
        return (rgb, result.image), file

    def save_mask(self, path, editor):
        _, mask = self._editor_mask(editor, path)
        return core.save_png(self.ctx.paths.new_output_dir(), f"{core.output_stem(path)}-text-mask-edited.png",
                             mask.astype(np.uint8) * 255)

    # ---------------------------------------------------------------- segmentation
    def _segmentation_outputs(self, seg: TextSegmentationResult, opacity: float, stem: str):
        out = self.ctx.paths.new_output_dir()
        overlay = core.mask_overlay(seg.original, seg.mask, opacity)
        mask_file = core.save_png(out, f"{stem}-text-mask.png", seg.mask_image())
        return overlay, mask_file, core.editor_value(seg.original, seg.mask, TEXT_SEGMENTATION)

    def segment(self, path, threshold, opacity, progress=gr.Progress()):
        """Returns the overlay, mask file, probability file, editor value and the session state
        (the result itself: a threshold or opacity change re-renders it without the model)."""
        progress(0.1, desc="Segmenting text")
        ctx = self.ctx
        rgb = ctx.read(path)
        seg = ctx.run_tasks(rgb, (TEXT_SEGMENTATION,), threshold)[TEXT_SEGMENTATION]
        stem = core.output_stem(path)
        overlay, mask_file, editor = self._segmentation_outputs(seg, opacity, stem)
        prob_file = core.save_probability_png(Path(mask_file).parent, f"{stem}-probability.png", seg.probability)
        return overlay, mask_file, prob_file, editor, {"result": seg, "stem": stem}

    def segment_example(self, path):
        return (*self.segment(path, DEFAULT_SEGMENTATION_THRESHOLD, 0.6), DEFAULT_SEGMENTATION_THRESHOLD, 0.6)

    def rethreshold(self, threshold, opacity, state):
        """New threshold: the result kept in the session, no model run (the editor starts again from the new mask)."""
        if not state or state.get("result") is None:
            return gr.skip(), gr.skip(), gr.skip(), state
        seg = state["result"].with_threshold(threshold)
        overlay, mask_file, editor = self._segmentation_outputs(seg, opacity, state["stem"])
        return overlay, mask_file, editor, {**state, "result": seg}

    def recolour(self, opacity, state):
        """New opacity: the overlay only (the mask, its file and the editor stay as they are)."""
        if not state or state.get("result") is None:
            return gr.skip()
        seg = state["result"]
        return core.mask_overlay(seg.original, seg.mask, opacity)

    # ---------------------------------------------------------------- tampering and all tasks
    def tamper(self, path, progress=gr.Progress()):
        progress(0.1, desc="Looking for tampered text")
        ctx = self.ctx
        rgb = ctx.read(path)
        result = ctx.run_tasks(rgb, (TAMPERED_TEXT_DETECTION,))[TAMPERED_TEXT_DETECTION]
        files = _tamper_files(ctx.paths.new_output_dir(), core.output_stem(path), result)
        return (rgb, core.tamper_annotations(result.labels)), core.regions_table(result), files

    def all_tasks(self, path, progress=gr.Progress()):
        progress(0.1, desc="Running all tasks (one encoder pass)")
        ctx = self.ctx
        rgb = ctx.read(path)
        results = ctx.run_tasks(rgb, (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION))
        out = ctx.paths.new_output_dir()
        stem = core.output_stem(path)
        removal, seg, tamper = (results[t] for t in (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION))
        files = [
            core.save_png(out, f"{stem}-text-removed.png", removal.image),
            core.save_png(out, f"{stem}-text-mask.png", seg.mask_image()),
            *_tamper_files(out, stem, tamper),
        ]
        return ((rgb, removal.image), core.mask_overlay(rgb, seg.mask, 0.6),
                (rgb, core.tamper_annotations(tamper.labels)), core.regions_table(tamper), files)


class AnnotateHandlers:
    """The Annotate tab: open or upload a folder, pre-label, move, accept, export.

    Every handler that changes the view returns ``(editor, status, state, remembered, workspace id)``.
    """

    def __init__(self, ctx: StudioContext):
        self.ctx = ctx

    # ---------------------------------------------------------------- view
    def workspace_for(self, state: dict, *, fresh: bool = False) -> Workspace:
        if not state:
            raise UserInputError("Open a folder or upload images first.")
        ctx = self.ctx
        task = state["task"]
        ident = state["source"]
        cache_key = (ident, task, state.get("owner"))
        if fresh or cache_key not in ctx.workspaces:
            if ident == "data":
                if ctx.data_path is None:
                    raise UserInputError("This app was started without --data.")
                ws = Workspace.for_data_dir(ctx.data_path, task, model=ctx.model_name)
            else:
                ws = Workspace.for_upload(ctx.paths.workspaces, ident, task, owner=state.get("owner"),
                                          model=ctx.model_name)
            ctx.workspaces[cache_key] = ws
        return ctx.workspaces[cache_key]

    @staticmethod
    def status_md(ws: Workspace, index: int) -> str:
        counts = ws.counts()
        head = (f"<div id='ann-progress'>Reviewed <b>{counts['reviewed']} / {counts['total']}</b> · "
                f"labelled {counts['labelled']} · failed {counts['failed']}</div>")
        if not ws.items:
            return head + "\n\nNo images found."
        rel = ws.items[index]
        status = ws.status(rel) or "not labelled yet"
        confidence = ws.confidence(rel)
        if confidence is not None:
            status += f", <span id='ann-confidence'>model confidence {confidence:.2f}</span>"
        return head + f"\n\n<span id='ann-current'>Image {index + 1} of {len(ws)}: <code>{html.escape(rel)}</code> ({status})</span>"

    @staticmethod
    def editor_update(ws: Workspace, index: int):
        brush = gr.Brush(colors=core.brush_colours(ws.task), color_mode="fixed", default_size="auto")
        if not ws.items:
            return gr.update(value=None, brush=brush)
        rel = ws.items[index]
        try:
            rgb = ws.read_image(rel)
        except ImageReadError as exc:
            gr.Warning(html.escape(str(exc)))
            return gr.update(value=None, brush=brush)
        return gr.update(value=core.editor_value(rgb, ws.label(rel), ws.task), brush=brush)

    def show(self, state: dict, index: int | None = None, fresh: bool = False):
        ws = self.workspace_for(state, fresh=fresh)
        if index is None:
            index = ws.first_unreviewed(0)
            index = 0 if index is None else index
        index = max(0, min(index, max(len(ws) - 1, 0)))
        state = {**state, "index": index}
        # kept in this browser (encrypted): its owner key and the workspace it used last
        remember = {"source": state["source"], "task": state["task"], "owner": state.get("owner")}
        ident = state["source"] if state["source"] != "data" else ""
        return self.editor_update(ws, index), self.status_md(ws, index), state, remember, ident

    # ---------------------------------------------------------------- opening
    def owner_of(self, remembered, profile: gr.OAuthProfile | None = None) -> str:
        """Who owns what this visitor uploads: the signed-in Hugging Face user (on a Space with
        OAuth; the same workspaces in any browser), else this browser's key (a new one for a
        browser that has none yet)."""
        if profile is not None and getattr(profile, "username", None):
            return user_owner_key(self.ctx.paths.workspaces, profile.username)
        owner = remembered.get("owner") if isinstance(remembered, dict) else None
        return owner if isinstance(owner, str) and len(owner) >= 16 else new_owner_key()

    def upload(self, files, task_label, remembered=None, profile: gr.OAuthProfile | None = None):
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        owner = self.owner_of(remembered, profile)
        paths_in = [f if isinstance(f, str) else getattr(f, "name", f) for f in files]
        ident, notes = ingest_uploads(paths_in, self.ctx.paths.workspaces, self.ctx.upload_limits, owner=owner)
        if notes:
            gr.Warning(html.escape("Skipped: " + "; ".join(notes[:8]) + (" …" if len(notes) > 8 else "")))
        return self.show({"source": ident, "task": ANNOTATION_TASKS[task_label], "owner": owner}, fresh=True)

    def open_data_dir(self, task_label, remembered=None, profile: gr.OAuthProfile | None = None):
        owner = self.owner_of(remembered, profile)
        return self.show({"source": "data", "task": ANNOTATION_TASKS[task_label], "owner": owner}, fresh=True)

    def open_workspace(self, ident, task_label, remembered=None, profile: gr.OAuthProfile | None = None):
        ident = (ident or "").strip()
        if not is_workspace_id(ident):
            raise UserInputError("Paste a workspace id (24 characters, shown after an upload).")
        owner = self.owner_of(remembered, profile)
        return self.show({"source": ident, "task": ANNOTATION_TASKS[task_label], "owner": owner}, fresh=True)

    def restore(self, remembered, task_label, state, profile: gr.OAuthProfile | None = None):
        """On opening the tab: reopen the workspace this browser used last (progress is on disk).

        Run when the tab is shown, not on page load: the editor drops a layer it receives while
        hidden ("No draw texture found for layer" in Gradio 6.31)."""
        skip = (gr.skip(),) * 6
        if state or not remembered or not isinstance(remembered, dict):
            return skip
        source, task = remembered.get("source"), remembered.get("task")
        if task not in ANNOTATION_TASKS.values():
            return skip
        if source == "data" and self.ctx.data_path is None:
            return skip
        owner = self.owner_of(remembered, profile) if profile is not None else remembered.get("owner")
        if source != "data" and not (owns_workspace(self.ctx.paths.workspaces, source, owner)
                                     and (self.ctx.paths.workspaces / source / "images").is_dir()):
            return skip
        label = next(k for k, v in ANNOTATION_TASKS.items() if v == task)
        return (*self.show({"source": source, "task": task, "owner": owner}, fresh=True), label)

    def task_changed(self, task_label, state):
        if not state:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return self.show({**state, "task": ANNOTATION_TASKS[task_label]}, fresh=True)

    # ---------------------------------------------------------------- moving
    def move(self, state, step: int):
        ws = self.workspace_for(state)
        if not ws.items:
            raise UserInputError("This folder has no images.")
        return self.show(state, (state.get("index", 0) + step) % len(ws))

    def previous(self, state):
        return self.move(state, -1)

    def next(self, state):
        return self.move(state, 1)

    def next_unreviewed(self, state):
        ws = self.workspace_for(state)
        index = ws.first_unreviewed((state.get("index", 0) + 1) % max(len(ws), 1))
        if index is None:
            gr.Info("Every image is reviewed.")
            index = state.get("index", 0)
        return self.show(state, index)

    def least_confident(self, state):
        ws = self.workspace_for(state)
        index = ws.least_confident_unreviewed(state.get("index", 0))
        if index is None:
            gr.Info("Every image is reviewed.")
            index = state.get("index", 0)
        return self.show(state, index)

    # ---------------------------------------------------------------- labelling
    def _predictor(self, task: str, threshold: float) -> Callable[[np.ndarray], Any]:
        spec = get_task(task)

        def predict(rgb: np.ndarray):
            return spec.propose(self.ctx.run_tasks(rgb, spec.labelled_from, threshold))

        return predict

    def prelabel(self, state, redo, threshold, progress=gr.Progress(track_tqdm=True)):
        ws = self.workspace_for(state)
        self.ctx.need_model()
        predict = self._predictor(ws.task, threshold)
        with ws.lock:  # the engine's progress bar shows in the page (track_tqdm)
            summary = ws.prelabel(predict, redo=bool(redo), threshold=float(threshold), progress=True)
        gr.Info(f"Labelled {summary['labelled']}, kept {summary['kept']} model labels and "
                f"{summary['reviewed_kept']} reviewed labels, {summary['failed']} failed.")
        return self.show(state, state.get("index", 0))

    def accept(self, state, editor, overwrite, progress=gr.Progress()):
        ws = self.workspace_for(state)
        if not ws.items:
            raise UserInputError("This folder has no images.")
        index = state.get("index", 0)
        rel = ws.items[index]
        if ws.store.is_reviewed(rel) and not overwrite:
            raise UserInputError(f"{rel} is already reviewed: tick 'Replace reviewed labels' to save over it.")
        rgb = ws.read_image(rel)
        label = core.label_from_editor(editor, ws.task, rgb.shape[:2], image=rgb)
        cleaned = None
        if get_task(ws.task).has_cleaned_image:
            progress(0.2, desc="Erasing inside the mask")
            cleaned = self.ctx.guided_removal(rgb, label).image if label.any() else rgb
        with ws.lock:
            ws.accept(rel, label, cleaned=cleaned, overwrite=bool(overwrite))
        following = ws.first_unreviewed((index + 1) % len(ws))
        return self.show(state, index if following is None else following)

    def export(self, state, include_images, progress=gr.Progress()):
        ws = self.workspace_for(state)
        progress(0.1, desc="Writing the zip")
        out = self.ctx.paths.new_output_dir()
        name = "data" if state["source"] == "data" else state["source"][:8]
        zip_path = out / f"upocr-labels-{name}-{ws.task}.zip"
        manifest = ws.export(zip_path, include_images=bool(include_images))
        gr.Info(f"Exported {manifest['counts'].get('exported', 0)} labels.")
        return str(zip_path)
