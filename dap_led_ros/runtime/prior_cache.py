"""Reuse of the CCM heatmaps across video frames.

The CLIP degradation heatmaps describe light level and blur per region; on video they change
slowly. `PriorCache` keeps the last heatmaps and hands them out again until `every` frames have
used them, the frame size changes, or the frame has moved away from the one they were computed
on: the mean absolute difference of 32x24 grey thumbnails (0..1) above `change`.
`every = 1` recomputes on every frame (no reuse).
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

THUMB_SIZE = (32, 24)  # width, height


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """A small grey thumbnail in [0, 1] that follows exposure and scene content (of a uint8 frame,
    or a float32 one in [0, 1])."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32)
    return thumb if rgb.dtype == np.float32 else thumb / 255.0


class PriorCache:
    def __init__(self, every: int = 1, change: float = 0.03) -> None:
        if every < 1:
            raise ValueError(f"prior_every must be >= 1, got {every}")
        if change < 0:
            raise ValueError(f"prior_change must be >= 0, got {change}")
        self.every = every
        self.change = change
        self._maps: list[np.ndarray] | None = None
        self._shape: tuple[int, ...] | None = None
        self._signature: np.ndarray | None = None
        self._uses = 0
        self.computed = 0  # heatmap passes run (for statistics and tests)
        self.reused = 0

    def maps(self, rgb: np.ndarray, compute: Callable[[], list[np.ndarray]]) -> list[np.ndarray]:
        """The heatmaps for frame `rgb`: the kept ones when still valid, else `compute()`."""
        signature = frame_signature(rgb) if self.every > 1 else None
        if (self._maps is not None and self.every > 1 and self._uses < self.every
                and rgb.shape == self._shape
                and float(np.abs(signature - self._signature).mean()) <= self.change):
            self._uses += 1
            self.reused += 1
            return self._maps
        self._maps = compute()
        self._shape, self._signature, self._uses = rgb.shape, signature, 1
        self.computed += 1
        return self._maps

    def reset(self) -> None:
        self._maps = self._shape = self._signature = None
        self._uses = 0
