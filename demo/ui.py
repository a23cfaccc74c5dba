"""UPOCR Studio: the Gradio app (``build_demo``) and its launcher (``launch``).

The UI only arranges widgets and files; every prediction comes from :mod:`upocr` (the pipeline,
the result objects, the label store and the exporters).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import gradio as gr
import numpy as np

from upocr.io import ImageReadError
from upocr.labels import LabelStoreError
from upocr.pipeline import DEFAULT_MODEL_DIR
from upocr.results import TextSegmentationResult
from upocr.tasks import (
    DEFAULT_SEGMENTATION_THRESHOLD,
    TAMPERED_TEXT_DETECTION,
    TEXT_REMOVAL,
    TEXT_SEGMENTATION,
    get_task,
)

from . import core
from .annotate import ANNOTATION_TASKS, UploadLimits, Workspace, browser_secret, ingest_uploads, is_workspace_id
from .core import UserInputError

logger = logging.getLogger("upocr.studio")

# Gradio 6.31 pitfall: with a canvas larger than the image, a layer passed in the editor's value is
# drawn off-centre and the first stroke starts a blank layer (the mask is lost). A canvas smaller
# than any image keeps the layer aligned; with fixed_canvas=False the canvas then follows the image.
EDITOR_CANVAS = (32, 32)

NO_WEIGHTS_MESSAGE = (
    "No model to run: the bundled default weights (<code>assets/upocr-tiny</code>) are missing from "
    "this copy of the app. Start it with a trained model: <code>python app.py --model "
    "REPO_ID_OR_FOLDER</code>, or set <code>UPOCR_MODEL=REPO_ID_OR_FOLDER</code> (a Hub repo id, a "
    "folder saved with <code>save_pretrained</code>, or a checkpoint converted with <code>upocr convert</code>)."
)

#: What the header says when the bundled default weights are in use.
DEFAULT_MODEL_NOTE = (
    "Model: the bundled default (`upocr-tiny`), a small model trained on a CPU. Its masks are coarse: "
    "correct them in the editor, or start the app with the paper model (`--model`)."
)

SHORTCUTS_MD = (
    "**Keyboard** (Annotate tab, when no text field has the focus): "
    "<kbd>A</kbd> accept · <kbd>N</kbd> or <kbd>→</kbd> next · <kbd>P</kbd> or <kbd>←</kbd> previous · "
    "<kbd>U</kbd> next unreviewed."
)

_SHORTCUTS_JS = """
() => {
  if (window.__upocrShortcuts) return;
  window.__upocrShortcuts = true;
  const keys = {a: "ann-accept", n: "ann-next", ArrowRight: "ann-next", p: "ann-prev",
                ArrowLeft: "ann-prev", u: "ann-next-unreviewed"};
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const tag = ((target && target.tagName) || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || tag === "select" || (target && target.isContentEditable)) return;
    const panel = document.getElementById("annotate-panel");
    if (!panel || panel.offsetParent === null) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const button = keys[key] && document.getElementById(keys[key]);
    if (button && !button.disabled) { event.preventDefault(); button.click(); }
  });
}
"""

try:  # ZeroGPU on Hugging Face Spaces: a GPU is attached only while these functions run
    import spaces  # type: ignore

    _gpu = spaces.GPU
except ImportError:  # elsewhere: no-op

    def _gpu(fn: Callable | None = None, **_kwargs: Any):
        return fn if fn is not None else (lambda f: f)


# The pipelines by key; the GPU functions below take the key (cheap to pass to a GPU worker).
_PIPELINES: dict[str, Any] = {}


@_gpu(duration=60)
def _gpu_run(key: str, rgb: np.ndarray, tasks: tuple[str, ...], threshold: float, keep_background: bool = True) -> dict:
    return _PIPELINES[key].run_all(rgb, list(tasks), threshold=threshold, preserve_background=keep_background)


@_gpu(duration=60)
def _gpu_guided_removal(key: str, rgb: np.ndarray, mask: np.ndarray):
    return _PIPELINES[key](rgb, TEXT_REMOVAL, mask=mask)


class ImageInput(gr.Image):
    """gr.Image whose upload errors become a clear message instead of a generic "Error"."""

    is_template = True  # rendered by the frontend's Image component

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except gr.Error:
            raise
        except Exception as exc:
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            message = f"{name}: not a readable image ({type(exc).__name__})"
            try:  # the library says what the file is instead (and never shows a server path)
                core.read_upload(getattr(payload, "path", None))
            except (ImageReadError, UserInputError) as read_error:
                message = f"{name}: {getattr(read_error, 'problem', read_error)}"
            except Exception:  # noqa: BLE001 - keep the generic message
                pass
            raise gr.Error(html.escape(message), print_exception=False) from None


def _guard(fn: Callable) -> Callable:
    """Turn every failure of a handler into a short gr.Error (never a stack trace)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ImageReadError, UserInputError, LabelStoreError) as exc:
            raise gr.Error(html.escape(str(exc)), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - shown to the user, logged in full here
            logger.exception("handler %s failed", fn.__name__)
            raise gr.Error(html.escape(f"Something went wrong ({type(exc).__name__}: {exc})"),
                           print_exception=False) from None

    return wrapper


@dataclass
class StudioConfig:
    paths: core.StudioPaths
    max_file_size: str | int
    data_dir: Path | None
    model_key: str | None
    allowed_paths: list[str] = field(default_factory=list)
    blocked_paths: list[str] = field(default_factory=list)


def _model_key(pipeline: Any) -> str:
    """Identifies the weights (for the examples cache): source name plus a sample of every tensor."""
    digest = hashlib.sha1(str(getattr(pipeline, "source", "")).encode())
    for name, tensor in pipeline.model.state_dict().items():
        digest.update(name.encode())
        flat = tensor.detach().reshape(-1)[:256].float().cpu().numpy()
        digest.update(flat.tobytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _examples_cache(folder: Path):
    """gr.Examples reads the cache folder from the environment when it is created."""
    old = os.environ.get("GRADIO_EXAMPLES_CACHE")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GRADIO_EXAMPLES_CACHE", None)
        else:
            os.environ["GRADIO_EXAMPLES_CACHE"] = old


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
    paths = core.StudioPaths(Path(studio_dir) if studio_dir else core.default_studio_dir())
    data_path = Path(data_dir).resolve() if data_dir else None
    if data_path is not None and not data_path.is_dir():
        raise NotADirectoryError(f"--data {data_path}: not a folder")
    key = _model_key(pipeline) if pipeline is not None else None
    if pipeline is not None:
        _PIPELINES[key] = pipeline
    model_name = str(getattr(pipeline, "source", None) or "custom model") if pipeline is not None else None
    is_default_model = model_name is not None and Path(model_name).resolve() == DEFAULT_MODEL_DIR.resolve()
    upload_limits = UploadLimits(max_file_bytes=_parse_size(max_file_size))
    workspaces: dict[tuple[str, str], Workspace] = {}

    # ---------------------------------------------------------------- model calls
    def need_model() -> str:
        if key is None:
            raise gr.Error(html.escape(load_error) if load_error else NO_WEIGHTS_MESSAGE, title="No model", print_exception=False)
        return key

    def read(path) -> np.ndarray:
        return core.read_upload(path, max_pixels=max_pixels)

    def run_tasks(rgb: np.ndarray, tasks: tuple[str, ...], threshold: float = DEFAULT_SEGMENTATION_THRESHOLD,
                  keep_background: bool = True) -> dict:
        """The pipeline's results; text removal changes only the detected text unless ``keep_background`` is off."""
        return _gpu_run(need_model(), rgb, tuple(tasks), float(threshold), bool(keep_background))

    def guided_removal(rgb: np.ndarray, mask: np.ndarray):
        if not mask.any():
            raise UserInputError("The mask is empty: paint over the text to erase first.")
        return _gpu_guided_removal(need_model(), rgb, mask)

    # ---------------------------------------------------------------- API (files in, files out)
    @_guard
    def api_remove_text(image_file):
        rgb = read(image_file)
        out = paths.new_output_dir()
        result = run_tasks(rgb, (TEXT_REMOVAL,))[TEXT_REMOVAL]
        return core.save_png(out, f"{core.output_stem(image_file)}-text-removed.png", result.image)

    @_guard
    def api_segment_text(image_file):
        rgb = read(image_file)
        out = paths.new_output_dir()
        result = run_tasks(rgb, (TEXT_SEGMENTATION,))[TEXT_SEGMENTATION]
        return core.save_png(out, f"{core.output_stem(image_file)}-text-mask.png", result.mask_image())

    def _tamper_files(out: Path, stem: str, result) -> list[str]:
        return [core.save_png(out, f"{stem}-tamper-labels.png", result.label_image()),
                core.save_png(out, f"{stem}-tamper-overlay.png", result.overlay())]

    @_guard
    def api_detect_tampering(image_file):
        rgb = read(image_file)
        out = paths.new_output_dir()
        result = run_tasks(rgb, (TAMPERED_TEXT_DETECTION,))[TAMPERED_TEXT_DETECTION]
        labels, overlay = _tamper_files(out, core.output_stem(image_file), result)
        return labels, overlay

    @_guard
    def api_run_all(image_file):
        rgb = read(image_file)
        out = paths.new_output_dir()
        stem = core.output_stem(image_file)
        results = run_tasks(rgb, (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION))
        removed = core.save_png(out, f"{stem}-text-removed.png", results[TEXT_REMOVAL].image)
        mask = core.save_png(out, f"{stem}-text-mask.png", results[TEXT_SEGMENTATION].mask_image())
        labels, overlay = _tamper_files(out, stem, results[TAMPERED_TEXT_DETECTION])
        return removed, mask, labels, overlay

    # ---------------------------------------------------------------- UI handlers
    def editor_mask(editor, path) -> tuple[np.ndarray, np.ndarray]:
        rgb = read(path)
        return rgb, core.label_from_editor(editor, TEXT_SEGMENTATION, rgb.shape[:2])

    @_guard
    def ui_remove(path, keep_background: bool = True, progress=gr.Progress()):
        progress(0.1, desc="Removing text")
        rgb = read(path)
        results = run_tasks(rgb, (TEXT_REMOVAL, TEXT_SEGMENTATION), keep_background=keep_background)
        out = paths.new_output_dir()
        cleaned = results[TEXT_REMOVAL].image
        file = core.save_png(out, f"{core.output_stem(path)}-text-removed.png", cleaned)
        editor = core.editor_value(rgb, results[TEXT_SEGMENTATION].mask, TEXT_SEGMENTATION)
        return (rgb, cleaned), file, editor

    @_guard
    def ui_erase(path, editor, progress=gr.Progress()):
        progress(0.1, desc="Erasing inside the mask")
        rgb, mask = editor_mask(editor, path)
        result = guided_removal(rgb, mask)
        out = paths.new_output_dir()
        file = core.save_png(out, f"{core.output_stem(path)}-erased.png", result.image)
        return (rgb, result.image), file

    @_guard
    def ui_save_mask(path, editor):
        rgb, mask = editor_mask(editor, path)
        out = paths.new_output_dir()
        return core.save_png(out, f"{core.output_stem(path)}-text-mask-edited.png", mask.astype(np.uint8) * 255)

    def seg_outputs(seg: TextSegmentationResult, opacity: float, stem: str):
        out = paths.new_output_dir()
        overlay = core.mask_overlay(seg.original, seg.mask, opacity)
        mask_file = core.save_png(out, f"{stem}-text-mask.png", seg.mask_image())
        return overlay, mask_file, core.editor_value(seg.original, seg.mask, TEXT_SEGMENTATION)

    @_guard
    def ui_segment(path, threshold, opacity, progress=gr.Progress()):
        progress(0.1, desc="Segmenting text")
        rgb = read(path)
        seg = run_tasks(rgb, (TEXT_SEGMENTATION,), threshold)[TEXT_SEGMENTATION]
        stem = core.output_stem(path)
        token = core.new_token()
        overlay, mask_file, editor = seg_outputs(seg, opacity, stem)
        prob_file = core.save_probability_png(Path(mask_file).parent, f"{stem}-probability-{token}.png", seg.probability)
        state = {"token": token, "probability": seg.probability, "original": rgb, "stem": stem}
        return overlay, mask_file, prob_file, editor, state

    def example_segment(path):
        overlay, mask_file, prob_file, editor, _ = ui_segment(path, DEFAULT_SEGMENTATION_THRESHOLD, 0.6)
        return overlay, mask_file, prob_file, editor, DEFAULT_SEGMENTATION_THRESHOLD, 0.6

    @_guard
    def ui_rethreshold(threshold, opacity, state, prob_file, path):
        """New threshold or opacity: the kept probability map, no model run."""
        if not prob_file:
            return gr.skip(), gr.skip(), gr.skip(), state
        if not state or state.get("token") not in Path(prob_file).name:
            # e.g. a cached example: its probability map arrives as a file
            probability = core.load_probability_png(prob_file)
            rgb = read(path)
            if probability.shape != rgb.shape[:2]:
                raise UserInputError("The image changed since the last run: press Segment text again.")
            name = Path(prob_file).stem
            token = name.rsplit("-", 1)[-1]
            state = {"token": token, "probability": probability, "original": rgb, "stem": core.output_stem(path)}
        seg = TextSegmentationResult(probability=state["probability"], original=state["original"]).with_threshold(threshold)
        overlay, mask_file, editor = seg_outputs(seg, opacity, state["stem"])
        return overlay, mask_file, editor, state

    @_guard
    def ui_tamper(path, progress=gr.Progress()):
        progress(0.1, desc="Looking for tampered text")
        rgb = read(path)
        result = run_tasks(rgb, (TAMPERED_TEXT_DETECTION,))[TAMPERED_TEXT_DETECTION]
        out = paths.new_output_dir()
        files = _tamper_files(out, core.output_stem(path), result)
        annotated = (rgb, core.tamper_annotations(result.labels))
        return annotated, core.regions_table(result), files

    @_guard
    def ui_all(path, progress=gr.Progress()):
        progress(0.1, desc="Running all tasks (one encoder pass)")
        rgb = read(path)
        results = run_tasks(rgb, (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION))
        out = paths.new_output_dir()
        stem = core.output_stem(path)
        removal, seg, tamper = (results[t] for t in (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION))
        files = [
            core.save_png(out, f"{stem}-text-removed.png", removal.image),
            core.save_png(out, f"{stem}-text-mask.png", seg.mask_image()),
            *_tamper_files(out, stem, tamper),
        ]
        return ((rgb, removal.image), core.mask_overlay(rgb, seg.mask, 0.6),
                (rgb, core.tamper_annotations(tamper.labels)), core.regions_table(tamper), files)

    # ---------------------------------------------------------------- annotation handlers
    def workspace_for(state: dict, *, fresh: bool = False) -> Workspace:
        if not state:
            raise UserInputError("Open a folder or upload images first.")
        task = state["task"]
        ident = state["source"]
        cache_key = (ident, task)
        if fresh or cache_key not in workspaces:
            if ident == "data":
                if data_path is None:
                    raise UserInputError("This app was started without --data.")
                ws = Workspace.for_data_dir(data_path, task, model=model_name)
            else:
                ws = Workspace.for_upload(paths.workspaces, ident, task, model=model_name)
            workspaces[cache_key] = ws
        return workspaces[cache_key]

    def status_md(ws: Workspace, index: int) -> str:
        counts = ws.counts()
        head = (f"<div id='ann-progress'>Reviewed <b>{counts['reviewed']} / {counts['total']}</b> · "
                f"labelled {counts['labelled']} · failed {counts['failed']}</div>")
        if not ws.items:
            return head + "\n\nNo images found."
        rel = ws.items[index]
        status = ws.status(rel) or "not labelled yet"
        return head + f"\n\n<span id='ann-current'>Image {index + 1} of {len(ws)}: <code>{html.escape(rel)}</code> ({status})</span>"

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
        label = ws.label(rel)
        return gr.update(value=core.editor_value(rgb, label, ws.task), brush=brush)

    def show(state: dict, index: int | None = None, fresh: bool = False):
        ws = workspace_for(state, fresh=fresh)
        if index is None:
            index = ws.first_unreviewed(0)
            index = 0 if index is None else index
        index = max(0, min(index, max(len(ws) - 1, 0)))
        state = {**state, "index": index}
        remember = {"source": state["source"], "task": state["task"]}  # kept in this browser
        ident = state["source"] if state["source"] != "data" else ""
        return editor_update(ws, index), status_md(ws, index), state, remember, ident

    @_guard
    def ann_upload(files, task_label):
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        paths_in = [f if isinstance(f, str) else getattr(f, "name", f) for f in files]
        ident, notes = ingest_uploads(paths_in, paths.workspaces, upload_limits)
        if notes:
            gr.Warning(html.escape("Skipped: " + "; ".join(notes[:8]) + (" …" if len(notes) > 8 else "")))
        return show({"source": ident, "task": ANNOTATION_TASKS[task_label]}, fresh=True)

    @_guard
    def ann_open_data_dir(task_label):
        return show({"source": "data", "task": ANNOTATION_TASKS[task_label]}, fresh=True)

    @_guard
    def ann_open_workspace(ident, task_label):
        ident = (ident or "").strip()
        if not is_workspace_id(ident):
            raise UserInputError("Paste a workspace id (24 characters, shown after an upload).")
        return show({"source": ident, "task": ANNOTATION_TASKS[task_label]}, fresh=True)

    @_guard
    def ann_restore(remembered, task_label, state):
        """On opening the tab: reopen the workspace this browser used last (progress is on disk).

        Run when the tab is shown, not on page load: the editor drops a layer it receives while
        hidden ("No draw texture found for layer" in Gradio 6.31)."""
        if state or not remembered or not isinstance(remembered, dict):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        source, task = remembered.get("source"), remembered.get("task")
        if task not in ANNOTATION_TASKS.values():
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if source == "data" and data_path is None:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if source != "data" and not (is_workspace_id(source) and (paths.workspaces / source / "images").is_dir()):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        label = next(k for k, v in ANNOTATION_TASKS.items() if v == task)
        return (*show({"source": source, "task": task}, fresh=True), label)

    @_guard
    def ann_task_changed(task_label, state):
        if not state:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return show({**state, "task": ANNOTATION_TASKS[task_label]}, fresh=True)

    @_guard
    def ann_move(state, step: int):
        ws = workspace_for(state)
        if not ws.items:
            raise UserInputError("This folder has no images.")
        return show(state, (state.get("index", 0) + step) % len(ws))

    @_guard
    def ann_next_unreviewed(state):
        ws = workspace_for(state)
        index = ws.first_unreviewed((state.get("index", 0) + 1) % max(len(ws), 1))
        if index is None:
            gr.Info("Every image is reviewed.")
            index = state.get("index", 0)
        return show(state, index)

    def _predictor(task: str, threshold: float):
        def predict(rgb: np.ndarray):
            spec = get_task(task)
            return spec.label_of(run_tasks(rgb, spec.labelled_from, threshold))
        return predict

    @_guard
    def ann_prelabel(state, redo, threshold, progress=gr.Progress()):
        ws = workspace_for(state)
        need_model()
        predict = _predictor(ws.task, threshold)
        with ws.lock:
            items = progress.tqdm(ws.items, desc="Pre-labelling", unit="images")
            summary = ws.prelabel(predict, items, redo=bool(redo), threshold=float(threshold))
        gr.Info(f"Labelled {summary['labelled']}, kept {summary['kept']} model labels and "
                f"{summary['reviewed_kept']} reviewed labels, {summary['failed']} failed.")
        return show(state, state.get("index", 0))

    @_guard
    def ann_accept(state, editor, overwrite, progress=gr.Progress()):
        ws = workspace_for(state)
        if not ws.items:
            raise UserInputError("This folder has no images.")
        index = state.get("index", 0)
        rel = ws.items[index]
        if ws.store.is_reviewed(rel) and not overwrite:
            raise UserInputError(f"{rel} is already reviewed: tick 'Replace reviewed labels' to save over it.")
        rgb = ws.read_image(rel)
        label = core.label_from_editor(editor, ws.task, rgb.shape[:2])
        cleaned = None
        if get_task(ws.task).has_cleaned_image:
            progress(0.2, desc="Erasing inside the mask")
            cleaned = guided_removal(rgb, label).image if label.any() else rgb
        with ws.lock:
            ws.accept(rel, label, cleaned=cleaned, overwrite=bool(overwrite))
        following = ws.first_unreviewed((index + 1) % len(ws))
        return show(state, index if following is None else following)

    @_guard
    def ann_export(state, include_images, progress=gr.Progress()):
        ws = workspace_for(state)
        progress(0.1, desc="Writing the zip")
        out = paths.new_output_dir()
        name = "data" if state["source"] == "data" else state["source"][:8]
        zip_path = out / f"upocr-labels-{name}-{ws.task}.zip"
        manifest = ws.export(zip_path, include_images=bool(include_images))
        gr.Info(f"Exported {manifest['counts'].get('exported', 0)} labels.")
        return str(zip_path)

    # ---------------------------------------------------------------- layout
    examples = [[str(p)] for p in core.example_files()]
    cache = pipeline is not None
    cache_dir = paths.examples_cache / (key or "none")

    def correction_panel(prefix: str):
        with gr.Accordion("Correct the mask, then erase inside it", open=True):
            gr.Markdown("Paint with the brush to add text to the mask, use the eraser to remove it "
                        "(undo/redo are in the toolbar). What you paint is the mask that downloads.")
            editor = gr.ImageEditor(
                label="Mask editor", type="numpy", format="png", image_mode="RGBA",
                sources=(), transforms=(), layers=False, canvas_size=EDITOR_CANVAS, fixed_canvas=False,
                brush=gr.Brush(colors=core.brush_colours(TEXT_SEGMENTATION), color_mode="fixed"),
                eraser=gr.Eraser(), elem_id=f"{prefix}-editor", buttons=["fullscreen"], height=420,
            )
            with gr.Row():
                save = gr.Button("Download edited mask", elem_id=f"{prefix}-save-mask")
                erase = gr.Button("Erase this", variant="primary", elem_id=f"{prefix}-erase")
            mask_file = gr.File(label="Edited mask (PNG, 0/255)", elem_id=f"{prefix}-edited-mask", interactive=False)
        return editor, save, erase, mask_file

    def image_input(prefix: str):
        return ImageInput(label="Image (upload, drop or paste)", type="filepath", image_mode=None,
                          sources=["upload", "clipboard"], format="png", elem_id=f"{prefix}-input", height=320)

    def add_examples(prefix, inputs, outputs, fn):
        if not examples:
            return
        with _examples_cache(cache_dir):
            gr.Examples(examples=examples, inputs=inputs, outputs=outputs if cache else None, elem_id=f"{prefix}-examples",
                        fn=fn if cache else None, cache_examples=cache, cache_mode="lazy" if cache else None,
                        api_visibility="private", examples_per_page=8)

    private = dict(api_visibility="private")
    with gr.Blocks(title="UPOCR Studio", analytics_enabled=False) as demo:
        gr.Markdown(
            "# UPOCR Studio\nOne image-to-image network for **text removal**, **text segmentation** and "
            "**tampered text detection** ([UPOCR, ICML 2024](https://arxiv.org/abs/2312.02694))."
        )
        if pipeline is None:
            gr.HTML(
                "<div id='no-model-banner' style='border:2px solid #d97706;background:#fffbeb;color:#78350f;"
                "padding:12px 16px;border-radius:8px'><b>No model loaded.</b> "
                + (html.escape(load_error) if load_error else NO_WEIGHTS_MESSAGE) + "</div>"
            )
        else:
            gr.Markdown(DEFAULT_MODEL_NOTE if is_default_model else f"Model: `{model_name}`", elem_id="model-name")

        # outside the tabs: tab contents mount only when first opened, and this must be read on load
        ann_remember = gr.BrowserState(None, storage_key="upocr-studio-annotate",
                                       secret=browser_secret(paths.workspaces))
        with gr.Tabs():
            # ------------------------------------------------------------ removal
            with gr.Tab("Text removal", id="removal"):
                with gr.Row():
                    with gr.Column():
                        rm_in = image_input("rm")
                        rm_keep = gr.Checkbox(True, label="Change only the detected text (every other pixel "
                                              "stays as it is)", elem_id="rm-keep")
                        rm_run = gr.Button("Remove text", variant="primary", elem_id="rm-run")
                    with gr.Column():
                        rm_slider = gr.ImageSlider(label="Before / after", type="numpy", format="png",
                                                   elem_id="rm-slider", max_height=420)
                        rm_file = gr.File(label="Text-free image (PNG)", elem_id="rm-file", interactive=False)
                rm_editor, rm_save, rm_erase, rm_mask_file = correction_panel("rm")
                add_examples("rm", [rm_in], [rm_slider, rm_file, rm_editor], ui_remove)
                rm_run.click(ui_remove, [rm_in, rm_keep], [rm_slider, rm_file, rm_editor], **private)
                rm_erase.click(ui_erase, [rm_in, rm_editor], [rm_slider, rm_file], **private)
                rm_save.click(ui_save_mask, [rm_in, rm_editor], [rm_mask_file], **private)

            # ------------------------------------------------------------ segmentation
            with gr.Tab("Text segmentation", id="segmentation"):
                seg_state = gr.State(None)
                with gr.Row():
                    with gr.Column():
                        seg_in = image_input("seg")
                        seg_run = gr.Button("Segment text", variant="primary", elem_id="seg-run")
                    with gr.Column():
                        seg_overlay = gr.Image(label="Text mask over the image", format="png", type="numpy",
                                               interactive=False, elem_id="seg-overlay", height=320)
                        with gr.Row():
                            seg_threshold = gr.Slider(0.01, 0.99, value=DEFAULT_SEGMENTATION_THRESHOLD, step=0.01,
                                                      label="Threshold",
                                                      info="Updates the mask at once (no re-run); resets the editor below.",
                                                      elem_id="seg-threshold")
                            seg_opacity = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Mask opacity",
                                                    elem_id="seg-opacity")
                        with gr.Row():
                            seg_mask_file = gr.File(label="Mask (PNG, 0/255)", elem_id="seg-mask-file", interactive=False)
                            seg_prob_file = gr.File(label="Probability map (16-bit PNG)", elem_id="seg-prob-file",
                                                    interactive=False)
                seg_editor, seg_save, seg_erase, seg_edit_file = correction_panel("seg")
                with gr.Row():
                    seg_erase_slider = gr.ImageSlider(label="Erased inside the mask", type="numpy", format="png",
                                                      elem_id="seg-erase-slider", max_height=420)
                    seg_erase_file = gr.File(label="Erased image (PNG)", elem_id="seg-erase-file", interactive=False)
                add_examples("seg", [seg_in], [seg_overlay, seg_mask_file, seg_prob_file, seg_editor, seg_threshold, seg_opacity],
                             example_segment)
                seg_run.click(ui_segment, [seg_in, seg_threshold, seg_opacity],
                              [seg_overlay, seg_mask_file, seg_prob_file, seg_editor, seg_state], **private)
                for slider in (seg_threshold, seg_opacity):
                    slider.input(ui_rethreshold, [seg_threshold, seg_opacity, seg_state, seg_prob_file, seg_in],
                                 [seg_overlay, seg_mask_file, seg_editor, seg_state], trigger_mode="always_last",
                                 show_progress="minimal", concurrency_limit=None, **private)
                seg_erase.click(ui_erase, [seg_in, seg_editor], [seg_erase_slider, seg_erase_file], **private)
                seg_save.click(ui_save_mask, [seg_in, seg_editor], [seg_edit_file], **private)

            # ------------------------------------------------------------ tampering
            with gr.Tab("Tampered text detection", id="tampering"):
                with gr.Row():
                    with gr.Column():
                        tp_in = image_input("tp")
                        tp_run = gr.Button("Detect tampered text", variant="primary", elem_id="tp-run")
                    with gr.Column():
                        tp_annotated = gr.AnnotatedImage(label="Real text and tampered text", format="png",
                                                         color_map=core.tamper_legend_colours(), show_legend=True,
                                                         elem_id="tp-annotated", height=320)
                        tp_table = gr.Dataframe(headers=["#", "x0", "y0", "x1", "y1", "area", "score"],
                                                label="Tampered regions (box in pixels, mean score)",
                                                interactive=False, elem_id="tp-table", max_height=240)
                        tp_files = gr.File(label="Labels PNG (0 background, 1 real text, 2 tampered text) and overlay",
                                           file_count="multiple", elem_id="tp-files", interactive=False)
                add_examples("tp", [tp_in], [tp_annotated, tp_table, tp_files], ui_tamper)
                tp_run.click(ui_tamper, [tp_in], [tp_annotated, tp_table, tp_files], **private)

            # ------------------------------------------------------------ all tasks
            with gr.Tab("All tasks", id="all"):
                gr.Markdown("All three tasks share one encoder pass.")
                with gr.Row():
                    with gr.Column():
                        all_in = image_input("all")
                        all_run = gr.Button("Run all tasks", variant="primary", elem_id="all-run")
                    with gr.Column():
                        all_slider = gr.ImageSlider(label="Text removal", type="numpy", format="png",
                                                    elem_id="all-slider", max_height=320)
                with gr.Row():
                    all_seg = gr.Image(label="Text segmentation", format="png", type="numpy", interactive=False,
                                       elem_id="all-seg", height=320)
                    all_tp = gr.AnnotatedImage(label="Tampered text detection", format="png",
                                               color_map=core.tamper_legend_colours(), show_legend=True,
                                               elem_id="all-tp", height=320)
                all_table = gr.Dataframe(headers=["#", "x0", "y0", "x1", "y1", "area", "score"],
                                         label="Tampered regions", interactive=False, max_height=200)
                all_files = gr.File(label="Downloads", file_count="multiple", elem_id="all-files", interactive=False)
                add_examples("all", [all_in], [all_slider, all_seg, all_tp, all_table, all_files], ui_all)
                all_run.click(ui_all, [all_in], [all_slider, all_seg, all_tp, all_table, all_files], **private)

            # ------------------------------------------------------------ annotate
            with gr.Tab("Annotate", id="annotate", elem_id="annotate-panel") as annotate_tab:
                gr.Markdown(
                    "Label many images: load them, pre-label them all with the model, then correct each mask "
                    "and **Accept** it (it becomes *reviewed*). Progress is saved on disk: reopening the same "
                    "folder or uploading the same files again resumes where you stopped. A reviewed label is "
                    "never replaced unless you tick *Replace reviewed labels*.\n\n" + SHORTCUTS_MD
                )
                ann_state = gr.State(None)
                with gr.Row():
                    ann_task = gr.Dropdown(list(ANNOTATION_TASKS), value="Text segmentation", label="Task",
                                           elem_id="ann-task", scale=1)
                    ann_files = gr.File(label="Images or a zip of images", file_count="multiple",
                                        file_types=["image", ".zip"], elem_id="ann-files", scale=2, height=140)
                    with gr.Column(scale=1):
                        ann_ws = gr.Textbox(label="Workspace id (to reopen an upload)", elem_id="ann-workspace",
                                            max_lines=1)
                        ann_open_ws = gr.Button("Open workspace", size="sm", elem_id="ann-open-workspace")
                        ann_open_data = gr.Button(
                            f"Open data folder ({data_path.name})" if data_path else "Open data folder",
                            size="sm", visible=data_path is not None, elem_id="ann-open-data")
                with gr.Row():
                    ann_threshold = gr.Slider(0.01, 0.99, value=DEFAULT_SEGMENTATION_THRESHOLD, step=0.01,
                                              label="Threshold for pre-labelling (text masks)", elem_id="ann-threshold")
                    ann_redo = gr.Checkbox(label="Also replace model labels (reviewed labels are kept)", value=False,
                                           elem_id="ann-redo")
                    ann_prelabel_btn = gr.Button("Pre-label all", variant="primary", elem_id="ann-prelabel")
                ann_status = gr.Markdown("Open a folder or upload images.", elem_id="ann-status")
                ann_editor = gr.ImageEditor(
                    label="Label (brush: add, eraser: remove)", type="numpy", format="png", image_mode="RGBA",
                    sources=(), transforms=(), layers=False, canvas_size=EDITOR_CANVAS, fixed_canvas=False,
                    brush=gr.Brush(colors=core.brush_colours(TEXT_SEGMENTATION), color_mode="fixed"),
                    eraser=gr.Eraser(), elem_id="ann-editor", buttons=["fullscreen"], height=460,
                )
                with gr.Row():
                    ann_prev = gr.Button("← Previous", elem_id="ann-prev")
                    ann_next = gr.Button("Next →", elem_id="ann-next")
                    ann_next_unrev = gr.Button("Next unreviewed", elem_id="ann-next-unreviewed")
                    ann_accept_btn = gr.Button("Accept", variant="primary", elem_id="ann-accept")
                    ann_overwrite = gr.Checkbox(label="Replace reviewed labels", value=False, elem_id="ann-overwrite")
                with gr.Row():
                    ann_include_images = gr.Checkbox(label="Include the images in the zip", value=False)
                    ann_export_btn = gr.Button("Export zip (PNG masks, COCO RLE, LabelMe, manifest)",
                                               elem_id="ann-export")
                    ann_zip = gr.File(label="Labels zip", elem_id="ann-zip", interactive=False)

                view = [ann_editor, ann_status, ann_state, ann_remember, ann_ws]
                cheap = dict(private, concurrency_limit=None)  # no model involved
                ann_files.upload(ann_upload, [ann_files, ann_task], view, **cheap)
                ann_open_data.click(ann_open_data_dir, [ann_task], view, **cheap)
                ann_open_ws.click(ann_open_workspace, [ann_ws, ann_task], view, **cheap)
                ann_task.input(ann_task_changed, [ann_task, ann_state], view, **cheap)
                ann_prev.click(functools.partial(ann_move, step=-1), [ann_state], view, **cheap)
                ann_next.click(functools.partial(ann_move, step=1), [ann_state], view, **cheap)
                ann_next_unrev.click(ann_next_unreviewed, [ann_state], view, **cheap)
                ann_prelabel_btn.click(ann_prelabel, [ann_state, ann_redo, ann_threshold], view, **private)
                ann_accept_btn.click(ann_accept, [ann_state, ann_editor, ann_overwrite], view, **private)
                ann_export_btn.click(ann_export, [ann_state, ann_include_images], [ann_zip], **private)
                annotate_tab.select(ann_restore, [ann_remember, ann_task, ann_state], view + [ann_task], **cheap)

        # ---------------------------------------------------------------- public API endpoints
        with gr.Row(visible=False):
            api_image = gr.File(label="image", file_types=["image"])
            api_removed = gr.File(label="text_removed")
            api_mask = gr.File(label="text_mask")
            api_labels = gr.File(label="tamper_labels")
            api_overlay = gr.File(label="tamper_overlay")
            api_trigger = gr.Button("api")
        api_trigger.click(api_remove_text, [api_image], [api_removed], api_name="remove_text",
                          api_description="Text removal: an image file in, the text-free RGB PNG out.")
        api_trigger.click(api_segment_text, [api_image], [api_mask], api_name="segment_text",
                          api_description="Text segmentation: an image file in, the text mask PNG (0/255) out.")
        api_trigger.click(api_detect_tampering, [api_image], [api_labels, api_overlay], api_name="detect_tampering",
                          api_description="Tampered text detection: the label PNG (0 background, 1 real text, "
                                          "2 tampered text) and a coloured overlay PNG.")
        api_trigger.click(api_run_all, [api_image], [api_removed, api_mask, api_labels, api_overlay],
                          api_name="run_all", api_description="All three tasks with one encoder pass.")
        demo.load(None, None, None, js=_SHORTCUTS_JS, **private)

    demo.queue(max_size=queue_size, default_concurrency_limit=concurrency)
    allowed = [str(paths.outputs), str(core.EXAMPLES_DIR), str(cache_dir)]
    blocked = [str(paths.workspaces)] + ([str(data_path)] if data_path else [])
    demo.studio = StudioConfig(paths=paths, max_file_size=max_file_size, data_dir=data_path, model_key=key,
                               allowed_paths=allowed, blocked_paths=blocked)
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
