"""Backgrounds for the synthetic data engine: photos, procedural textures and document pages.

Three kinds of source:

* ``photo``: image files. By default the sample photos bundled inside scikit-image's
  ``skimage/data`` folder (they load without network access); users can pass folders of their
  own photos instead. Each sample takes a random crop at a random scale, maybe flipped and
  with a mild photometric change.
* ``texture``: procedural textures (gradients, fractal noise, wood, marble, tiles, stripes,
  brushed metal, fabric, bokeh).
* ``document``: paper pages (paper colour, lighting gradient, grain) in several styles (plain,
  ruled, grid, form, aged, receipt). They carry no text: the text of a page is rendered by the
  engine so that its ground truth is exact.
* ``screen`` (only when the sources name ``screens``): application screenshots in a light or a
  dark theme: a title bar, maybe a side menu, cards and buttons, with the places (``slots``)
  where the engine writes their labels, often light text on a dark ground.

Each kind's sources are sorted and partitioned between the ``train`` and ``heldout`` splits
(every fifth source held out, see :mod:`upocr.data.splits`).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from .screens import SCREEN_THEMES, draw_screen
from .splits import partition, partition_groups

#: scikit-image sample photos used by default (files inside the installed ``skimage/data``).
#: Images that contain text (``text.png``, ``page.png``), binary or synthetic drawings and one
#: of the two near-identical stereo views are left out.
BUNDLED_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "brick.png",
    "camera.png",
    "cell.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "color.png",
    "gravel.png",
    "grass.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "moon.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
)
TEXTURE_KINDS: tuple[str, ...] = ("bokeh", "fabric", "gradient", "marble", "metal", "noise", "stripes", "tiles", "wood")
DOCUMENT_STYLES: tuple[str, ...] = ("aged", "form", "grid", "plain", "receipt", "ruled")
#: The background source name that turns the application screens on.
SCREENS_SOURCE = "screens"

#: Decoded photos are cached per process (least recently used dropped beyond this many).
PHOTO_CACHE_SIZE = 48
#: Photos are shrunk on loading so that their shorter side is at most this many pixels.
PHOTO_MAX_SIDE = 1024

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class Background:
    """A generated background: float32 ``(H, W, 3)`` in [0, 1] plus layout hints."""

    image: np.ndarray
    kind: str
    name: str
    #: Where text may go (x0, y0, x1, y1), for documents; ``None``: anywhere.
    text_area: tuple[int, int, int, int] | None = None
    #: Distance between ruled lines, when the page has them.
    line_pitch: float | None = None
    #: y of each ruled line's baseline, when the page has them.
    rules: list[float] = field(default_factory=list)
    #: Boxes (x0, y0, x1, y1) of the labels a screen has room for, one text line each.
    slots: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass(frozen=True)
class BackgroundCatalogue:
    """The background sources of one configuration (photo paths, texture kinds, page styles)."""

    photos: tuple[str, ...]
    textures: tuple[str, ...] = TEXTURE_KINDS
    documents: tuple[str, ...] = DOCUMENT_STYLES
    #: Screen themes; empty unless the sources name ``screens``, so that the scenes of every
    #: other configuration stay exactly as they were.
    screens: tuple[str, ...] = ()

    def for_split(self, split: str) -> "BackgroundCatalogue":
        # both splits draw both themes: two themes cannot be split, and the held-out fonts
        # already make a held-out screen new
        return BackgroundCatalogue(
            photos=tuple(partition_groups(list(self.photos), split, key=photo_group)),
            textures=tuple(partition(list(self.textures), split)),
            documents=tuple(partition(list(self.documents), split)),
            screens=self.screens,
        )

    def describe(self) -> dict:
        return {"photos": list(self.photos), "textures": list(self.textures), "documents": list(self.documents),
                "screens": list(self.screens)}


_VARIANT_SUFFIX = re.compile(r"([_-](\d+x\d+|portrait|nologo|preview|[dl]))+$")


def photo_group(path: str) -> str:
    """The picture a photo file is a variant of, so the split never puts two crops, sizes or
    light/dark versions of one picture on both sides: the folder and the grandparent folder
    with the file stem less size, orientation and light/dark suffixes
    (``.../joy-theme/grub/grub-16x9.png`` and ``grub-4x3.png`` are one picture)."""
    p = Path(path)
    stem = _VARIANT_SUFFIX.sub("", p.stem.lower())
    return f"{p.parent.parent.name}/{p.parent.name}/{stem}"


def skimage_data_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).resolve().parent


def default_photo_paths() -> list[str]:
    """The bundled scikit-image photos that are present, sorted by file name."""
    folder = skimage_data_dir()
    return sorted(str(folder / name) for name in BUNDLED_PHOTOS if (folder / name).is_file())


def resolve_backgrounds(backgrounds: str | os.PathLike | Iterable[str | os.PathLike] | None = None) -> BackgroundCatalogue:
    """A catalogue for ``backgrounds``: ``None`` for the defaults, or photo files and folders, the
    names ``default`` and ``debian`` (see :mod:`.sources`), and ``screens`` (application
    screenshots, :func:`upocr.data.screens.draw_screen`).

    Folders are searched recursively for images; the photos are sorted by path (the order of
    the split partition). Procedural textures and document pages are always included.
    """
    screens: tuple[str, ...] = ()
    if backgrounds is None:
        photos = default_photo_paths()
    else:
        from ..paths import iter_image_files

        entries = [backgrounds] if isinstance(backgrounds, (str, os.PathLike)) else list(backgrounds)
        found: set[str] = set()
        screens = SCREEN_THEMES if SCREENS_SOURCE in entries else ()
        for entry in entries:
            if entry == SCREENS_SOURCE:
                continue
            if entry in ("default", "debian"):
                from .sources import debian_files

                found.update(default_photo_paths() if entry == "default" else debian_files("photo"))
                continue
            path = Path(entry).expanduser()
            if not path.exists():
                raise ValueError(f"{path}: no such background image or folder")
            files = iter_image_files(path)
            if path.is_dir() and not files:
                raise ValueError(f"{path}: the folder holds no images")
            found.update(str(Path(f).resolve()) for f in files)
        photos = sorted(found)
    return BackgroundCatalogue(photos=tuple(photos), screens=screens)


# --------------------------------------------------------------------------------------------
# Photos
# --------------------------------------------------------------------------------------------

_CACHE: "OrderedDict[str, np.ndarray]" = OrderedDict()
_CACHE_LOCK = threading.Lock()


def load_photo(path: str) -> np.ndarray:
    """A photo as uint8 ``(H, W, 3)``, shrunk to :data:`PHOTO_MAX_SIDE`; cached per process."""
    with _CACHE_LOCK:
        cached = _CACHE.get(path)
        if cached is not None:
            _CACHE.move_to_end(path)
            return cached
    from ..io import read_image

    image = read_image(path)
    short = min(image.shape[:2])
    if short > PHOTO_MAX_SIDE:
        scale = PHOTO_MAX_SIDE / short
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    image.setflags(write=False)
    with _CACHE_LOCK:
        _CACHE[path] = image
        while len(_CACHE) > PHOTO_CACHE_SIZE:
            _CACHE.popitem(last=False)
    return image


def _resize(image: np.ndarray, w: int, h: int) -> np.ndarray:
    shrink = image.shape[1] > w and image.shape[0] > h
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def photo_background(rng: np.random.Generator, path: str, h: int, w: int) -> np.ndarray:
    photo = load_photo(path)
    ph, pw = photo.shape[:2]
    aspect = (w / h) * float(np.exp(rng.uniform(-0.25, 0.25)))
    short = min(ph, pw) * rng.uniform(0.35, 1.0)
    ch = int(np.clip(round(short if aspect >= 1 else short / aspect), 4, ph))
    cw = int(np.clip(round(ch * aspect), 4, pw))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    out = _resize(crop, w, h)
    if rng.random() < 0.5:
        out = cv2.flip(out, 1)
    if rng.random() < 0.35:  # brightness, contrast and gamma through a lookup table
        gain = rng.uniform(0.75, 1.2)
        bias = rng.uniform(-0.08, 0.08)
        gamma = float(np.exp(rng.uniform(-0.3, 0.3)))
        lut = np.clip(np.arange(256, dtype=np.float64) / 255.0 * gain + bias, 0, 1) ** gamma
        out = cv2.LUT(out, np.round(lut * 255).astype(np.uint8))
    result = out.astype(np.float32)
    result *= np.float32(1 / 255)
    if rng.random() < 0.1:  # tint (turns grey photos into coloured ones)
        result *= _random_colour(rng, 0.2, 0.6, 0.9, 1.0)
    return result


# --------------------------------------------------------------------------------------------
# Procedural textures
# --------------------------------------------------------------------------------------------


def _hsv_colour(hue: float, sat: float, val: float) -> np.ndarray:
    hsv = np.array([[[hue * 179.0, sat * 255.0, val * 255.0]]], dtype=np.float32)
    rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return rgb[0, 0].astype(np.float32) / 255.0


def _random_colour(rng, sat_low=0.0, sat_high=1.0, val_low=0.0, val_high=1.0) -> np.ndarray:
    return _hsv_colour(rng.random(), rng.uniform(sat_low, sat_high), rng.uniform(val_low, val_high))


def value_noise(rng: np.random.Generator, h: int, w: int, cells: float = 4, octaves: int = 4,
                persistence: float = 0.5, aspect: float = 1.0) -> np.ndarray:
    """Fractal value noise in [0, 1], float32 ``(H, W)``; ``cells`` is the coarsest grid size."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        gy = max(2, int(round(cells * 2 ** k)))
        gx = max(2, int(round(cells * 2 ** k * aspect * w / max(h, 1))))
        gy, gx = min(gy, max(2, h)), min(gx, max(2, w))
        grid = rng.random((gy, gx), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= persistence
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo + 1e-6)


