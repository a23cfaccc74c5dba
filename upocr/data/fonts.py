"""Fonts for the synthetic data engine.

By default the engine uses the TrueType fonts that ship with matplotlib
(``matplotlib/mpl-data/fonts/ttf``): DejaVu Sans, Sans Mono and Serif in four styles each,
STIX General in four styles and five Computer Modern faces. They come with ``pip install``,
so every install renders the same glyphs; operating-system fonts are never used. Users can
pass their own font files or folders of fonts instead.

Text is laid out with Pillow's basic layout engine (no libraqm), which renders the same on
every platform.
"""

from __future__ import annotations

import os
import re
import string
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from PIL import ImageFont

from .splits import partition_groups

FONT_EXTENSIONS = frozenset({".ttf", ".otf", ".ttc"})

#: File stems of the default fonts, all in matplotlib's ``mpl-data/fonts/ttf``. Symbol,
#: display-only and fallback fonts in that folder (STIXSiz*, STIXNonUni*, cmex10, cmsy10,
#: cmmi10, DejaVu*Display, LastResortHE) are left out: they do not render ordinary text.
DEFAULT_FONT_STEMS: tuple[str, ...] = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSans-BoldOblique",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
    "DejaVuSansMono-Oblique",
    "DejaVuSansMono-BoldOblique",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerif-BoldItalic",
    "STIXGeneral",
    "STIXGeneralBol",
    "STIXGeneralItalic",
    "STIXGeneralBolIta",
    "cmr10",
    "cmb10",
    "cmss10",
    "cmti10",
    "cmtt10",
)

#: Characters a font must have to be usable at all.
REQUIRED_CHARACTERS = frozenset(string.ascii_letters + string.digits)
#: Characters the text generator may use; fonts lacking some of them get text without them.
GENERATOR_CHARACTERS = frozenset(string.ascii_letters + string.digits + " .,:;-/$%&()!?'\"#@+*=€£¥")


@dataclass(frozen=True)
class FontSpec:
    """One font file and the generator characters it can draw."""

    path: str
    name: str
    charset: frozenset
    #: The typographic family (from the font's name table; the file stem when it has none).
    family: str = ""

    def supports(self, text: str) -> bool:
        return all(ch in self.charset for ch in text)

    def clean(self, text: str) -> str:
        """``text`` without the characters this font lacks (spaces collapsed)."""
        kept = "".join(ch for ch in text if ch in self.charset or ch == " ")
        return " ".join(kept.split())


def matplotlib_font_dir() -> Path:
    """matplotlib's bundled TrueType folder (``mpl-data/fonts/ttf``)."""
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise RuntimeError("the default fonts come from matplotlib; install it (pip install matplotlib) "
                           "or pass font files with fonts=...") from exc
    return Path(matplotlib.__file__).resolve().parent / "mpl-data" / "fonts" / "ttf"


def default_font_paths() -> list[Path]:
    """The default font files, sorted by file name (the order used for the split partition)."""
    folder = matplotlib_font_dir()
    paths = [folder / f"{stem}.ttf" for stem in DEFAULT_FONT_STEMS]
    found = [p for p in paths if p.is_file()]
    if not found:
        raise RuntimeError(f"no default fonts found in {folder}; pass font files with fonts=...")
    return sorted(found, key=lambda p: p.name)


def _font_charset(path: str) -> tuple[frozenset, str]:
    """Generator characters covered by the font's character map, and the font's family name.

    A non-ASCII character counts only when its glyph carries the character's standard name:
    some TeX fonts map e.g. U+00A5 (yen) to a Greek capital.
    """
    try:
        from fontTools import agl
        from fontTools.ttLib import TTFont, TTLibError
    except ImportError:  # pragma: no cover - fontTools comes with matplotlib
        return GENERATOR_CHARACTERS, Path(path).stem
    try:
        font = TTFont(path, lazy=True, fontNumber=0)
        cmap = font.getBestCmap() or {}
        names = font["name"] if "name" in font else None
        family = None
        if names is not None:
            family = names.getDebugName(16) or names.getDebugName(1)  # typographic family, else legacy family
        font.close()
    except (TTLibError, OSError, KeyError, ValueError, AssertionError) as exc:
        raise ValueError(f"{path}: not a readable TrueType/OpenType font ({exc})") from exc
    chars = set()
    for ch in GENERATOR_CHARACTERS:
        name = cmap.get(ord(ch))
        if name is None:
            continue
        if not ch.isascii() and name not in (agl.UV2AGL.get(ord(ch)), f"uni{ord(ch):04X}", f"u{ord(ch):04X}"):
            continue
        chars.add(ch)
    return frozenset(chars), (family or Path(path).stem).strip()


