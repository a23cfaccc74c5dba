"""Paths of user files: which files are images, walking folders safely, and the relative
paths outputs are named after (never escaping the output folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath


__all__ = ["IMAGE_EXTENSIONS", "is_image_file", "iter_image_files", "normalize_relative_path", "safe_relative_output"]

#: File extensions (lower case, with the dot) that are treated as images when scanning folders.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".bmp", ".dib", ".gif"}
)


# --------------------------------------------------------------------------------------------
# Finding images
# --------------------------------------------------------------------------------------------


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def iter_image_files(
    root: str | os.PathLike, *, exclude: tuple[str | os.PathLike, ...] | list = ()
) -> list[Path]:
    """All image files under ``root``, recursively, in a fixed order.

    Hidden files and folders (name starting with ``.``) are skipped, extensions are matched
    case-insensitively against :data:`IMAGE_EXTENSIONS`, symbolic links to files and folders
    are followed (each real folder is visited once). The result is sorted by the path relative
    to ``root``, component by component. Each returned path is ``root / relative path``.
    A ``root`` that is a file is returned as the only item, whatever its extension. Folders in
    ``exclude`` (e.g. an output folder inside the input folder) are not entered.
    """
    root_path = Path(root)
    if root_path.is_file():
        return [root_path]
    if not root_path.exists():
        raise FileNotFoundError(f"{root_path}: no such file or folder")
    if not root_path.is_dir():
        raise NotADirectoryError(f"{root_path}: is neither a file nor a folder")
    excluded = {os.path.realpath(p) for p in exclude}
    found: list[tuple[str, ...]] = []
    visited: set[str] = set()

    def walk(folder: Path, parts: tuple[str, ...]) -> None:
        real = os.path.realpath(folder)
        if real in visited or real in excluded:
            return
        visited.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    walk(Path(entry.path), parts + (entry.name,))
                elif entry.is_file(follow_symlinks=True) and is_image_file(entry.name):
                    found.append(parts + (entry.name,))
            except OSError:
                continue

    walk(root_path, ())
    found.sort()
    return [root_path.joinpath(*parts) for parts in found]


# --------------------------------------------------------------------------------------------
# Output paths
# --------------------------------------------------------------------------------------------

_DRIVE = re.compile(r"^[A-Za-z]:")


def normalize_relative_path(relative_path: str | os.PathLike) -> PurePosixPath:
    """Validate a path relative to an input root and return it in POSIX form.

    Both ``/`` and ``\\`` separate components; empty and ``.`` components are dropped. Raises
    ``ValueError`` for empty paths, NUL or other control characters, absolute paths, Windows
    drive letters and ``..`` components. Unicode, spaces and quotes are kept.
    """
    text = os.fspath(relative_path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "\x00" in text:
        raise ValueError(f"path {text!r} contains a NUL character")
    if any(ord(ch) < 32 for ch in text):
        raise ValueError(f"path {text!r} contains control characters")
    if text.startswith(("/", "\\")):
        raise ValueError(f"path {text!r} is absolute; expected a path relative to the input folder")
    if _DRIVE.match(text):
        raise ValueError(f"path {text!r} starts with a drive letter; expected a relative path")
    parts = [part for part in re.split(r"[\\/]", text) if part not in ("", ".")]
    if not parts:
        raise ValueError(f"path {text!r} names no file")
    if ".." in parts:
        raise ValueError(f"path {text!r} contains '..' and could leave the output folder")
    return PurePosixPath(*parts)


def safe_relative_output(
    output_dir: str | os.PathLike, relative_path: str | os.PathLike, suffix: str
) -> Path:
    """Where the output for input ``relative_path`` goes inside ``output_dir``.

    The folders of ``relative_path`` are kept and the file's extension is replaced by ``suffix``
    (``"sub/a b.jpg"`` with ``".png"`` -> ``output_dir/sub/a b.png``; ``suffix=""`` keeps the
    name without extension). Raises ``ValueError`` for anything that could land outside
    ``output_dir`` (see :func:`normalize_relative_path`), including through a symbolic link.
    """
    if suffix and (not suffix.startswith(".") or "/" in suffix or "\\" in suffix or "\x00" in suffix):
        raise ValueError(f"suffix must look like '.png', got {suffix!r}")
    rel = normalize_relative_path(relative_path)
    name = rel.name
    stem = name[: -len(rel.suffix)] if rel.suffix and name != rel.suffix else name
    out_rel = rel.with_name(stem + suffix)
    base = Path(output_dir)
    target = base.joinpath(*out_rel.parts)
    base_real = os.path.realpath(base)
    target_real = os.path.realpath(target)
    if os.path.commonpath([base_real, target_real]) != base_real:
        raise ValueError(f"output path for {os.fspath(relative_path)!r} would leave {os.fspath(output_dir)!r}")
    return target
