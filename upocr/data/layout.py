"""Placing text on a background: scene text (scattered words, signs), document pages and the
labels of application screens.

:class:`Scene` holds the text-free background, the composite and the placed text items; the
layout functions add items to it. Items never overlap (their boxes keep a gap), so every
item's pixels and box belong to it alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from . import text as content
from .backgrounds import Background
from .fonts import FontSpec, load_font
from .render import (
    PlacedText,
    TextStyle,
    composite,
    contrasting_colour,
    draw_glyphs,
    luminance,
    perspective,
    place_text,
    rotation,
    text_length,
    translation,
    warped_bounds,
)

#: Smallest text size in pixels (small print).
MIN_TEXT_PX = 10


@dataclass
class Scene:
    """A background being written on."""

    background: Background
    fonts: list[FontSpec]
    items: list[PlacedText] = field(default_factory=list)

    def __post_init__(self):
        self.clean = self.background.image  # text-free image (float32, H x W x 3)
        self.canvas = self.clean.copy()
        h, w = self.clean.shape[:2]
        self.occupied = np.zeros((h, w), dtype=bool)

    @property
    def shape(self) -> tuple[int, int]:
        return self.clean.shape[:2]

    def is_free(self, box, gap: int = 0) -> bool:
        h, w = self.shape
        x0, y0, x1, y1 = (int(np.floor(box[0])) - gap, int(np.floor(box[1])) - gap,
                          int(np.ceil(box[2])) + gap, int(np.ceil(box[3])) + gap)
        if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
            return False
        return not self.occupied[y0:y1, x0:x1].any()

    def occupy(self, box, gap: int = 0) -> None:
        h, w = self.shape
        x0, y0 = max(0, int(np.floor(box[0])) - gap), max(0, int(np.floor(box[1])) - gap)
        x1, y1 = min(w, int(np.ceil(box[2])) + gap), min(h, int(np.ceil(box[3])) + gap)
        self.occupied[y0:y1, x0:x1] = True

    def mean_colour(self, box) -> np.ndarray:
        h, w = self.shape
        x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
        x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
        if x1 <= x0 or y1 <= y0:
            return self.clean.reshape(-1, 3).mean(axis=0)
        patch = self.clean[y0:y1, x0:x1]
        step = max(1, int(np.sqrt(patch.shape[0] * patch.shape[1] / 400)))
        return patch[::step, ::step].reshape(-1, 3).mean(axis=0)

    def add(self, item: PlacedText, label: int = 1) -> PlacedText:
        item.extra.setdefault("label", label)
        composite(self.canvas, item)
        self.items.append(item)
        return item


# --------------------------------------------------------------------------------------------
# Styles
# --------------------------------------------------------------------------------------------


def sample_size(rng: np.random.Generator, canvas_side: int) -> int:
    """Log-uniform text size from small print to headlines."""
    high = max(MIN_TEXT_PX + 2, min(int(0.2 * canvas_side), 150))
    return int(round(np.exp(rng.uniform(np.log(MIN_TEXT_PX), np.log(high)))))


def sample_style(rng: np.random.Generator, font: FontSpec, size: int, background: np.ndarray,
                 *, stroke_width: int = 0, effects: bool = True) -> TextStyle:
    """Colour against ``background`` (mean colour under the text), outline colour when
    ``stroke_width`` > 0, and (with ``effects``) a drop shadow or glow and a soft focus."""
    colour = contrasting_colour(rng, background)
    opacity = float(rng.uniform(0.85, 1.0)) if rng.random() < 0.2 else 1.0
    style = TextStyle(font=font, size=int(size), colour=colour, opacity=opacity)
    if stroke_width > 0:
        style.stroke_width = int(stroke_width)
        if rng.random() < 0.3:
            target = 1.0 - luminance(background)
        else:
            target = 0.05 if luminance(colour) > 0.5 else 0.95
        style.stroke_colour = np.clip(np.full(3, target, np.float32) + rng.normal(0, 0.05, 3), 0, 1).astype(np.float32)
    if not effects:
        return style
    if rng.random() < 0.18:
        off = max(1, int(round(size * rng.uniform(0.03, 0.1))))
        angle = rng.uniform(0, 2 * np.pi)
        style.shadow_offset = (int(round(off * np.cos(angle))) or 1, int(round(off * np.sin(angle))) or 1)
        style.shadow_blur = float(rng.uniform(0, max(0.5, size * 0.06)))
        style.shadow_opacity = float(rng.uniform(0.35, 0.85))
        style.shadow_colour = np.full(3, rng.uniform(0.0, 0.15), np.float32)
        if luminance(background) < 0.3:  # glow on dark backgrounds
            style.shadow_colour = np.full(3, rng.uniform(0.7, 1.0), np.float32)
    if rng.random() < 0.1:
        style.blur = float(rng.uniform(0.3, 1.0))
    return style


def _fit_text(rng, font: FontSpec, make) -> str:
    for _ in range(4):
        text = font.clean(make(rng))
        if text:
            return text
    return font.clean(content.word(rng)) or "text"


# --------------------------------------------------------------------------------------------
# Scene text
# --------------------------------------------------------------------------------------------


def scene_matrix(rng: np.random.Generator, pw: int, ph: int, cx: float, cy: float, size: int) -> np.ndarray:
    """Patch -> image homography: centred at (cx, cy), maybe rotated and in perspective."""
    m = translation(-pw / 2, -ph / 2)
    if rng.random() < 0.3:
        jitter = rng.normal(0, 0.08, (4, 2)) * min(ph, pw) * np.array([1.0, 1.0])
        m = translation(-pw / 2, -ph / 2) @ perspective(pw, ph, jitter)
    r = rng.random()
    if r < 0.5:
        angle = 0.0
    elif r < 0.96:
        angle = float(np.clip(rng.normal(0, 14), -45, 45))
    else:
        angle = float(rng.choice([-90.0, 90.0]))
    return translation(cx, cy) @ rotation(angle) @ m


def add_scene_word(rng: np.random.Generator, scene: Scene, *, size: int | None = None,
                   area: tuple[float, float, float, float] | None = None, gap: int | None = None,
                   make=content.token, effects: bool = True, tries: int = 8,
                   upright: bool = False) -> PlacedText | None:
    """Place one text item at a free spot of ``area`` (default: the whole image).

    ``upright``: horizontal text centred in ``area`` (signs), else anywhere in it, maybe
    rotated or in perspective."""
    h, w = scene.shape
    font = scene.fonts[int(rng.integers(len(scene.fonts)))]
    text = _fit_text(rng, font, make)
    size = size or sample_size(rng, min(h, w))
    ax0, ay0, ax1, ay1 = area or (0, 0, w, h)
    stroke = int(max(1, round(size * rng.uniform(0.03, 0.08)))) if effects and size >= 14 and rng.random() < 0.18 else 0
    glyphs = draw_glyphs(text, font, size, stroke)
    ph, pw = glyphs.shape
    max_w, max_h = 0.95 * (ax1 - ax0), 0.9 * (ay1 - ay0)
    if pw > max_w or ph > max_h:
        size = int(size * min(max_w / pw, max_h / ph))
        if size < MIN_TEXT_PX:
            return None
        stroke = min(stroke, max(1, size // 12)) if stroke else 0
        glyphs = draw_glyphs(text, font, size, stroke)
        ph, pw = glyphs.shape
    gap = gap if gap is not None else max(3, size // 4)
    for _ in range(tries):
        if upright:
            slack = max(0.0, (ax1 - ax0 - pw) / 2)
            cx = (ax0 + ax1) / 2 + rng.uniform(-slack, slack) * 0.8
            cy = (ay0 + ay1) / 2 + rng.uniform(-1, 1)
            matrix = translation(round(cx - pw / 2), round(cy - ph / 2))
        else:
            cx, cy = rng.uniform(ax0, ax1), rng.uniform(ay0, ay1)
            matrix = scene_matrix(rng, pw, ph, cx, cy, size)
        bounds = warped_bounds(matrix, pw, ph)
        if not (bounds[0] >= ax0 and bounds[1] >= ay0 and bounds[2] <= ax1 and bounds[3] <= ay1):
            continue
        if not scene.is_free(bounds, gap):
            continue
        style = sample_style(rng, font, size, scene.mean_colour(bounds), stroke_width=stroke, effects=effects)
        item = place_text(text, style, glyphs, matrix, scene.shape)
        if item is None:
            continue
        item.extra.update(glyphs=glyphs, kind="scene")
        scene.add(item)
        scene.occupy(item.box, gap)
        scene.occupy(bounds, 1)
        return item
    return None


def add_plate(rng: np.random.Generator, scene: Scene) -> None:
    """A sign: a flat plate (part of the background) with one to three text lines on it."""
    h, w = scene.shape
    pw, ph = int(w * rng.uniform(0.3, 0.7)), int(h * rng.uniform(0.12, 0.3))
    x0, y0 = int(rng.integers(0, max(1, w - pw))), int(rng.integers(0, max(1, h - ph)))
    box = (x0, y0, x0 + pw, y0 + ph)
    if not scene.is_free(box, 2):
        return
    colour = contrasting_colour(rng, scene.mean_colour(box), 0.1, 0.6)
    plate = scene.clean  # the plate is background: it is in the text-free image too
    radius = int(min(pw, ph) * rng.uniform(0, 0.25))
    mask = np.zeros((ph, pw), np.uint8)
    cv2.rectangle(mask, (radius, 0), (pw - 1 - radius, ph - 1), 255, -1)
    cv2.rectangle(mask, (0, radius), (pw - 1, ph - 1 - radius), 255, -1)
    for cx, cy in ((radius, radius), (pw - 1 - radius, radius), (radius, ph - 1 - radius), (pw - 1 - radius, ph - 1 - radius)):
        cv2.circle(mask, (cx, cy), radius, 255, -1, lineType=cv2.LINE_AA)
    alpha = mask.astype(np.float32)[..., None] / 255.0
    view = plate[y0:y0 + ph, x0:x0 + pw]
    shade = 1.0 + (np.linspace(-1, 1, ph, dtype=np.float32)[:, None, None] * rng.uniform(0, 0.08))
    view[...] = view * (1 - alpha) + np.clip(colour * shade, 0, 1) * alpha
    if rng.random() < 0.5:
        border = contrasting_colour(rng, colour, 0.2, 0.6)
        inset = max(2, int(min(pw, ph) * 0.06))
        cv2.rectangle(view, (inset, inset), (pw - 1 - inset, ph - 1 - inset), tuple(float(c) for c in border),
                      max(1, inset // 3), lineType=cv2.LINE_AA)
        margin = inset + max(1, inset // 3) + 1
    else:
        margin = max(2, int(min(pw, ph) * 0.06))
    scene.canvas[y0:y0 + ph, x0:x0 + pw] = view
    lines = int(rng.integers(1, 4))
    inner = (x0 + margin, y0 + margin, x0 + pw - margin, y0 + ph - margin)
    line_h = (inner[3] - inner[1]) / lines
    for k in range(lines):
        band = (inner[0], inner[1] + k * line_h, inner[2], inner[1] + (k + 1) * line_h)
        size = int(max(MIN_TEXT_PX, line_h * rng.uniform(0.45, 0.75)))
        add_scene_word(rng, scene, size=size, area=band, gap=1, upright=True,
                       make=content.phrase if rng.random() < 0.4 else content.token)
    scene.occupy(box, 2)


def layout_scene(rng: np.random.Generator, scene: Scene) -> None:
    """Scattered words and signs over the whole image."""
    h, w = scene.shape
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            add_plate(rng, scene)
    scale = (h * w) / (512 * 512)
    count = max(1, int(round(rng.integers(3, 14) * np.clip(scale, 0.3, 2.0))))
    for _ in range(count):
        add_scene_word(rng, scene)


def layout_screen(rng: np.random.Generator, scene: Scene) -> None:
    """The labels of an application screen: one line of upright text in each of the
    background's ``slots`` (title, menu entries, headings, lines, buttons), plain (no outline,
    shadow or blur, as a screen draws it), in the fill colour that contrasts with its slot."""
    for x0, y0, x1, y1 in scene.background.slots:
        size = int(max(MIN_TEXT_PX, (y1 - y0) * rng.uniform(0.7, 0.95)))
        make = content.phrase if rng.random() < 0.5 else content.token
        add_scene_word(rng, scene, size=size, area=(x0, y0 - 2, x1, y1 + 2), gap=1, upright=True,
                       effects=False, make=make)


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------


def page_matrix(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Page skew and, sometimes, a slight perspective (photographed page)."""
    angle = float(np.clip(rng.normal(0, 1.2), -3.5, 3.5))
    m = rotation(angle, w / 2, h / 2)
    if rng.random() < 0.25:
        m = perspective(w, h, rng.normal(0, 0.012, (4, 2)) * np.array([w, h])) @ m
    return m


