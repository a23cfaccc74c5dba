"""Synthetic training data with exact ground truth for all three tasks.

A sample is made in stages, each with its own random stream derived from
``(seed, index, split)``, so sample ``i`` of seed ``s`` is the same whatever the number of
samples or workers:

1. a background (photo crop, procedural texture or document page, :mod:`.backgrounds`);
2. text laid out on it (scattered scene text and signs, or document paragraphs,
   :mod:`.layout`) and alpha-composited (:mod:`.render`);
3. for tampered text detection, forgeries (:mod:`.tamper`): re-rendered words, copy-move and
   splicing;
4. global degradations: colour/gamma change, blur, sensor noise, JPEG compression.

The authentic scene of an index is the same for all three tasks. Ground truth:

* text removal: the target is the text-free background after the same degradations; the
  image equals the target outside the (dilated) text mask, exactly;
* text segmentation: white glyph strokes (geometric coverage >= 0.5) on black; outlines and
  shadows are background, as in TextSeg;
* tampered text detection: red background, green real text, blue tampered text, filled per
  word box (``tamper_labels="pixel"``: per stroke pixel instead).

``size`` 512 takes roughly 20-60 ms per sample on one CPU core.
"""

from __future__ import annotations

import dataclasses
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import cv2
import numpy as np

from ..tasks import canonical_task, get_task
from .backgrounds import SCREENS_SOURCE, BackgroundCatalogue, make_background, resolve_backgrounds, sources_of
from .encoding import boxes_to_labels
from .fonts import FontSpec, fonts_for_split, resolve_fonts
from .sources import SOURCE_NAMES
from .layout import Scene, add_scene_word, layout_document, layout_scene, layout_screen
from .splits import HELDOUT, canonical_split
from .tamper import REAL, TAMPERED, tamper_scene

__all__ = [
    "GENERATOR_VERSION",
    "SynthEngine",
    "get_engine",
    "generate_sample",
    "write_dataset",
    "sample_id",
]

#: Bumped whenever the same (seed, index) would give different pixels.
GENERATOR_VERSION = "1.1"  # 1.1: fonts held out by typeface, photos by picture
_STREAM_TAG = 0x5A0C  # mixed into every seed so these streams differ from other uses of the seed
_SPLIT_CODES = {"train": 0, HELDOUT: 1}
TAMPER_LABEL_MODES = ("box", "pixel")
#: Coverage that marks a pixel as touched by text before dilation (see :mod:`.render`).
MASK_BASE_DILATION = 2


# --------------------------------------------------------------------------------------------
# Degradations
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Degradation:
    """Global image degradations, applied identically to the composite and the clean image."""

    gain: np.ndarray | None = None  # per-channel gain
    bias: float = 0.0
    gamma: float = 1.0
    blur: float = 0.0
    noise: np.ndarray | None = None  # float32 (H, W, 3) noise field, added after blur
    jpeg: int | None = None

    @classmethod
    def sample(cls, rng: np.random.Generator, h: int, w: int) -> "Degradation":
        d = cls()
        if rng.random() < 0.3:
            d.gain = (rng.uniform(0.85, 1.12) * (1 + rng.normal(0, 0.03, 3))).astype(np.float32)
            d.bias = float(rng.uniform(-0.05, 0.05))
            d.gamma = float(np.exp(rng.uniform(-0.2, 0.2)))
        if rng.random() < 0.25:
            d.blur = float(rng.uniform(0.3, 1.2))
        if rng.random() < 0.4:
            sigma = rng.uniform(1.0, 6.0) / 255.0
            d.noise = rng.standard_normal((h, w, 3), dtype=np.float32) * np.float32(sigma)
        if rng.random() < 0.5:
            d.jpeg = int(rng.integers(35, 96))
        return d

    @property
    def mask_dilation(self) -> int:
        """How far (pixels) text can spread beyond its coverage under these degradations."""
        return MASK_BASE_DILATION + int(np.ceil(2.5 * self.blur))

    def apply(self, image: np.ndarray) -> np.ndarray:
        """float32 ``(H, W, 3)`` in [0, 1] -> degraded uint8."""
        out = image
        if self.gain is not None:
            out = out * self.gain
            out += np.float32(self.bias)
            np.clip(out, 0, 1, out=out)
            if abs(self.gamma - 1.0) > 1e-3:
                out = cv2.pow(out, self.gamma)
        if self.blur > 0:
            out = cv2.GaussianBlur(out, (0, 0), self.blur)
        if self.noise is not None:
            out = out + self.noise
        scaled = out * np.float32(255.0)
        scaled += np.float32(0.5)
        np.clip(scaled, 0, 255, out=scaled)
        out = scaled.astype(np.uint8)
        if self.jpeg is not None:
            ok, data = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.jpeg])
            if ok:
                out = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])
        return out