@lru_cache(maxsize=1024)
def _font_spec(path: str) -> FontSpec:
    charset, family = _font_charset(path)
    return FontSpec(path=path, name=Path(path).stem, charset=charset, family=family)


def _expand(entry: str | os.PathLike) -> list[Path]:
    path = Path(entry).expanduser()
    if path.is_dir():
        found = sorted(
            (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FONT_EXTENSIONS
             and not any(part.startswith(".") for part in p.relative_to(path).parts)),
            key=lambda p: p.relative_to(path).as_posix(),
        )
        if not found:
            raise ValueError(f"{path}: the folder holds no font files (.ttf, .otf, .ttc)")
        return found
    if path.is_file():
        if path.suffix.lower() not in FONT_EXTENSIONS:
            raise ValueError(f"{path}: not a font file (expected .ttf, .otf or .ttc)")
        return [path]
    raise ValueError(f"{path}: no such font file or folder")


def resolve_fonts(fonts: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> list[FontSpec]:
    """Font specs for ``fonts``: ``None`` for the defaults, or font files and folders, and the
    names ``default`` and ``debian`` (see :mod:`.sources`).

    Folders are searched recursively. Files are kept in the order given (folders sorted), with
    duplicates removed. Fonts that cannot draw the letters and digits are skipped with a
    warning; ``ValueError`` if none is left.
    """
    if fonts is None:
        paths = default_font_paths()
    else:
        entries = [fonts] if isinstance(fonts, (str, os.PathLike)) else list(fonts)
        if not entries:
            raise ValueError("fonts is an empty list; pass None for the default fonts")
        paths = []
        for entry in entries:
            if entry == "default":
                paths.extend(default_font_paths())
            elif entry == "debian":
                from .sources import debian_files, is_text_family

                # the packages also hold fonts for other scripts: keep the Latin text faces, silently
                paths.extend(Path(p) for p in debian_files("font")
                             if is_text_family(_font_spec(p).family) and REQUIRED_CHARACTERS <= _font_spec(p).charset)
            else:
                paths.extend(_expand(entry))
    specs: list[FontSpec] = []
    seen: set[str] = set()
    skipped: list[str] = []
    for path in paths:
        key = str(Path(path).resolve())
        if key in seen:
            continue
        seen.add(key)
        spec = _font_spec(key)
        if REQUIRED_CHARACTERS - spec.charset:
            skipped.append(str(path))
            continue
        specs.append(spec)
    if skipped:
        warnings.warn("skipped fonts that cannot draw Latin letters and digits: " + ", ".join(skipped),
                      stacklevel=2)
    if not specs:
        raise ValueError("none of the given fonts can draw Latin letters and digits")
    return specs


def fonts_for_split(fonts: Sequence[FontSpec], split: str) -> list[FontSpec]:
    """The fonts of ``split``, held out by family: the families are sorted by name and every
    fifth one is held out (see :mod:`.splits`), with all its styles, so held-out text is in
    typefaces training never saw (not just another weight of one it did). When every font is
    of one family, every fifth font of the list is held out instead."""
    return partition_groups(fonts, split, key=typeface)


_STYLE_WORDS = re.compile(
    r"\b(thin|extralight|light|book|medium|demi|semibold|bold|extrabold|black|heavy|cond|condensed|"
    r"caps|smallcaps|display|slanted|unslanted|prop|dunhill|quotation)\b")


def typeface(font: FontSpec) -> str:
    """The design a font belongs to: its family name less weight, width and caps words, so
    ``Go Medium`` and ``Go``, or ``Open Sans Condensed`` and ``Open Sans``, are one typeface."""
    name = (font.family or font.name).casefold()
    return " ".join(_STYLE_WORDS.sub(" ", name).split()) or name


@lru_cache(maxsize=2048)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    """A cached Pillow font object for ``path`` at ``size`` pixels (basic layout engine)."""
    return ImageFont.truetype(path, int(size), layout_engine=ImageFont.Layout.BASIC)
