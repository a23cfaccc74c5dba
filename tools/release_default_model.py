"""Turn a training run into the bundled default model (``assets/upocr-tiny``).

    python tools/release_default_model.py --run ~/.cache/upocr/runs/default-v2 --out assets/upocr-tiny [--overwrite]

What it does:

1. loads the run's model (``--source model``: the final ``save_pretrained`` folder, ``best``: the
   lowest validation loss, ``last``: the latest checkpoint);
2. measures it through :class:`upocr.UPOCRPipeline` (``--mode``, default ``resize``) on held-out
   synthetic scenes rendered at ``--size`` (default 512; the held-out part of the fonts and
   pictures the run trained with, a seed the run never validated on): removal PSNR / MSSIM / AGE / pEPs / pCEPs, also
   for the untouched input and with ``preserve_background``, plus PSNR on the text pixels alone;
   segmentation fgIoU / precision / recall / F; tampering per-class and mean IoU / F;
3. applies the release gate, a floor that the released model clears with room to spare and an
   untrained, broken or older one cannot: segmentation fgIoU >= ``--min-fgiou`` (0.6; predicting
   "all text" scores about 0.03 on these scenes, "no text" 0, the v1 default 0.33, v3 0.52 without
   and 0.74 with its stroke refinement, v4 0.77) with precision and recall each >= ``--min-precision-recall``
   (0.6: the mask is neither mostly noise nor mostly missing), and text-pixel error of the removal
   at most ``--max-text-error-ratio`` (0.25) times the input's (v2: 0.18, v1: 0.24). A model that fails is not released (exit 1, nothing
   written) unless ``--force``: an untrained or broken model must never become the default that
   the app, the CLI and annotators see. The gate is not a quality target: the card reports the
   measured numbers and how far they are from the paper model's;
   Before measuring, the tampering decision is calibrated: the ``tampered_bias`` (see
   :class:`upocr.UPOCR`) with the best mean IoU on 12 held-out scenes of the validation seed (1,
   never the release seed) is saved with the weights, and so is the ``stroke_refinement`` with
   the best text segmentation fgIoU there (:mod:`upocr.evaluation.calibration`;
   ``--no-tampering-calibration``, ``--no-stroke-calibration``: keep the
   run's own);
4. measures the previous release (``--previous``, default: the release already at ``--out``) on
   the same scenes, so the card can set the two side by side;
5. writes ``model.safetensors``, ``config.json``, ``metrics.json``, a model card (``README.md``)
   with the training facts and the numbers, and before/after pictures on real images
   (scikit-image's printed page, text and the example images in ``assets/examples``), by this
   model and by the previous release, into a temporary folder, then puts it in place with one
   rename. An existing release is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

from upocr import UPOCR, UPOCRPipeline  # noqa: E402
from upocr.data.datasets import SyntheticDataset  # noqa: E402
from upocr.data.sources import packed_origin  # noqa: E402
from upocr.evaluation.evaluate import evaluate, ground_truth, image_to_uint8, json_safe  # noqa: E402
from upocr.results import TextRemovalResult  # noqa: E402
from upocr.evaluation.calibration import (CALIBRATION_SEED, calibrate_stroke_refinement,  # noqa: E402,F401
                                          calibrate_tampered_bias, with_settings)
from upocr.tasks import TAMPERED_TEXT_DETECTION, TASKS, TEXT_REMOVAL, TEXT_SEGMENTATION  # noqa: E402

#: Seed of the held-out scenes used for release metrics (training validates on seed 1).
RELEASE_SEED = 2
#: The release gate's floor (see the module docs).
MIN_FGIOU = 0.6
MIN_PRECISION_RECALL = 0.6
MAX_TEXT_ERROR_RATIO = 0.25
EXAMPLE_WIDTH = 320
#: The recipe the card names when the release is not told (``--recipe``).
DEFAULT_RECIPE = "configs/default-v2.yaml"


class GateError(RuntimeError):
    """The model does not meet the release gate."""


# ------------------------------------------------------------------------------------- loading


def load_run_model(run: Path, source: str) -> tuple[UPOCR, dict]:
    """The model of ``run`` and what the run says about its training (``training.json``)."""
    if source in ("model", "best"):
        folder = run / source
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{folder}: no model.safetensors (has the run finished or validated?)")
        model = UPOCR.from_pretrained(folder)
        info_path = folder / "training.json"
        info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
        return model, info
    checkpoint_path = run / "checkpoints" / "last.pt"
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"{checkpoint_path}: no checkpoint")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    model = UPOCR(**checkpoint["model_config"])
    model.load_state_dict(checkpoint["model"], strict=True)
    info = {"step": checkpoint["step"], "elapsed_s": checkpoint.get("elapsed"), "images": checkpoint.get("images"),
            "config": json.loads(checkpoint["config"]),
            "validation": json.loads(checkpoint["last_val"]) if checkpoint.get("last_val") else None}
    return model.eval(), info


# ------------------------------------------------------------------------------------- metrics


def _text_psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(PSNR, mean absolute error in 0-255) over the pixels of ``mask``."""
    diff = pred[mask].astype(np.float64) - truth[mask].astype(np.float64)
    if diff.size == 0:
        return math.nan, math.nan
    mse = float(np.mean((diff / 255.0) ** 2))
    return (100.0 if mse == 0 else 10 * math.log10(1.0 / mse)), float(np.mean(np.abs(diff)))


