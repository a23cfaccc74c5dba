"""The on-disk label layout shared by the batch labeller and the annotation editor.

::

    OUTPUT_DIR/
      masks/<folders>/<stem>.png     text segmentation and text removal: L, 0 = background, 255 = text
                                     tampered text detection: L label map, 0 background,
                                     1 real text, 2 tampered text
      cleaned/<folders>/<stem>.png   text removal only: the text-free RGB image
      scores/<folders>/<stem>.png    model labels only: L, the model's probability of each
                                     pixel's class times 255 (instance scores in the exports)
      manifest.jsonl                 append-only JSON lines; the latest record per file wins
      manifest.rank<R>.jsonl         the same, written by process R of a multi-process run;
                                     merge_manifests() folds them into manifest.jsonl

``<folders>/<stem>`` is the source image's path relative to the input folder without its
extension (``scans/page 1.jpg`` -> ``masks/scans/page 1.png``). Two sources that differ only
by extension (``a.jpg``, ``a.png``) would share a label; :func:`find_label_collisions` finds
them and :meth:`LabelStore.write_label` refuses the second one.

A manifest record is one JSON object per line::

    {"file": "scans/page 1.jpg", "status": "done", "task": "text-segmentation",
     "model": "...", "revision": "...", "threshold": 0.4,
     "time": "2025-01-31T12:00:00.000000Z", "label": "masks/scans/page 1.png"}

``status`` is ``done`` (written by a model), ``reviewed`` (checked or edited by a person),
``failed`` (with ``reason``) or ``skipped`` (with ``reason``). Text removal records also carry
``"cleaned": "cleaned/scans/page 1.png"``. Model labels carry ``"scores": "scores/..."`` and
``"confidence"`` (:meth:`upocr.tasks.Proposal.confidence`: the model's mean margin over the
pixels that are or might be text, 0 to 1; the Annotate tab can review the least confident first). Each record is appended with a single write of a
whole line followed by fsync, so a crash can at worst leave a truncated last line, which
readers ignore. Within one manifest file the later line wins; between files the record with
the later ``time`` wins. A reviewed label is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from filelock import FileLock, Timeout
from PIL import Image

from ..io import atomic_write_text, save_png_atomic
from ..paths import normalize_relative_path, safe_relative_output
from ..tasks import canonical_task, get_task
from ..tasks.base import LabelClass
from .manifest import (
    MANIFEST_NAME,
    _append_line,
    _complete_part,
    _format_time,
    _manifest_files,
    _manifest_lock,
    _ManifestState,
    _parse_lines,
    _record_line,
    _time_key,
    _utc_now,
    merge_manifests,
    read_manifest_records,
)

__all__ = [
    "MASKS_DIR",
    "CLEANED_DIR",
    "SCORES_DIR",
    "MANIFEST_NAME",
    "DONE",
    "REVIEWED",
    "FAILED",
    "SKIPPED",
    "STATUSES",
    "LabelClass",
    "label_classes",
    "encode_label",
    "decode_label",
    "label_relpath",
    "find_label_collisions",
    "LabelStoreError",
    "ReviewedLabelError",
    "LabelRunBusyError",
    "LabelCollisionError",
    "LabelTaskMismatchError",
    "LabelStore",
    "read_manifest_records",
    "merge_manifests",
]

#: The lock file that serialises label writes across processes (see ``LabelStore._writing``).
WRITE_LOCK_NAME = ".labels.write.lock"
#: The lock file held by the labelling run of a folder (see :func:`labelling_run`), and the file
#: that says who holds it.
RUN_LOCK_NAME = ".labels.run.lock"
RUN_OWNER_NAME = ".labels.run.json"


@contextlib.contextmanager
def labelling_run(output_dir: str | os.PathLike, what: str = "upocr label", *, busy_message: str | None = None):
    """Held for the whole of a labelling run on ``output_dir`` (``upocr label``, the app's
    pre-labelling): a second run on the same folder, in any process, stops at once with
    :class:`LabelRunBusyError` naming the one at work, instead of duplicating its work. The lock
    is the operating system's, so a run that was killed does not leave it behind.
    ``busy_message`` replaces the error's text (which names the folder and the other run)."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root / RUN_LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = json.loads((root / RUN_OWNER_NAME).read_text(encoding="utf-8"))
            who = f" ({owner.get('what', 'a run')}, process {owner.get('pid')}, started {owner.get('started')})"
        except (OSError, ValueError, AttributeError):
            who = ""
        raise LabelRunBusyError(
            busy_message or f"{root}: another labelling run is writing to this folder{who}; "
            "wait for it to finish or label into another folder"
        ) from None
    try:
        owner = {"what": what, "pid": os.getpid(), "started": _format_time(_utc_now())}
        atomic_write_text(root / RUN_OWNER_NAME, json.dumps(owner))
        yield
    finally:
        with contextlib.suppress(OSError):
            (root / RUN_OWNER_NAME).unlink()
        lock.release()

