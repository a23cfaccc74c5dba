"""Named sets of fonts and photos for the synthetic data engine.

A synthetic dataset spec's ``fonts`` and ``backgrounds`` take file and folder paths, and these
names:

* ``default``: what ships with ``pip install`` (matplotlib's fonts, scikit-image's photos).
* ``debian``: the files installed by the Debian packages listed in
  ``configs/training-packages.txt`` (``make training-assets`` installs them), read from the
  package database (``dpkg -L``), so no other font or wallpaper on the machine is used.

Fonts whose names say maths, symbols or keycaps are left out. Photos from ``desktop-base`` are its wallpapers, login and boot-screen pictures; its icons,
emblems and logos are left out (they are drawings on transparent backgrounds).
"""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path

#: Names a ``fonts`` or ``backgrounds`` entry may use instead of a path.
SOURCE_NAMES = ("default", "debian")
#: The package list, shared with ``make training-assets``.
PACKAGE_LIST = Path(__file__).resolve().parents[2] / "configs" / "training-packages.txt"
FONT_SUFFIXES = (".ttf", ".otf")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
#: Paths under these folders are never photos (icons, emblems, logos, boot splash pieces).
_NOT_PHOTOS = ("/icons/", "/pixmaps/", "/debian-logos/", "/plymouth/", "/emblems/")
#: Families in the font packages that hold symbols, maths or keycaps rather than running text.
_NOT_TEXT_FAMILIES = ("math", "symbols", "keyboard", "nushu")
#: Photos smaller than this on either side are icons or thumbnails, not backgrounds.
MIN_PHOTO_SIDE = 256


#: A folder of fonts or photos copied from named sources (``tools/pack_training_assets.py``) holds
#: this file: ``{"sources": [...], "split": "train"}``, the sources and split it was copied from.
PACKED_MANIFEST = "packed-from.json"


def packed_origin(entry: str) -> list[str] | None:
    """The sources a packed folder was copied from (see :data:`PACKED_MANIFEST`), else ``None``.
    Evaluating a model trained on such a copy holds out the same typefaces and pictures as
    training on the sources themselves would."""
    manifest = Path(entry).expanduser() / PACKED_MANIFEST
    if not manifest.is_file():
        return None
    return [str(source) for source in json.loads(manifest.read_text(encoding="utf-8"))["sources"]]


def debian_packages(kind: str, package_list: Path = PACKAGE_LIST) -> list[str]:
    """The packages of ``kind`` (``font`` or ``photo``) named in the package list."""
    if not package_list.is_file():
        raise ValueError(f"{package_list}: the list of training packages is missing")
    packages = []
    for line in package_list.read_text(encoding="utf-8").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) == 2 and fields[0] == kind:
            packages.append(fields[1])
    return packages


@lru_cache(maxsize=8)
def debian_files(kind: str) -> tuple[str, ...]:
    """Files of ``kind`` installed by the listed Debian packages, sorted. ``ValueError`` naming
    the missing packages (and how to install them) when any is not installed."""
    suffixes = FONT_SUFFIXES if kind == "font" else PHOTO_SUFFIXES
    files: set[str] = set()
    missing = []
    for package in debian_packages(kind):
        try:
            listing = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=False)
        except FileNotFoundError as exc:
            raise ValueError("the 'debian' sources need a Debian system with dpkg") from exc
        if listing.returncode != 0:
            missing.append(package)
            continue
        for line in listing.stdout.splitlines():
            path = Path(line.strip())
            if path.suffix.lower() not in suffixes or not path.is_file():
                continue
            if kind == "photo" and (any(part in line for part in _NOT_PHOTOS) or not _big_enough(path)):
                continue
            files.add(str(path.resolve()))
    if missing:
        raise ValueError(f"Debian packages not installed: {', '.join(missing)} (run `make training-assets`)")
    return tuple(sorted(files))


def is_text_family(family: str) -> bool:
    """Whether a font family sets running text (not maths, symbols or keycaps)."""
    return not any(word in family.casefold() for word in _NOT_TEXT_FAMILIES)


def _big_enough(path: Path) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return min(im.size) >= MIN_PHOTO_SIDE
    except OSError:
        return False
