"""Overlapping windows over a large image and smooth blending of their outputs."""

from __future__ import annotations

import numpy as np


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_windows(height: int, width: int, tile: int | tuple[int, int], overlap: int) -> list[tuple[int, int, int, int]]:
    """Windows ``(top, left, bottom, right)`` of at most ``tile`` pixels (an int, or ``(th, tw)``)
    covering the image, each overlapping its neighbours by at least ``overlap`` pixels; the last
    row/column is flush with the edge."""
    th, tw = (tile, tile) if isinstance(tile, int) else tile
    if not 0 <= overlap < min(th, tw):
        raise ValueError(f"overlap must lie in [0, tile), got {overlap} for tile {th}x{tw}")
    return [
        (top, left, min(top + th, height), min(left + tw, width))
        for top in _starts(height, th, th - overlap)
        for left in _starts(width, tw, tw - overlap)
    ]


def blend_weights(height: int, width: int, overlap: int, floor: float = 1e-3) -> np.ndarray:
    """``(height, width)`` weights rising smoothly (raised cosine) over ``overlap`` pixels at every
    border, so overlapping windows cross-fade; never zero, so every pixel is covered."""
    def ramp(n: int) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        k = min(overlap, n // 2)
        if k > 0:
            t = (np.arange(k, dtype=np.float32) + 0.5) / k
            edge = 0.5 - 0.5 * np.cos(np.pi * t)
            w[:k] = edge
            w[n - k :] = edge[::-1]
        return np.maximum(w, floor)

    return np.outer(ramp(height), ramp(width))


class TileAccumulator:
    """Weighted sum of window outputs ``(h, w, C)`` into a full ``(H, W, C)`` float32 canvas."""

    def __init__(self, height: int, width: int, channels: int):
        self.sum = np.zeros((height, width, channels), dtype=np.float32)
        self.weight = np.zeros((height, width, 1), dtype=np.float32)

    def add(self, window: tuple[int, int, int, int], output: np.ndarray, weights: np.ndarray) -> None:
        top, left, bottom, right = window
        self.sum[top:bottom, left:right] += output * weights[..., None]
        self.weight[top:bottom, left:right] += weights[..., None]

    def result(self) -> np.ndarray:
        """The blended canvas. Divides in place (no second full-size canvas): call it once, last."""
        return np.divide(self.sum, np.maximum(self.weight, 1e-12), out=self.sum)