MASKS_DIR = "masks"
CLEANED_DIR = "cleaned"
SCORES_DIR = "scores"

DONE = "done"
REVIEWED = "reviewed"
FAILED = "failed"
SKIPPED = "skipped"
STATUSES: tuple[str, ...] = (DONE, REVIEWED, FAILED, SKIPPED)

def label_classes(task: str) -> tuple[LabelClass, ...]:
    """The classes of ``task``'s labels, background (value 0) first."""
    return get_task(task).classes


def encode_label(task: str, label: np.ndarray) -> np.ndarray:
    """The ``uint8`` ``(H, W)`` PNG content for a mask or label map of ``task``.

    Segmentation and removal take a boolean or integer mask (non-zero = text) and give 0/255.
    Tampering takes an integer label map with values 0, 1, 2 and keeps the values.
    """
    return get_task(task).encode_label(label)


def decode_label(task: str, png: np.ndarray) -> np.ndarray:
    """Class values (``uint8`` ``(H, W)``: 0/1 or 0/1/2) from the PNG content of a label."""
    return get_task(task).decode_label(png)


def label_relpath(relative_path: str | os.PathLike, folder: str = MASKS_DIR) -> str:
    """The POSIX path, relative to the output folder, of the label of a source file."""
    rel = normalize_relative_path(relative_path)
    stem = rel.name[: -len(rel.suffix)] if rel.suffix and rel.name != rel.suffix else rel.name
    return (Path(folder) / rel.parent / (stem + ".png")).as_posix()


