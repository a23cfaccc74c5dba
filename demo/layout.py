"""The app's widgets: one builder per tab, the shared pieces, and the public API in one place.

Builders only create widgets and wire their events to handler methods (:mod:`demo.handlers`)
through :func:`~demo.handlers.guard`; they hold no logic of their own.
"""

from __future__ import annotations

import contextlib
import html
import os
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from upocr.io import ImageReadError
from upocr.tasks import DEFAULT_SEGMENTATION_THRESHOLD, TEXT_SEGMENTATION

from . import core
from .annotate import ANNOTATION_TASKS
from .core import UserInputError
from .handlers import AnnotateHandlers, ApiHandlers, TaskHandlers, guard

# Gradio 6.31 pitfall: with a canvas larger than the image, a layer passed in the editor's value is
# drawn off-centre and the first stroke starts a blank layer (the mask is lost). A canvas smaller
# than any image keeps the layer aligned; with fixed_canvas=False the canvas then follows the image.
EDITOR_CANVAS = (32, 32)

SHORTCUTS_MD = (
    "**Keyboard** (Annotate tab, when no text field has the focus): "
    "<kbd>A</kbd> accept · <kbd>N</kbd> or <kbd>→</kbd> next · <kbd>P</kbd> or <kbd>←</kbd> previous · "
    "<kbd>U</kbd> next unreviewed."
)

