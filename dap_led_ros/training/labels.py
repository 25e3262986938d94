"""Degradation labels: per-pixel maps of what synthesis applied, and the prompt targets per patch."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dap_led_ros.prompts import BLURRY, CLEAR, DARK_BLURRY, LOW_LIGHT


@dataclass(frozen=True)
class LabelRule:
    """How per-patch prompt targets follow from the degradation maps.

    darkness d = clip(ln(1/e) / ln(1/dark_exposure), 0, 1), e = geometric mean exposure in the
    patch (exposure 1 -> 0, `dark_exposure` or darker -> 1);
    blurriness b = clip((L - sharp_px) / (blurry_px - sharp_px), 0, 1), L = mean blur length (px).
    The target treats the two as independent:
    [low light, blurry, dark and blurry, clear] = [d(1-b), (1-d)b, db, (1-d)(1-b)].
    Noise and JPEG are not part of the rule (they come with darkness in practice).
    """

    dark_exposure: float = 0.05
    sharp_px: float = 1.0
    blurry_px: float = 12.0

    def validate(self) -> None:
        if not 0 < self.dark_exposure < 1:
            raise ValueError(f"label dark_exposure must be in (0, 1), got {self.dark_exposure}")
        if not 0 <= self.sharp_px < self.blurry_px:
            raise ValueError(f"label sharp_px must be >= 0 and < blurry_px, got {self.sharp_px}, {self.blurry_px}")

    def distribution(self, exposure: np.ndarray, blur_length: np.ndarray) -> np.ndarray:
        """Soft targets (..., 4) from exposure and blur length arrays of the same shape."""
        e = np.maximum(np.asarray(exposure, dtype=np.float64), 1e-6)
        d = np.clip(np.log(1.0 / e) / math.log(1.0 / self.dark_exposure), 0.0, 1.0)
        b = np.clip((np.asarray(blur_length, np.float64) - self.sharp_px) / (self.blurry_px - self.sharp_px), 0.0, 1.0)
        out = np.empty(d.shape + (4,), dtype=np.float32)
        out[..., LOW_LIGHT] = d * (1 - b)
        out[..., BLURRY] = (1 - d) * b
        out[..., DARK_BLURRY] = d * b
        out[..., CLEAR] = (1 - d) * (1 - b)
        return out


@dataclass(eq=False)
class DegradationLabels:
    """Per-pixel maps (H x W float32) of what was applied to make the low image."""

    exposure: np.ndarray  # exposure factor
    blur_length: np.ndarray  # effective blur trajectory length in pixels
    noise_sigma: np.ndarray  # expected noise std in linear light (before clipping/JPEG)
    rule: LabelRule = field(default_factory=LabelRule)

    @classmethod
    def clean(cls, height: int, width: int, rule: LabelRule | None = None) -> "DegradationLabels":
        """Labels of an undegraded image (e.g. the high target)."""
        return cls(
            exposure=np.ones((height, width), np.float32),
            blur_length=np.zeros((height, width), np.float32),
            noise_sigma=np.zeros((height, width), np.float32),
            rule=rule or LabelRule(),
        )

    def patch_labels(self, grid: int) -> np.ndarray:
        """grid x grid x K soft targets over `DEGRADATION_PROMPTS`; cell [i, j] is row i, column j
        of an equal split of the frame (the CLIP prior's crop layout)."""
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        h, w = self.exposure.shape
        if grid > min(h, w):
            raise ValueError(f"grid {grid} is larger than the {h}x{w} label maps")
        ys = np.linspace(0, h, grid + 1).round().astype(int)
        xs = np.linspace(0, w, grid + 1).round().astype(int)
        counts = np.outer(np.diff(ys), np.diff(xs))

        def cell_mean(m: np.ndarray) -> np.ndarray:
            sums = np.add.reduceat(np.add.reduceat(m.astype(np.float64), ys[:-1], axis=0), xs[:-1], axis=1)
            return sums / counts

        exposure = np.exp(cell_mean(np.log(np.maximum(self.exposure, 1e-6))))
        return self.rule.distribution(exposure, cell_mean(self.blur_length))


