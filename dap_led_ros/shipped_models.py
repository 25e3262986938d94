"""The models shipped inside the package, and the names a `model` setting may give for them.

Torch-free, so the runtime can resolve a name without importing the training stack.
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_CHECKPOINT_NAME = "dapled_tiny"          # the quality default
REALTIME_CHECKPOINT_NAME = "dapled_tiny_rt"      # the real-time variant (tiny-rt)
DETECTOR_NAME = "ssd_mobilenet_v2_coco.onnx"     # the default object detector (weights/*.md)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights.safetensors, config.yaml) for `path` given with or without an extension."""
    p = Path(path)
    stem = p.with_suffix("") if p.suffix in (".safetensors", ".yaml", ".yml") else p
    return stem.with_suffix(".safetensors"), stem.with_suffix(".yaml")


def default_checkpoint() -> Path:
    """The quality model shipped inside the package."""
    return WEIGHTS_DIR / f"{DEFAULT_CHECKPOINT_NAME}.safetensors"


def shipped_detector() -> Path:
    """The object detector shipped inside the package (detect_node's default)."""
    return WEIGHTS_DIR / DETECTOR_NAME


def realtime_checkpoint() -> Path:
    """The real-time variant shipped inside the package."""
    return WEIGHTS_DIR / f"{REALTIME_CHECKPOINT_NAME}.safetensors"


def resolve_model(model: str | None, device: str) -> str | None:
    """A `model` setting as a checkpoint path. The names a setting may give instead of a path:
    None/"" and "quality" give None (the shipped quality model), "realtime" the shipped real-time
    variant, "auto" that one when `device` is the CPU and the quality model on a GPU (where it
    runs in real time)."""
    if not model or model == "quality":
        return None
    if model == "realtime" or (model == "auto" and device == "cpu"):
        return str(realtime_checkpoint())
    if model == "auto":
        return None
    return model
