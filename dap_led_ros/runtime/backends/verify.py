"""Compare one backend's output with a reference backend (e.g. TensorRT FP16 vs ONNX Runtime FP32)."""
from __future__ import annotations

import math

import numpy as np

from dap_led_ros.runtime.backends.base import Backend


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB between two arrays in [0, peak]; inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def smooth_test_image(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A night-like test input: smooth random structure plus noise, float32 in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.random((batch, 3, max(2, height // 16), max(2, width // 16))).astype(np.float32)
    # Bilinear with half-pixel centres, as torch's interpolate(align_corners=False) upsamples.
    x = np.stack([np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in frame])
                  for frame in coarse])
    x = 0.3 * x + 0.03 * rng.random(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def compare_backends(test: Backend, reference: Backend, sizes: list[tuple[int, int]], seed: int = 0
                     ) -> list[dict[str, object]]:
    """PSNR and max abs difference of `test` against `reference` on a night-like input per (H, W)."""
    rows: list[dict[str, object]] = []
    for i, (h, w) in enumerate(sizes):
        x = smooth_test_image(1, h, w, seed=seed + i)
        out, ref = test.infer(x), reference.infer(x)
        rows.append({"size": f"{w}x{h}", "psnr_db": psnr(out, ref),
                     "max_abs": float(np.abs(out.astype(np.float64) - ref).max())})
    return rows
