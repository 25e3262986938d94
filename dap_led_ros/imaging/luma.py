"""Luma of RGB frames: the BT.601 weights (OpenCV's RGB2GRAY) and a frame's mean level."""
from __future__ import annotations

import numpy as np

BT601 = (0.299, 0.587, 0.114)   # R, G, B weights of luma
_WEIGHTS = np.asarray(BT601, np.float32)
_STRIDE = 4                     # mean_luma reads every 4th row and column: 1/16 of the pixels, same mean to ~1e-3


def mean_luma(rgb: np.ndarray, stride: int = _STRIDE) -> float:
    """Mean BT.601 luma of an H x W x 3 RGB frame (uint8, uint16 or float in 0-1), in 0-1, over
    every `stride`-th row and column (1: every pixel)."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"mean_luma: expected H x W x 3 RGB, got shape {rgb.shape}")
    sample = rgb[::stride, ::stride, :3].astype(np.float32)
    scale = float(np.iinfo(rgb.dtype).max) if np.issubdtype(rgb.dtype, np.integer) else 1.0
    return float((sample @ _WEIGHTS).mean() / scale)
