"""Torch datasets for training and evaluation.

Every item is a dict::

    {"image": float32 (3, H, W) in [0, 1], "target": float32 (3, H, W) in [0, 1] (encoded for
     the task, see upocr.data.encoding), "mask": float32 (1, H, W) text mask (0/1),
     "task": canonical task name, "name": str}

Formats (``build_dataset({"format": ...})``):

``synthetic``
    ``root=None``: :class:`SyntheticDataset`, rendered on the fly (``seed``, ``length``,
    ``fonts``, ``backgrounds``, ``tamper_labels``, ``crop``, ``focus``). ``root``: a folder written by
    ``upocr synth`` (:class:`SyntheticFolder`): ``images/``, ``targets/``, ``masks/``,
    ``meta.json``; ``root/<split>/`` is used when it holds the dataset.
``scut-enstext`` (text removal)
    ``root/{train,test}/{image,label,mask}/``: the label is the text-free image; the mask is
    white with black text regions (``all_images``/``all_labels``/``all_masks`` are accepted too;
    without masks the text mask is where image and label differ).
``textseg`` (text segmentation)
    ``root/image/<id>.jpg``, ``root/semantic_label/<id>_maskfg.png`` (0 background, 100 text,
    200 text effect -> background, 255 ignore -> 128 in the target) and ``root/split.json``
    with ``train``/``val``/``test`` id lists.
``tampered-ic13`` (tampered text detection)
    ``root/{train,test}_img/`` and ``root/{train,test}_gt/<stem>.txt`` with lines
    ``x1,y1,x2,y2,c`` (c = 1 real, 2 tampered; corners inclusive): word boxes are filled.
``labels``
    a folder of source images (``root``) and the label folder written by ``upocr label`` or the
    app (``labels``, default ``root/.upocr-labels/<task>``; see :mod:`upocr.labeling`);
    ``reviewed_only=True`` keeps hand-reviewed labels only.

Common keys: ``task``, ``split`` (default ``train``), ``size`` (default 512; ``None`` keeps
the native size), ``augment`` (default: on for the ``train`` split only), see
:class:`~upocr.data.transforms.PairTransform`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import torch
from PIL import Image

from ..io import ImageReadError, read_image
from ..paths import iter_image_files
from ..tasks import TAMPERED_TEXT_DETECTION, TEXT_REMOVAL, TEXT_SEGMENTATION, canonical_task, get_task
from .encoding import TAMPERED_TEXT, boxes_to_labels, segmentation_target, tampering_target
from .transforms import PairTransform, default_rng, random_crop, to_item

__all__ = [
    "DatasetLayoutError",
    "PairDataset",
    "SyntheticDataset",
    "SyntheticFolder",
    "SCUTEnsText",
    "TextSeg",
    "TamperedIC13",
    "LabelsDataset",
    "build_dataset",
    "FORMATS",
]


class DatasetLayoutError(ValueError):
    """A dataset folder does not have the expected layout; the message names what is wrong."""


def _is_train(split: str | None) -> bool:
    return str(split or "").strip().lower() in ("train", "training")


def _read_grey(path: Path) -> np.ndarray:
    """A label PNG's raw single-channel values (uint8 (H, W))."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(image)
                return np.clip(arr, 0, 255).astype(np.uint8)
            if image.mode != "L":
                image = image.convert("L")
            return np.array(image, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(str(path), f"cannot read the label image ({exc})") from exc


def _check_same_size(name: str, image: np.ndarray, other: np.ndarray, what: str, path) -> None:
    if image.shape[:2] != other.shape[:2]:
        raise DatasetLayoutError(
            f"{path}: the {what} is {other.shape[1]}x{other.shape[0]} but the image {name} is "
            f"{image.shape[1]}x{image.shape[0]}"
        )


def _dir(root: Path, names: Sequence[str], what: str, required: bool = True) -> Path | None:
    for name in names:
        if (root / name).is_dir():
            return root / name
    if required:
        expected = " or ".join(f"{root / n}" for n in names)
        raise DatasetLayoutError(f"{what}: folder not found; expected {expected}")
    return None


def _files_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in iter_image_files(folder):
        rel = path.relative_to(folder)
        key = rel.with_suffix("").as_posix()
        found.setdefault(key, path)
    return found


class PairDataset(torch.utils.data.Dataset):
    """Base class: ``names`` and :meth:`load` -> uint8 ``(image, target, mask)``, then the
    shared transform and conversion to tensors."""

    task: str

    def __init__(self, task: str, names: Sequence[str], transform: PairTransform | None):
        self.task = canonical_task(task)
        self.names = list(names)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        raise NotImplementedError

    def name(self, index: int) -> str:
        return self.names[index]

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)}")
        image, target, mask = self.load(index)
        if self.transform is not None:
            image, target, mask = self.transform(image, target, mask)
        return to_item(image, target, mask, self.task, self.name(index))


