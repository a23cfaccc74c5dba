"""Rendering text as alpha layers and compositing them onto a background.

A text item is drawn by Pillow into a small patch as coverage (alpha) layers: the glyph fill,
the fill plus its outline (stroke) and a drop shadow. The patch is mapped into the image by a
3x3 homography (rotation, perspective, page skew) with bilinear resampling, which keeps the
anti-aliased edges. Compositing is plain alpha blending, so the text-free background, the
stroke mask and every text pixel are known exactly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageDraw

from .fonts import FontSpec, load_font

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: Geometric coverage at or above this is a text stroke pixel (segmentation ground truth).
STROKE_THRESHOLD = 0.5
#: Coverage above this counts as "touched by text" (text mask before dilation).
SUPPORT_THRESHOLD = 0.02


@dataclass
class TextStyle:
    """How a text item looks."""

    font: FontSpec
    size: int
    colour: np.ndarray  # RGB float in [0, 1]
    opacity: float = 1.0
    stroke_width: int = 0
    stroke_colour: np.ndarray | None = None
    shadow_offset: tuple[int, int] = (0, 0)
    shadow_blur: float = 0.0
    shadow_opacity: float = 0.0
    shadow_colour: np.ndarray | None = None
    blur: float = 0.0

    @property
    def has_shadow(self) -> bool:
        return self.shadow_opacity > 0


@dataclass
class Glyphs:
    """A text item drawn in its own patch (before any geometric transform)."""

    fill: np.ndarray  # uint8 (h, w) coverage of the glyphs
    union: np.ndarray | None  # uint8 (h, w) coverage of glyphs + outline (None without outline)
    origin: tuple[int, int]  # where the text's left edge meets its ascender line, in the patch
    ascent: int  # font ascent (pixels): the baseline is at origin[1] + ascent

    @property
    def shape(self) -> tuple[int, int]:
        return self.fill.shape


@dataclass
class PlacedText:
    """A text item placed in the image: its layers cropped to ``region`` (x0, y0, x1, y1)."""

    text: str
    style: TextStyle
    region: tuple[int, int, int, int]
    fill: np.ndarray  # float32 coverage of the fill, in region coordinates
    union: np.ndarray  # float32 coverage of fill + outline
    shadow: np.ndarray | None  # float32 shadow coverage (already blurred, times its opacity)
    matrix: np.ndarray  # patch -> image homography
    box: tuple[int, int, int, int] = (0, 0, 0, 0)  # tight box of the visible text (x1, y1 exclusive)
    extra: dict = field(default_factory=dict)

    def support(self) -> np.ndarray:
        """Pixels (bool, region coordinates) the item changes."""
        touched = self.union > SUPPORT_THRESHOLD
        if self.shadow is not None:
            touched |= self.shadow > SUPPORT_THRESHOLD
        return touched

    def strokes(self) -> np.ndarray:
        """Text stroke pixels (bool, region coordinates)."""
        return self.fill >= STROKE_THRESHOLD


class _GlyphCache:
    """Rendered glyph bitmaps by (font, size, stroke, character), least recently used dropped
    beyond a byte budget. Glyphs are drawn once by Pillow and reused, which makes drawing a
    word many times faster than laying out the whole string with FreeType each time."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            value = self.entries.get(key)
            if value is not None:
                self.entries.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self.lock:
            if key in self.entries:
                return
            self.entries[key] = value
            self.bytes += value[0].nbytes + 64
            while self.bytes > self.max_bytes and len(self.entries) > 1:
                _, old = self.entries.popitem(last=False)
                self.bytes -= old[0].nbytes + 64


#: Per-process glyph cache (64 MB).
GLYPHS = _GlyphCache(64 * 1024 * 1024)


def _glyph(font: FontSpec, size: int, stroke_width: int, ch: str):
    """``(bitmap uint8, x offset, y offset, advance)`` of one character; offsets from the pen
    position on the ascender line (Pillow's ``"la"`` anchor)."""
    key = (font.path, size, stroke_width, ch)
    found = GLYPHS.get(key)
    if found is not None:
        return found
    pil_font = load_font(font.path, size)
    advance = float(pil_font.getlength(ch))
    left, top, right, bottom = pil_font.getbbox(ch, stroke_width=stroke_width)
    if right <= left or bottom <= top:
        value = (np.zeros((0, 0), np.uint8), 0, 0, advance)
    else:
        image = Image.new("L", (right - left, bottom - top), 0)
        ImageDraw.Draw(image).text((-left, -top), ch, font=pil_font, fill=255, stroke_width=stroke_width,
                                   stroke_fill=255)
        bitmap = np.asarray(image).copy()
        bitmap.setflags(write=False)
        value = (bitmap, int(left), int(top), advance)
    GLYPHS.put(key, value)
    return value


def text_length(text: str, font: FontSpec, size: int) -> float:
    """Advance width of ``text`` in pixels (sum of the characters' advances)."""
    return float(sum(_glyph(font, size, 0, ch)[3] for ch in text))


