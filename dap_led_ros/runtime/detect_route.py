"""Which frame a detector reads, the restored one or the camera's own, decided by the frame's darkness.

The perception benchmark (`dap-led perception-bench`, docs/evaluation.md) measured where restoration
raises a detector's recall (paired intervals). For the shipped detector (SSD-MobileNet-v2): the
quality model from -6 EV down and not at -5 EV; the real-time model at no darkness level. For a
second, independent detector (MobileNetV3-CenterNet): neither model at any level. So the threshold
belongs to the pair. Each shipped model records the mean luma (BT.601, 0-1, of the camera frame)
below which its restored frame is the better one: `extra.detect_restore_below` for the shipped
detector, `extra.detect_restore_below_by_detector` ({detector file stem: threshold}) for others.
A detector nobody measured gets the lowest threshold measured for any detector: restored only where
restoration helped every detector measured. A frame at or above the threshold goes to the detector
as the camera sent it (and, when nothing else watches the restored output, skips the network).

A restored frame may reach the detector at a level of its own: `extra.detect_target_level` (the
exposure rule of runtime/exposure.py, one gain in linear light to that mean luma, steadied per
stream) applies to detect/image only; enhanced/image keeps the network's level. The thresholds a
YAML records were measured with that level applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.runtime.exposure import ExposureRule, ExposureSettings, ExposureState
from dap_led_ros.shipped_models import checkpoint_paths, shipped_detector

ROUTE_KEY = "detect_restore_below"   # the checkpoint YAML's `extra` entry (the shipped detector)
BY_DETECTOR_KEY = "detect_restore_below_by_detector"  # {detector file stem: threshold}, other detectors
TARGET_KEY = "detect_target_level"    # the detector's level for restored frames (0: the network's own)
SHIPPED_DETECTOR_STEM = shipped_detector().stem
HYSTERESIS = 0.1                      # a stream that is restored stays so up to 10 % above the threshold
FROM_MODEL = -1.0                     # a setting that defers to the model's measured threshold
UNMEASURED = 1.0                      # a model without one: every frame restored (as before routing)


def _checked(value: object, where: str) -> float:
    value = float(value)  # type: ignore[arg-type]
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where} must be in [0, 1], got {value}")
    return value


def detector_key(detector: str | Path | None) -> str:
    """The name thresholds are recorded under: the detector file's stem ("" = the shipped one)."""
    return Path(str(detector)).stem if detector else SHIPPED_DETECTOR_STEM


def _model_extra(checkpoint: str | Path | None) -> tuple[Path | None, dict]:
    """(the checkpoint's YAML, its `extra`), or (None, {}) without one."""
    if not checkpoint:
        return None, {}
    _, config = checkpoint_paths(checkpoint)
    if not config.is_file():
        return None, {}
    return config, (yaml.safe_load(config.read_text()) or {}).get("extra") or {}


def model_target_level(checkpoint: str | Path | None) -> float:
    """The detector-facing level a checkpoint's YAML records (0: none, the network's own level)."""
    config, extra = _model_extra(checkpoint)
    if config is None or extra.get(TARGET_KEY) is None:
        return 0.0
    value = _checked(extra[TARGET_KEY], f"{config}: extra.{TARGET_KEY}")
    ExposureSettings(target_level=value).validate()
    return value


def model_threshold(checkpoint: str | Path | None, detector: str | Path | None = "") -> tuple[float, str] | None:
    """The threshold a checkpoint's YAML records for `detector` ("" = the shipped detector), and
    whence; None: no YAML, or nothing measured."""
    config, extra = _model_extra(checkpoint)
    if config is None:
        return None
    measured: dict[str, float] = {}
    if extra.get(ROUTE_KEY) is not None:
        measured[SHIPPED_DETECTOR_STEM] = _checked(extra[ROUTE_KEY], f"{config}: extra.{ROUTE_KEY}")
    others = extra.get(BY_DETECTOR_KEY) or {}
    if not isinstance(others, dict):
        raise ValueError(f"{config}: extra.{BY_DETECTOR_KEY} must map detector names to thresholds")
    for name, value in others.items():
        measured[str(name)] = _checked(value, f"{config}: extra.{BY_DETECTOR_KEY}.{name}")
    if not measured:
        return None
    key = detector_key(detector)
    if key in measured:
        return measured[key], f"model {Path(str(checkpoint)).stem}, detector {key}"
    lowest = min(measured, key=measured.__getitem__)
    return measured[lowest], (f"model {Path(str(checkpoint)).stem}, detector {key} unmeasured: the lowest "
                              f"measured threshold ({lowest})")


@dataclass(frozen=True)
class DetectRoute:
    """restore_below: frames darker than this mean luma go to the detector restored (0: never, 1: always)."""

    restore_below: float = UNMEASURED
    source: str = "default"   # where the threshold came from (logs, diagnostics)
    target_level: float = 0.0  # restored frames reach the detector at this mean luma (0: as restored)

    @classmethod
    def resolve(cls, setting: float, checkpoint: str | Path | None,
                detector: str | Path | None = "", target_setting: float = FROM_MODEL) -> "DetectRoute":
        """A node's settings (FROM_MODEL or a value), else the model's: the threshold measured for
        the detector that reads detect/image ("" = the shipped one) and the level it was measured at."""
        if target_setting >= 0.0:
            ExposureSettings(target_level=target_setting).validate()
            target = target_setting
        else:
            target = model_target_level(checkpoint)
        if setting >= 0.0:
            if setting > 1.0:
                raise ValueError(f"{ROUTE_KEY} must be -1 (the model's) or in [0, 1], got {setting}")
            return cls(setting, "setting", target)
        measured = model_threshold(checkpoint, detector)
        if measured is None:
            return cls(UNMEASURED, "unmeasured model: every frame restored", target)
        return cls(*measured, target)

    def rule(self) -> ExposureRule | None:
        """The exposure rule restored frames get on their way to the detector (None: none)."""
        return ExposureRule(ExposureSettings(target_level=self.target_level)) if self.target_level > 0 else None

    def describe(self) -> str:
        level = f", at mean luma {self.target_level:g}" if self.target_level > 0 else ""
        return f"restored below mean luma {self.restore_below:g} ({self.source}){level}, else the camera frame"

    def restores(self, rgb: np.ndarray, restoring: bool = False) -> bool:
        """Whether the detector should read this camera frame restored. `restoring`: the stream's
        previous frame was; it then stays restored up to HYSTERESIS above the threshold, so a scene
        whose brightness sits at the threshold does not switch the detector's input every frame."""
        if self.restore_below >= 1.0:
            return True
        if self.restore_below <= 0.0:
            return False
        limit = self.restore_below * (1.0 + HYSTERESIS) if restoring else self.restore_below
        return mean_luma(rgb) < limit


def for_detector(rule: ExposureRule | None, restored: np.ndarray, state: ExposureState | None = None) -> np.ndarray:
    """A restored frame as the detector gets it: at the route's level (same dtype), or as it is."""
    if rule is None:
        return restored
    if restored.dtype == np.uint8:
        return rule.expose_rgb8(restored, state)
    return rule.expose(restored, state).astype(restored.dtype, copy=False)