def _heading(rng: np.random.Generator, put, fonts: Sequence[FontSpec], size: int, page_h: int,
             area: tuple[float, float, float], y: float, ink) -> tuple[float, int]:
    """A heading line at ``y`` (left-aligned or centred) when it fits; returns the next line's
    ``y`` and the number of words put."""
    x0, x1, y1 = area
    words = 0
    head_size = int(min(size * rng.uniform(1.4, 2.4), 0.12 * page_h))
    head_font = fonts[int(rng.integers(len(fonts)))]
    heading = head_font.clean(content.phrase(rng, 1, 4)) or "Title"
    width = text_length(heading, head_font, head_size)
    if width < x1 - x0 and y + head_size * 1.3 < y1:
        hx = x0 + (0 if rng.random() < 0.5 else (x1 - x0 - width) / 2)
        for part in heading.split(" "):
            put(part, hx, y, head_font, head_size, ink)
            hx += text_length(part + " ", head_font, head_size)
            words += 1
        y += head_size * 1.6
    return y, words


def _document_font(rng: np.random.Generator, fonts: list[FontSpec], monospace: bool) -> FontSpec:
    """The body font of a page; receipts mostly take a monospaced one when there is one."""
    font = fonts[int(rng.integers(len(fonts)))]
    if monospace:
        monos = [f for f in fonts if "mono" in f.name.lower() or f.name.startswith("cmtt")]
        if monos and rng.random() < 0.7:
            font = monos[int(rng.integers(len(monos)))]
    return font