def draw_glyphs(text: str, font: FontSpec, size: int, stroke_width: int = 0, pad: int = 2) -> Glyphs:
    """Draw ``text`` as coverage layers in a patch with ``pad`` pixels of margin.

    Glyphs are placed at their (hinted) advances from Pillow's basic layout, so the result
    matches Pillow drawing the whole string, without kerning.
    """
    size = int(size)
    pens = []
    pen = 0.0
    for ch in text:
        glyph = _glyph(font, size, 0, ch)
        pens.append(int(round(pen)))
        pen += glyph[3]
    layers = [0] + ([stroke_width] if stroke_width > 0 else [])
    boxes = []
    for sw in layers:
        for ch, x in zip(text, pens):
            bitmap, left, top, _ = _glyph(font, size, sw, ch)
            if bitmap.size:
                boxes.append((x + left, top, x + left + bitmap.shape[1], top + bitmap.shape[0]))
    ascent = int(load_font(font.path, size).getmetrics()[0])
    if not boxes:
        boxes = [(0, 0, max(1, int(round(pen))), max(1, ascent))]
    gx0 = min(b[0] for b in boxes)
    gy0 = min(b[1] for b in boxes)
    gx1 = max(b[2] for b in boxes)
    gy1 = max(b[3] for b in boxes)
    w, h = gx1 - gx0 + 2 * pad, gy1 - gy0 + 2 * pad
    ox, oy = pad - gx0, pad - gy0
    out = []
    for sw in layers:
        canvas = np.zeros((h, w), np.uint8)
        for ch, x in zip(text, pens):
            bitmap, left, top, _ = _glyph(font, size, sw, ch)
            if not bitmap.size:
                continue
            y0, x0 = oy + top, ox + x + left
            view = canvas[y0:y0 + bitmap.shape[0], x0:x0 + bitmap.shape[1]]
            np.maximum(view, bitmap, out=view)
        out.append(canvas)
    return Glyphs(fill=out[0], union=out[1] if len(out) > 1 else None, origin=(ox, oy), ascent=ascent)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def rotation(degrees: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    return translation(cx, cy) @ rot @ translation(-cx, -cy)


def perspective(w: float, h: float, jitter: np.ndarray) -> np.ndarray:
    """Homography moving the corners of a ``w x h`` patch by ``jitter`` (4 x 2 pixels)."""
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    dst = (src + np.asarray(jitter, dtype=np.float32)).astype(np.float32)
    return cv2.getPerspectiveTransform(src, dst).astype(np.float64)


def map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.concatenate([np.asarray(points, np.float64), np.ones((len(points), 1))], axis=1) @ matrix.T
    return pts[:, :2] / pts[:, 2:3]


def warped_bounds(matrix: np.ndarray, w: int, h: int, margin: float = 0.0) -> tuple[float, float, float, float]:
    corners = map_points(matrix, np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64))
    x0, y0 = corners.min(axis=0) - margin
    x1, y1 = corners.max(axis=0) + margin
    return float(x0), float(y0), float(x1), float(y1)


def _is_integer_translation(matrix: np.ndarray) -> bool:
    m = matrix.tolist()
    tol = 1e-9
    return (abs(m[0][0] - 1) < tol and abs(m[1][1] - 1) < tol and abs(m[0][1]) < tol and abs(m[1][0]) < tol
            and abs(m[2][0]) < tol and abs(m[2][1]) < tol and abs(m[2][2] - 1) < tol
            and abs(m[0][2] - round(m[0][2])) < 1e-6 and abs(m[1][2] - round(m[1][2])) < 1e-6)