# --------------------------------------------------------------------------------------------
# Engine
# --------------------------------------------------------------------------------------------


def _size_hw(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        h, w = int(size[0]), int(size[1])
    else:
        h = w = int(size)
    if h < 16 or w < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size!r}")
    return h, w


def _check_seed(seed: int, index: int) -> None:
    if int(seed) < 0 or int(index) < 0:
        raise ValueError(f"seed and index must be non-negative integers, got seed={seed!r}, index={index!r}")


class SynthEngine:
    """Resolved fonts and backgrounds of one split; makes samples with :meth:`sample`."""

    def __init__(self, fonts: Sequence[FontSpec], catalogue: BackgroundCatalogue, split: str):
        self.split = canonical_split(split)
        self.all_fonts = list(fonts)
        self.fonts = fonts_for_split(self.all_fonts, self.split)
        self.all_backgrounds = catalogue
        self.backgrounds = catalogue.for_split(self.split)

    def describe(self) -> dict:
        return {
            "split": self.split,
            "fonts": [f.name for f in self.fonts],
            "backgrounds": {
                "photos": sources_of(self.backgrounds.photos),
                "textures": list(self.backgrounds.textures),
                "documents": list(self.backgrounds.documents),
            },
        }

    def _streams(self, seed: int, index: int):
        _check_seed(seed, index)
        root = np.random.SeedSequence([_STREAM_TAG, int(seed), int(index), _SPLIT_CODES[self.split]])
        return [np.random.default_rng(s) for s in root.spawn(3)]

    def _donor(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        kind = "photo" if self.backgrounds.photos and rng.random() < 0.5 else "texture"
        if kind == "texture" and not self.backgrounds.textures:
            kind = "photo"
        return make_background(rng, self.backgrounds, h, w, kind=kind).image.copy()

    def scene(self, index: int, seed: int, size=512) -> tuple[Scene, list[np.random.Generator]]:
        """The authentic scene of ``index`` (before tampering and degradations)."""
        h, w = _size_hw(size)
        scene_rng, tamper_rng, degrade_rng = self._streams(seed, index)
        background = make_background(scene_rng, self.backgrounds, h, w)
        scene = Scene(background, self.fonts)
        if background.kind == "screen":
            layout_screen(scene_rng, scene)
        elif background.kind == "document" and scene_rng.random() < 0.85:
            layout_document(scene_rng, scene)
        else:
            layout_scene(scene_rng, scene)
        for _ in range(6):
            if scene.items:
                break
            add_scene_word(scene_rng, scene, size=int(scene_rng.integers(10, max(11, min(h, w) // 4))), gap=1)
        return scene, [tamper_rng, degrade_rng]

    def sample(self, task: str, index: int, seed: int, size=512, *, tamper_labels: str = "box",
               return_layers: bool = False) -> dict[str, Any]:
        task = canonical_task(task)
        spec = get_task(task)
        if tamper_labels not in TAMPER_LABEL_MODES:
            raise ValueError(f"tamper_labels must be one of {TAMPER_LABEL_MODES}, got {tamper_labels!r}")
        scene, (tamper_rng, degrade_rng) = self.scene(index, seed, size)
        h, w = scene.shape
        authentic = scene.canvas.copy() if (return_layers and spec.forges_text) else None
        if spec.forges_text:
            tamper_scene(tamper_rng, scene, self._donor)
        degradation = Degradation.sample(degrade_rng, h, w)

        support = np.zeros((h, w), dtype=bool)
        strokes = np.zeros((h, w), dtype=bool)
        pixel_labels = np.zeros((h, w), dtype=np.uint8) if spec.forges_text else None
        boxes: list[list[int]] = []
        for item in scene.items:
            x0, y0, x1, y1 = item.region
            support[y0:y1, x0:x1] |= item.support()
            item_strokes = item.strokes()
            strokes[y0:y1, x0:x1] |= item_strokes
            label = int(item.extra.get("label", REAL))
            if pixel_labels is not None:
                view = pixel_labels[y0:y1, x0:x1]
                np.maximum(view, np.where(item_strokes, np.uint8(label), np.uint8(0)), out=view)
            box = item.extra.get("tamper_box", item.box) if label == TAMPERED else item.box
            boxes.append([int(box[0]), int(box[1]), int(box[2]), int(box[3]), label])

        radius = degradation.mask_dilation
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(support.astype(np.uint8), kernel) > 0

        composite = degradation.apply(scene.canvas)
        out: dict[str, Any] = {"task": task, "boxes": boxes}
        labels = None
        if spec.forges_text:
            labels = boxes_to_labels(boxes, h, w) if tamper_labels == "box" else pixel_labels
        out["image"], out["target"] = spec.synthetic_pair(composite, lambda: degradation.apply(scene.clean), mask,
                                                          strokes, labels)
        out["mask"] = mask.astype(np.uint8) * 255
        if return_layers:
            out["clean"] = out["target"] if spec.target_is_image else degradation.apply(scene.clean)
            out["strokes"] = strokes
            out["text_support"] = support
            out["background_kind"] = scene.background.kind
            out["background_name"] = scene.background.name
            out["texts"] = [item.text for item in scene.items]
            if authentic is not None:
                out["authentic"] = degradation.apply(authentic)
                out["operations"] = [item.extra.get("operation") for item in scene.items
                                     if item.extra.get("label") == TAMPERED]
        return out


def _paths_key(value) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
    # the named source sets (upocr.data.sources) stay names; paths are made absolute
    return tuple(p if p in SOURCE_NAMES or p == SCREENS_SOURCE else str(Path(p).expanduser().resolve()) for p in items)


@lru_cache(maxsize=16)
def _cached_engine(fonts_key, backgrounds_key, split: str) -> SynthEngine:
    fonts = resolve_fonts(list(fonts_key) if fonts_key is not None else None)
    catalogue = resolve_backgrounds(list(backgrounds_key) if backgrounds_key is not None else None)
    return SynthEngine(fonts, catalogue, split)


def get_engine(fonts=None, backgrounds=None, split: str = "train") -> SynthEngine:
    """A cached engine for these fonts, backgrounds (``None``: defaults) and split."""
    return _cached_engine(_paths_key(fonts), _paths_key(backgrounds), canonical_split(split))


def generate_sample(task: str, index: int, seed: int, size: int = 512, fonts=None, backgrounds=None,
                    split: str = "train", *, tamper_labels: str = "box", return_layers: bool = False) -> dict:
    """Sample ``index`` of ``seed``: a dict of numpy arrays.

    ``image`` uint8 ``(H, W, 3)``; ``target`` uint8 ``(H, W, 3)`` encoded for ``task``;
    ``mask`` uint8 ``(H, W)`` text mask (255 = text or its immediate surroundings, dilated by
    2 pixels plus the blur spread); ``boxes`` ``[[x0, y0, x1, y1, class], ...]`` (x1/y1
    exclusive, class 1 real, 2 tampered); ``task``. ``fonts`` / ``backgrounds``: font files or
    folders / photo files or folders (``None``: the defaults), partitioned by ``split``
    (``train`` or ``heldout``). ``size`` is an int or ``(height, width)``.
    ``return_layers=True`` adds ``clean`` (the degraded text-free image), ``strokes``,
    ``text_support``, the background's kind and name, the texts and, for tampering,
    ``authentic`` (the image before tampering) and the ``operations`` applied.
    """
    engine = get_engine(fonts, backgrounds, split)
    return engine.sample(task, index, seed, size, tamper_labels=tamper_labels, return_layers=return_layers)


# --------------------------------------------------------------------------------------------
# Writing a dataset to disk
# --------------------------------------------------------------------------------------------


def sample_id(index: int, count: int) -> str:
    """File stem of sample ``index`` in a dataset of ``count``: zero-padded, at least 6 digits."""
    return f"{int(index):0{max(6, len(str(max(0, count - 1))))}d}"


def _write_one(out_dir: Path, task: str, index: int, count: int, seed: int, size, fonts, backgrounds,
               split: str, tamper_labels: str) -> None:
    from ..io import atomic_write_json, save_png_atomic

    sample = generate_sample(task, index, seed, size, fonts, backgrounds, split, tamper_labels=tamper_labels)
    stem = sample_id(index, count)
    save_png_atomic(out_dir / "images" / f"{stem}.png", sample["image"])
    save_png_atomic(out_dir / "targets" / f"{stem}.png", sample["target"])
    save_png_atomic(out_dir / "masks" / f"{stem}.png", sample["mask"])
    if get_task(task).forges_text:
        atomic_write_json(out_dir / "boxes" / f"{stem}.json", sample["boxes"], indent=None)


def _write_chunk(args) -> int:
    indices = args[0]
    cv2.setNumThreads(1)
    for index in indices:
        _write_one(args[1], args[2], index, *args[3:])
    return len(indices)


def _meta(task, seed, count, size, split, tamper_labels, engine: SynthEngine, fonts, backgrounds) -> dict:
    from .. import __version__

    h, w = _size_hw(size)
    desc = engine.describe()
    return {
        "format": "upocr-synthetic",
        "generator_version": GENERATOR_VERSION,
        "upocr_version": __version__,
        "task": task,
        "seed": int(seed),
        "count": int(count),
        "size": [h, w],
        "split": engine.split,
        "tamper_labels": tamper_labels if get_task(task).forges_text else None,
        "fonts": desc["fonts"],
        "font_source": "default (matplotlib)" if fonts is None else [str(p) for p in _paths_key(fonts)],
        "backgrounds": desc["backgrounds"],
        "background_source": "default (scikit-image samples)" if backgrounds is None
        else [str(p) for p in _paths_key(backgrounds)],
        "ids": {"first": sample_id(0, count), "last": sample_id(max(0, count - 1), count)},
    }


def write_dataset(task: str, count: int, seed: int, out_dir, size: int = 512, fonts=None, backgrounds=None,
                  split: str = "train", workers: int = 1, progress: bool = True, *,
                  tamper_labels: str = "box", overwrite: bool = False) -> dict:
    """Write ``count`` samples to ``out_dir``; returns the metadata (also in ``meta.json``).

    Layout: ``images/<id>.png``, ``targets/<id>.png``, ``masks/<id>.png`` and, for tampered
    text detection, ``boxes/<id>.json`` (``[[x0, y0, x1, y1, class], ...]``), with ``<id>``
    the zero-padded index; ``meta.json`` is written last. Files are written atomically and the
    content does not depend on ``workers``. A folder holding a different synthetic dataset
    (another ``meta.json``) is refused unless ``overwrite``. ``workers > 1`` starts fresh
    ("spawn") processes: in a script, call this under ``if __name__ == "__main__":``.
    """
    task = canonical_task(task)
    count, seed, workers = int(count), int(seed), max(1, int(workers))
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    _check_seed(seed, 0)
    if tamper_labels not in TAMPER_LABEL_MODES:
        raise ValueError(f"tamper_labels must be one of {TAMPER_LABEL_MODES}, got {tamper_labels!r}")
    out = Path(out_dir)
    engine = get_engine(fonts, backgrounds, split)
    meta = _meta(task, seed, count, size, split, tamper_labels, engine, fonts, backgrounds)
    meta_path = out / "meta.json"
    if meta_path.is_file() and not overwrite:
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        same = isinstance(old, dict) and all(old.get(k) == meta[k] for k in
                                             ("task", "seed", "size", "split", "generator_version", "fonts"))
        if not same:
            raise FileExistsError(f"{out} already holds another synthetic dataset ({meta_path}); "
                                  "choose another folder or pass overwrite=True")
    for sub in ("images", "targets", "masks") + (("boxes",) if get_task(task).forges_text else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)

    common = (out, task, count, seed, size, fonts, backgrounds, engine.split, tamper_labels)
    chunk = max(1, min(16, count // (workers * 4)))
    chunks = [list(range(i, min(count, i + chunk))) for i in range(0, count, chunk)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=count, desc=f"synth {task}", unit="img")
    try:
        if workers == 1 or len(chunks) <= 1:
            for indices in chunks:
                _write_chunk((indices,) + common)
                if bar is not None:
                    bar.update(len(indices))
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_write_chunk, (indices,) + common) for indices in chunks]
                for future in as_completed(futures):
                    done = future.result()
                    if bar is not None:
                        bar.update(done)
    finally:
        if bar is not None:
            bar.close()
    from ..io import atomic_write_json

    atomic_write_json(meta_path, meta)
    return meta


def read_meta(root) -> dict:
    """The ``meta.json`` of a written synthetic dataset (``ValueError`` naming the file if bad)."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; {root} is not a synthetic dataset written by `upocr synth`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or "task" not in meta:
        raise ValueError(f"{path}: not a synthetic dataset description (no 'task')")
    return meta


def iter_samples(task: str, indices: Iterable[int], seed: int, **kwargs):
    """``generate_sample`` for each index (a convenience for previews and tests)."""
    for index in indices:
        yield generate_sample(task, index, seed, **kwargs)