def _transform(task: str, size, augment: bool, **options) -> PairTransform | None:
    if size is None and not augment:
        return None
    return PairTransform(task, size=size, augment=augment, **options)


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------


class SyntheticDataset(PairDataset):
    """Samples rendered on the fly by :func:`upocr.data.synth.generate_sample`.

    Item ``i`` is sample ``i`` of ``seed`` (the same in every worker and run). Decoded
    background photos and glyphs are cached per worker process. ``augment=True`` adds the
    shared random transform on top (off by default: the samples are already varied).

    ``crop``: render at ``size`` and return a random ``crop x crop`` window of it (drawn like the
    augmentation, from torch's RNG), randomly flipped. Text keeps the scale of a ``size`` render
    while a training step spends its time on more, smaller views of more scenes.

    ``focus``: the probability that the window is drawn around the centre of one of the scene's
    rarest items (tampered words for tampered text detection, any text item for the other
    tasks) instead of anywhere: a 128x128 window of a 512x512 receipt rarely holds the one
    forged amount. 0 (the default) draws exactly as without it.
    """

    def __init__(self, task: str, seed: int = 0, length: int = 100_000, size: int = 512, split: str = "train",
                 fonts=None, backgrounds=None, *, tamper_labels: str = "box", augment: bool = False,
                 crop: int | None = None, focus: float = 0.0):
        from .synth import get_engine

        length = int(length)
        if length < 1:
            raise ValueError(f"length must be positive, got {length}")
        if crop is not None and not 0 < int(crop) <= int(size):
            raise ValueError(f"crop must be between 1 and size ({size}), got {crop}")
        if crop is not None and augment:
            raise ValueError("crop and augment do not combine: augment already crops")
        self.crop = None if crop is None else int(crop)
        self.focus = float(focus)
        if not 0.0 <= self.focus <= 1.0 or (self.focus and self.crop is None):
            raise ValueError(f"focus must be between 0 and 1 and needs crop, got focus={focus!r}, crop={crop!r}")
        self.seed, self.size = int(seed), int(size)
        self.fonts, self.backgrounds, self.tamper_labels = fonts, backgrounds, tamper_labels
        self.engine = get_engine(fonts, backgrounds, split)  # resolves (and checks) fonts and backgrounds
        self.split = self.engine.split
        self.length = length
        super().__init__(task, [], _transform(task, self.size, True) if augment else None)

    def __len__(self) -> int:
        return self.length

    def name(self, index: int) -> str:
        return f"synthetic-{self.split}-{self.seed}-{index:06d}"

    def load(self, index: int):
        engine = self.__dict__.get("engine")
        if engine is None:
            from .synth import get_engine

            engine = self.engine = get_engine(self.fonts, self.backgrounds, self.split)
        sample = engine.sample(self.task, index, self.seed, self.size, tamper_labels=self.tamper_labels)
        image, target, mask = sample["image"], sample["target"], sample["mask"]
        if self.crop is not None:
            rng = default_rng()
            around = self._focus_point(rng, sample["boxes"]) if self.focus else None
            image, target, mask = random_crop(rng, self.crop, image, target, mask, around=around)
        return image, target, mask

    def _focus_point(self, rng: np.random.Generator, boxes: list[list[int]]) -> tuple[int, int] | None:
        """With probability ``focus``, the centre of a random focus item (see the class docstring)."""
        if rng.random() >= self.focus:
            return None
        wanted = TAMPERED_TEXT if get_task(self.task).forges_text else None
        chosen = [b for b in boxes if wanted is None or b[4] == wanted]
        if not chosen:
            return None
        x0, y0, x1, y1, _ = chosen[int(rng.integers(len(chosen)))]
        return (x0 + x1) // 2, (y0 + y1) // 2

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("engine", None)  # rebuilt (cached) in each worker
        return state


