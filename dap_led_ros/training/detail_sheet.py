"""A contact sheet of details: where a frame has the most edges, the input and each method's
output cropped and enlarged, so blur (and what restoration did to it) can be judged by eye.

The input is shown with one gain that brings its mean to the restored output's mean level (clipped),
so a dark input is not judged darker rather than blurrier. Each caption carries the crop's
`metrics.sharpness` (the real-frame table's tone-invariant edge figure), so the eye and the number
can be compared.
"""
from __future__ import annotations

import cv2
import numpy as np

from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.training.metrics import sharpness

CROP = 128   # crop side in frame pixels
ZOOM = 2     # enlargement (nearest neighbour: no smoothing added)


def busiest_window(rgb: np.ndarray, side: int = CROP) -> tuple[int, int]:
    """(y0, x0) of the side x side window with the most edge energy in the equalised luma."""
    h, w = rgb.shape[:2]
    side = min(side, h, w)
    grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    energy = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    # mean over each window, read at the window's top-left corner
    mean = cv2.boxFilter(energy, -1, (side, side), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    mean = mean[: h - side + 1, : w - side + 1]
    y0, x0 = np.unravel_index(int(np.argmax(mean)), mean.shape)
    return int(y0), int(x0)


def _level_matched(low: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    gain = mean_luma(reference) / max(mean_luma(low), 1e-4)
    return np.clip(low.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8), gain


def _panel(img: np.ndarray, caption: str) -> np.ndarray:
    p = cv2.resize(img, (img.shape[1] * ZOOM, img.shape[0] * ZOOM), interpolation=cv2.INTER_NEAREST)
    cv2.putText(p, caption[:36], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1, cv2.LINE_AA)
    return p


def detail_sheet(samples: list, columns: list[str]) -> np.ndarray:
    """Rows of enlarged crops [input (level-matched) | each column's output], one row per sample
    (name, low, {column: out}, gt or None); the window is chosen on the level-matched input, whose
    level follows the first column named DAP-LED (else the last column)."""
    reference = next((c for c in columns if c.startswith("DAP-LED")), columns[-1])
    rows = []
    for name, low, outs, _ in samples:
        shown, gain = _level_matched(low, outs[reference])
        y0, x0 = busiest_window(shown)
        side = min(CROP, low.shape[0], low.shape[1])
        window = (slice(y0, y0 + side), slice(x0, x0 + side))
        crop = shown[window]
        panels = [_panel(crop, f"{name} x{gain:.1f} sharp {sharpness(crop):.3f}")]
        for c in columns:
            out = outs[c][window]
            panels.append(_panel(out, f"{c} sharp {sharpness(out):.3f}"))
        rows.append(np.concatenate(panels, axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0))) for r in rows]
    return np.concatenate(rows, axis=0)
