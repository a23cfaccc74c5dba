"""Tampering a rendered scene the way a forger would.

Three operations, applied to text items of a :class:`~upocr.data.layout.Scene` after the
authentic image is complete:

* ``rerender``: erase a word (the text-free background is restored under it) and draw other
  text at the same place in a slightly different style, colour, size or font.
* ``copy-move``: copy the region of one word and paste it elsewhere in the same image, on
  free space or over another word (which is erased first); pasted as a rectangle or with a
  feathered edge around the strokes.
* ``splice``: paste a word region cut from another synthetic image (a different background
  or a flat patch matched to the local colour).

Each operation produces one tampered item (label 2) whose ``extra["tamper_box"]`` covers
every pixel the operation changed. Copy-move sources stay authentic (label 1).
"""

from __future__ import annotations

import dataclasses
import string
from typing import Callable

import cv2
import numpy as np

from . import text as content
from .layout import Scene
from .render import (
    PlacedText,
    TextStyle,
    composite,
    contrasting_colour,
    draw_glyphs,
    place_text,
    support_box,
    translation,
    warped_bounds,
)

REAL = 1
TAMPERED = 2
OPERATIONS = ("rerender", "copy-move", "splice")
_OP_P = np.array([0.45, 0.3, 0.25])

DonorBackground = Callable[[np.random.Generator, int, int], np.ndarray]


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _intersects(a, b, gap: int = 0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def _union(a, b):
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _others(scene: Scene, *exclude: PlacedText) -> list[PlacedText]:
    return [it for it in scene.items if all(it is not ex for ex in exclude)]


def _collides(box, items, gap: int = 1) -> bool:
    return any(_intersects(box, it.box, gap) for it in items)


def _inside(box, shape) -> bool:
    h, w = shape
    return box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h and box[2] > box[0] and box[3] > box[1]


def _erase(scene: Scene, item: PlacedText) -> None:
    """Restore the text-free background wherever ``item`` put any ink, and drop the item."""
    x0, y0, x1, y1 = item.region
    touched = item.union > 0
    if item.shadow is not None:
        touched = touched | (item.shadow > 0)
    view = scene.canvas[y0:y1, x0:x1]
    view[touched] = scene.clean[y0:y1, x0:x1][touched]
    scene.items = [it for it in scene.items if it is not item]


def mutate_text(rng: np.random.Generator, text: str) -> str:
    """``text`` with one to three letters or digits changed (case and character class kept)."""
    chars = list(text)
    positions = [i for i, c in enumerate(chars) if c.isalnum() and c.isascii()]
    if not positions:
        return text
    for i in rng.choice(positions, size=min(len(positions), int(rng.integers(1, 4))), replace=False):
        c = chars[i]
        pool = string.digits if c.isdigit() else string.ascii_uppercase if c.isupper() else string.ascii_lowercase
        choices = [p for p in pool if p != c]
        chars[i] = choices[int(rng.integers(len(choices)))]
    return "".join(chars)


def _clip_layers(item: PlacedText, rect, shape) -> PlacedText | None:
    """``item`` with its layers zeroed outside ``rect`` (image coordinates)."""
    x0, y0, x1, y1 = item.region
    keep = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    kx0, ky0 = max(rect[0], x0) - x0, max(rect[1], y0) - y0
    kx1, ky1 = min(rect[2], x1) - x0, min(rect[3], y1) - y0
    if kx1 <= kx0 or ky1 <= ky0:
        return None
    keep[ky0:ky1, kx0:kx1] = True
    fill = np.where(keep, item.fill, 0).astype(np.float32)
    union = np.where(keep, item.union, 0).astype(np.float32)
    shadow = None if item.shadow is None else np.where(keep, item.shadow, 0).astype(np.float32)
    out = dataclasses.replace(item, fill=fill, union=union, shadow=shadow, extra=dict(item.extra))
    box = support_box(out.support(), out.region)
    if box is None:
        return None
    out.box = box
    return out


def _shift(item: PlacedText, dx: int, dy: int, shape) -> PlacedText | None:
    """``item`` moved by (dx, dy), its layers cropped to the image."""
    h, w = shape
    x0, y0, x1, y1 = item.region
    nx0, ny0, nx1, ny1 = x0 + dx, y0 + dy, x1 + dx, y1 + dy
    cx0, cy0, cx1, cy1 = max(0, nx0), max(0, ny0), min(w, nx1), min(h, ny1)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    sl = (slice(cy0 - ny0, cy1 - ny0), slice(cx0 - nx0, cx1 - nx0))
    out = dataclasses.replace(
        item,
        region=(cx0, cy0, cx1, cy1),
        fill=np.ascontiguousarray(item.fill[sl]),
        union=np.ascontiguousarray(item.union[sl]),
        shadow=None if item.shadow is None else np.ascontiguousarray(item.shadow[sl]),
        matrix=translation(dx, dy) @ item.matrix,
        extra=dict(item.extra),
    )
    box = support_box(out.support(), out.region)
    if box is None:
        return None
    out.box = box
    return out


def _paste_alpha(item: PlacedText, rect, feather: bool) -> np.ndarray:
    """Paste weights over ``rect`` (float32): all ones, or the dilated strokes feathered."""
    rh, rw = rect[3] - rect[1], rect[2] - rect[0]
    if not feather:
        return np.ones((rh, rw), np.float32)
    support = np.zeros((rh, rw), np.uint8)
    x0, y0, x1, y1 = item.region
    ix0, iy0 = max(x0, rect[0]), max(y0, rect[1])
    ix1, iy1 = min(x1, rect[2]), min(y1, rect[3])
    if ix1 > ix0 and iy1 > iy0:
        support[iy0 - rect[1]:iy1 - rect[1], ix0 - rect[0]:ix1 - rect[0]] = \
            item.support()[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0].astype(np.uint8) * 255
    support = cv2.dilate(support, np.ones((5, 5), np.uint8))
    alpha = cv2.GaussianBlur(support.astype(np.float32) / 255.0, (0, 0), 1.0)
    return np.clip(alpha * 1.3, 0, 1).astype(np.float32)


def _paste(scene: Scene, patch: np.ndarray, rect, alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """Blend ``patch`` into the canvas at ``rect``; returns the box of the changed area."""
    x0, y0, x1, y1 = rect
    view = scene.canvas[y0:y1, x0:x1]
    a = alpha[..., None]
    view += a * (patch - view)
    return support_box(alpha > 1e-3, rect)


def _free_rect(rng: np.random.Generator, scene: Scene, rw: int, rh: int, avoid=None, tries: int = 24):
    h, w = scene.shape
    area = scene.background.text_area or (0, 0, w, h)
    ax0, ay0 = max(0, area[0]), max(0, area[1])
    ax1, ay1 = min(w, area[2]), min(h, area[3])
    if ax1 - ax0 < rw or ay1 - ay0 < rh:
        ax0, ay0, ax1, ay1 = 0, 0, w, h
    if w < rw or h < rh:
        return None
    for _ in range(tries):
        x0 = int(rng.integers(ax0, max(ax0 + 1, ax1 - rw + 1)))
        y0 = int(rng.integers(ay0, max(ay0 + 1, ay1 - rh + 1)))
        rect = (x0, y0, x0 + rw, y0 + rh)
        if not _inside(rect, scene.shape):
            continue
        if avoid is not None and _intersects(rect, avoid, 2):
            continue
        if scene.is_free(rect, 2) and not _collides(rect, scene.items, 2):
            return rect
    return None


def _destination(rng, scene: Scene, source_box, rw: int, rh: int, offset, exclude: list[PlacedText],
                 avoid=None):
    """Where to paste a ``rw x rh`` rectangle: over another word (returned, to be erased) or on
    free space. ``offset`` is the text box position inside the rectangle."""
    candidates = [it for it in scene.items if all(it is not ex for ex in exclude) and it.extra.get("label") == REAL]
    if candidates and rng.random() < 0.5:
        for _ in range(4):
            victim = candidates[int(rng.integers(len(candidates)))]
            # align the pasted text's box with the victim's left edge and bottom (baseline)
            x0 = victim.box[0] - offset[0]
            y0 = victim.box[3] - (source_box[3] - source_box[1]) - offset[1]
            rect = (int(x0), int(y0), int(x0) + rw, int(y0) + rh)
            if not _inside(rect, scene.shape) or (avoid is not None and _intersects(rect, avoid, 2)):
                continue
            if _collides(rect, _others(scene, victim, *exclude), 2):
                continue
            return rect, victim
    rect = _free_rect(rng, scene, rw, rh, avoid=avoid)
    return (rect, None) if rect is not None else (None, None)


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


def rerender(rng: np.random.Generator, scene: Scene, item: PlacedText) -> PlacedText | None:
    """Erase ``item`` and draw other text (or the same text restyled) in its place."""
    style = item.style
    fonts = scene.fonts
    others = _others(scene, item)
    old_glyphs = item.extra.get("glyphs")
    for attempt in range(4):
        last = attempt == 3
        if last:
            text = item.text
        elif rng.random() < 0.65 or attempt > 0:
            text = mutate_text(rng, item.text)
        else:
            text = content.token(rng)
            if len(text) > len(item.text) + 2:
                text = mutate_text(rng, item.text)
        font = style.font if (last or rng.random() < 0.5) else fonts[int(rng.integers(len(fonts)))]
        text = font.clean(text) or item.text
        size = style.size if (last or rng.random() < 0.4) else max(8, int(round(style.size * rng.uniform(0.88, 1.12))))
        colour = np.clip(style.colour + rng.normal(0, rng.uniform(0.02, 0.07), 3), 0, 1).astype(np.float32)
        if text == item.text and font == style.font and size == style.size and np.abs(colour - style.colour).max() < 0.05:
            colour = np.clip(style.colour + np.where(style.colour > 0.5, -0.12, 0.12), 0, 1).astype(np.float32)
        new_style = dataclasses.replace(style, font=font, size=size, colour=colour)
        glyphs = draw_glyphs(text, font, size, style.stroke_width)
        if old_glyphs is not None:
            dx = old_glyphs.origin[0] - glyphs.origin[0] + rng.normal(0, 0.6)
            dy = old_glyphs.origin[1] - glyphs.origin[1] + rng.normal(0, 0.6)
        else:
            dx = dy = 0.0
        matrix = item.matrix @ translation(dx, dy)
        bounds = warped_bounds(matrix, glyphs.shape[1], glyphs.shape[0])
        if not _inside(bounds, scene.shape):
            continue
        new = place_text(text, new_style, glyphs, matrix, scene.shape)
        if new is None or _collides(new.box, others, 1):
            continue
        _erase(scene, item)
        new.extra.update(glyphs=glyphs, kind=item.extra.get("kind"), label=TAMPERED, operation="rerender",
                         tamper_box=_union(item.box, new.box))
        scene.add(new, TAMPERED)
        return new
    return None


def _source_rect(rng, scene: Scene, item: PlacedText):
    margin = int(rng.integers(0, 4))
    others = _others(scene, item)
    while margin > 0:
        rect = (item.box[0] - margin, item.box[1] - margin, item.box[2] + margin, item.box[3] + margin)
        if _inside(rect, scene.shape) and not _collides(rect, others, 1):
            return rect
        margin -= 1
    return item.box


def copy_move(rng: np.random.Generator, scene: Scene, item: PlacedText) -> PlacedText | None:
    """Copy ``item``'s region to another place of the same image."""
    src = _source_rect(rng, scene, item)
    rw, rh = src[2] - src[0], src[3] - src[1]
    offset = (item.box[0] - src[0], item.box[1] - src[1])
    dst, victim = _destination(rng, scene, item.box, rw, rh, offset, [item], avoid=src)
    if dst is None:
        return None
    patch = scene.canvas[src[1]:src[3], src[0]:src[2]].copy()
    feather = rng.random() < 0.4
    moved = _shift(item, dst[0] - src[0], dst[1] - src[1], scene.shape)
    if moved is None:
        return None
    moved = _clip_layers(moved, dst, scene.shape)
    if moved is None:
        return None
    alpha = _paste_alpha(moved, dst, feather)
    if victim is not None:
        _erase(scene, victim)
    changed = _paste(scene, patch, dst, alpha)
    box = changed if changed is not None else moved.box
    if victim is not None:
        box = _union(box, victim.box)
    moved.extra.update(label=TAMPERED, operation="copy-move", tamper_box=box, source=item.box)
    scene.items.append(moved)
    scene.occupy(box, 1)
    return moved


def splice(rng: np.random.Generator, scene: Scene, donor_background: DonorBackground,
           like: PlacedText | None = None) -> PlacedText | None:
    """Paste a word cut from another synthetic image (size similar to ``like``)."""
    fonts = scene.fonts
    font = fonts[int(rng.integers(len(fonts)))]
    size = like.style.size if like is not None else int(rng.integers(12, 40))
    size = max(8, int(round(size * rng.uniform(0.85, 1.15))))
    text = font.clean(content.token(rng)) or "text"
    if like is not None and rng.random() < 0.5:
        text = font.clean(mutate_text(rng, like.text)) or text
    glyphs = draw_glyphs(text, font, size)
    ph, pw = glyphs.shape
    margin = int(rng.integers(0, 4))
    dh, dw = ph + 2 * margin, pw + 2 * margin
    h, w = scene.shape
    if dw > w or dh > h:
        return None
    dst, victim = _destination(rng, scene, (margin + 2, margin + 2, dw - margin - 2, dh - margin - 2), dw, dh,
                               (margin + 2, margin + 2), [])
    if dst is None:
        return None
    local = scene.clean[dst[1]:dst[3], dst[0]:dst[2]].reshape(-1, 3).mean(axis=0)
    if rng.random() < 0.4:
        donor = donor_background(rng, dh, dw)
    else:  # a patch matched to the local colour, as a careful forger would make
        donor = np.clip(local + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32)
        donor = np.ascontiguousarray(np.broadcast_to(donor, (dh, dw, 3)) + rng.normal(0, 0.01, (dh, dw, 3)),
                                     dtype=np.float32)
    colour_like = like.style.colour if like is not None and rng.random() < 0.5 else None
    colour = colour_like if colour_like is not None else contrasting_colour(rng, donor.reshape(-1, 3).mean(axis=0))
    colour = np.clip(colour + rng.normal(0, 0.03, 3), 0, 1).astype(np.float32)
    style = TextStyle(font=font, size=size, colour=colour)
    donor_item = place_text(text, style, glyphs, translation(margin, margin), (dh, dw))
    if donor_item is None:
        return None
    composite(donor, donor_item)
    pasted = _shift(donor_item, dst[0], dst[1], scene.shape)
    if pasted is None:
        return None
    feather = rng.random() < 0.3
    alpha = _paste_alpha(pasted, dst, feather)
    if victim is not None:
        _erase(scene, victim)
    changed = _paste(scene, donor, dst, alpha)
    box = changed if changed is not None else pasted.box
    if victim is not None:
        box = _union(box, victim.box)
    pasted.extra.update(glyphs=glyphs, label=TAMPERED, operation="splice", tamper_box=box)
    scene.items.append(pasted)
    scene.occupy(box, 1)
    return pasted


def tamper_scene(rng: np.random.Generator, scene: Scene, donor_background: DonorBackground,
                 count: int | None = None) -> list[PlacedText]:
    """Apply ``count`` (default 1 to 3) forgeries to authentic items of ``scene``."""
    if count is None:
        count = 1 + int(rng.random() < 0.4) + int(rng.random() < 0.15)
    done: list[PlacedText] = []
    for _ in range(count * 3):
        if len(done) >= count:
            break
        authentic = [it for it in scene.items if it.extra.get("label") == REAL]
        op = OPERATIONS[int(rng.choice(len(OPERATIONS), p=_OP_P))]
        if not authentic and op != "splice":
            op = "splice"
        item = authentic[int(rng.integers(len(authentic)))] if authentic else None
        if op == "rerender":
            result = rerender(rng, scene, item)
        elif op == "copy-move":
            result = copy_move(rng, scene, item)
        else:
            result = splice(rng, scene, donor_background, like=item)
        if result is not None:
            done.append(result)
    return done