class SyntheticFolder(PairDataset):
    """A dataset written by :func:`upocr.data.synth.write_dataset` / ``upocr synth``."""

    def __init__(self, root, task: str | None = None, size: int | None = 512, augment: bool = False):
        from .synth import read_meta

        self.root = Path(root)
        meta = read_meta(self.root)
        self.meta = meta
        stored = canonical_task(meta["task"])
        if task is not None and canonical_task(task) != stored:
            raise DatasetLayoutError(f"{self.root} holds {stored} samples, not {canonical_task(task)}")
        images = _dir(self.root, ["images"], f"synthetic dataset {self.root}")
        targets = _dir(self.root, ["targets"], f"synthetic dataset {self.root}")
        self.masks_dir = _dir(self.root, ["masks"], "", required=False)
        image_files = _files_by_stem(images)
        target_files = _files_by_stem(targets)
        missing = sorted(set(image_files) - set(target_files))
        if missing:
            raise DatasetLayoutError(f"{targets}: no target for {len(missing)} image(s), e.g. {missing[0]}.png")
        names = sorted(image_files)
        self.image_files = [image_files[n] for n in names]
        self.target_files = [target_files[n] for n in names]
        super().__init__(stored, names, _transform(stored, size, augment))

    def load(self, index: int):
        image = read_image(self.image_files[index])
        target = read_image(self.target_files[index])
        _check_same_size(self.names[index], image, target, "target", self.target_files[index])
        mask_path = self.masks_dir / f"{self.names[index]}.png" if self.masks_dir is not None else None
        if mask_path is not None and mask_path.is_file():
            mask = _read_grey(mask_path)
            _check_same_size(self.names[index], image, mask, "mask", mask_path)
        else:
            mask = np.zeros(image.shape[:2], np.uint8)
        return image, target, mask


# --------------------------------------------------------------------------------------------
# Public datasets
# --------------------------------------------------------------------------------------------


