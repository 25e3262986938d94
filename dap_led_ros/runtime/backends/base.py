"""The inference backend interface shared by the CLI, the nodes and the bag tool."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class BackendError(RuntimeError):
    """A backend cannot be created or cannot run (missing library, device, engine...)."""


class Backend(ABC):
    """Runs the DAP-LED network on float32 B x 3 x H x W arrays in [0, 1]."""

    name: str = "?"
    # True when `heatmaps` and `infer_with_prior` work (needed for prior-consistent tiling).
    supports_prior_input: bool = False

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray:
        """Restored frames, same shape as `x`."""

    def heatmaps(self, x: np.ndarray) -> list[np.ndarray]:
        """Per-grid degradation heatmaps (B x K x g x g each) of whole frames."""
        raise BackendError(f"backend {self.name} does not expose the heatmaps")

    def infer_with_prior(self, x: np.ndarray, prior_maps: list[np.ndarray]) -> np.ndarray:
        """Restore `x` using given heatmaps (dense crops covering `x`) instead of its own."""
        raise BackendError(f"backend {self.name} does not take external heatmaps")

    # True when `infer_exact_tiled` works (whole-frame attention gathered over tiles).
    supports_exact_tiling: bool = False

    def infer_exact_tiled(self, x: np.ndarray, prior_maps: list[np.ndarray] | None, tile: int,
                          halo: int) -> np.ndarray:
        """Restore `x` in tiles of <= `tile` px with the output of a whole-frame pass."""
        raise BackendError(f"backend {self.name} cannot gather attention statistics over tiles")

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Free resources (sessions, engines, device memory)."""
