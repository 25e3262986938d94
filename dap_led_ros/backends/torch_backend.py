"""PyTorch backend: the reference implementation, CPU or CUDA."""
from __future__ import annotations

import numpy as np
import torch

from .base import Backend, BackendError


class TorchBackend(Backend):
    name = "torch"
    supports_prior_input = True

    def __init__(self, model_path: str | None = None, device: str = "cpu", threads: int = 0,
                 fp16: bool = False) -> None:
        from ..checkpoint import load_checkpoint

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but torch sees no CUDA device")
        if threads > 0:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model, self.cfg, self.extra = load_checkpoint(model_path, device=self.device)
        self.dtype = torch.float16 if (fp16 and self.device.type == "cuda") else torch.float32
        self.model = self.model.to(self.dtype)

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, self.dtype)

    @torch.inference_mode()
    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.model(self._tensor(x)).float().cpu().numpy()

    @torch.inference_mode()
    def heatmaps(self, x: np.ndarray) -> list[np.ndarray]:
        return [h.float().cpu().numpy() for h in self.model.heatmaps(self._tensor(x))]

    @torch.inference_mode()
    def infer_with_prior(self, x: np.ndarray, prior_maps: list[np.ndarray]) -> np.ndarray:
        maps = [self._tensor(m) for m in prior_maps]
        return self.model(self._tensor(x), prior_maps=maps).float().cpu().numpy()

    def describe(self) -> str:
        return f"torch ({self.device}, {str(self.dtype).removeprefix('torch.')})"