SHORTCUTS_JS = """
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

#: Events that run the model: the app's default concurrency limit applies.
PRIVATE = dict(api_visibility="private")
#: Events that never touch the model: no concurrency limit.
CHEAP = dict(PRIVATE, concurrency_limit=None)


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


@dataclass
class Examples:
    """The example images and whether their outputs are cached (only with a model)."""

    files: list[list[str]]
    cache: bool
    cache_dir: Path

    def add(self, prefix, inputs, outputs, fn, *, cache: bool = True):
        if not self.files:
            return
        cached = self.cache and cache
        with _examples_cache(self.cache_dir):
            gr.Examples(examples=self.files, inputs=inputs, outputs=outputs if self.cache else None,
                        elem_id=f"{prefix}-examples", fn=fn if self.cache else None, cache_examples=cached,
                        cache_mode="lazy" if cached else None, run_on_click=self.cache and not cached,
                        api_visibility="private", examples_per_page=8)


def image_input(prefix: str) -> ImageInput:
    return ImageInput(label="Image (upload, drop or paste)", type="filepath", image_mode=None,
                      sources=["upload", "clipboard"], format="png", elem_id=f"{prefix}-input", height=320)


def mask_editor(elem_id: str, label: str, height: int) -> gr.ImageEditor:
    return gr.ImageEditor(
        label=label, type="numpy", format="png", image_mode="RGBA",
        sources=(), transforms=(), layers=False, canvas_size=EDITOR_CANVAS, fixed_canvas=False,
        brush=gr.Brush(colors=core.brush_colours(TEXT_SEGMENTATION), color_mode="fixed"),
        eraser=gr.Eraser(), elem_id=elem_id, buttons=["fullscreen"], height=height,
    )


def staged_editor(editor: gr.ImageEditor, locks: list[gr.Button]) -> gr.State:
    """The way every event changes ``editor``: it writes the new value into the returned state;
    the editor is then emptied and only after that given the value. The buttons in ``locks``
    (those that read the editor) are disabled in between, so nothing can save a half-filled editor.

    Gradio 6.31 pitfall: a value given to an editor that shows an image of another size has its
    label layer drawn off by half the size difference (centred on the old canvas), so strokes
    land in the wrong place. An empty editor takes the new image's size first.

    These are the only events that output an editor, and they show no progress: a status that
    arrives late can leave a progress overlay up over the canvas, and every stroke then lands on
    the overlay instead of the label (the save returns the unpainted layer)."""
    staged = gr.State(None)

    def blank():
        return [None] + [gr.update(interactive=False)] * len(locks)

    def fill(value):
        return [value] + [gr.update(interactive=True)] * len(locks)

    quiet = dict(CHEAP, show_progress="hidden")
    staged.change(blank, None, [editor, *locks], **quiet).then(fill, [staged], [editor, *locks], **quiet)
    return staged


def correction_panel(prefix: str):
    """The mask editor with its buttons; events write its value into the returned ``staged``."""
    with gr.Accordion("Correct the mask, then erase inside it", open=True):
        gr.Markdown("Paint with the brush to add text to the mask, use the eraser to remove it "
                    "(undo/redo are in the toolbar). What you paint is the mask that downloads.")
        editor = mask_editor(f"{prefix}-editor", "Mask editor", 420)
        with gr.Row():
            save = gr.Button("Download edited mask", elem_id=f"{prefix}-save-mask")
            erase = gr.Button("Erase this", variant="primary", elem_id=f"{prefix}-erase")
        staged = staged_editor(editor, [save, erase])
        mask_file = gr.File(label="Edited mask (PNG, 0/255)", elem_id=f"{prefix}-edited-mask", interactive=False)
    return editor, staged, save, erase, mask_file


def tampering_table(label: str, elem_id: str | None = None, max_height: int = 240) -> gr.Dataframe:
    return gr.Dataframe(headers=["#", "x0", "y0", "x1", "y1", "area", "score"], label=label, interactive=False,
                        elem_id=elem_id, max_height=max_height)


# ------------------------------------------------------------------------------------ task tabs


def clear_on_new_image(image: gr.Image, outputs: list, check, defaults: dict | None = None) -> None:
    """A new upload (or clearing the input) empties the outputs of the previous image: no mask,
    editor or file of another image stays on screen. ``defaults`` resets settings such as the
    threshold to their initial values. ``check(path)`` reads a new upload at once, so a file that
    is not an image, or too large, is reported when it arrives rather than at the next Run."""
    by_id = {id(component): value for component, value in (defaults or {}).items()}
    values = [by_id.get(id(component)) for component in outputs]

    def clear():
        return values[0] if len(values) == 1 else tuple(values)

    for trigger in (image.upload, image.clear):
        trigger(clear, None, outputs, show_progress="hidden", **CHEAP)
    image.upload(guard(check), [image], None, show_progress="hidden", **CHEAP)


def removal_tab(h: TaskHandlers, examples: Examples) -> None:
    with gr.Tab("Text removal", id="removal"):
        with gr.Row():
            with gr.Column():
                image = image_input("rm")
                keep = gr.Checkbox(True, label="Change only the detected text (every other pixel stays as it is)",
                                   elem_id="rm-keep")
                run = gr.Button("Remove text", variant="primary", elem_id="rm-run")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="numpy", format="png", elem_id="rm-slider",
                                        max_height=420)
                file = gr.File(label="Text-free image (PNG)", elem_id="rm-file", interactive=False)
        editor, staged, save, erase, mask_file = correction_panel("rm")
        # examples run live (not cached): their editor value goes through the session state
        examples.add("rm", [image], [slider, file, staged], guard(h.remove), cache=False)
        run.click(guard(h.remove), [image, keep], [slider, file, staged], **PRIVATE)
        erase.click(guard(h.erase), [image, editor], [slider, file], **PRIVATE)
        save.click(guard(h.save_mask), [image, editor], [mask_file], **PRIVATE)
        clear_on_new_image(image, [slider, file, staged, mask_file], h.check_upload)


def segmentation_tab(h: TaskHandlers, examples: Examples) -> None:
    with gr.Tab("Text segmentation", id="segmentation"):
        state = gr.State(None)  # the run's TextSegmentationResult: re-thresholding never re-runs the model
        with gr.Row():
            with gr.Column():
                image = image_input("seg")
                run = gr.Button("Segment text", variant="primary", elem_id="seg-run")
            with gr.Column():
                overlay = gr.Image(label="Text mask over the image", format="png", type="numpy", interactive=False,
                                   elem_id="seg-overlay", height=320)
                with gr.Row():
                    threshold = gr.Slider(0.01, 0.99, value=DEFAULT_SEGMENTATION_THRESHOLD, step=0.01, label="Threshold",
                                          info="Updates the mask at once (no re-run); resets the editor below.",
                                          elem_id="seg-threshold")
                    opacity = gr.Slider(0.0, 1.0, value=0.6, step=0.05, label="Mask opacity", elem_id="seg-opacity")
                with gr.Row():
                    mask_file = gr.File(label="Mask (PNG, 0/255)", elem_id="seg-mask-file", interactive=False)
                    prob_file = gr.File(label="Probability map (16-bit PNG)", elem_id="seg-prob-file",
                                        interactive=False)
        editor, staged, save, erase, edit_file = correction_panel("seg")
        with gr.Row():
            erase_slider = gr.ImageSlider(label="Erased inside the mask", type="numpy", format="png",
                                          elem_id="seg-erase-slider", max_height=420)
            erase_file = gr.File(label="Erased image (PNG)", elem_id="seg-erase-file", interactive=False)
        # examples run live (not cached): their result must reach the session state
        examples.add("seg", [image], [overlay, mask_file, prob_file, staged, state, threshold, opacity],
                     guard(h.segment_example), cache=False)
        run.click(guard(h.segment), [image, threshold, opacity], [overlay, mask_file, prob_file, staged, state],
                  **PRIVATE)
        threshold.input(guard(h.rethreshold), [threshold, opacity, state], [overlay, mask_file, staged, state],
                        trigger_mode="always_last", show_progress="minimal", **CHEAP)
        # the opacity only recolours the overlay: the editor keeps what the user painted
        opacity.input(guard(h.recolour), [opacity, state], [overlay], trigger_mode="always_last",
                      show_progress="minimal", **CHEAP)
        erase.click(guard(h.erase), [image, editor], [erase_slider, erase_file], **PRIVATE)
        save.click(guard(h.save_mask), [image, editor], [edit_file], **PRIVATE)
        clear_on_new_image(image, [overlay, mask_file, prob_file, staged, state, edit_file, erase_slider, erase_file,
                                   threshold],
                           h.check_upload, {threshold: DEFAULT_SEGMENTATION_THRESHOLD})


def tampering_tab(h: TaskHandlers, examples: Examples) -> None:
    with gr.Tab("Tampered text detection", id="tampering"):
        with gr.Row():
            with gr.Column():
                image = image_input("tp")
                run = gr.Button("Detect tampered text", variant="primary", elem_id="tp-run")
            with gr.Column():
                annotated = gr.AnnotatedImage(label="Real text and tampered text", format="png",
                                              color_map=core.tamper_legend_colours(), show_legend=True,
                                              elem_id="tp-annotated", height=320)
                table = tampering_table("Tampered regions (box in pixels, mean score)", "tp-table")
                files = gr.File(label="Labels PNG (0 background, 1 real text, 2 tampered text) and overlay",
                                file_count="multiple", elem_id="tp-files", interactive=False)
        examples.add("tp", [image], [annotated, table, files], guard(h.tamper))
        run.click(guard(h.tamper), [image], [annotated, table, files], **PRIVATE)
        clear_on_new_image(image, [annotated, table, files], h.check_upload)


def all_tasks_tab(h: TaskHandlers, examples: Examples) -> None:
    with gr.Tab("All tasks", id="all"):
        gr.Markdown("All three tasks share one encoder pass.")
        with gr.Row():
            with gr.Column():
                image = image_input("all")
                run = gr.Button("Run all tasks", variant="primary", elem_id="all-run")
            with gr.Column():
                slider = gr.ImageSlider(label="Text removal", type="numpy", format="png", elem_id="all-slider",
                                        max_height=320)
        with gr.Row():
            seg = gr.Image(label="Text segmentation", format="png", type="numpy", interactive=False, elem_id="all-seg",
                           height=320)
            tp = gr.AnnotatedImage(label="Tampered text detection", format="png",
                                   color_map=core.tamper_legend_colours(), show_legend=True, elem_id="all-tp",
                                   height=320)
        table = tampering_table("Tampered regions", max_height=200)
        files = gr.File(label="Downloads", file_count="multiple", elem_id="all-files", interactive=False)
        outputs = [slider, seg, tp, table, files]
        examples.add("all", [image], outputs, guard(h.all_tasks))
        run.click(guard(h.all_tasks), [image], outputs, **PRIVATE)
        clear_on_new_image(image, outputs, h.check_upload)


# ------------------------------------------------------------------------------------ annotate


def annotate_tab(h: AnnotateHandlers, remember: gr.BrowserState, data_path: Path | None) -> None:
    with gr.Tab("Annotate", id="annotate", elem_id="annotate-panel") as tab:
        gr.Markdown(
            "Label many images: load them, pre-label them all with the model, then correct each mask "
            "and **Accept** it (it becomes *reviewed*). Progress is saved on disk: reopening the same "
            "folder or uploading the same files again resumes where you stopped. A reviewed label is "
            "never replaced unless you tick *Replace reviewed labels*.\n\n" + SHORTCUTS_MD
        )
        state = gr.State(None)
        with gr.Row():
            task = gr.Dropdown(list(ANNOTATION_TASKS), value="Text segmentation", label="Task", elem_id="ann-task",
                               scale=1)
            files = gr.File(label="Images or a zip of images", file_count="multiple", file_types=["image", ".zip"],
                            elem_id="ann-files", scale=2, height=140)
            with gr.Column(scale=1):
                if os.environ.get("OAUTH_CLIENT_ID"):  # a Space with hf_oauth: workspaces follow the user
                    gr.LoginButton(elem_id="ann-login")
                ws_id = gr.Textbox(label="Workspace id (to reopen an upload)", elem_id="ann-workspace", max_lines=1)
                open_ws = gr.Button("Open workspace", size="sm", elem_id="ann-open-workspace")
                open_data = gr.Button(f"Open data folder ({data_path.name})" if data_path else "Open data folder",
                                      size="sm", visible=data_path is not None, elem_id="ann-open-data")
        with gr.Row():
            threshold = gr.Slider(0.01, 0.99, value=DEFAULT_SEGMENTATION_THRESHOLD, step=0.01,
                                  label="Threshold for pre-labelling (text masks)", elem_id="ann-threshold")
            redo = gr.Checkbox(label="Also replace model labels (reviewed labels are kept)", value=False,
                               elem_id="ann-redo")
            prelabel = gr.Button("Pre-label all", variant="primary", elem_id="ann-prelabel")
        status = gr.Markdown("Open a folder or upload images.", elem_id="ann-status")
        editor = mask_editor("ann-editor", "Label (brush: add, eraser: remove)", 460)
        with gr.Row():
            prev = gr.Button("← Previous", elem_id="ann-prev")
            nxt = gr.Button("Next →", elem_id="ann-next")
            next_unreviewed = gr.Button("Next unreviewed", elem_id="ann-next-unreviewed")
            least_confident = gr.Button("Least confident", elem_id="ann-least-confident")
            accept = gr.Button("Accept", variant="primary", elem_id="ann-accept")
            overwrite = gr.Checkbox(label="Replace reviewed labels", value=False, elem_id="ann-overwrite")
        with gr.Row():
            include_images = gr.Checkbox(label="Include the images in the zip", value=False)
            export = gr.Button("Export zip (PNG masks, COCO, LabelMe, Label Studio, manifest)", elem_id="ann-export")
            zip_file = gr.File(label="Labels zip", elem_id="ann-zip", interactive=False)

        view = [staged_editor(editor, [accept]), status, state, remember, ws_id]
        files.upload(guard(h.upload), [files, task, remember], view, **CHEAP)
        open_data.click(guard(h.open_data_dir), [task, remember], view, **CHEAP)
        open_ws.click(guard(h.open_workspace), [ws_id, task, remember], view, **CHEAP)
        task.input(guard(h.task_changed), [task, state], view, **CHEAP)
        prev.click(guard(h.previous), [state], view, **CHEAP)
        nxt.click(guard(h.next), [state], view, **CHEAP)
        next_unreviewed.click(guard(h.next_unreviewed), [state], view, **CHEAP)
        least_confident.click(guard(h.least_confident), [state], view, **CHEAP)
        prelabel.click(guard(h.prelabel), [state, redo, threshold], view, **PRIVATE)
        accept.click(guard(h.accept), [state, editor, overwrite], view, **PRIVATE)
        export.click(guard(h.export), [state, include_images], [zip_file], **PRIVATE)
        tab.select(guard(h.restore), [remember, task, state], view + [task], **CHEAP)


# ------------------------------------------------------------------------------------ public API


def public_api(api: ApiHandlers) -> None:
    """The four stable endpoints (``client.view_api()`` lists them): an image file in, PNG files out."""
    with gr.Row(visible=False):
        image = gr.File(label="image", file_types=["image"])
        removed = gr.File(label="text_removed")
        mask = gr.File(label="text_mask")
        labels = gr.File(label="tamper_labels")
        overlay = gr.File(label="tamper_overlay")
        trigger = gr.Button("api")
    # The API serves two requests at once (the interactive tabs one at a time: their events must
    # reach the editor in order); one large image at a time either way (demo.context).
    api_queue = dict(concurrency_limit=2, concurrency_id="public-api")
    trigger.click(guard(api.remove_text), [image], [removed], api_name="remove_text", **api_queue,
                  api_description="Text removal: an image file in, the text-free RGB PNG out (only the detected "
                                  "text changes).")
    trigger.click(guard(api.segment_text), [image], [mask], api_name="segment_text", **api_queue,
                  api_description="Text segmentation: an image file in, the text mask PNG (0/255) out.")
    trigger.click(guard(api.detect_tampering), [image], [labels, overlay], api_name="detect_tampering", **api_queue,
                  api_description="Tampered text detection: the label PNG (0 background, 1 real text, "
                                  "2 tampered text) and a coloured overlay PNG.")
    trigger.click(guard(api.run_all), [image], [removed, mask, labels, overlay], api_name="run_all", **api_queue,
                  api_description="All three tasks with one encoder pass.")
