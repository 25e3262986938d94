"""PyTorch backend: the reference implementation, CPU or CUDA (optionally FP16 and CUDA graphs)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from dap_led_ros.runtime.backends.base import Backend, BackendError

MAX_CUDA_GRAPHS = 4  # captured input shapes kept at once


class TorchBackend(Backend):
    name = "torch"
    supports_prior_input = True
    supports_exact_tiling = True

    def __init__(self, model_path: str | None = None, device: str = "cpu", threads: int = 0,
                 fp16: bool = False, cuda_graphs: bool = False) -> None:
        from dap_led_ros.checkpoint import load_checkpoint

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but torch sees no CUDA device")
        if cuda_graphs and not device.startswith("cuda"):
            raise BackendError("cuda_graphs needs a CUDA device")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model, self.cfg, self.extra = load_checkpoint(model_path, device=self.device)
        self.dtype = torch.float16 if (fp16 and self.device.type == "cuda") else torch.float32
        self.model = self.model.to(self.dtype)
        self.cuda_graphs = cuda_graphs
        self._graphs: OrderedDict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = \
            OrderedDict()

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, self.dtype)

    def _graph_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Replay a CUDA graph captured for this input shape (captured on first sight)."""
        key = tuple(x.shape)
        entry = self._graphs.get(key)
        if entry is None:
            static_in = x.clone()
            side = torch.cuda.Stream(device=self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm up kernels and allocator outside the capture
                    self.model(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.model(static_in)
            entry = (graph, static_in, static_out)
            self._graphs[key] = entry
            if len(self._graphs) > MAX_CUDA_GRAPHS:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        graph, static_in, static_out = entry
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

    @torch.inference_mode()
    def infer(self, x: np.ndarray) -> np.ndarray:
        xt = self._tensor(x)
        y = self._graph_forward(xt) if self.cuda_graphs else self.model(xt)
        return y.float().cpu().numpy()

    @torch.inference_mode()
    def heatmaps(self, x: np.ndarray) -> list[np.ndarray]:
        return [h.float().cpu().numpy() for h in self.model.heatmaps(self._tensor(x))]

    @torch.inference_mode()
    def infer_with_prior(self, x: np.ndarray, prior_maps: list[np.ndarray]) -> np.ndarray:
        maps = [self._tensor(m) for m in prior_maps]
        return self.model(self._tensor(x), prior_maps=maps).float().cpu().numpy()

    @torch.inference_mode()
    def infer_exact_tiled(self, x: np.ndarray, prior_maps: list[np.ndarray] | None, tile: int,
                          halo: int) -> np.ndarray:
        from dap_led_ros.runtime.exact_tiling import ExactTiler

        maps = [self._tensor(m) for m in prior_maps] if prior_maps is not None else None
        return ExactTiler(self.model, tile, halo).restore(self._tensor(x), maps).float().cpu().numpy()

    @property
    def runs_on_cpu(self) -> bool:
        return self.device.type == "cpu"

    def describe(self) -> str:
        graphs = ", CUDA graphs" if self.cuda_graphs else ""
        return f"torch ({self.device}, {str(self.dtype).removeprefix('torch.')}{graphs})"

    def close(self) -> None:
        self._graphs.clear()