def layout_document(rng: np.random.Generator, scene: Scene, max_words: int = 260) -> None:
    """Paragraphs of small text on a page (rules and text area from the background)."""
    h, w = scene.shape
    bg = scene.background
    x0, y0, x1, y1 = bg.text_area or (int(0.06 * w), int(0.06 * h), int(0.94 * w), int(0.94 * h))
    fonts = scene.fonts
    font = _document_font(rng, fonts, monospace=bg.name == "receipt")
    size = int(rng.uniform(MIN_TEXT_PX, max(MIN_TEXT_PX + 1, min(0.045 * min(h, w), 26))))
    pitch = bg.line_pitch
    rules = list(bg.rules)
    if rules:
        size = int(min(size, max(MIN_TEXT_PX, pitch * 0.7)))
    ascent, descent = load_font(font.path, size).getmetrics()
    line_h = pitch if pitch else size * rng.uniform(1.25, 1.9)
    page = page_matrix(rng, h, w)
    ink = contrasting_colour(rng, scene.mean_colour((x0, y0, x1, y1)), 0.35, 0.9)
    if rng.random() < 0.25:  # blue ink
        ink = np.clip(ink * np.array([0.4, 0.5, 1.0], np.float32) + np.array([0, 0, 0.25], np.float32), 0, 1)
    opacity = float(rng.uniform(0.85, 1.0)) if rng.random() < 0.3 else 1.0
    blur = float(rng.uniform(0.3, 0.8)) if rng.random() < 0.15 else 0.0
    space = max(2.0, text_length(" ", font, size))
    prices_right = rng.random() < (0.7 if bg.name == "receipt" else 0.2)

    def put(word: str, x: float, y_top: float, style_font: FontSpec, style_size: int, colour) -> None:
        glyphs = draw_glyphs(word, style_font, style_size)
        u, v = x - glyphs.origin[0], y_top - glyphs.origin[1]
        matrix = page @ translation(u, v)
        style = TextStyle(font=style_font, size=style_size, colour=colour, opacity=opacity, blur=blur)
        item = place_text(word, style, glyphs, matrix, scene.shape)
        if item is not None:
            item.extra.update(glyphs=glyphs, kind="document")
            scene.add(item)
            scene.occupy(item.box, 1)

    words = 0
    if rules:
        tops = [r - 2 - ascent for r in rules if r - 2 - ascent >= y0 - 2]
    else:
        tops = []
        y = float(y0)
        if rng.random() < 0.5:  # heading
            y, words = _heading(rng, put, fonts, size, h, (x0, x1, y1), y, ink)
        while y + ascent + descent <= y1:
            tops.append(y)
            y += line_h
            if rng.random() < 0.08:
                y += line_h * 0.6
    stream = content.sentence_words(rng, max_words)
    index = 0
    for top in tops:
        if top + ascent + descent > y1 or words >= max_words:
            break
        x = float(x0) + (space * 4 if rng.random() < 0.15 else 0.0)
        right = float(x1)
        if prices_right and rng.random() < 0.5:
            tag = font.clean(content.price(rng))
            if tag:
                tag_w = text_length(tag, font, size)
                put(tag, right - tag_w, top, font, size, ink)
                words += 1
                right -= tag_w + space * 3
        if rng.random() < 0.1:  # short line
            right = x + (right - x) * rng.uniform(0.2, 0.8)
        while index < len(stream):
            word = font.clean(stream[index])
            if not word:
                index += 1
                continue
            width = text_length(word, font, size)
            if x + width > right:
                break
            put(word, x, top, font, size, ink)
            words += 1
            index += 1
            x += width + space
        if index >= len(stream):
            break
