"""Exports of a label folder: COCO and LabelMe files next to the labels (``upocr label``), or one
zip with the PNG masks, COCO, LabelMe and a manifest (the app's Annotate tab, ``export_zip``).

Both go through :class:`LabelExport`, the one place that turns a finished label into its COCO
annotations and its LabelMe document (formats in :mod:`.formats`).
"""

from __future__ import annotations

import json
import os
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..io import atomic_write_json, atomic_write_text, atomic_writer
from ..paths import normalize_relative_path
from ..tasks import get_task
from .formats import CocoBuilder, labelme_document, labelme_image_path
from .instances import INSTANCE_RULES, find_instances
from .labelstudio import image_url as labelstudio_image_url
from .labelstudio import labeling_config, task_of
from .store import CLEANED_DIR, DONE, MASKS_DIR, REVIEWED, LabelStore, label_relpath

__all__ = ["COCO_NAME", "EXPORT_FORMATS", "LABELME_DIR", "LABELSTUDIO_DIR", "LabelExport", "export_zip", "write_exports"]

#: Output formats: ``png`` (the label PNGs, always written), ``coco``, ``labelme`` and
#: ``labelstudio`` exports.
EXPORT_FORMATS: tuple[str, ...] = ("png", "coco", "labelme", "labelstudio")
COCO_NAME = "coco.json"
LABELME_DIR = "labelme"
LABELSTUDIO_DIR = "labelstudio"


def check_formats(formats: Iterable[str], what: str = "export format") -> tuple[str, ...]:
    """Lower-cased, de-duplicated formats; ``ValueError`` naming any unknown one."""
    chosen = tuple(dict.fromkeys(str(f).strip().lower() for f in formats if str(f).strip()))
    unknown = [f for f in chosen if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(EXPORT_FORMATS)}")
    return chosen


class LabelExport:
    """One pass over a store's finished labels: the COCO file builds up as labels are added, and
    each label's LabelMe document is returned for the caller to write where it belongs."""

    def __init__(self, store: LabelStore, formats: Sequence[str], info: dict | None = None, *,
                 rule: str = "words"):
        if rule not in INSTANCE_RULES:
            raise ValueError(f"unknown instance rule {rule!r}; choose from {', '.join(INSTANCE_RULES)}")
        self.store = store
        self.rule = rule
        self.formats = check_formats(formats)
        self.names = {c.value: c.name for c in store.classes if c.value}
        self.coco = CocoBuilder(store.classes, info=info or {"task": store.task}) if "coco" in self.formats else None
        self.labelme = "labelme" in self.formats
        self.labelstudio: list[dict] | None = [] if "labelstudio" in self.formats else None

    def finished(self) -> Iterator[tuple[str, dict]]:
        """``(relative name, record)`` of every label that is done or reviewed."""
        for rel, record in self.store.records().items():
            if record["status"] in (DONE, REVIEWED):
                yield rel, record

    @staticmethod
    def labelme_path(rel: str) -> str:
        """Where a label's LabelMe file goes, relative to the export's root."""
        return label_relpath(rel, LABELME_DIR)[: -len(".png")] + ".json"

    def add(self, rel: str, image_ref: str | None, labels: np.ndarray | None = None, *,
            image_url: str | None = None) -> dict | None:
        """Add one label to the COCO file and the Label Studio tasks (its image at
        ``image_url``); return its LabelMe document (``None`` without LabelMe or when
        ``image_ref`` is ``None``: that label's LabelMe file is already up to date)."""
        need_labelme = self.labelme and image_ref is not None
        if self.coco is None and not need_labelme and self.labelstudio is None:
            return None
        labels = self.store.read_class_map(rel) if labels is None else labels
        if self.labelstudio is not None:
            record = self.store.record(rel) or {}
            self.labelstudio.append(task_of(
                rel, labels, self.store.classes, image_url or labelstudio_image_url(rel),
                model_version=record.get("model"), confidence=record.get("confidence"),
                reviewed=record.get("status") == REVIEWED))
        if self.coco is None and not need_labelme:
            return None
        scores = self.scores(rel)
        instances = find_instances(labels, self.rule)  # once for both formats
        if self.coco is not None:
            self.coco.add(rel, labels, scores=scores, instances=instances)
        if need_labelme:
            return labelme_document(labels, image_ref, labels.shape[0], labels.shape[1], self.names,
                                    scores=scores, instances=instances)
        return None

    def labelstudio_files(self) -> dict[str, str]:
        """``{path in the export: content}`` of the Label Studio tasks and configuration."""
        colours = get_task(self.store.task).colours
        return {f"{LABELSTUDIO_DIR}/tasks.json": json.dumps(self.labelstudio or [], ensure_ascii=False),
                f"{LABELSTUDIO_DIR}/config.xml": labeling_config(self.store.classes, colours)}

    def scores(self, rel: str) -> np.ndarray | float | None:
        """Instance scores of a label: 1.0 for a reviewed label (a person checked it), the
        model's per-pixel scores for a model label, ``None`` (no score) when they were not kept."""
        record = self.store.record(rel)
        if record is not None and record.get("status") == REVIEWED:
            return 1.0
        return self.store.read_scores(rel)


