"""Named degradation settings for both synthesis paths, under a config's own overrides.

- `default`: the dataclass defaults (`SynthesisConfig`, `CameraConfig`): the shipped models' data.
- `night`: the camera-calibrated sensor noise (`sensor_noise`) and blur from shake and vehicle
  trajectories (`motion_trajectories`) up to 40 px, on both paths; the cross-model validation
  split is made with it.
"""
from __future__ import annotations

from typing import Any

from dap_led_ros.settings import dataclass_from_mapping
from dap_led_ros.training.camera_synthesis import CameraConfig
from dap_led_ros.training.synthesis import SynthesisConfig

_NIGHT = {"noise_model": "calibrated", "blur_model": "trajectories"}
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # name: (synthesis, camera) overrides
    "default": ({}, {}),
    "night": ({**_NIGHT, "blur_length_range": (2.0, 40.0)}, {**_NIGHT, "shake_length_range": (2.0, 40.0)}),
}


def _check(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"degradations must be one of {sorted(PRESETS)}, got {preset!r}")


def _preset_config(cls: type, path: int, preset: str, overrides: dict[str, Any] | None, section: str) -> Any:
    """`cls` from the preset's settings for degradation path `path` (0, 1), then `overrides`."""
    _check(preset)
    base = dataclass_from_mapping(cls, PRESETS[preset][path], f"{preset} preset")
    cfg = dataclass_from_mapping(cls, overrides, section, base=base)
    cfg.validate()
    return cfg


def synthesis_config(preset: str = "default", overrides: dict[str, Any] | None = None) -> SynthesisConfig:
    """Path 1's settings: the preset, then `overrides` (a training config's `data.synthesis`)."""
    return _preset_config(SynthesisConfig, 0, preset, overrides, "synthesis")


def camera_config(preset: str = "default", overrides: dict[str, Any] | None = None) -> CameraConfig:
    """Path 2's settings: the preset, then `overrides` (a training config's `data.camera`)."""
    return _preset_config(CameraConfig, 1, preset, overrides, "camera")