def _split_dir(root: Path, split: str, fmt: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        available = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        hint = f"; found {', '.join(available)}" if available else ""
        raise DatasetLayoutError(f"{fmt}: split folder {folder} not found{hint}")
    return folder


class SCUTEnsText(PairDataset):
    """SCUT-EnsText text removal: ``root/<split>/{image,label,mask}/``."""

    IMAGE_DIRS = ("image", "images", "all_images")
    LABEL_DIRS = ("label", "labels", "all_labels")
    MASK_DIRS = ("mask", "masks", "all_masks")

    def __init__(self, root, split: str = "train", size: int | None = 512, augment: bool = False,
                 *, diff_threshold: int = 25):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"scut-enstext: dataset folder {self.root} not found")
        base = _split_dir(self.root, split, "scut-enstext")
        image_dir = _dir(base, self.IMAGE_DIRS, "scut-enstext images")
        label_dir = _dir(base, self.LABEL_DIRS, "scut-enstext labels (text-free images)")
        mask_dir = _dir(base, self.MASK_DIRS, "", required=False)
        images = _files_by_stem(image_dir)
        if not images:
            raise DatasetLayoutError(f"scut-enstext: {image_dir} holds no images")
        labels = _files_by_stem(label_dir)
        masks = _files_by_stem(mask_dir) if mask_dir is not None else {}
        missing = sorted(set(images) - set(labels))
        if missing:
            raise DatasetLayoutError(f"scut-enstext: {label_dir} has no label for {len(missing)} image(s), "
                                     f"e.g. {images[missing[0]].name}")
        names = sorted(images)
        self.images = [images[n] for n in names]
        self.labels = [labels[n] for n in names]
        self.masks = [masks.get(n) for n in names]
        self.diff_threshold = int(diff_threshold)
        super().__init__(TEXT_REMOVAL, names, _transform(TEXT_REMOVAL, size, augment))

    def load(self, index: int):
        name = self.names[index]
        image = read_image(self.images[index])
        label = read_image(self.labels[index])
        _check_same_size(name, image, label, "label", self.labels[index])
        mask_path = self.masks[index]
        if mask_path is not None:
            grey = read_image(mask_path).min(axis=2)
            _check_same_size(name, image, grey, "mask", mask_path)
            mask = np.where(grey < 128, np.uint8(255), np.uint8(0))
        else:
            diff = np.abs(image.astype(np.int16) - label.astype(np.int16)).max(axis=2)
            mask = cv2.dilate((diff > self.diff_threshold).astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
        return image, label, mask


class TextSeg(PairDataset):
    """TextSeg text segmentation: ``image/``, ``semantic_label/<id>_maskfg.png``, ``split.json``."""

    TEXT, EFFECT, IGNORE = 100, 200, 255

    def __init__(self, root, split: str = "train", size: int | None = 512, augment: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"textseg: dataset folder {self.root} not found")
        image_dir = _dir(self.root, ["image", "images"], "textseg images")
        label_dir = _dir(self.root, ["semantic_label"], "textseg labels")
        images = _files_by_stem(image_dir)
        split_file = self.root / "split.json"
        if split_file.is_file():
            try:
                splits = json.loads(split_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise DatasetLayoutError(f"{split_file}: not valid JSON ({exc})") from exc
            key = {"validation": "val", "valid": "val"}.get(split, split)
            if not isinstance(splits, dict) or key not in splits:
                keys = ", ".join(sorted(splits)) if isinstance(splits, dict) else "none"
                raise DatasetLayoutError(f"{split_file}: no {split!r} list (it has: {keys})")
            ids = [Path(str(i)).stem for i in splits[key]]
        elif split in ("all", None):
            ids = sorted(images)
        else:
            raise DatasetLayoutError(f"textseg: {split_file} not found (needed to select the {split!r} split; "
                                     "use split='all' for every image)")
        missing = [i for i in ids if i not in images]
        if missing:
            raise DatasetLayoutError(f"textseg: {len(missing)} image(s) of the {split!r} split are missing from "
                                     f"{image_dir}, e.g. {missing[0]}.jpg")
        labels = [label_dir / f"{i}_maskfg.png" for i in ids]
        absent = [p for p in labels if not p.is_file()]
        if absent:
            raise DatasetLayoutError(f"textseg: {len(absent)} label(s) missing, e.g. {absent[0]}")
        self.images = [images[i] for i in ids]
        self.labels = labels
        super().__init__(TEXT_SEGMENTATION, ids, _transform(TEXT_SEGMENTATION, size, augment))

    def load(self, index: int):
        image = read_image(self.images[index])
        label = _read_grey(self.labels[index])
        _check_same_size(self.names[index], image, label, "label", self.labels[index])
        text = label == self.TEXT
        target = segmentation_target(text, ignore=label == self.IGNORE)
        return image, target, text.astype(np.uint8) * 255


def parse_ic13_boxes(path: Path) -> list[list[int]]:
    """Boxes ``[x1, y1, x2, y2, c]`` of a Tampered-IC13 ground-truth file (c = 1 real, 2 tampered)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    except OSError as exc:
        raise DatasetLayoutError(f"{path}: cannot read ({exc})") from exc
    boxes = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.replace("\t", ",").split(",")]
        if len(parts) < 5:
            parts = line.split()
        try:
            values = [int(round(float(p))) for p in parts[:5]]
        except (ValueError, IndexError):
            raise DatasetLayoutError(f"{path}:{number}: expected 'x1,y1,x2,y2,class', got {line!r}") from None
        if len(values) < 5 or values[4] not in (1, 2):
            raise DatasetLayoutError(f"{path}:{number}: the class must be 1 (real) or 2 (tampered), got {line!r}")
        boxes.append(values)
    return boxes


class TamperedIC13(PairDataset):
    """Tampered-IC13: ``{split}_img/`` and ``{split}_gt/<stem>.txt`` (box-level labels)."""

    def __init__(self, root, split: str = "train", size: int | None = 512, augment: bool = False,
                 *, box_inclusive: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"tampered-ic13: dataset folder {self.root} not found")
        image_dir = self.root / f"{split}_img"
        gt_dir = self.root / f"{split}_gt"
        for folder in (image_dir, gt_dir):
            if not folder.is_dir():
                raise DatasetLayoutError(f"tampered-ic13: folder {folder} not found "
                                         f"(expected {split}_img/ and {split}_gt/ in {self.root})")
        images = _files_by_stem(image_dir)
        if not images:
            raise DatasetLayoutError(f"tampered-ic13: {image_dir} holds no images")
        names = sorted(images)
        gts = []
        for name in names:
            gt = gt_dir / f"{name}.txt"
            if not gt.is_file() and (gt_dir / f"gt_{name}.txt").is_file():
                gt = gt_dir / f"gt_{name}.txt"
            if not gt.is_file():
                raise DatasetLayoutError(f"tampered-ic13: no ground truth {gt} for image {images[name].name}")
            gts.append(gt)
        self.images = [images[n] for n in names]
        self.gts = gts
        self.box_inclusive = bool(box_inclusive)
        super().__init__(TAMPERED_TEXT_DETECTION, names, _transform(TAMPERED_TEXT_DETECTION, size, augment))

    def load(self, index: int):
        image = read_image(self.images[index])
        boxes = parse_ic13_boxes(self.gts[index])
        labels = boxes_to_labels(boxes, image.shape[0], image.shape[1], inclusive=self.box_inclusive)
        return image, tampering_target(labels), (labels > 0).astype(np.uint8) * 255


# --------------------------------------------------------------------------------------------
# The project's label folders
# --------------------------------------------------------------------------------------------


class LabelsDataset(PairDataset):
    """Source images and their labels in a :class:`upocr.labeling.LabelStore` folder.

    Items: files whose latest record is ``done`` or ``reviewed`` (``reviewed_only``: reviewed)
    and whose label files and source image exist, sorted by path.
    """

    def __init__(self, root, labels=None, task: str | None = None, size: int | None = 512,
                 augment: bool = False, *, reviewed_only: bool = False):
        from ..labeling import DONE, REVIEWED, LabelStore, LabelStoreError

        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetLayoutError(f"labels: image folder {self.root} not found")
        if labels is None:
            base = self.root / ".upocr-labels"
            if task is not None:
                labels = base / canonical_task(task)
            else:
                found = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
                if len(found) != 1:
                    raise DatasetLayoutError(f"labels: pass the label folder ('labels') or the task; "
                                             f"{base} holds {len(found)} task folders")
                labels = found[0]
        labels = Path(labels)
        if not labels.is_dir():
            raise DatasetLayoutError(f"labels: label folder {labels} not found")
        try:
            store = LabelStore(labels, task) if task is not None else LabelStore.open(labels)
        except LabelStoreError as exc:
            raise DatasetLayoutError(f"labels: {exc}") from exc
        wanted = (REVIEWED,) if reviewed_only else (DONE, REVIEWED)
        names = []
        for rel, record in store.records().items():
            if record.get("status") not in wanted:
                continue
            if not store.label_path(rel).is_file():
                continue
            if get_task(store.task).has_cleaned_image and not store.cleaned_path(rel).is_file():
                continue
            if not (self.root / rel).is_file():
                continue
            names.append(rel)
        self.store = store
        self.labels_dir = labels
        super().__init__(store.task, names, _transform(store.task, size, augment))

    def load(self, index: int):
        rel = self.names[index]
        image = read_image(self.root / rel)
        classes = self.store.read_class_map(rel)
        _check_same_size(rel, image, classes, "label", self.store.label_path(rel))
        task = get_task(self.task)
        cleaned = None
        if task.has_cleaned_image:
            cleaned = self.store.read_cleaned(rel)
            _check_same_size(rel, image, cleaned, "cleaned image", self.store.cleaned_path(rel))
        target, mask = task.training_pair(classes, cleaned)
        return image, target, mask


# --------------------------------------------------------------------------------------------
# From a spec
# --------------------------------------------------------------------------------------------

FORMATS = ("synthetic", "scut-enstext", "textseg", "tampered-ic13", "labels")
_FORMAT_ALIASES = {
    "synthetic": "synthetic", "synth": "synthetic",
    "scut-enstext": "scut-enstext", "scut_enstext": "scut-enstext", "scut": "scut-enstext", "enstext": "scut-enstext",
    "textseg": "textseg", "text-seg": "textseg",
    "tampered-ic13": "tampered-ic13", "tampered_ic13": "tampered-ic13", "tampered-icdar13": "tampered-ic13",
    "labels": "labels", "label": "labels",
}
_FORMAT_TASK = {"scut-enstext": TEXT_REMOVAL, "textseg": TEXT_SEGMENTATION, "tampered-ic13": TAMPERED_TEXT_DETECTION}
_COMMON_KEYS = {"format", "root", "split", "task", "size", "augment", "name"}
_EXTRA_KEYS = {
    "synthetic": {"seed", "length", "fonts", "backgrounds", "tamper_labels", "crop", "focus"},
    "scut-enstext": {"diff_threshold"},
    "textseg": set(),
    "tampered-ic13": {"box_inclusive"},
    "labels": {"labels", "reviewed_only"},
}
_DEFAULT_LENGTH = {"train": 100_000, "heldout": 1_000}


def build_dataset(spec: Mapping[str, Any]) -> torch.utils.data.Dataset:
    """A dataset from a spec dict (see the module documentation for formats and keys)."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"a dataset spec must be a dict, got {type(spec).__name__}")
    spec = dict(spec)
    raw = str(spec.get("format", "")).strip().lower()
    if raw not in _FORMAT_ALIASES:
        raise ValueError(f"unknown dataset format {spec.get('format')!r}; expected one of {', '.join(FORMATS)}")
    fmt = _FORMAT_ALIASES[raw]
    unknown = sorted(set(spec) - _COMMON_KEYS - _EXTRA_KEYS[fmt])
    if unknown:
        allowed = ", ".join(sorted((_COMMON_KEYS | _EXTRA_KEYS[fmt]) - {"format"}))
        raise ValueError(f"{fmt} dataset spec: unknown key(s) {', '.join(unknown)} (allowed: {allowed})")
    task = canonical_task(spec["task"]) if spec.get("task") is not None else None
    split = spec.get("split") or "train"
    size = spec.get("size", 512)
    size = None if size is None else int(size)
    augment = bool(spec["augment"]) if spec.get("augment") is not None else _is_train(split)
    root = spec.get("root")
    if fmt in _FORMAT_TASK and task is not None and task != _FORMAT_TASK[fmt]:
        raise ValueError(f"{fmt} provides {_FORMAT_TASK[fmt]} data, not {task}")
    if fmt != "synthetic" and not root:
        raise ValueError(f"{fmt} dataset spec needs a 'root' folder")
    if fmt == "synthetic":
        if root:
            folder = Path(root)
            if not (folder / "meta.json").is_file() and (folder / str(split) / "meta.json").is_file():
                folder = folder / str(split)
            return SyntheticFolder(folder, task=task, size=size, augment=augment)
        if task is None:
            raise ValueError("a synthetic dataset spec needs a 'task'")
        from .splits import canonical_split

        synth_split = canonical_split(split)
        length = spec.get("length") or _DEFAULT_LENGTH[synth_split]
        return SyntheticDataset(task, seed=int(spec.get("seed", 0) or 0), length=int(length),
                                size=size or 512, split=synth_split, fonts=spec.get("fonts"),
                                backgrounds=spec.get("backgrounds"),
                                tamper_labels=spec.get("tamper_labels", "box"),
                                augment=bool(spec.get("augment", False)), crop=spec.get("crop"),
                                focus=float(spec.get("focus", 0.0) or 0.0))
    if fmt == "scut-enstext":
        return SCUTEnsText(root, split, size, augment, diff_threshold=int(spec.get("diff_threshold", 25)))
    if fmt == "textseg":
        return TextSeg(root, split, size, augment)
    if fmt == "tampered-ic13":
        return TamperedIC13(root, split, size, augment, box_inclusive=bool(spec.get("box_inclusive", True)))
    return LabelsDataset(root, spec.get("labels"), task, size, augment,
                         reviewed_only=bool(spec.get("reviewed_only", False)))
