"""Inference backends behind one interface: torch, onnxruntime, openvino, tensorrt, and `auto`."""
from __future__ import annotations

import inspect
import logging
import platform
from pathlib import Path
from typing import Any

from dap_led_ros.runtime.backends.base import Backend, BackendError
from dap_led_ros.shipped_models import resolve_model

log = logging.getLogger(__name__)

BACKEND_NAMES = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")
# CPUs where OpenVINO ran the DAP-LED graphs faster than ONNX Runtime (docs/benchmarks.md); elsewhere
# (Jetson's ARM cores) auto keeps ONNX Runtime first.
OPENVINO_FIRST_MACHINES = ("x86_64", "amd64")


def _backend_class(name: str) -> type[Backend]:
    if name == "torch":
        from dap_led_ros.runtime.backends.torch_backend import TorchBackend

        return TorchBackend
    if name == "onnxruntime":
        from dap_led_ros.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend
    if name == "openvino":
        from dap_led_ros.runtime.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend
    if name == "tensorrt":
        from dap_led_ros.runtime.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend
    raise BackendError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)}")


def _accepted(cls: type[Backend], options: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    params = inspect.signature(cls.__init__).parameters
    kept = {k: v for k, v in options.items() if k in params}
    return kept, sorted(set(options) - set(kept))


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; other values unchanged."""
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _auto_plan(device: str, engine: str | None) -> list[tuple[str, str, dict[str, Any]]]:
    """(backend, device, option overrides) to try in order, best first."""
    suffix = Path(engine).suffix if engine else ""
    onnx_engine = {"engine": engine} if suffix == ".onnx" else {"engine": None}
    if device.startswith("cuda"):
        return [("tensorrt", device, {"build": False}), ("onnxruntime", device, onnx_engine),
                ("torch", device, {})]
    cpu = [("onnxruntime", device, onnx_engine), ("torch", device, {})]
    if platform.machine().lower() in OPENVINO_FIRST_MACHINES:
        cpu.insert(0, ("openvino", device, onnx_engine))
    return cpu


def check_checkpoint(model_path: str | Path) -> None:
    """BackendError naming the real cause when a checkpoint (.safetensors + .yaml) cannot be used:
    a missing file, unreadable weights, a missing or invalid config. Checked before any backend
    is tried, so that this cause is not buried under the reasons each backend failed for."""
    from safetensors import safe_open

    from dap_led_ros.checkpoint import CheckpointError, checkpoint_paths, read_checkpoint_config

    weights, _ = checkpoint_paths(model_path)
    try:
        read_checkpoint_config(weights)  # the weights file and its config exist, the config is valid
    except (CheckpointError, OSError) as exc:
        raise BackendError(str(exc)) from exc
    try:
        with safe_open(str(weights), framework="numpy") as f:  # reads and checks the header only
            f.keys()
    except Exception as exc:  # safetensors raises its own error types
        raise BackendError(f"cannot read checkpoint {weights}: {str(exc)[:200]}") from exc


def _needs_checkpoint(name: str, options: dict[str, Any]) -> bool:
    """Whether backend `name` reads the checkpoint (ONNX Runtime given an .onnx file does not)."""
    engine = options.get("engine")
    return name == "torch" or engine is None or (name == "tensorrt" and Path(engine).suffix != ".onnx")


def _create_auto(model_path: str | None, device: str, options: dict[str, Any]) -> Backend:
    rejected: list[str] = []  # in the order of preference: the first is the backend auto wanted
    for name, dev, overrides in _auto_plan(device, options.get("engine")):
        cls = _backend_class(name)
        kwargs, _ = _accepted(cls, {**options, **overrides})
        try:
            backend = cls(model_path, device=dev, **kwargs)
        except (BackendError, ImportError, OSError, RuntimeError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            rejected.append(f"{name}: {reason}")
            log.debug("auto backend: %s rejected", name, exc_info=True)
            continue
        if not device.startswith("cuda"):
            rejected.insert(0, f"tensorrt: device is {device!r} (TensorRT needs cuda)")
        log.info("auto backend: chose %s%s", backend.describe(),
                 "; rejected " + " | ".join(rejected) if rejected else "")
        return backend
    skipped = "" if device.startswith("cuda") else f" (tensorrt not tried: device is {device!r})"
    raise BackendError("no backend could be created: " + " | ".join(rejected) + skipped)


def backend_model(name: str, model_path: str | None, device: str) -> str | None:
    """The checkpoint that backend `name` on `device` runs for a model setting: a shipped model's
    name (quality | realtime | auto, shipped_models.py) resolved where the network will run
    (TensorRT always on a GPU); a path unchanged."""
    return resolve_model(model_path, "cuda" if name == "tensorrt" else resolve_device(device))


def create_backend(name: str = "auto", model_path: str | None = None, device: str = "cpu",
                   **options: Any) -> Backend:
    """Make the named backend. `auto` picks the best one that works and logs why.

    Options: threads (CPU threads), engine (.onnx for onnxruntime/openvino/tensorrt, .engine for tensorrt),
    precision (openvino: f32 | bf16 | f16),
    cache_dir, fp16 / cuda_graphs (torch on CUDA), engine_config / build / cuda_memory (tensorrt).
    Options a backend does not take are an error for a named backend and ignored for `auto`.
    `device` may be "auto" (cuda when a GPU is visible); `model_path` may be a shipped model's
    name (quality | realtime | auto, see shipped_models.py).
    """
    device = resolve_device(device)
    model_path = backend_model(name, model_path, device)
    options = {k: v for k, v in options.items() if v is not None}
    if model_path is not None and _needs_checkpoint(name, options):
        check_checkpoint(model_path)
    if name == "auto":
        return _create_auto(model_path, device, options)
    cls = _backend_class(name)
    kwargs, unknown = _accepted(cls, options)
    if unknown:
        raise BackendError(f"backend {name!r} does not take option(s) {', '.join(unknown)}")
    return cls(model_path, device=device, **kwargs)


__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "backend_model", "check_checkpoint", "create_backend",
           "resolve_device"]