def _warp(layer: np.ndarray, matrix: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    """``layer`` (uint8 patch) mapped by ``matrix`` into ``region`` of the image, float32 [0, 1]."""
    x0, y0, x1, y1 = region
    local = translation(-x0, -y0) @ matrix
    rw, rh = x1 - x0, y1 - y0
    if _is_integer_translation(local):
        out = np.zeros((rh, rw), np.float32)
        tx, ty = int(round(local[0, 2])), int(round(local[1, 2]))
        ph, pw = layer.shape
        sx0, sy0 = max(0, -tx), max(0, -ty)
        dx0, dy0 = max(0, tx), max(0, ty)
        cw, ch = min(pw - sx0, rw - dx0), min(ph - sy0, rh - dy0)
        if cw > 0 and ch > 0:
            out[dy0:dy0 + ch, dx0:dx0 + cw] = layer[sy0:sy0 + ch, sx0:sx0 + cw] * np.float32(1 / 255)
        return out
    warped = cv2.warpPerspective(layer, local, (rw, rh), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.astype(np.float32) * np.float32(1 / 255)


def place_text(text: str, style: TextStyle, glyphs: Glyphs, matrix: np.ndarray,
               canvas_shape: tuple[int, int]) -> PlacedText | None:
    """Map ``glyphs`` into the image by ``matrix``; ``None`` if nothing of it is visible."""
    H, W = canvas_shape
    ph, pw = glyphs.shape
    blur_margin = int(np.ceil(3 * max(style.blur, style.shadow_blur))) + 2
    sx, sy = style.shadow_offset if style.has_shadow else (0, 0)
    bx0, by0, bx1, by1 = warped_bounds(matrix, pw, ph)
    x0 = int(np.floor(min(bx0, bx0 + sx))) - blur_margin
    y0 = int(np.floor(min(by0, by0 + sy))) - blur_margin
    x1 = int(np.ceil(max(bx1, bx1 + sx))) + blur_margin
    y1 = int(np.ceil(max(by1, by1 + sy))) + blur_margin
    region = (max(0, x0), max(0, y0), min(W, x1), min(H, y1))
    if region[2] <= region[0] or region[3] <= region[1]:
        return None
    fill = _warp(glyphs.fill, matrix, region)
    union = fill if glyphs.union is None else _warp(glyphs.union, matrix, region)
    if style.blur > 0.2:
        fill = cv2.GaussianBlur(fill, (0, 0), style.blur)
        union = fill if glyphs.union is None else cv2.GaussianBlur(union, (0, 0), style.blur)
    shadow = None
    if style.has_shadow:
        shadow = _warp(glyphs.union if glyphs.union is not None else glyphs.fill,
                       translation(sx, sy) @ matrix, region)
        if style.shadow_blur > 0.2:
            shadow = cv2.GaussianBlur(shadow, (0, 0), style.shadow_blur)
        shadow *= np.float32(style.shadow_opacity)
    placed = PlacedText(text=text, style=style, region=region, fill=fill, union=union, shadow=shadow, matrix=matrix)
    box = support_box(placed.support(), region)
    if box is None:
        return None
    placed.box = box
    return placed


def support_box(support: np.ndarray, region: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Tight box (x0, y0, x1, y1 exclusive) of the True pixels of ``support`` in image coordinates."""
    rows = np.flatnonzero(support.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(support.any(axis=0))
    return (region[0] + int(cols[0]), region[1] + int(rows[0]), region[0] + int(cols[-1]) + 1,
            region[1] + int(rows[-1]) + 1)


# --------------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------------


def _blend(canvas: np.ndarray, region, alpha: np.ndarray, colour: np.ndarray) -> None:
    x0, y0, x1, y1 = region
    view = canvas[y0:y1, x0:x1]
    a = alpha[..., None]
    view += a * (colour.astype(np.float32)[None, None, :] - view)


def composite(canvas: np.ndarray, item: PlacedText) -> None:
    """Alpha-blend ``item`` onto ``canvas`` (float32 ``(H, W, 3)``) in place: shadow, outline, fill."""
    style = item.style
    if item.shadow is not None:
        _blend(canvas, item.region, item.shadow, style.shadow_colour)
    if style.stroke_width > 0 and style.stroke_colour is not None:
        _blend(canvas, item.region, item.union * np.float32(style.opacity), style.stroke_colour)
    _blend(canvas, item.region, item.fill * np.float32(style.opacity), style.colour)


def luminance(colour: np.ndarray) -> float:
    return float(np.dot(np.asarray(colour, np.float32)[..., :3], _LUMA))


def colour_with_luminance(rng: np.random.Generator, target: float, saturation: float) -> np.ndarray:
    """A colour of random hue and roughly ``saturation`` whose luminance is ``target``."""
    hsv = np.array([[[rng.random() * 179.0, saturation * 255.0, 255.0]]], dtype=np.float32)
    base = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0
    lum = luminance(base)
    target = float(np.clip(target, 0.0, 1.0))
    if target <= lum:
        out = base * (target / max(lum, 1e-6))
    else:  # mix towards white
        t = (target - lum) / max(1.0 - lum, 1e-6)
        out = base + (1.0 - base) * t
    return np.clip(out, 0, 1).astype(np.float32)


def contrasting_colour(rng: np.random.Generator, background: np.ndarray, low: float = 0.18,
                       high: float = 0.85) -> np.ndarray:
    """A text colour whose luminance differs from the mean ``background`` colour by
    ``low``..``high`` (sometimes barely above ``low``: faint text)."""
    bg = luminance(background)
    contrast = rng.uniform(low, low + 0.07) if rng.random() < 0.12 else rng.uniform(low, high)
    darker = rng.random() < (0.85 if bg > 0.5 else 0.15)
    if darker and bg - contrast < 0:
        darker = False
    if not darker and bg + contrast > 1:
        darker = True
    target = bg - contrast if darker else bg + contrast
    r = rng.random()
    saturation = 0.0 if r < 0.35 else rng.uniform(0.1, 0.4) if r < 0.6 else rng.uniform(0.4, 1.0)
    return colour_with_luminance(rng, target, saturation)