def measure(pipe: UPOCRPipeline, count: int, size: int, progress: bool = False, fonts=None, backgrounds=None) -> dict:
    """Release metrics on ``count`` held-out scenes per task, rendered at ``size`` with the
    held-out part of ``fonts`` and ``backgrounds`` (``None``: the engine's defaults)."""
    report: dict = {"held_out": {"split": "heldout", "seed": RELEASE_SEED, "count": count, "size": size,
                                 "mode": pipe.mode}}
    sources = {"fonts": fonts, "backgrounds": backgrounds}
    report["held_out"].update({k: v for k, v in sources.items() if v is not None})  # the defaults go unsaid
    sets = {t: SyntheticDataset(t, seed=RELEASE_SEED, length=count, size=size, split="heldout", fonts=fonts,
                                backgrounds=backgrounds) for t in TASKS}

    # Text removal: the model's output, the untouched input (a baseline) and the output kept to
    # the model's own (dilated) text mask, both from one encoder pass per image.
    outputs: dict[int, dict[str, np.ndarray]] = {}
    text_scores: dict[str, list[tuple[float, float]]] = {"input": [], "output": [], "preserved": []}
    for index in range(count):
        item = sets[TEXT_REMOVAL][index]
        image = image_to_uint8(item["image"])
        truth = ground_truth(item["target"], TEXT_REMOVAL)
        text = np.asarray(item["mask"])[0] > 0.5
        # one pass: the raw output, and the default (kept to the dilated text mask) from it
        results = pipe.run_all(image, [TEXT_REMOVAL, TEXT_SEGMENTATION], preserve_background=False)
        removal = results[TEXT_REMOVAL]
        kept = removal.restricted_to(results[TEXT_SEGMENTATION].mask)
        outputs[index] = {"input": image, "output": removal.image, "preserved": kept.image}
        for name, pred in outputs[index].items():
            text_scores[name].append(_text_psnr(pred, truth, text))

    def removal_variant(name: str) -> dict:
        position = iter(range(count))

        def predict(image, task):
            return TextRemovalResult(image=outputs[next(position)][name], original=image)

        metrics = evaluate(predict, [sets[TEXT_REMOVAL][i] for i in range(count)], TEXT_REMOVAL,
                           progress=False)["metrics"]
        scores = np.array(text_scores[name], dtype=np.float64)
        metrics["text_psnr"] = float(np.nanmean(scores[:, 0]))
        metrics["text_mae"] = float(np.nanmean(scores[:, 1]))
        return metrics

    report[TEXT_REMOVAL] = {name: removal_variant(name) for name in ("output", "preserved", "input")}
    for task in (TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION):
        report[task] = evaluate(lambda image, t: pipe(image, t), sets[task], task, progress=progress)["metrics"]
    report["printed_page"] = printed_page_score(pipe)
    return json_safe(report)