def write_exports(output_dir: str | os.PathLike, task: str, formats: Iterable[str],
                  input_dir: str | os.PathLike | None = None, *, rule: str = "words",
                  labelstudio: dict | None = None) -> dict[str, Any]:
    """Write the COCO file (``coco.json``) and the LabelMe files (``labelme/<folders>/<stem>.json``)
    of every finished label (done or reviewed) in ``output_dir``, each atomically, with one
    annotation or polygon per instance (``rule``: ``words`` or ``lines``, :mod:`.instances`),
    and the Label Studio tasks and configuration (``labelstudio/``; ``labelstudio`` holds
    ``document_root`` or ``url_prefix`` for the image URLs, see :mod:`.labelstudio`).

    LabelMe files newer than their mask are kept as they are, so a resumed run only converts the
    new labels; ``imagePath`` points at the source image under ``input_dir`` (relative to the
    JSON file), or is the image's file name. A LabelMe file that cannot be written is reported
    and the others (and the COCO file) still are. Returns ``{"coco": path, "labelme": count}``
    and ``"failed": [(file, reason)]`` when any LabelMe file failed.
    """
    chosen = check_formats(formats)
    out: dict[str, Any] = {}
    if not set(chosen) & {"coco", "labelme", "labelstudio"}:
        return out
    root = Path(output_dir)
    store = LabelStore(root, task)
    export = LabelExport(store, chosen, info={"task": store.task, "description": "UPOCR pre-labels",
                                              "instances": rule}, rule=rule)
    written = 0
    failed: list[tuple[str, str]] = []
    for rel, _ in export.finished():
        mask_path = store.label_path(rel)
        if not mask_path.is_file():
            continue
        json_path = root / export.labelme_path(rel)
        rel_parts = Path(*LabelStore.key(rel).split("/"))
        image_ref = None
        if export.labelme and not _newer(json_path, mask_path):
            image = (Path(input_dir).resolve() / rel_parts) if input_dir is not None else rel_parts.name
            image_ref = labelme_image_path(json_path, image)
        url = labelstudio_image_url(rel, input_dir=input_dir, **(labelstudio or {})) if export.labelstudio is not None else None
        document = export.add(rel, image_ref, image_url=url)
        if document is not None:
            try:
                atomic_write_json(json_path, document, indent=2)
                written += 1
            except OSError as error:  # e.g. a name too long once ".json" is added: that file only
                failed.append((rel, f"LabelMe file not written: {error.strerror or error}"))
    if export.coco is not None:
        out["coco"] = atomic_write_json(root / COCO_NAME, export.coco.to_dict(), indent=None)
    if export.labelme:
        out["labelme"] = written
    if export.labelstudio is not None:
        for name, content in export.labelstudio_files().items():
            atomic_write_text(root / name, content)
        out["labelstudio"] = root / LABELSTUDIO_DIR
        out["labelstudio_tasks"] = len(export.labelstudio)
    if failed:
        out["failed"] = failed
    return out


