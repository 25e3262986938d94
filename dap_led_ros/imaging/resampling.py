"""Bilinear resampling as matrices: exact, separable upsampling of low-resolution maps."""
from __future__ import annotations

import numpy as np


def interp_matrix(out_start: int, out_len: int, full_len: int, src_len: int) -> np.ndarray:
    """Rows: bilinear (half-pixel, edge-clamped) weights of `src_len` samples for output pixels."""
    pos = (np.arange(out_start, out_start + out_len, dtype=np.float64) + 0.5) * src_len / full_len - 0.5
    pos = np.clip(pos, 0, src_len - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, src_len - 1)
    frac = pos - lo
    m = np.zeros((out_len, src_len), np.float64)
    m[np.arange(out_len), lo] += 1 - frac
    m[np.arange(out_len), hi] += frac
    return m


