"""What the graph runtimes (ONNX Runtime, OpenVINO) share: the three exported graphs of a model
(runtime/export.py) and how a frame goes through them. A runtime only runs a graph on its feeds."""
from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dap_led_ros.runtime.backends.base import Backend, BackendError, check_batch, pad_for_graph

RESTORE, HEATMAPS, PRIOR = "restore", "heatmaps", "prior"  # X.onnx, X.heatmaps.onnx, X.prior.onnx


class OnnxGraphBackend(Backend):
    """A backend running the exported ONNX graphs; subclasses implement `_run_graph`."""

    onnx_path: Path

    def _read_graph_metadata(self, meta: Mapping[str, str]) -> None:
        """Padding, heatmap grids and the tiling graphs beside `onnx_path`, from the graph's metadata."""
        from dap_led_ros.runtime.onnx_files import prior_graph_paths

        # DAP-LED graphs pad by reflection to this multiple; smaller frames are padded here first
        # (pad_for_graph). A foreign graph may only declare a minimum side.
        self.pad_multiple = int(meta.get("dap_led.pad_multiple", 1))
        self.min_side = 1 if "dap_led.pad_multiple" in meta else int(meta.get("dap_led.min_side", 1))
        self.grids = json.loads(meta["dap_led.grids"]) if "dap_led.grids" in meta else []
        self.graph_paths = dict(zip((HEATMAPS, PRIOR), prior_graph_paths(self.onnx_path)), **{RESTORE: self.onnx_path})
        self.supports_prior_input = all(self.graph_paths[g].is_file() for g in (HEATMAPS, PRIOR)) and bool(self.grids)

    @abstractmethod
    def _run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The outputs of graph RESTORE, HEATMAPS or PRIOR (opened on first use) on `feeds`."""

    def infer(self, x: np.ndarray) -> np.ndarray:
        x = check_batch(x)
        padded = pad_for_graph(x, self.pad_multiple, self.min_side)
        if padded is None:
            return self._run_graph(RESTORE, {"image": x})[0]
        if self.supports_prior_input:  # heatmaps of the frame itself, as the PyTorch model computes them
            return self.infer_with_prior(x, self.heatmaps(x))
        return self._run_graph(RESTORE, {"image": padded})[0][..., :x.shape[-2], :x.shape[-1]]

    def heatmaps(self, x: np.ndarray) -> list[np.ndarray]:
        if not self.supports_prior_input:
            return super().heatmaps(x)
        # The heatmap graph resizes its input to CLIP's size: any frame size works.
        return list(self._run_graph(HEATMAPS, {"image": check_batch(x)}))

    def infer_with_prior(self, x: np.ndarray, prior_maps: list[np.ndarray]) -> np.ndarray:
        if not self.supports_prior_input:
            return super().infer_with_prior(x, prior_maps)
        if len(prior_maps) != len(self.grids):
            raise BackendError(f"expected {len(self.grids)} heatmaps (grids {self.grids}), got {len(prior_maps)}")
        x = check_batch(x)
        padded = pad_for_graph(x, self.pad_multiple, self.min_side)
        # The maps are resampled to the padded frame's feature sizes as they are, as in PyTorch.
        feeds = {"image": x if padded is None else padded}
        for g, m in zip(self.grids, prior_maps):
            feeds[f"prior_g{g}"] = np.ascontiguousarray(m, dtype=np.float32)
        return self._run_graph(PRIOR, feeds)[0][..., :x.shape[-2], :x.shape[-1]]
