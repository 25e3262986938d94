"""Overlapping tiles for frames too large to restore at once, and their blending."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dap_led_ros.imaging.resampling import interp_matrix


@dataclass(frozen=True)
class Tile:
    y0: int
    x0: int
    y1: int
    x1: int


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Tiles of at most `tile` px covering the frame, neighbours sharing >= `overlap` px."""
    if tile <= 0 or not 0 <= overlap < tile:
        raise ValueError(f"need tile > 0 and 0 <= overlap < tile, got tile={tile} overlap={overlap}")
    return [Tile(y, x, min(y + tile, height), min(x + tile, width))
            for y in _starts(height, tile, overlap) for x in _starts(width, tile, overlap)]


def blend_weights(h: int, w: int, overlap: int) -> np.ndarray:
    """H x W weights ramping linearly over `overlap` px at each border (never zero)."""
    def ramp(n: int) -> np.ndarray:
        r = np.ones(n, np.float32)
        k = min(overlap, n // 2)
        if k > 0:
            edge = (np.arange(k, dtype=np.float32) + 1) / (k + 1)
            r[:k] = edge
            r[n - k:] = edge[::-1]
        return r
    return np.outer(ramp(h), ramp(w))


def crop_upsampled(maps: np.ndarray, full_hw: tuple[int, int], tile: Tile) -> np.ndarray:
    """The `tile` region of `maps` (B x K x g x g) bilinearly upsampled to the full frame size."""
    ry = interp_matrix(tile.y0, tile.y1 - tile.y0, full_hw[0], maps.shape[-2])
    rx = interp_matrix(tile.x0, tile.x1 - tile.x0, full_hw[1], maps.shape[-1])
    return np.einsum("yi,bkij,xj->bkyx", ry, maps.astype(np.float64), rx).astype(np.float32)
