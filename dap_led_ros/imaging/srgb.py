"""sRGB <-> linear light (IEC 61966-2-1), exact and fast through lookup tables for 8-bit images."""
from __future__ import annotations

import numpy as np


def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """Float sRGB values (0-1) -> linear light, exact."""
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(v: np.ndarray) -> np.ndarray:
    """Float linear light (0-1) -> sRGB values, exact."""
    return np.where(v <= 0.0031308, v * 12.92, 1.055 * np.power(v, 1.0 / 2.4) - 0.055)


_DECODE_LUT = srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
_ENCODE_STEPS = 65535  # linear values are quantised to 1/65535 before the 8-bit lookup


_ENCODE_LUT = np.round(
    linear_to_srgb(np.arange(_ENCODE_STEPS + 1, dtype=np.float64) / _ENCODE_STEPS) * 255.0
).astype(np.uint8)


def srgb_decode(img: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear light in [0, 1]."""
    if img.dtype != np.uint8:
        raise TypeError(f"srgb_decode wants uint8, got {img.dtype}")
    return _DECODE_LUT[img]


def srgb_encode(lin: np.ndarray) -> np.ndarray:
    """float linear light (clipped to [0, 1]) -> uint8 sRGB."""
    idx = (np.clip(lin, 0.0, 1.0) * _ENCODE_STEPS + 0.5).astype(np.uint16)
    return _ENCODE_LUT[idx]