def _mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = t.astype(np.float32)[..., None] * (b - a).astype(np.float32)
    out += a.astype(np.float32)
    return out


def _coords(h: int, w: int):
    """Pixel coordinates as broadcastable ``(1, W)`` and ``(H, 1)`` float32 arrays."""
    return np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]


def _upsampled(make, factor: int = 2):
    """A texture function computed at 1/``factor`` resolution and resized up (smooth textures)."""

    def run(rng, h, w):
        small = make(rng, max(2, -(-h // factor)), max(2, -(-w // factor)))
        return cv2.resize(np.ascontiguousarray(small, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)

    return run


def _gradient(rng, h, w):
    xs, ys = _coords(h, w)
    c1, c2 = _random_colour(rng), _random_colour(rng)
    if rng.random() < 0.7:
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
    else:
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        t = np.hypot(xs - cx, ys - cy)
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    if rng.random() < 0.4:
        c3 = _random_colour(rng)
        return np.where(t[..., None] < 0.5, _mix(c1, c2, np.clip(t * 2, 0, 1)), _mix(c2, c3, np.clip(t * 2 - 1, 0, 1)))
    return _mix(c1, c2, t)


def _noise(rng, h, w):
    c1, c2 = _random_colour(rng), _random_colour(rng)
    t = value_noise(rng, h, w, cells=rng.uniform(2, 10), octaves=int(rng.integers(3, 6)),
                    persistence=rng.uniform(0.35, 0.7))
    return _mix(c1, c2, t)


def _wood(rng, h, w):
    xs, ys = _coords(h, w)
    base = _hsv_colour(rng.uniform(0.04, 0.1), rng.uniform(0.4, 0.8), rng.uniform(0.35, 0.8))
    dark = base * rng.uniform(0.45, 0.75)
    cx, cy = rng.uniform(-2, 3) * w, rng.uniform(-2, 3) * h
    dist = np.hypot(xs - cx, (ys - cy) * rng.uniform(0.05, 0.4))
    turb = value_noise(rng, h, w, cells=3, octaves=3)
    rings = 0.5 + 0.5 * np.sin(dist * rng.uniform(0.05, 0.2) + turb * rng.uniform(4, 12))
    grain = value_noise(rng, h, w, cells=2, octaves=2, aspect=rng.uniform(8, 30))
    return _mix(base, dark, np.clip(rings ** 2 * 0.8 + grain * 0.2, 0, 1))


def _marble(rng, h, w):
    xs, ys = _coords(h, w)
    light = _random_colour(rng, 0, 0.25, 0.75, 1.0)
    vein = _random_colour(rng, 0, 0.5, 0.1, 0.6)
    angle = rng.uniform(0, np.pi)
    t = (xs * np.cos(angle) + ys * np.sin(angle)) / max(h, w)
    turb = value_noise(rng, h, w, cells=rng.uniform(2, 5), octaves=5)
    veins = np.abs(np.sin((t * rng.uniform(3, 10) + turb * rng.uniform(2, 5)) * np.pi)) ** rng.uniform(0.2, 0.6)
    return _mix(vein, light, veins)


def _tiles(rng, h, w):
    tile = int(rng.integers(max(8, min(h, w) // 16), max(9, min(h, w) // 3)))
    tw = int(tile * rng.uniform(0.8, 2.0))
    rows, cols = h // tile + 2, w // tw + 2
    base = _random_colour(rng, 0, 0.7, 0.3, 0.95)
    jitter = rng.normal(0, rng.uniform(0.01, 0.08), (rows, cols, 3)).astype(np.float32)
    grid = np.clip(base + jitter, 0, 1)
    yi = (np.arange(h) // tile)
    offset = (yi % 2) * (tw // 2) if rng.random() < 0.5 else np.zeros_like(yi)
    xi = (np.arange(w)[None, :] + offset[:, None]) // tw
    out = grid[yi[:, None], xi]
    grout = _random_colour(rng, 0, 0.3, 0.2, 0.9)
    gw = max(1, tile // 12)
    edge_y = (np.arange(h) % tile) < gw
    edge_x = ((np.arange(w)[None, :] + offset[:, None]) % tw) < gw
    line = edge_y[:, None] | edge_x
    out = np.where(line[..., None], grout[None, None, :], out)
    out = out * (0.9 + 0.1 * value_noise(rng, h, w, cells=6, octaves=3))[..., None]
    return cv2.GaussianBlur(out.astype(np.float32), (0, 0), 0.6)


def _stripes(rng, h, w):
    xs, ys = _coords(h, w)
    c1, c2 = _random_colour(rng), _random_colour(rng)
    period = rng.uniform(6, max(8, min(h, w) / 4))
    angle = rng.uniform(0, np.pi)
    u = xs * np.cos(angle) + ys * np.sin(angle)
    if rng.random() < 0.3:  # checks
        v = -xs * np.sin(angle) + ys * np.cos(angle)
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    else:
        t = (np.sin(u / period * np.pi) > rng.uniform(-0.5, 0.5)).astype(np.float32)
    t = cv2.GaussianBlur(t, (0, 0), rng.uniform(0.5, 2.0))
    return _mix(c1, c2, t)


def _metal(rng, h, w):
    base = _random_colour(rng, 0, 0.15, 0.45, 0.9)
    streaks = value_noise(rng, h, w, cells=rng.uniform(8, 40), octaves=2, aspect=0.02)
    if rng.random() < 0.5:
        streaks = streaks.T if h == w else cv2.resize(streaks.T, (w, h))
    xs, ys = _coords(h, w)
    sheen = 0.5 + 0.5 * np.cos((xs / max(w, 1) * rng.uniform(1, 3) + rng.random()) * np.pi)
    t = 0.75 + 0.15 * streaks + 0.2 * sheen
    return np.clip(base[None, None, :] * t[..., None], 0, 1)


def _fabric(rng, h, w):
    xs, ys = _coords(h, w)
    period = rng.uniform(2.5, 8)
    weave = 0.5 + 0.25 * np.sin(xs / period * np.pi) * np.sign(np.sin(ys / (period * 2) * np.pi)) \
        + 0.25 * np.sin(ys / period * np.pi)
    base = _random_colour(rng, 0.1, 0.8, 0.25, 0.9)
    mottle = value_noise(rng, h, w, cells=4, octaves=3)
    t = 0.8 + 0.15 * weave + 0.1 * mottle
    return np.clip(base[None, None, :] * t[..., None], 0, 1)


def _bokeh(rng, h, w):
    out = _gradient(rng, h, w) * rng.uniform(0.3, 0.8)
    layer = np.zeros((h, w, 3), np.float32)
    for _ in range(int(rng.integers(8, 40))):
        r = int(rng.uniform(0.02, 0.12) * min(h, w)) + 1
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(float(v) for v in _random_colour(rng, 0.2, 1.0, 0.6, 1.0) * rng.uniform(0.3, 0.8))
        cv2.circle(layer, (cx, cy), r, colour, -1, lineType=cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(1, 6))
    return np.clip(out + layer, 0, 1)


_TEXTURES = {
    "bokeh": _upsampled(_bokeh, 2),
    "fabric": _fabric,
    "gradient": _upsampled(_gradient, 4),
    "marble": _upsampled(_marble, 2),
    "metal": _metal,
    "noise": _upsampled(_noise, 2),
    "stripes": _stripes,
    "tiles": _tiles,
    "wood": _upsampled(_wood, 2),
}


def texture_background(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    if kind not in _TEXTURES:
        raise ValueError(f"unknown texture {kind!r}; expected one of {', '.join(sorted(_TEXTURES))}")
    out = _TEXTURES[kind](rng, h, w)
    if rng.random() < 0.3:  # uneven lighting
        shade = value_noise(rng, max(2, h // 8), max(2, w // 8), cells=2, octaves=2)
        out = out * (0.85 + 0.3 * cv2.resize(shade, (w, h)))[..., None]
    return np.ascontiguousarray(np.clip(out, 0, 1), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Document pages
# --------------------------------------------------------------------------------------------


def _paper(rng, h, w, aged: bool = False) -> np.ndarray:
    if aged:
        colour = _hsv_colour(rng.uniform(0.08, 0.14), rng.uniform(0.15, 0.4), rng.uniform(0.75, 0.95))
    else:
        r = rng.random()
        if r < 0.55:
            colour = np.full(3, rng.uniform(0.9, 1.0), np.float32)
        elif r < 0.8:
            colour = _hsv_colour(rng.uniform(0.1, 0.16), rng.uniform(0.03, 0.15), rng.uniform(0.88, 1.0))
        else:
            colour = _random_colour(rng, 0.03, 0.2, 0.8, 1.0)
    sh, sw = max(2, h // 8), max(2, w // 8)  # lighting is smooth: compute it small
    xs, ys = _coords(sh, sw)
    xs, ys = xs * (w / sw), ys * (h / sh)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / max(h, w)
    ramp = ramp - ramp.mean()
    light = 1.0 + rng.uniform(0, 0.25) * ramp
    if rng.random() < 0.5:  # vignette / uneven lighting
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        d = np.hypot(xs - cx, ys - cy) / np.hypot(h, w)
        light = light - rng.uniform(0.05, 0.3) * d ** 2
    light = cv2.resize(light.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    grain = value_noise(rng, h, w, cells=rng.uniform(20, 60), octaves=2) - 0.5
    page = (light + grain * rng.uniform(0.01, 0.05))[..., None] * colour[None, None, :]
    if aged:
        stains = cv2.resize(value_noise(rng, max(2, h // 4), max(2, w // 4), cells=3, octaves=4), (w, h))
        page = page * (1 - np.clip(stains - 0.6, 0, 1)[..., None] * rng.uniform(0.3, 0.8))
    return np.clip(page, 0, 1).astype(np.float32)


def _draw_line(image, p0, p1, colour, thickness=1):
    cv2.line(image, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), tuple(float(c) for c in colour),
             int(thickness), lineType=cv2.LINE_AA)


def document_background(rng: np.random.Generator, style: str, h: int, w: int) -> Background:
    if style not in DOCUMENT_STYLES:
        raise ValueError(f"unknown document style {style!r}; expected one of {', '.join(DOCUMENT_STYLES)}")
    margin_x = int(w * rng.uniform(0.04, 0.12))
    margin_y = int(h * rng.uniform(0.04, 0.1))
    area = (margin_x, margin_y, w - margin_x, h - margin_y)
    pitch = None
    rules: list[float] = []
    if style == "receipt":
        table = texture_background(rng, str(rng.choice(["wood", "noise", "fabric", "gradient"])), h, w)
        table *= rng.uniform(0.4, 0.9)
        strip_w = int(w * rng.uniform(0.45, 0.7))
        x0 = int(rng.integers(0, max(1, w - strip_w)))
        y0 = int(h * rng.uniform(-0.2, 0.05))
        y1 = int(h * rng.uniform(0.95, 1.2))
        paper = _paper(rng, h, w)
        inside = np.zeros((h, w), np.float32)
        inside[max(0, y0):min(h, y1), x0:x0 + strip_w] = 1
        shadow = cv2.GaussianBlur(np.roll(inside, (3, 3), axis=(0, 1)), (0, 0), 4)
        image = table * (1 - 0.5 * shadow[..., None])
        image = image * (1 - inside[..., None]) + paper * inside[..., None]
        pad = max(2, strip_w // 14)
        area = (x0 + pad, max(0, y0) + pad, x0 + strip_w - pad, min(h, y1) - pad)
        return Background(np.clip(image, 0, 1).astype(np.float32), "document", style, area)
    image = _paper(rng, h, w, aged=(style == "aged"))
    if style == "ruled":
        pitch = float(rng.uniform(16, 34)) * max(0.5, min(h, w) / 512)
        ink = _hsv_colour(rng.uniform(0.55, 0.65), rng.uniform(0.3, 0.7), rng.uniform(0.6, 0.9))
        y = margin_y + pitch
        while y < h - 2:
            _draw_line(image, (0, y), (w, y), ink * 0.9 + image[int(y), w // 2] * 0.1)
            rules.append(y)
            y += pitch
        if rng.random() < 0.7:
            x = margin_x * rng.uniform(0.7, 1.0)
            _draw_line(image, (x, 0), (x, h), _hsv_colour(0.98, 0.6, 0.85))
            area = (int(x) + 4, area[1], area[2], area[3])
    elif style == "grid":
        cell = rng.uniform(10, 24) * max(0.5, min(h, w) / 512)
        ink = _random_colour(rng, 0.1, 0.5, 0.55, 0.85)
        for x in np.arange(rng.uniform(0, cell), w, cell):
            _draw_line(image, (x, 0), (x, h), ink)
        for y in np.arange(rng.uniform(0, cell), h, cell):
            _draw_line(image, (0, y), (w, y), ink)
        image = 0.6 * _paper(rng, h, w) + 0.4 * image
    elif style == "form":
        ink = np.full(3, rng.uniform(0.1, 0.5), np.float32)
        rows = int(rng.integers(3, 9))
        row_h = (area[3] - area[1]) / rows
        col_x = area[0] + (area[2] - area[0]) * rng.uniform(0.3, 0.5)
        for r in range(rows + 1):
            y = area[1] + r * row_h
            _draw_line(image, (area[0], y), (area[2], y), ink, 1 + int(rng.random() < 0.2))
        for x in (area[0], col_x, area[2]):
            _draw_line(image, (x, area[1]), (x, area[3]), ink)
        pitch = row_h
        rules = [area[1] + (r + 1) * row_h - row_h * 0.25 for r in range(rows)]
    return Background(np.clip(image, 0, 1).astype(np.float32), "document", style, area, pitch, rules)


# --------------------------------------------------------------------------------------------
# Choosing a background
# --------------------------------------------------------------------------------------------

#: Probabilities of the three kinds (renormalised over the kinds a catalogue has).
KIND_WEIGHTS = {"photo": 0.45, "texture": 0.3, "document": 0.25, "screen": 0.2}


def choose_kind(rng: np.random.Generator, catalogue: BackgroundCatalogue) -> str:
    kinds = [k for k, items in (("photo", catalogue.photos), ("texture", catalogue.textures),
                                ("document", catalogue.documents), ("screen", catalogue.screens)) if items]
    if not kinds:
        raise ValueError("the background catalogue is empty")
    weights = np.array([KIND_WEIGHTS[k] for k in kinds])
    return kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]


def make_background(rng: np.random.Generator, catalogue: BackgroundCatalogue, h: int, w: int,
                    kind: str | None = None) -> Background:
    """A random background of ``kind`` (default: drawn by :data:`KIND_WEIGHTS`)."""
    kind = kind or choose_kind(rng, catalogue)
    if kind == "photo":
        path = catalogue.photos[int(rng.integers(len(catalogue.photos)))]
        return Background(photo_background(rng, path, h, w), "photo", Path(path).name)
    if kind == "texture":
        name = catalogue.textures[int(rng.integers(len(catalogue.textures)))]
        return Background(texture_background(rng, name, h, w), "texture", name)
    if kind == "screen":
        theme = catalogue.screens[int(rng.integers(len(catalogue.screens)))]
        image, slots = draw_screen(rng, theme, h, w)
        return Background(image, "screen", theme, slots=slots)
    style = catalogue.documents[int(rng.integers(len(catalogue.documents)))]
    return document_background(rng, style, h, w)


def sources_of(items: Sequence[str]) -> list[str]:
    """Short names of photo paths (for metadata)."""
    return [Path(p).name for p in items]
