"""The inference backend interface shared by the CLI, the nodes and the bag tool."""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class BackendError(RuntimeError):
    """A backend cannot be created or cannot run (missing library, device, engine...)."""


ENGINE_SUFFIXES = (".engine", ".plan", ".trt")  # serialized TensorRT engines
MODEL_FILE_SUFFIXES = (".onnx", *ENGINE_SUFFIXES)  # a `model` setting that needs no checkpoint


def is_model_file(model: str | None) -> bool:
    """Whether a `model` setting names an exported graph or a built engine instead of a checkpoint."""
    return bool(model) and Path(str(model)).suffix.lower() in MODEL_FILE_SUFFIXES


def check_batch(x: np.ndarray) -> np.ndarray:
    """`x` as a contiguous float32 B x 3 x H x W array, or BackendError naming its shape."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise BackendError(f"expected a B x 3 x H x W array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def pad_for_graph(x: np.ndarray, multiple: int, min_side: int = 1) -> np.ndarray | None:
    """`x` (B x C x H x W) edge-replicated at the bottom and right for an exported graph that pads
    its input by reflection to a multiple of `multiple`; None when the graph takes `x` as it is.

    Reflection needs the pad smaller than the side, and a graph (a TensorRT profile) may accept no
    side below `min_side`. A frame that breaks either rule is padded here to multiples of `multiple`
    of at least `min_side`, replicating the edge as the PyTorch model does for tiny inputs; the
    caller crops the output back to H x W.
    """
    h, w = x.shape[-2:]
    m = max(1, int(multiple))
    pad_h, pad_w = -h % m, -w % m
    if pad_h < h and pad_w < w and min(h, w) >= min_side:
        return None
    floor = -(-max(1, min_side) // m) * m
    th, tw = max(h + pad_h, floor), max(w + pad_w, floor)
    return np.pad(x, ((0, 0), (0, 0), (0, th - h), (0, tw - w)), mode="edge")


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

    @property
    def max_batch(self) -> int | None:
        """The most frames one `infer` call takes (None: any number)."""
        return None

    @property
    def runs_on_cpu(self) -> bool:
        """Whether the network runs on the CPU (where batching frames brings no speed)."""
        return True

    def close(self) -> None:
        """Free resources (sessions, engines, device memory)."""
