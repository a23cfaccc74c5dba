"""A compact, self-contained copy of the training split's fonts and photos, for a machine
without the Debian packages (a rented GPU that cannot install anything).

    make training-assets
    python tools/pack_training_assets.py --out data/training-assets

Writes ``fonts/`` and ``photos/`` under ``--out`` (replaced in one rename):

* the fonts of the ``train`` split of ``fonts: [debian, default]``, subset with fontTools to the
  characters the synthetic text uses (Latin-1 and common punctuation), which makes them about a
  seventh of their size; symbol-encoded fonts (matplotlib's Computer Modern) are copied whole;
* the photos of the ``train`` split of ``backgrounds: [debian, default]``, at most 1600 px a side,
  as JPEG.

Held-out fonts and photos are never copied, so a model trained on the copy is still measured on
typefaces and pictures it never saw. A dataset spec reads the copy as folders
(``fonts: [data/training-assets/fonts]``); the folder is partitioned once more by the same rule,
so a run on it uses four fifths of it, all from the ``train`` split. Each folder names its
sources in ``packed-from.json``, so the release tool measures a model trained on the copy on the
held-out part of the sources themselves.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fontTools import subset  # noqa: E402
from fontTools.ttLib import TTFont  # noqa: E402
from PIL import Image  # noqa: E402

from upocr.data.backgrounds import resolve_backgrounds  # noqa: E402
from upocr.data.fonts import fonts_for_split, resolve_fonts  # noqa: E402
from upocr.data.sources import PACKED_MANIFEST  # noqa: E402

FONT_SOURCES = ["debian", "default"]
PHOTO_SOURCES = ["debian", "default"]
#: Latin-1 and the punctuation, dashes, quotes and currency signs of the synthetic text.
KEPT_CHARACTERS = [*range(0x20, 0x7F), *range(0xA0, 0x100), 0x20AC, 0x2013, 0x2014, 0x2018, 0x2019,
                   0x201C, 0x201D, 0x2022, 0x2026]
MAX_PHOTO_SIDE = 1600


def subset_font(source: Path, target: Path) -> None:
    """``source`` cut down to :data:`KEPT_CHARACTERS`, with its names and layout features."""
    options = subset.Options()
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.hinting = False
    options.notdef_outline = True
    font = TTFont(str(source))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=KEPT_CHARACTERS)
    subsetter.subset(font)
    font.save(str(target))


def pack(out: Path) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fonts_dir, photos_dir = staging / "fonts", staging / "photos"
        fonts_dir.mkdir()
        photos_dir.mkdir()
        fonts = fonts_for_split(resolve_fonts(FONT_SOURCES), "train")
        for font in fonts:
            source = Path(font.path)
            target = fonts_dir / source.name
            if target.exists():
                raise ValueError(f"{source}: two training fonts share the file name {source.name}")
            subset_font(source, target)
            if resolve_fonts([str(target)])[0].charset != font.charset:  # a symbol-encoded font
                shutil.copyfile(source, target)
        photos = resolve_backgrounds(PHOTO_SOURCES).for_split("train").photos
        for index, path in enumerate(photos):
            image = Image.open(path).convert("RGB")
            image.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE), Image.LANCZOS)
            target = photos_dir / f"{Path(path).stem}.jpg"
            if target.exists():
                target = photos_dir / f"{Path(path).stem}-{index}.jpg"
            image.save(target, quality=90)
        for folder, sources in ((fonts_dir, FONT_SOURCES), (photos_dir, PHOTO_SOURCES)):
            (folder / PACKED_MANIFEST).write_text(json.dumps({"sources": sources, "split": "train"}) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"fonts": len(fonts), "photos": len(photos),
            "megabytes": round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "training-assets")
    args = parser.parse_args(argv)
    print(pack(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