def find_label_collisions(relative_paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """Label paths claimed by more than one source file (e.g. ``a.jpg`` and ``a.png``)."""
    owners: dict[str, list[str]] = {}
    for rel in relative_paths:
        key = label_relpath(rel)
        owners.setdefault(key, []).append(normalize_relative_path(rel).as_posix())
    return {key: sorted(files) for key, files in owners.items() if len(files) > 1}


class LabelStoreError(ValueError):
    """Base class of the label store's errors."""


class LabelRunBusyError(LabelStoreError):
    """Another labelling run is writing to the output folder."""


class ReviewedLabelError(LabelStoreError):
    """Refused to replace a label that a person has reviewed."""


class LabelCollisionError(LabelStoreError):
    """Two source files would write the same label file."""


class LabelTaskMismatchError(LabelStoreError):
    """The output folder holds labels of another task."""


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class LabelStore:
    """Labels of one task in one output folder (see the module documentation for the layout).

    ``rank`` makes this process append to ``manifest.rank<rank>.jsonl`` instead of
    ``manifest.jsonl``; reading always considers every manifest file. ``model`` and
    ``revision`` are added to the records this store writes unless a record gives its own.
    The store picks up records that other processes append; it is safe to share between
    threads.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        task: str,
        *,
        rank: int | None = None,
        model: str | None = None,
        revision: str | None = None,
    ):
        if rank is not None and (not isinstance(rank, int) or rank < 0):
            raise ValueError(f"rank must be a non-negative integer, got {rank!r}")
        self.output_dir = Path(output_dir)
        self.task = canonical_task(task)
        self.rank = rank
        self.model = model
        self.revision = revision
        self.classes = label_classes(self.task)
        name = MANIFEST_NAME if rank is None else f"manifest.rank{rank}.jsonl"
        self.manifest_path = self.output_dir / name
        self._lock = threading.RLock()
        self._states: dict[Path, _ManifestState] = {}
        self._latest: dict[tuple[int, str], tuple[float, dict]] = {}
        self._orders: dict[str, set[int]] = {}
        self._owners: dict[str, set[str]] = {}
        self._last_time: datetime | None = None
        self.refresh()

    @contextlib.contextmanager
    def _writing(self):
        """Held while a label is checked and written: one writer at a time on this folder, across
        processes (the app's reviewer and a running ``upocr label``), so a label reviewed by one
        is never replaced by the other between its check and its write."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.output_dir / WRITE_LOCK_NAME)):
            yield

    @classmethod
    def open(cls, output_dir: str | os.PathLike, *, rank: int | None = None) -> "LabelStore":
        """Open an existing output folder, taking the task from its manifest."""
        records = read_manifest_records(output_dir)
        tasks = sorted({r["task"] for r in records.values() if isinstance(r.get("task"), str)})
        if not tasks:
            raise LabelStoreError(f"{output_dir}: no label manifest found (is this a label output folder?)")
        if len(tasks) > 1:
            raise LabelTaskMismatchError(f"{output_dir}: the manifest mixes tasks {', '.join(tasks)}")
        return cls(output_dir, tasks[0], rank=rank)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.output_dir)!r}, {self.task!r}, rank={self.rank})"

    # -- paths --------------------------------------------------------------------------------

    @staticmethod
    def key(relative_path: str | os.PathLike) -> str:
        """The manifest key of a source file: its relative path in POSIX form."""
        return normalize_relative_path(relative_path).as_posix()

    def label_path(self, relative_path: str | os.PathLike) -> Path:
        """``OUTPUT_DIR/masks/<folders>/<stem>.png`` for the source file ``relative_path``."""
        return safe_relative_output(self.output_dir / MASKS_DIR, relative_path, ".png")

    def cleaned_path(self, relative_path: str | os.PathLike) -> Path:
        """``OUTPUT_DIR/cleaned/<folders>/<stem>.png`` (text removal)."""
        return safe_relative_output(self.output_dir / CLEANED_DIR, relative_path, ".png")

    def scores_path(self, relative_path: str | os.PathLike) -> Path:
        """``OUTPUT_DIR/scores/<folders>/<stem>.png`` (the model's per-pixel scores)."""
        return safe_relative_output(self.output_dir / SCORES_DIR, relative_path, ".png")

    # -- reading state --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read what was appended to the manifest files since the last call."""
        with self._lock:
            files = _manifest_files(self.output_dir)
            current = {path for _, path in files}
            reset = any(path not in current for path in self._states)
            stats = {}
            for order, path in files:
                try:
                    st = path.stat()
                except FileNotFoundError:
                    reset = True
                    continue
                stats[path] = (order, st)
                state = self._states.get(path)
                if state is not None and (state.ident != (st.st_dev, st.st_ino) or st.st_size < state.offset):
                    reset = True
            if reset:
                self._states.clear()
                self._latest.clear()
                self._orders.clear()
                self._owners.clear()
            for path, (order, st) in stats.items():
                state = self._states.get(path)
                if state is None:
                    state = _ManifestState(order=order, ident=(st.st_dev, st.st_ino))
                    self._states[path] = state
                if st.st_size <= state.offset:
                    continue
                try:
                    with open(path, "rb") as handle:
                        handle.seek(state.offset)
                        data = _complete_part(handle.read())
                except FileNotFoundError:
                    continue
                state.offset += len(data)
                for record in _parse_lines(data):
                    self._ingest(order, record)

    def _ingest(self, order: int, record: dict) -> None:
        task = record.get("task")
        if isinstance(task, str) and task != self.task:
            raise LabelTaskMismatchError(
                f"{self.output_dir} holds {task} labels, not {self.task} labels; "
                "use another output folder for this task"
            )
        rel = record["file"]
        self._latest[(order, rel)] = (_time_key(record), record)
        self._orders.setdefault(rel, set()).add(order)
        try:
            owner_key = label_relpath(rel)
        except ValueError:
            return
        self._owners.setdefault(owner_key, set()).add(rel)

    def _winner(self, rel: str) -> dict | None:
        best: tuple[float, int] | None = None
        found = None
        for order in self._orders.get(rel, ()):
            time_key, record = self._latest[(order, rel)]
            if best is None or (time_key, order) >= best:
                best, found = (time_key, order), record
        return found

    def record(self, relative_path: str | os.PathLike) -> dict | None:
        """The latest manifest record of a source file, or ``None``."""
        rel = self.key(relative_path)
        with self._lock:
            self.refresh()
            found = self._winner(rel)
            return dict(found) if found is not None else None

    def status(self, relative_path: str | os.PathLike) -> str | None:
        """``"done"``, ``"reviewed"``, ``"failed"``, ``"skipped"`` or ``None`` (never seen)."""
        found = self.record(relative_path)
        return found["status"] if found else None

    def is_done(self, relative_path: str | os.PathLike) -> bool:
        """Whether the file has a label (status done or reviewed) and its files exist."""
        found = self.record(relative_path)
        return bool(found) and found["status"] in (DONE, REVIEWED) and self.files_exist(relative_path)

    def files_exist(self, relative_path: str | os.PathLike) -> bool:
        """Whether the label's files (and for removal the cleaned image) are on disk."""
        if not self.label_path(relative_path).is_file():
            return False
        return not get_task(self.task).has_cleaned_image or self.cleaned_path(relative_path).is_file()

    def is_reviewed(self, relative_path: str | os.PathLike) -> bool:
        found = self.record(relative_path)
        return bool(found) and found["status"] == REVIEWED

    def records(self) -> dict[str, dict]:
        """The latest record of every source file, by relative path (sorted)."""
        with self._lock:
            self.refresh()
            return {rel: dict(self._winner(rel)) for rel in sorted(self._orders)}

    def counts(self) -> dict[str, int]:
        """``done``, ``reviewed``, ``failed``, ``skipped``, ``labelled`` (done + reviewed), ``total``."""
        result = {status: 0 for status in STATUSES}
        records = self.records()
        for record in records.values():
            if record["status"] in result:
                result[record["status"]] += 1
        result["labelled"] = result[DONE] + result[REVIEWED]
        result["total"] = len(records)
        return result

    # -- reading labels -------------------------------------------------------------------------

    def read_label(self, relative_path: str | os.PathLike) -> np.ndarray:
        """The label PNG as stored: ``uint8`` ``(H, W)``, 0/255 or 0/1/2."""
        path = self.label_path(relative_path)
        if not path.is_file():
            raise FileNotFoundError(f"no label for {self.key(relative_path)} (expected {path})")
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("L", "P", "1"):
                image = image.convert("L")
            arr = np.asarray(image)
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        return np.ascontiguousarray(arr, dtype=np.uint8)

    def read_class_map(self, relative_path: str | os.PathLike) -> np.ndarray:
        """Class values of the label (``uint8``: 0/1 for text, 0/1/2 for tampering)."""
        return decode_label(self.task, self.read_label(relative_path))

    def read_cleaned(self, relative_path: str | os.PathLike) -> np.ndarray:
        """The cleaned image of a text removal label (``uint8`` RGB)."""
        path = self.cleaned_path(relative_path)
        if not path.is_file():
            raise FileNotFoundError(f"no cleaned image for {self.key(relative_path)} (expected {path})")
        with Image.open(path) as image:
            return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))

    def read_scores(self, relative_path: str | os.PathLike) -> np.ndarray | None:
        """The model's per-pixel scores of a model label (float32 ``(H, W)`` in [0, 1]), or
        ``None`` when the label has none (a reviewed label, or one written without scores)."""
        rel = self.key(relative_path)
        record = self.record(rel)
        path = self.scores_path(rel)
        if record is None or record.get("status") != DONE or "scores" not in record or not path.is_file():
            return None
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.float32) / 255.0

    # -- writing --------------------------------------------------------------------------------

    def _check_not_reviewed(self, rel: str, overwrite: bool) -> None:
        current = self._winner(rel)
        if current is not None and current["status"] == REVIEWED and not overwrite:
            raise ReviewedLabelError(
                f"{rel}: its label was reviewed by hand (at {current.get('time', 'an unknown time')}); "
                "it is kept unless you pass overwrite=True"
            )

    def _check_collision(self, rel: str) -> None:
        key = label_relpath(rel)
        for other in sorted(self._owners.get(key, ())):
            if other == rel:
                continue
            found = self._winner(other)
            if found is not None and found["status"] in (DONE, REVIEWED):
                raise LabelCollisionError(
                    f"{rel} and {other} would both be labelled as {key}; "
                    "rename one of them or label them into different output folders"
                )

    def _next_time(self) -> str:
        now = _utc_now()
        if self._last_time is not None and now <= self._last_time:
            now = self._last_time + timedelta(microseconds=1)
        self._last_time = now
        return _format_time(now)

    def _append(self, rel: str, status: str, extra: dict | None, fields: dict) -> dict:
        record: dict[str, Any] = {}
        if self.model is not None:
            record["model"] = self.model
        if self.revision is not None:
            record["revision"] = self.revision
        record.update(extra or {})
        record.update(fields)
        record.update({"file": rel, "status": status, "task": self.task, "time": self._next_time()})
        ordered = {key: record[key] for key in ("file", "status", "task", "time") if key in record}
        ordered.update((key, value) for key, value in record.items() if key not in ordered)
        line = _record_line(ordered)
        with _manifest_lock(self.output_dir, exclusive=False):
            _append_line(self.manifest_path, line)
        self.refresh()
        return ordered

    def _write_files(self, rel: str, label: np.ndarray, cleaned: np.ndarray | None) -> dict:
        png = encode_label(self.task, label)
        fields: dict[str, Any] = {"label": label_relpath(rel, MASKS_DIR)}
        has_cleaned = get_task(self.task).has_cleaned_image
        if has_cleaned and cleaned is None:
            raise ValueError(f"a {self.task} label needs the cleaned image (cleaned=...)")
        if cleaned is not None:
            if not has_cleaned:
                raise ValueError(f"cleaned images belong to text removal labels, not {self.task}")
            rgb = np.asarray(cleaned)
            if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
                raise ValueError(f"the cleaned image must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
            if rgb.shape[:2] != png.shape:
                raise ValueError(f"the cleaned image is {rgb.shape[:2]} but the mask is {png.shape}")
            save_png_atomic(self.cleaned_path(rel), rgb)
            fields["cleaned"] = label_relpath(rel, CLEANED_DIR)
        save_png_atomic(self.label_path(rel), png)
        return fields

    def write_label(
        self,
        relative_path: str | os.PathLike,
        label: np.ndarray,
        *,
        cleaned: np.ndarray | None = None,
        scores: np.ndarray | None = None,
        record: dict | None = None,
        overwrite: bool = False,
    ) -> dict:
        """Save a model's label (status ``done``) and append its record; returns the record.

        ``label``: the text mask (segmentation, removal) or the 0/1/2 label map (tampering);
        ``cleaned``: the text-free RGB image (removal, required); ``scores``: the model's
        probability of each pixel's class (``(H, W)`` in [0, 1], saved as ``scores/...png``). ``record`` adds fields such as
        ``threshold``. The PNG files are written atomically before the record is appended.
        Raises :class:`ReviewedLabelError` if the label was reviewed (unless ``overwrite``) and
        :class:`LabelCollisionError` if another source file owns the same label path.
        """
        rel = self.key(relative_path)
        with self._lock, self._writing():
            self.refresh()
            self._check_not_reviewed(rel, overwrite)
            self._check_collision(rel)
            fields = self._write_files(rel, label, cleaned)
            if scores is not None:
                fields["scores"] = self._write_scores(rel, scores, np.shape(label)[:2])
            return self._append(rel, DONE, record, fields)

    def _write_scores(self, rel: str, scores: np.ndarray, shape: tuple[int, ...]) -> str:
        values = np.asarray(scores, dtype=np.float32)
        if values.shape != tuple(shape):
            raise ValueError(f"the scores must be (H, W) like the label {shape}, got {values.shape}")
        save_png_atomic(self.scores_path(rel), np.round(np.clip(values, 0, 1) * 255).astype(np.uint8))
        return label_relpath(rel, SCORES_DIR)

    def mark_reviewed(
        self,
        relative_path: str | os.PathLike,
        label: np.ndarray | None = None,
        *,
        cleaned: np.ndarray | None = None,
        record: dict | None = None,
        overwrite: bool = False,
    ) -> dict:
        """Save a person's label (status ``reviewed``); ``label=None`` approves the label on disk.

        A label that is already reviewed is only replaced with ``overwrite=True``
        (:class:`ReviewedLabelError` otherwise).
        """
        rel = self.key(relative_path)
        with self._lock, self._writing():
            self.refresh()
            self._check_not_reviewed(rel, overwrite)
            self._check_collision(rel)
            if label is None:
                if not self.label_path(rel).is_file():
                    raise FileNotFoundError(f"{rel}: there is no label on disk to approve")
                fields: dict[str, Any] = {"label": label_relpath(rel, MASKS_DIR)}
                if get_task(self.task).has_cleaned_image:
                    if cleaned is not None:
                        save_png_atomic(self.cleaned_path(rel), self._check_cleaned(cleaned, self.read_label(rel).shape))
                    fields["cleaned"] = label_relpath(rel, CLEANED_DIR)
            else:
                if get_task(self.task).has_cleaned_image and cleaned is None and self.cleaned_path(rel).is_file():
                    cleaned = self.read_cleaned(rel)
                fields = self._write_files(rel, label, cleaned)
            return self._append(rel, REVIEWED, record, fields)

    @staticmethod
    def _check_cleaned(cleaned: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        rgb = np.asarray(cleaned)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[:2] != tuple(shape):
            raise ValueError(f"the cleaned image must be uint8 {tuple(shape) + (3,)}, got {rgb.dtype} {rgb.shape}")
        return rgb

    def mark_failed(
        self, relative_path: str | os.PathLike, reason: str, *, record: dict | None = None, overwrite: bool = False
    ) -> dict:
        """Record that a file could not be labelled (e.g. unreadable). Label files are left alone.

        Refuses (:class:`ReviewedLabelError`) to hide a reviewed label unless ``overwrite``.
        """
        rel = self.key(relative_path)
        with self._lock, self._writing():
            self.refresh()
            self._check_not_reviewed(rel, overwrite)
            return self._append(rel, FAILED, record, {"reason": str(reason)})

    def mark_skipped(
        self, relative_path: str | os.PathLike, reason: str, *, record: dict | None = None, overwrite: bool = False
    ) -> dict:
        """Record that a file was deliberately not labelled, with the reason."""
        rel = self.key(relative_path)
        with self._lock, self._writing():
            self.refresh()
            self._check_not_reviewed(rel, overwrite)
            return self._append(rel, SKIPPED, record, {"reason": str(reason)})
