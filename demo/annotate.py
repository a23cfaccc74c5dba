"""Annotation workspaces: where uploaded images live, where their labels go, and the steps of a
labelling pass (pre-label, review, export). Labels are kept by :class:`upocr.labeling.LabelStore`
and exported by :func:`upocr.labeling.export_zip`; this module only arranges folders.

Layout::

    DATA_DIR/.upocr-labels/<task>/          labels of a local ``--data`` folder (LabelStore layout)
    STUDIO/workspaces/<id>/images/...       uploaded images (zip folders kept)
    STUDIO/workspaces/<id>/labels/<task>/   their labels
    STUDIO/workspaces/<id>/.owner           a hash of the owner's key

Workspaces are private: the app gives each browser an owner key (kept in the browser's storage,
encrypted), and a workspace id is a salted hash of that key and the uploaded files' names and
contents. The same browser uploading the same files again reopens its workspace (and resumes);
another browser uploading the same files gets a workspace of its own, and cannot open anyone
else's, even knowing its id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np

from upocr.labeling import LabelConfig, export_zip, label_images, labelling_run
from upocr.io import atomic_write_text, read_image
from upocr.paths import is_image_file, iter_image_files, normalize_relative_path
from upocr.labeling import DONE, REVIEWED, LabelStore, ReviewedLabelError
from upocr.tasks import (
    DEFAULT_SEGMENTATION_THRESHOLD,
    TAMPERED_TEXT_DETECTION,
    TEXT_REMOVAL,
    TEXT_SEGMENTATION,
    canonical_task,
    get_task,
)

from .core import UserInputError

LABELS_FOLDER = ".upocr-labels"
_WORKSPACE_ID = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class UploadLimits:
    max_files: int = 2000
    max_file_bytes: int = 20 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024
    busy_wait_seconds: float = 60.0


#: Uploads copied into workspaces at the same time, in this process.
MAX_CONCURRENT_INGESTS = 2
_INGESTING = threading.BoundedSemaphore(MAX_CONCURRENT_INGESTS)


# ------------------------------------------------------------------------------------------
# Uploads and zips
# ------------------------------------------------------------------------------------------


def _salt(root: Path) -> bytes:
    """The workspaces' secret salt, created once. It is written to a private temporary file and
    published with ``os.link``, which refuses when a racing caller published first, so no
    caller ever reads a salt that is half written."""
    path = root / ".salt"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    root.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".salt-", dir=root)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)
    return path.read_bytes()


def browser_secret(workspaces_root: Path) -> str:
    """A stable secret for values the app keeps in the browser (survives restarts)."""
    return hashlib.sha256(b"browser-state" + _salt(workspaces_root)).hexdigest()


def new_owner_key() -> str:
    """A random key that makes the workspaces of one browser (or user) its own."""
    return secrets.token_hex(16)


def user_owner_key(workspaces_root: Path, username: str) -> str:
    """The owner key of a signed-in Hugging Face user: keyed with the server's secret salt, so it
    cannot be made up from a user name, and the same in every browser the user signs in from."""
    return "hf-" + hmac.new(_salt(workspaces_root), b"hf-user\0" + username.encode(), hashlib.sha256).hexdigest()[:32]


def _owner_digest(owner: str) -> str:
    return hashlib.sha256(b"workspace-owner\0" + str(owner).encode()).hexdigest()


def workspace_id(files: Sequence[str | os.PathLike], workspaces_root: Path, owner: str) -> str:
    """The id of the workspace that ``owner`` gets for these files: a salted hash of the owner key
    and the files' names and contents. The same owner uploading the same files again gets the
    same workspace back (and resumes); anyone else gets a workspace of their own."""
    if not owner:
        raise ValueError("a workspace needs an owner key")
    digest = hashlib.sha256(_salt(workspaces_root) + _owner_digest(owner).encode())
    for path in sorted(files, key=lambda p: Path(p).name):
        digest.update(Path(path).name.encode("utf-8", "surrogateescape") + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:24]


def owns_workspace(workspaces_root: Path, ident: str, owner: str | None) -> bool:
    """Whether ``owner`` (a key kept by the owner's browser) owns the workspace ``ident``."""
    if not owner or not is_workspace_id(ident):
        return False
    try:
        stored = (Path(workspaces_root) / ident / ".owner").read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return secrets.compare_digest(stored, _owner_digest(owner))


def is_workspace_id(value: str | None) -> bool:
    return bool(value) and bool(_WORKSPACE_ID.match(value))


def _unique(target: Path) -> Path:
    if not target.exists():
        return target
    for n in range(2, 10_000):
        candidate = target.with_name(f"{target.stem} ({n}){target.suffix}")
        if not candidate.exists():
            return candidate
    raise UserInputError(f"too many files named {target.name}")


def _inside(root: Path, rel: PurePosixPath) -> Path:
    target = root.joinpath(*rel.parts)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
        raise UserInputError(f"{rel}: the path leaves the upload folder")
    return target


def safe_extract_zip(zip_path: str | os.PathLike, dest: Path, limits: UploadLimits,
                     budget: list[int]) -> tuple[list[str], list[str]]:
    """Extract the images of a zip into ``dest`` safely.

    Kept: regular files with an image extension whose path stays inside ``dest`` (no absolute
    paths, ``..``, drive letters, links, hidden or ``__MACOSX`` entries). Each file is limited to
    ``limits.max_file_bytes`` and all files together to the remaining ``budget``: an archive
    whose entries claim more is refused before anything is written, and the bytes actually read
    are counted too (an archive can claim less than it holds). Returns ``(extracted, skipped)``
    relative paths / reasons.
    """
    extracted: list[str] = []
    skipped: list[str] = []
    name = Path(zip_path).name
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserInputError(f"{name}: not a readable zip archive ({exc})") from exc
    with archive:
        declared = sum(info.file_size for info in archive.infolist()
                       if not info.is_dir() and is_image_file(info.filename) and info.file_size <= limits.max_file_bytes)
        if declared > budget[0]:  # refused before a byte is written (sizes that lie are caught below)
            raise UserInputError(f"{name}: its images add up to {declared // (1024 * 1024)} MB, more than the "
                                 f"{limits.max_total_bytes // (1024 * 1024)} MB an upload may hold; split the archive")
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                rel = normalize_relative_path(info.filename)
            except ValueError as exc:
                skipped.append(f"{info.filename}: {exc}")
                continue
            if any(part.startswith(".") or part == "__MACOSX" for part in rel.parts):
                continue
            if not is_image_file(rel.name):
                skipped.append(f"{rel}: not an image file")
                continue
            file_type = stat.S_IFMT(info.external_attr >> 16)
            if file_type and file_type != stat.S_IFREG:
                skipped.append(f"{rel}: not a regular file (link or device)")
                continue
            if info.flag_bits & 0x1:
                skipped.append(f"{rel}: encrypted")
                continue
            if info.file_size > limits.max_file_bytes:
                skipped.append(f"{rel}: larger than {limits.max_file_bytes // (1024 * 1024)} MB")
                continue
            if len(extracted) >= limits.max_files:
                raise UserInputError(f"{name}: more than {limits.max_files} images; split the archive")
            target = _unique(_inside(dest, rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            cap = min(limits.max_file_bytes, budget[0])
            written = 0
            try:
                with archive.open(info) as source, open(target, "wb") as out:
                    for chunk in iter(lambda: source.read(1 << 20), b""):
                        written += len(chunk)
                        if written > cap:
                            break
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                target.unlink(missing_ok=True)
                skipped.append(f"{rel}: corrupt entry ({exc})")
                continue
            if written > cap:
                target.unlink(missing_ok=True)
                if cap < limits.max_file_bytes:
                    raise UserInputError(f"{name}: the images add up to more than "
                                         f"{limits.max_total_bytes // (1024 * 1024)} MB; split the archive")
                skipped.append(f"{rel}: larger than {limits.max_file_bytes // (1024 * 1024)} MB")
                continue
            budget[0] -= written
            extracted.append(target.relative_to(dest).as_posix())
    return extracted, skipped


def ingest_uploads(files: Iterable[str | os.PathLike], workspaces_root: Path,
                   limits: UploadLimits = UploadLimits(), *, owner: str) -> tuple[str, list[str]]:
    """Copy uploaded images (and the images of uploaded zips) into ``owner``'s workspace.

    Returns ``(workspace id, notes about skipped files)``. An existing workspace of this owner
    with the same files is reused as is, so its labels and review state remain. Each upload is
    staged in a folder of its own and published with one rename: two identical uploads at once
    both end with the complete workspace (the second finds it published and drops its copy).
    At most :data:`MAX_CONCURRENT_INGESTS` uploads are copied at once (so staged files never take
    more than that many times ``limits.max_total_bytes`` of disk); a further one waits up to
    ``limits.busy_wait_seconds`` and is then refused with a message.
    """
    paths = [Path(f) for f in files if f]
    if not paths:
        raise UserInputError("No files: upload images or a zip of images.")
    if not _INGESTING.acquire(timeout=limits.busy_wait_seconds):
        raise UserInputError("The server is busy copying other uploads; try again in a minute.")
    try:
        return _ingest(paths, workspaces_root, limits, owner)
    finally:
        _INGESTING.release()


def _ingest(paths: list[Path], workspaces_root: Path, limits: UploadLimits, owner: str) -> tuple[str, list[str]]:
    ident = workspace_id(paths, workspaces_root, owner)
    root = workspaces_root / ident
    images = root / "images"
    if images.is_dir() and any(images.iterdir()):
        return ident, []
    root.mkdir(parents=True, exist_ok=True)
    owner_file = root / ".owner"
    if not owner_file.exists():
        atomic_write_text(owner_file, _owner_digest(owner))
    staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=root))
    notes: list[str] = []
    budget = [limits.max_total_bytes]
    count = 0
    try:
        for path in paths:
            if path.suffix.lower() == ".zip":
                done, skipped = safe_extract_zip(path, staging, limits, budget)
                count += len(done)
                notes.extend(f"{path.name}/{note}" for note in skipped)
                continue
            if not is_image_file(path.name):
                notes.append(f"{path.name}: not an image or zip file")
                continue
            size = path.stat().st_size
            if size > min(limits.max_file_bytes, budget[0]):
                notes.append(f"{path.name}: too large")
                continue
            count += 1
            if count > limits.max_files:
                raise UserInputError(f"more than {limits.max_files} images; upload fewer at a time")
            budget[0] -= size
            shutil.copyfile(path, _unique(staging / path.name))
        if count == 0:
            raise UserInputError("None of the uploaded files is an image (" + "; ".join(notes[:5]) + ")")
        try:
            os.rename(staging, images)  # atomic; refuses when a racing upload published first
        except OSError:
            if not (images.is_dir() and any(images.iterdir())):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ident, notes


# ------------------------------------------------------------------------------------------
# A labelling pass
# ------------------------------------------------------------------------------------------


@dataclass
class Item:
    rel: str
    status: str | None


class Workspace:
    """Images under ``images_root`` and their ``task`` labels in ``labels_dir``."""

    def __init__(self, images_root: Path, labels_dir: Path, task: str, *, model: str | None = None,
                 exclude: Sequence[Path] = ()):
        self.images_root = Path(images_root)
        self.labels_dir = Path(labels_dir)
        self.task = canonical_task(task)
        self.store = LabelStore(self.labels_dir, self.task, model=model)
        files = iter_image_files(self.images_root, exclude=tuple(exclude) + (self.labels_dir,))
        self.items = [p.relative_to(self.images_root).as_posix() for p in files]
        self.lock = threading.RLock()

    @classmethod
    def for_data_dir(cls, data_dir: Path, task: str, *, model: str | None = None) -> "Workspace":
        return cls(data_dir, data_dir / LABELS_FOLDER / canonical_task(task), task, model=model)

    @classmethod
    def for_upload(cls, workspaces_root: Path, ident: str, task: str, *, owner: str,
                   model: str | None = None) -> "Workspace":
        """An uploaded workspace, opened only by its owner (anyone else is told it does not exist)."""
        if not is_workspace_id(ident):
            raise UserInputError("Unknown workspace id.")
        root = workspaces_root / ident
        if not owns_workspace(workspaces_root, ident, owner):
            raise UserInputError(f"No workspace {ident} for this browser: upload the images again.")
        if not (root / "images").is_dir():
            raise UserInputError(f"No workspace {ident} here (it may have been cleaned up): upload the images again.")
        return cls(root / "images", root / "labels" / canonical_task(task), task, model=model)

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        records = self.store.records()
        wanted = set(self.items)
        statuses = [records[rel]["status"] for rel in records if rel in wanted]
        return {
            "total": len(self.items),
            "reviewed": sum(s == REVIEWED for s in statuses),
            "labelled": sum(s in (DONE, REVIEWED) for s in statuses),
            "failed": sum(s == "failed" for s in statuses),
        }

    def status(self, rel: str) -> str | None:
        return self.store.status(rel)

    def first_unreviewed(self, start: int = 0) -> int | None:
        """Index of the first item at or after ``start`` (wrapping around) not yet reviewed."""
        n = len(self.items)
        if n == 0:
            return None
        records = self.store.records()
        for step in range(n):
            index = (start + step) % n
            record = records.get(self.items[index])
            if record is None or record["status"] != REVIEWED:
                return index
        return None

    def confidence(self, rel: str) -> float | None:
        """The model's confidence in the label of ``rel`` (from the manifest), if it has one."""
        record = self.store.record(rel)
        value = record.get("confidence") if record and record.get("status") == DONE else None
        return float(value) if isinstance(value, (int, float)) else None

    def least_confident_unreviewed(self, current: int | None = None) -> int | None:
        """Index of the unreviewed model label with the lowest confidence (not ``current``
        unless it is the only one); without confidences, the first unreviewed image."""
        records = self.store.records()
        ranked = []
        for index, rel in enumerate(self.items):
            record = records.get(rel)
            if record and record["status"] == DONE and isinstance(record.get("confidence"), (int, float)):
                ranked.append((float(record["confidence"]), index))
        ranked.sort()
        for _, index in ranked:
            if index != current:
                return index
        if ranked:
            return ranked[0][1]
        return self.first_unreviewed(0 if current is None else (current + 1) % max(len(self.items), 1))

    def read_image(self, rel: str) -> np.ndarray:
        path = self.images_root.joinpath(*normalize_relative_path(rel).parts)
        return read_image(path, name=rel)

    def label(self, rel: str) -> np.ndarray | None:
        """The stored label as class values (0/1 or 0/1/2), or ``None``."""
        if self.store.status(rel) not in (DONE, REVIEWED) or not self.store.label_path(rel).is_file():
            return None
        return self.store.read_class_map(rel)

    def prelabel(self, predict: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]],
                 items: Iterable[str] | None = None, *, redo: bool = False, threshold: float | None = None,
                 progress: bool = False) -> dict:
        """Label every image that has no label yet (``redo``: also replace model labels), with
        the labelling engine of ``upocr label`` (:func:`upocr.labeling.label_images`).

        ``predict(rgb)`` runs the model and gives a :class:`~upocr.tasks.Proposal` (its
        confidence goes into the manifest). Reviewed labels are never touched;
        unreadable images are recorded as failed with the reason. Returns counts.
        """
        rels = self.items if items is None else list(items)
        config = LabelConfig(self.task, formats=("png",), overwrite_unreviewed=bool(redo), overlap=False,
                             progress=progress, progress_desc="Pre-labelling",
                             threshold=DEFAULT_SEGMENTATION_THRESHOLD if threshold is None else float(threshold))
        busy = "These images are being labelled by another run; try again when it has finished."
        with labelling_run(self.store.output_dir, "the app's pre-labelling", busy_message=busy):
            summary = label_images(predict, [(self.images_root / rel, rel) for rel in rels], self.store, config)
        return {"labelled": summary.done, "kept": summary.already_done, "reviewed_kept": summary.kept_reviewed,
                "failed": summary.failed}

    def accept(self, rel: str, label: np.ndarray, *, cleaned: np.ndarray | None = None,
               overwrite: bool = False) -> dict:
        """Save a person's label as reviewed (a reviewed label is replaced only with ``overwrite``)."""
        if self.store.is_reviewed(rel) and not overwrite:
            raise ReviewedLabelError(
                f"{rel} was already reviewed; tick 'Replace reviewed labels' to save over it."
            )
        if get_task(self.task).has_cleaned_image and cleaned is None:
            raise ValueError(f"{self.task} labels need the cleaned image")
        return self.store.mark_reviewed(rel, label, cleaned=cleaned, overwrite=overwrite)

    def export(self, zip_path: Path, *, include_images: bool = False) -> dict:
        return export_zip(self.store, zip_path, image_root=self.images_root if include_images else None)


ANNOTATION_TASKS = {
    "Text segmentation": TEXT_SEGMENTATION,
    "Text removal": TEXT_REMOVAL,
    "Tampered text detection": TAMPERED_TEXT_DETECTION,
}
