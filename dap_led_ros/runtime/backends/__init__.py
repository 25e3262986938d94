"""Inference backends behind one interface: torch, onnxruntime, openvino, tensorrt, and `auto`."""
from __future__ import annotations

import inspect
import logging
import platform
from pathlib import Path
from typing import Any

from dap_led_ros.runtime.backends.base import Backend, BackendError, is_model_file
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
    """'auto' -> 'cuda' when the CUDA driver reports a GPU (cuda-python, pycuda, nvidia-smi, else
    torch: cuda_support.cuda_device_count), else 'cpu'; other values unchanged."""
    if device != "auto":
        return device
    from dap_led_ros.runtime.backends.cuda_support import cuda_device_count

    return "cuda" if cuda_device_count() > 0 else "cpu"


def _auto_plan(device: str, engine: str | None, checkpoint: bool, build: bool,
               cpu_fallback: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """(backend, device, option overrides) to try in order, best first. Without a checkpoint (a
    graph or engine file alone) torch, which needs one, is left out; a TensorRT engine file runs
    on TensorRT only. `cpu_fallback`: after the GPU backends, the CPU ones (device `auto`)."""
    suffix = Path(engine).suffix if engine else ""
    if not checkpoint and suffix != ".onnx":
        return [("tensorrt", device, {})] if device.startswith("cuda") else []
    onnx_engine = {"engine": engine} if suffix == ".onnx" else {"engine": None}
    torch_plan = [("torch", device, {})] if checkpoint else []
    if device.startswith("cuda"):
        gpu = [("tensorrt", device, {"build": build}), ("onnxruntime", device, onnx_engine), *torch_plan]
        return gpu + (_auto_plan("cpu", engine, checkpoint, build, False) if cpu_fallback else [])
    cpu = [("onnxruntime", device, onnx_engine), *torch_plan]
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


def _create_auto(model_path: str | None, device: str, options: dict[str, Any], checkpoint: bool = True,
                 cpu_fallback: bool = False) -> Backend:
    rejected: list[str] = []  # in the order of preference: the first is the backend auto wanted
    plan = _auto_plan(device, options.get("engine"), checkpoint, bool(options.pop("build", False)), cpu_fallback)
    for name, dev, overrides in plan:
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
        # On a GPU, not getting TensorRT (no engine built, or it failed) is worth a warning.
        level = logging.WARNING if device.startswith("cuda") and name != "tensorrt" else logging.INFO
        log.log(level, "auto backend: chose %s%s", backend.describe(),
                "; rejected " + " | ".join(rejected) if rejected else "")
        return backend
    skipped = "" if device.startswith("cuda") else f" (tensorrt not tried: device is {device!r})"
    if not plan:
        raise BackendError(f"no backend runs {options.get('engine')} on device {device!r}: a TensorRT engine "
                           "needs a CUDA device")
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
    `device` may be "auto" (cuda when a GPU is visible; `auto` then falls back to the CPU
    backends); `model_path` may be a shipped model's name (quality | realtime | auto, see
    shipped_models.py) or an .onnx / engine file, which is then run without a checkpoint (torch-free).
    """
    options = {k: v for k, v in options.items() if v is not None}
    if is_model_file(model_path):
        if options.get("engine") and Path(options["engine"]) != Path(str(model_path)):
            raise BackendError(f"model {model_path} is a graph/engine file and engine names another "
                               f"({options['engine']}); give one of them")
        options["engine"], model_path = str(model_path), None
    checkpoint = not (model_path is None and options.get("engine"))  # a graph or engine file alone
    auto_device = device == "auto"
    device = resolve_device(device)
    model_path = backend_model(name, model_path, device) if checkpoint else None
    if model_path is not None and _needs_checkpoint(name, options):
        check_checkpoint(model_path)
    if name == "auto":
        return _create_auto(model_path, device, options, checkpoint, cpu_fallback=auto_device)
    if name == "torch" and not checkpoint:
        raise BackendError(f"the torch backend needs a checkpoint, not {options['engine']}")
    cls = _backend_class(name)
    kwargs, unknown = _accepted(cls, options)
    if unknown:
        raise BackendError(f"backend {name!r} does not take option(s) {', '.join(unknown)}")
    return cls(model_path, device=device, **kwargs)


__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "backend_model", "check_checkpoint", "create_backend",
           "resolve_device"]