def _newer(path: Path, than: Path) -> bool:
    try:
        return path.stat().st_mtime_ns >= than.stat().st_mtime_ns
    except OSError:  # missing, or a name the file system cannot hold
        return False


def _relative_to(target: str, start_folder: str) -> str:
    return os.path.relpath(target, start=start_folder or ".").replace(os.sep, "/")


def export_zip(
    label_store_or_dir: LabelStore | str | os.PathLike,
    zip_path: str | os.PathLike,
    formats: Sequence[str] = EXPORT_FORMATS,
    image_root: str | os.PathLike | None = None,
    *,
    rule: str = "words",
) -> dict:
    """Write every finished label of an output folder into one zip, atomically.

    Contents (for formats ``png``, ``coco``, ``labelme``)::

        masks/<folders>/<stem>.png      the label PNGs (text removal: also cleaned/...)
        coco.json                       COCO, one RLE annotation per word (``rule``), with its
                                        score; file_name = source path
        labelme/<folders>/<stem>.json   LabelMe, one polygon per word
        images/<source path>            only with image_root: copies of the source images
        manifest.json                   task, classes (value, PNG value, colour), per-file
                                        status and counts

    LabelMe ``imagePath`` points at ``images/...`` when ``image_root`` is given (the extracted
    zip opens in LabelMe as is); otherwise it is the image's file name, for copying the JSON
    files next to the source images. Returns the content of ``manifest.json``.
    """
    store = label_store_or_dir if isinstance(label_store_or_dir, LabelStore) else LabelStore.open(label_store_or_dir)
    export = LabelExport(store, formats, info={"task": store.task, "instances": rule}, rule=rule)
    chosen = export.formats
    files: dict[str, dict] = {}
    exported = 0
    missing_images: list[str] = []

    with atomic_writer(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, record in store.records().items():
            files[rel] = {k: v for k, v in record.items() if k not in ("file", "task")}
        for rel, _ in export.finished():
            entry = files[rel]
            if not store.label_path(rel).is_file():
                entry["exported"] = False
                entry["reason"] = "the label file is missing"
                continue
            rel_posix = normalize_relative_path(rel)
            if "png" in chosen:
                archive.write(store.label_path(rel), label_relpath(rel, MASKS_DIR), compress_type=zipfile.ZIP_STORED)
                cleaned = store.cleaned_path(rel)
                if cleaned.is_file():
                    archive.write(cleaned, label_relpath(rel, CLEANED_DIR), compress_type=zipfile.ZIP_STORED)
            image_arc = None
            if image_root is not None:
                source = Path(image_root).joinpath(*rel_posix.parts)
                if source.is_file():
                    image_arc = (PurePosixPath("images") / rel_posix).as_posix()
                    archive.write(source, image_arc, compress_type=zipfile.ZIP_STORED)
                else:
                    missing_images.append(rel)
            json_arc = export.labelme_path(rel)
            image_ref = _relative_to(image_arc, str(PurePosixPath(json_arc).parent)) if image_arc else rel_posix.name
            document = export.add(rel, image_ref, image_url=labelstudio_image_url(image_arc or rel_posix.as_posix()))
            if document is not None:
                archive.writestr(json_arc, json.dumps(document, ensure_ascii=False, indent=2))
            entry["exported"] = True
            exported += 1
        if export.coco is not None:
            archive.writestr("coco.json", json.dumps(export.coco.to_dict(), ensure_ascii=False))
        if export.labelstudio is not None:
            for name, content in export.labelstudio_files().items():
                archive.writestr(name, content)
        counts = store.counts()
        counts["exported"] = exported
        manifest = {
            "task": store.task,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "formats": list(chosen),
            "classes": [c.as_dict() for c in store.classes],
            "counts": counts,
            "files": files,
        }
        if missing_images:
            manifest["missing_images"] = missing_images
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    return manifest
