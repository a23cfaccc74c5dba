"""Application screenshots without their text, for the synthetic data engine (the ``screens``
background source): a title bar, maybe a side menu, and cards with headings, lines and buttons,
in a light or a dark theme. The places of the labels (``Background.slots``) are left for the
engine, which writes them (:func:`upocr.data.layout.layout_screen`), so their ground truth is
exact."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

#: Themes of the application screens.
SCREEN_THEMES: tuple[str, ...] = ("dark", "light")


def _hsv(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, min(max(sat, 0.0), 1.0), min(max(val, 0.0), 1.0)), np.float32)


def _fill(image: np.ndarray, box, colour, radius: int = 0) -> None:
    """Fill ``box`` (x0, y0, x1, y1) of ``image`` with ``colour``, corners rounded by ``radius``."""
    x0, y0, x1, y1 = (int(v) for v in box)
    colour = tuple(float(c) for c in colour)
    if radius <= 0:
        cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
        return
    radius = min(radius, (x1 - x0) // 2, (y1 - y0) // 2)
    cv2.rectangle(image, (x0 + radius, y0), (x1 - 1 - radius, y1 - 1), colour, -1)
    cv2.rectangle(image, (x0, y0 + radius), (x1 - 1, y1 - 1 - radius), colour, -1)
    for cx, cy in ((x0 + radius, y0 + radius), (x1 - 1 - radius, y0 + radius), (x0 + radius, y1 - 1 - radius),
                   (x1 - 1 - radius, y1 - 1 - radius)):
        cv2.circle(image, (cx, cy), radius, colour, -1, lineType=cv2.LINE_AA)


def draw_screen(rng: np.random.Generator, theme: str, h: int, w: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """An application screenshot without its text (float32 ``(H, W, 3)``): a title bar, maybe a
    side menu, and cards with a heading, lines and a button, in a light or a dark theme; and the
    boxes (x0, y0, x1, y1) of its labels, which the engine writes."""
    if theme not in SCREEN_THEMES:
        raise ValueError(f"unknown screen theme {theme!r}; expected one of {', '.join(SCREEN_THEMES)}")
    dark = theme == "dark"
    hue = rng.random()
    level = rng.uniform(0.06, 0.2) if dark else rng.uniform(0.9, 1.0)
    ground = _hsv(hue, rng.uniform(0, 0.15), level)
    raised = _hsv(hue, rng.uniform(0, 0.12), level + (rng.uniform(0.05, 0.12) if dark else -rng.uniform(0.03, 0.08)))
    accent = _hsv(rng.random(), rng.uniform(0.45, 0.85), rng.uniform(0.45, 0.8))
    image = np.empty((h, w, 3), np.float32)
    image[...] = ground
    unit = max(14, int(round(min(h, w) * rng.uniform(0.045, 0.07))))  # one line of UI text
    slots: list[tuple[int, int, int, int]] = []
    bar = int(unit * rng.uniform(1.4, 2.0))
    _fill(image, (0, 0, w, bar), accent if rng.random() < 0.4 else raised)
    slots.append((unit // 2, (bar - unit) // 2, int(w * rng.uniform(0.35, 0.6)), (bar + unit) // 2))
    left = 0
    if rng.random() < 0.6:  # a side menu
        left = int(w * rng.uniform(0.18, 0.3))
        _fill(image, (0, bar, left, h), raised)
        y, pitch = bar + unit // 2, int(unit * rng.uniform(1.5, 2.2))
        chosen = int(rng.integers(0, 4))
        for k in range(int(rng.integers(3, 9))):
            if y + unit > h - unit // 2:
                break
            if k == chosen:
                _fill(image, (unit // 4, y - unit // 4, left - unit // 4, y + unit + unit // 4), accent, unit // 4)
            slots.append((unit // 2, y, left - unit // 3, y + unit))
            y += pitch
    gap = unit // 2
    y = bar + gap
    while y + 3 * unit < h:
        card_h = int(min(h - gap - y, unit * rng.uniform(3.5, 8)))
        if card_h < 3 * unit:
            break
        x0 = left + gap
        _fill(image, (x0, y, w - gap, y + card_h), raised, int(unit * rng.uniform(0, 0.5)))
        line = y + unit // 2
        size = unit
        for _ in range(8):  # a heading, then lines of text
            if line + size > y + card_h - unit // 2:
                break
            slots.append((x0 + unit // 2, line, int(x0 + (w - gap - x0) * rng.uniform(0.45, 0.95)), line + size))
            line += int(size * rng.uniform(1.3, 1.7))
            size = max(unit * 2 // 3, int(unit * rng.uniform(0.6, 0.85)))
        if rng.random() < 0.6 and line + unit < y + card_h:  # a button at the card's right
            bw = int(unit * rng.uniform(4, 7))
            bx = w - gap - unit // 2 - bw
            by = y + card_h - unit // 2 - int(unit * 1.3)
            if bx > x0 + unit and by >= line - unit // 2:
                _fill(image, (bx, by, bx + bw, by + int(unit * 1.3)), accent, int(unit * rng.uniform(0.1, 0.65)))
                slots.append((bx + unit // 3, by + int(unit * 0.15), bx + bw - unit // 3, by + int(unit * 1.15)))
        y += card_h + gap
    grain = rng.normal(0, rng.uniform(0, 0.01), (h, w, 1)).astype(np.float32)
    return np.clip(image + grain, 0, 1), slots
