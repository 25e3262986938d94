"""Compare one backend's output with a reference backend (e.g. TensorRT FP16 vs ONNX Runtime FP32)."""
from __future__ import annotations

import math

import numpy as np

from dap_led_ros.runtime.backends.base import Backend


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    """PSNR in dB between two arrays in [0, peak]; inf when identical."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def compare_backends(test: Backend, reference: Backend, sizes: list[tuple[int, int]], seed: int = 0
                     ) -> list[dict[str, object]]:
    """PSNR and max abs difference of `test` against `reference` on a night-like input per (H, W)."""
    from dap_led_ros.runtime.export import smooth_test_image

    rows: list[dict[str, object]] = []
    for i, (h, w) in enumerate(sizes):
        x = smooth_test_image(1, h, w, seed=seed + i)
        out, ref = test.infer(x), reference.infer(x)
        rows.append({"size": f"{w}x{h}", "psnr_db": psnr(out, ref),
                     "max_abs": float(np.abs(out.astype(np.float64) - ref).max())})
    return rows