def page_ink() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's scanned printed page (RGB) and its ink: pixels darker than Sauvola's local
    threshold (window 25, k 0.2), the standard binarisation for unevenly lit documents."""
    from skimage import data
    from skimage.filters import threshold_sauvola

    page = np.asarray(data.page())
    ink = page < threshold_sauvola(page, window_size=25, k=0.2)
    return np.repeat(page[..., None], 3, axis=-1), ink


def printed_page_score(pipe: UPOCRPipeline) -> dict:
    """Text segmentation of the printed page against its ink: fgIoU, precision, recall."""
    from upocr.evaluation.metrics import SegmentationMetrics

    page, ink = page_ink()
    metrics = SegmentationMetrics()
    metrics.update(pipe(page, TEXT_SEGMENTATION).mask, ink)
    return metrics.compute()


def gate(report: dict, min_fgiou: float, max_text_error_ratio: float, min_precision_recall: float = 0.0) -> list[str]:
    """Reasons the model fails the release gate (empty: it passes)."""
    failures = []
    seg = report[TEXT_SEGMENTATION]
    fgiou = seg["fgiou"] or 0.0
    if fgiou < min_fgiou:
        failures.append(f"segmentation fgIoU {fgiou:.3f} < {min_fgiou}")
    for name in ("precision", "recall"):
        value = seg.get(name) or 0.0
        if value < min_precision_recall:
            failures.append(f"segmentation {name} {value:.3f} < {min_precision_recall}")
    removal = report[TEXT_REMOVAL]
    before, after = removal["input"]["text_mae"], removal["output"]["text_mae"]
    if before is None or after is None or after > max_text_error_ratio * before:
        failures.append(f"removal error on the text pixels {_fmt(after, 1)} (of 255) is not at most "
                        f"{max_text_error_ratio} x the input's {_fmt(before, 1)}")
    return failures


# ------------------------------------------------------------------------------------- pictures


def example_images() -> list[tuple[str, np.ndarray]]:
    """Real images for the before/after pictures: scikit-image's printed page and text, and the
    example images shipped in assets/examples."""
    from skimage import data

    from upocr.io import read_image

    images = [("skimage-page", read_image(np.asarray(data.page()))), ("skimage-text", read_image(np.asarray(data.text())))]
    for path in sorted((ROOT / "assets" / "examples").glob("*")):
        if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
            images.append((path.stem, read_image(path)))
    return images


def _fit_width(image: np.ndarray, width: int) -> Image.Image:
    picture = Image.fromarray(image)
    height = max(1, round(picture.height * width / picture.width))
    return picture.resize((width, height), Image.Resampling.LANCZOS)


def before_after(pipe: UPOCRPipeline, image: np.ndarray) -> Image.Image:
    """One row: input | text removed | text mask over the input | tampering overlay."""
    from demo.core import mask_overlay

    results = pipe.run_all(image)
    panels = [image, results[TEXT_REMOVAL].image, mask_overlay(image, results[TEXT_SEGMENTATION].mask),
              results[TAMPERED_TEXT_DETECTION].overlay()]
    tiles = [_fit_width(p, EXAMPLE_WIDTH) for p in panels]
    row = Image.new("RGB", (EXAMPLE_WIDTH * len(tiles) + 6 * (len(tiles) - 1), tiles[0].height), "white")
    for k, tile in enumerate(tiles):
        row.paste(tile, (k * (EXAMPLE_WIDTH + 6), 0))
    return row


# ------------------------------------------------------------------------------------- card


def shown_path(path: Path) -> str:
    """``path`` as the card shows it: relative to the repository, or to ``~``, never the builder's
    absolute home."""
    path = Path(path).expanduser().resolve()
    for base, prefix in ((ROOT, ""), (Path.home().resolve(), "~/")):
        if path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return path.as_posix()


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _per_task(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{n} {task}" for task, n in value.items())
    return f"{value} per task,"


def _weights(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{w:g}x ({task})" for task, w in value.items())
    return f"{value:g}x (segmentation and tampering)"


def _data_sources(fonts, backgrounds) -> str:
    """The card's words for the training data's fonts and pictures."""
    named = {"default": "the fonts that ship with matplotlib", "debian": "the Debian font packages in "
             "`configs/training-packages.txt`"}
    pictures = {"default": "scikit-image's photos", "debian": "the Debian wallpaper packages in "
                "`configs/training-packages.txt`", "screens": "application screens"}
    packed = any(packed_origin(entry) for entry in [*(fonts or []), *(backgrounds or [])])
    font_words = " and ".join(named.get(f, f"`{f}`") for f in (_unpacked(fonts) or ["default"]))
    picture_words = " and ".join(pictures.get(b, f"`{b}`") for b in (_unpacked(backgrounds) or ["default"]))
    copy = " (the train split of them, packed by `tools/pack_training_assets.py`)" if packed else ""
    return f"{font_words}, over {picture_words}{copy}, procedural textures and document pages"


def _metric_rows(report: dict) -> list[tuple[str, str, str]]:
    """(task, metric, value) rows of the held-out table for one measured model."""
    removal, seg, tamper = report[TEXT_REMOVAL], report[TEXT_SEGMENTATION], report[TAMPERED_TEXT_DETECTION]
    page = report.get("printed_page") or {}
    return [
        ("text segmentation", "fgIoU / precision / recall / F", f"{_fmt(seg['fgiou'])} / {_fmt(seg['precision'])} / "
         f"{_fmt(seg['recall'])} / {_fmt(seg['f'])}"),
        ("text segmentation", "printed page (scikit-image) against its ink: fgIoU", _fmt(page.get("fgiou"))),
        ("tampered text detection", "mean IoU (real, tampered)",
         f"{_fmt(tamper['mean_iou'])} ({_fmt(tamper['real_iou'])}, {_fmt(tamper['tampered_iou'])})"),
        ("tampered text detection", "mean F", _fmt(tamper["mean_f"])),
        ("text removal", "PSNR (dB), model output", _fmt(removal["output"]["psnr"], 2)),
        ("text removal", "PSNR (dB), output kept to the detected text (the default)",
         _fmt(removal["preserved"]["psnr"], 2)),
        ("text removal", "PSNR (dB), the untouched input", _fmt(removal["input"]["psnr"], 2)),
        ("text removal", "PSNR on the text pixels (dB): input -> output",
         f"{_fmt(removal['input']['text_psnr'], 2)} -> {_fmt(removal['output']['text_psnr'], 2)}"),
        ("text removal", "MSSIM, AGE, pEPs, pCEPs (output)",
         f"{_fmt(removal['output'].get('mssim'))}, {_fmt(removal['output'].get('age'), 2)}, "
         f"{_fmt(removal['output'].get('peps'), 4)}, {_fmt(removal['output'].get('pceps'), 4)}"),
    ]


def model_card(model: UPOCR, info: dict, report: dict, pictures: list[str], run: Path, source: str,
               recipe: str = DEFAULT_RECIPE) -> str:
    """The release's README: what it is, how it was trained, the held-out numbers (next to the
    previous release's on the same scenes when there was one) and before/after pictures."""
    config = info.get("config") or {}
    held = report["held_out"]
    previous = report.get("previous")
    elapsed = info.get("elapsed_s")
    datasets = config.get("datasets", {})
    first = next((specs[0] for specs in datasets.values() if specs), {})
    init_from = config.get("init_from")
    lines = [
        "---", "library_name: upocr", "license: apache-2.0", "pipeline_tag: image-to-image",
        "tags: [upocr, ocr, text-removal, text-segmentation, tampered-text-detection]", "---", "",
        "# UPOCR tiny: the default weights of UPOCR Studio", "",
    ]
    if report["gate"]["forced"]:
        lines += [f"**This model did not pass the release gate** ({'; '.join(report['gate']['failures'])}); "
                  "it was released with `--force`.", ""]
    channels = model.config.get("detail_channels")
    detail = (f" A detail path (`detail_channels` {list(channels)}) brings features of the input pixels at "
              "full and half resolution to the finest output heads." if channels else "")
    lines += [
        f"The `tiny` preset of UPOCR ({model.num_parameters() / 1e6:.2f} M parameters; the paper network has "
        f"108 M), {'fine-tuned from `' + str(init_from) + '`' if init_from else 'trained from scratch'} by this "
        "project on synthetic data for all three tasks: text removal, text segmentation and tampered text "
        f"detection. It works at {model.img_size}x{model.img_size} (`img_size`): the pipeline resizes an image to "
        f"that size, or tiles large images, and brings the results back to the input's size.{detail}", "",
        "It is a small model trained for some CPU-hours and GPU-minutes, meant to make the demo, the command line and "
        "pre-labelling work out of the box. Its masks are a starting point for correction, not the "
        "accuracy of the paper model; for that, convert the official checkpoint (`upocr convert`) or "
        "fine-tune on your data (`upocr train --init-from`).", "",
        "## Training", "",
        f"- Recipe: `{recipe}` (`upocr train --config {recipe}`); this release: "
        f"`{shown_path(run)}`, {source}, step {info.get('step')} of {config.get('steps')}.",
        f"- Time and hardware: {(elapsed or 0) / 3600:.2f} h on {info.get('hardware', 'a 2-core CPU')}; "
        f"{_count(info.get('images'))} training windows seen.",
        f"- Batch: {_per_task(config.get('batch_size'))} windows of {config.get('image_size')}x"
        f"{config.get('image_size')} per step; AdamW, peak lr "
        f"{config.get('lr')}, encoder ratio {config.get('lr_encoder_ratio')}, warm-up {config.get('warmup_steps')} "
        f"steps then linear decay, gradient clipping {config.get('grad_clip')}; text pixels weighted "
        f"{_weights(config.get('foreground_weight', 1.0))} in the losses.",
        f"- Data: synthetic scenes from `upocr synth`'s engine, rendered on the fly: text in "
        f"{_data_sources(first.get('fonts'), first.get('backgrounds'))}, with outlines, shadows, rotation, "
        "perspective, blur, noise and JPEG artefacts; tampering made by re-rendering words in the scene's "
        "own font, copy-move and splicing.",
    ]
    for task, specs in datasets.items():
        lines.append(f"  - {task}: " + "; ".join(", ".join(f"{k}={v}" for k, v in s.items() if k != "task")
                                                 for s in specs))
    rows = _metric_rows(report)
    tamper_iou = report[TAMPERED_TEXT_DETECTION].get("tampered_iou")
    lines += [
        "", "## Held-out metrics", "",
        f"{held['count']} scenes per task rendered at {held['size']}x{held['size']} from the held-out split "
        f"(fonts and backgrounds never used in training), seed {held['seed']}, run through `UPOCRPipeline` "
        f"in `{held['mode']}` mode. Produced by `tools/release_default_model.py`; all numbers are in "
        "`metrics.json`.", "",
    ]
    if previous:
        lines += ["| task | metric | previous release | this release |", "|---|---|---|---|"]
        lines += [f"| {t} | {m} | {old} | {new} |" for (t, m, new), (_, _, old) in zip(rows, _metric_rows(previous))]
    else:
        lines += ["| task | metric | value |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {v} |" for t, m, v in rows]
    lines += [
        "", "These are synthetic scenes like the training data; real photographs and scans are harder. "
        "FID is not computed.", "",
        f"Release gate (a floor against untrained or broken weights, not a quality target): fgIoU >= "
        f"{report['gate']['min_fgiou']}, precision and recall >= {report['gate']['min_precision_recall']}, "
        f"removal error on the text pixels <= {report['gate']['max_text_error_ratio']} x the input's.", "",
    ]
    calibration = report.get("tampering_calibration")
    if calibration:
        lines += [
            f"Tampering decision: `tampered_bias` {calibration['bias']:g} (in `config.json`) is added to the "
            "tampered-text output before each pixel takes its class, chosen for the best mean IoU on "
            f"{calibration['count']} other held-out scenes (seed {calibration['seed']}): there mean IoU "
            f"{_fmt(calibration['mean_iou_without'])} -> {_fmt(calibration['mean_iou'])}, tampered IoU "
            f"{_fmt(calibration['tampered_iou_without'])} -> {_fmt(calibration['tampered_iou'])}.", "",
        ]
    strokes = report.get("stroke_calibration")
    if strokes:
        lines += [(
            f"Text masks: `stroke_refinement` {strokes['offset']:g} (in `config.json`) moves the mask's edges onto "
            "the strokes from the image's own ink and background colours" if strokes["offset"] is not None else
            "Text masks are the network's own: stroke refinement did not help this model")
            + f", chosen for the best fgIoU on {strokes['count']} other held-out scenes (seed {strokes['seed']}): "
            f"there fgIoU {_fmt(strokes['fgiou_without'])} -> {_fmt(strokes['fgiou'])}.", ""]
    lines += [
        "## Limitations", "",
        "- Masks are a draft: thin or light text on busy backgrounds is often missed, some text-like "
        "texture is marked, and where ink and background are alike the edges are the network's soft ones. "
        "For comparison, the paper model reaches fgIoU 0.89 on TextSeg and PSNR 37.1 dB on SCUT-EnsText.",
        "- Raw text removal re-synthesises the whole image; the pipeline, the command line and the app keep "
        "its changes to the detected text by default (`preserve_background=True`).",
        ("- It does not detect tampering: on the held-out scenes it marks (almost) no pixel as tampered, "
         "so its tampering output only separates text from background." if (tamper_iou or 0.0) < 0.05 else
         "- Tampered text is rarely told apart from real text (see the tampered IoU above)."),
        "- Trained on synthetic scenes only; expect lower numbers on real photographs and scans.", "",
        "## On real images", "",
        "Each row: input, text removed, text mask (pink), tampering overlay (green real text, red tampered)."
        + (" For each image, the previous release first, then this one." if previous else ""), "",
    ]
    for name in pictures:
        if previous:
            lines += [f"previous release: ![{name} (previous)](examples/{name}-previous.jpg)", ""]
            lines += [f"this release: ![{name}](examples/{name}.jpg)", ""]
        else:
            lines.append(f"![{name}](examples/{name}.jpg)")
    lines += [
        "", "## Use", "", "```python", "from upocr import UPOCRPipeline", "",
        "pipe = UPOCRPipeline.from_pretrained()          # these weights", "mask = pipe(\"page.png\", task=\"text-segmentation\").mask",
        "```", "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- release


def run_sources(info: dict) -> tuple[list[str] | None, list[str] | None]:
    """The fonts and pictures the run trained with (its first dataset's), so that the held-out
    scenes hold out the same sources; ``None`` where the run used the engine's defaults."""
    for specs in ((info.get("config") or {}).get("datasets") or {}).values():
        for spec in specs:
            return _unpacked(spec.get("fonts")), _unpacked(spec.get("backgrounds"))
    return None, None


def _unpacked(entries: list[str] | None) -> list[str] | None:
    """``entries`` with each packed copy (tools/pack_training_assets.py) replaced by the sources
    it was copied from, so the held-out scenes hold out what the copy left out."""
    if entries is None:
        return None
    out: list[str] = []
    for entry in entries:
        for source in packed_origin(entry) or [entry]:
            if source not in out:
                out.append(source)
    return out


def _previous_pipeline(folder: Path, explicit: bool, mode: str) -> UPOCRPipeline | None:
    """The previous release to compare with. A release that is not there, or (when not asked for
    by name) one that cannot be loaded, means no comparison: the new release does not depend on it."""
    if not explicit and not folder.exists():
        return None
    try:
        return UPOCRPipeline(UPOCR.from_pretrained(folder), device="cpu", mode=mode)
    except (OSError, ValueError, RuntimeError) as error:
        if explicit:
            raise FileNotFoundError(f"--previous {folder}: {error}") from error
        print(f"warning: the release at {folder} cannot be loaded ({error}); the card has no comparison",
              file=sys.stderr)
        return None


def release(run: Path, out: Path, source: str = "model", count: int = 24, size: int = 512, mode: str = "resize",
            min_fgiou: float = MIN_FGIOU, max_text_error_ratio: float = MAX_TEXT_ERROR_RATIO, force: bool = False,
            overwrite: bool = False, progress: bool = False, min_precision_recall: float = MIN_PRECISION_RECALL,
            recipe: str = DEFAULT_RECIPE, previous: Path | None = None, calibrate_tampering: bool = True,
            calibrate_strokes: bool = True) -> dict:
    """Measure the run's model, apply the gate and write the release folder (see module docs).
    ``previous``: a released model (default: the release already at ``out``) measured on the same
    scenes and pictured on the same images, so the card shows the change."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a release; pass --overwrite to replace it")
    started = time.time()
    model, info = load_run_model(Path(run), source)
    fonts, backgrounds = run_sources(info)
    pipe = UPOCRPipeline(model, device="cpu", mode=mode)
    calibrations, settings = {}, {}
    if calibrate_tampering and TAMPERED_TEXT_DETECTION in model.tasks:
        calibrations["tampering_calibration"] = found = calibrate_tampered_bias(pipe, size, fonts=fonts,
                                                                                backgrounds=backgrounds)
        settings["tampered_bias"] = found["bias"]
    if calibrate_strokes and TEXT_SEGMENTATION in model.tasks:
        calibrations["stroke_calibration"] = found = calibrate_stroke_refinement(pipe, size, fonts=fonts,
                                                                                 backgrounds=backgrounds)
        settings["stroke_refinement"] = found["offset"]
    if settings:
        model = with_settings(model, **settings)
        pipe = UPOCRPipeline(model, device="cpu", mode=mode)
    report = measure(pipe, count, size, progress=progress, fonts=fonts, backgrounds=backgrounds)
    report.update(calibrations)
    failures = gate(report, min_fgiou, max_text_error_ratio, min_precision_recall)
    report["gate"] = {"min_fgiou": min_fgiou, "min_precision_recall": min_precision_recall,
                      "max_text_error_ratio": max_text_error_ratio,
                      "passed": not failures, "failures": failures, "forced": bool(failures and force)}
    if failures and not force:
        raise GateError("; ".join(failures))
    old_pipe = _previous_pipeline(out if previous is None else Path(previous), explicit=previous is not None,
                                  mode=mode)
    if old_pipe is not None:
        report["previous"] = measure(old_pipe, count, size, progress=progress, fonts=fonts, backgrounds=backgrounds)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "examples").mkdir(parents=True)
    model.save_pretrained(tmp)
    pictures = []
    for name, image in example_images():
        before_after(pipe, image).save(tmp / "examples" / f"{name}.jpg", quality=85)
        if old_pipe is not None:
            before_after(old_pipe, image).save(tmp / "examples" / f"{name}-previous.jpg", quality=85)
        pictures.append(name)
    report["training"] = {k: info.get(k) for k in ("step", "elapsed_s", "images", "hardware")}
    report["source"] = {"run": shown_path(Path(run)), "checkpoint": source, "recipe": recipe}
    (tmp / "metrics.json").write_text(json.dumps(json_safe(report), indent=2) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(model_card(model, info, report, pictures, Path(run), source, recipe),
                                   encoding="utf-8")
    # Put the new release in place with renames only: the old one stays whole until the swap.
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    report["seconds"] = round(time.time() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training output folder (holds model/, best/, checkpoints/)")
    parser.add_argument("--source", choices=("model", "best", "last"), default="model")
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "upocr-tiny")
    parser.add_argument("--count", type=int, default=24, help="held-out scenes per task")
    parser.add_argument("--size", type=int, default=512, help="side of the held-out scenes")
    parser.add_argument("--mode", default="resize", choices=("resize", "tile", "auto"))
    parser.add_argument("--min-fgiou", type=float, default=MIN_FGIOU)
    parser.add_argument("--min-precision-recall", type=float, default=MIN_PRECISION_RECALL)
    parser.add_argument("--max-text-error-ratio", type=float, default=MAX_TEXT_ERROR_RATIO)
    parser.add_argument("--force", action="store_true", help="release even when the gate fails (the card says so)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing release")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, help="the training recipe the card names")
    parser.add_argument("--previous", type=Path, default=None,
                        help="a released model to compare with (default: the release already at --out)")
    parser.add_argument("--no-tampering-calibration", dest="calibrate_tampering", action="store_false",
                        help="keep the run's own tampered_bias instead of calibrating it")
    parser.add_argument("--no-stroke-calibration", dest="calibrate_strokes", action="store_false",
                        help="keep the run's own stroke_refinement instead of calibrating it")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = release(args.run, args.out, args.source, args.count, args.size, args.mode,
                         min_fgiou=args.min_fgiou, min_precision_recall=args.min_precision_recall,
                         max_text_error_ratio=args.max_text_error_ratio, force=args.force,
                         overwrite=args.overwrite, progress=True, recipe=args.recipe, previous=args.previous,
                         calibrate_tampering=args.calibrate_tampering, calibrate_strokes=args.calibrate_strokes)
    except GateError as error:
        print(f"not released: the model fails the release gate: {error}", file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in (TEXT_REMOVAL, TEXT_SEGMENTATION, TAMPERED_TEXT_DETECTION, "gate")},
                     indent=2))
    print(f"released to {args.out} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
