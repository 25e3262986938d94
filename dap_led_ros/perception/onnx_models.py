"""ONNX Runtime sessions for the perception models (detector, depth): device -> providers, load."""
from __future__ import annotations

from pathlib import Path
from typing import Any

DEVICES_HELP = "cpu, cuda, cuda:N or tensorrt[:N]"


class ModelLoadError(RuntimeError):
    """A model file that is missing, unreadable, or asks for a provider this install lacks."""


def providers_for(device: str) -> list[Any]:
    """ONNX Runtime providers for a device string, best first, the CPU always last."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return ["CPUExecutionProvider"]
    if kind in ("cuda", "tensorrt"):
        index = index or "0"
        if not index.isdigit():
            raise ValueError(f"bad device {device!r}; use {DEVICES_HELP}")
        cuda = ("CUDAExecutionProvider", {"device_id": int(index)})
        if kind == "cuda":
            return [cuda, "CPUExecutionProvider"]
        return [("TensorrtExecutionProvider", {"device_id": int(index), "trt_fp16_enable": True}),
                cuda, "CPUExecutionProvider"]
    raise ValueError(f"bad device {device!r}; use {DEVICES_HELP}")


def static_dim(value: Any) -> int:
    """A fixed ONNX dimension, or 0 for a symbolic/unknown one."""
    return value if isinstance(value, int) and value > 0 else 0


def open_session(path: Path, device: str, threads: int, what: str) -> Any:
    """An InferenceSession for `path` on `device`; ModelLoadError says why not."""
    import onnxruntime as ort  # heavy; only once a model is really loaded

    if not path.is_file():
        raise ModelLoadError(f"{what} file not found: {path}")
    providers = providers_for(device)
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if wanted not in ort.get_available_providers():
        raise ModelLoadError(f"device {device!r} asked for, but this ONNX Runtime has no {wanted} "
                             f"({ort.get_available_providers()})")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: exporters' unused initialisers are not the user's problem
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise ModelLoadError(f"cannot load {what} {path}: {exc}") from exc
