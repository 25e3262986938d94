"""Which frame a detector reads, the restored one or the camera's own, decided by the frame's darkness.

The perception benchmark (`dap-led perception-bench`, docs/evaluation.md) measured where restoration
raises the shipped detector's recall (paired intervals): the quality model from -6 EV down and not at
-5 EV; the real-time model at no darkness level. Each shipped model records
the mean luma (BT.601, 0-1, of the camera frame) below which its restored frame is the better one
as `extra.detect_restore_below` in its YAML; a frame at or above it goes to the detector as the
camera sent it (and, when nothing else watches the restored output, skips the network).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.shipped_models import checkpoint_paths

ROUTE_KEY = "detect_restore_below"   # the checkpoint YAML's `extra` entry
HYSTERESIS = 0.1                      # a stream that is restored stays so up to 10 % above the threshold
FROM_MODEL = -1.0                     # a setting that defers to the model's measured threshold
UNMEASURED = 1.0                      # a model without one: every frame restored (as before routing)


def model_threshold(checkpoint: str | Path | None) -> float | None:
    """The threshold a checkpoint's YAML records (None: no YAML, or not measured)."""
    if not checkpoint:
        return None
    _, config = checkpoint_paths(checkpoint)
    if not config.is_file():
        return None
    doc = yaml.safe_load(config.read_text()) or {}
    value = (doc.get("extra") or {}).get(ROUTE_KEY)
    if value is None:
        return None
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{config}: extra.{ROUTE_KEY} must be in [0, 1], got {value}")
    return value


@dataclass(frozen=True)
class DetectRoute:
    """restore_below: frames darker than this mean luma go to the detector restored (0: never, 1: always)."""

    restore_below: float = UNMEASURED
    source: str = "default"   # where the threshold came from (logs, diagnostics)

    @classmethod
    def resolve(cls, setting: float, checkpoint: str | Path | None) -> "DetectRoute":
        """A node's setting (FROM_MODEL or a value in 0-1) with the model's measured threshold."""
        if setting >= 0.0:
            if setting > 1.0:
                raise ValueError(f"{ROUTE_KEY} must be -1 (the model's) or in [0, 1], got {setting}")
            return cls(setting, "setting")
        measured = model_threshold(checkpoint)
        if measured is None:
            return cls(UNMEASURED, "unmeasured model: every frame restored")
        return cls(measured, f"model {Path(str(checkpoint)).stem}")

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
