"""Motion-blur kernels from camera-shake and vehicle-motion trajectories.

Two kinds of motion during one exposure:
- **shake**: a random walk with momentum in the manner of Boracchi & Foi ("Modeling the
  performance of image restoration from motion blur", IEEE TIP 2012): the velocity keeps its
  direction, is nudged each step by Gaussian noise (`anxiety`), pulled back towards the start
  (`centripetal`), and with a small probability jerks to a new direction (impulsive shake);
  each step has the same length, so the path's arc length is exactly the requested length.
- **vehicle**: the camera moves with the car, so the image of the roadside slides along a nearly
  straight, mostly horizontal line (heading N(0, `vehicle_angle_sd_deg`)), with a little
  curvature and bounce, and an uneven speed along the path.

Lengths are arc lengths in pixels of the frame being degraded (the validation frames are 640 px
wide; lengths up to 40 px there). The kernel is the path rasterised with bilinear weights,
normalised to sum 1 and centred on its centroid (blurring does not shift the image). numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dap_led_ros.settings import dataclass_from_mapping


@dataclass
class TrajectoryConfig:
    """Shape of the trajectories. Lengths come from the synthesis configs' length ranges."""

    p_vehicle: float = 0.35          # share of straight vehicle-motion paths (the rest: shake)
    vehicle_angle_sd_deg: float = 12.0  # heading spread about horizontal
    vehicle_bend: float = 0.15       # max heading change along a vehicle path (radians)
    anxiety_range: tuple[float, float] = (0.02, 0.12)  # shake: velocity noise per step
    centripetal: float = 0.01        # shake: pull towards the start per step
    p_jerk: float = 0.05             # shake: probability per step of an impulsive change
    samples_per_px: float = 4.0      # path samples per pixel of length

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrajectoryConfig":
        cfg = dataclass_from_mapping(cls, data, "trajectory")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for name in ("p_vehicle", "p_jerk"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"trajectory.{name} must be a probability")
        lo, hi = self.anxiety_range
        if not 0 <= lo <= hi:
            raise ValueError("trajectory.anxiety_range must be [low, high] with 0 <= low <= high")
        if self.samples_per_px < 1 or self.vehicle_angle_sd_deg < 0 or self.vehicle_bend < 0 or self.centripetal < 0:
            raise ValueError("trajectory: samples_per_px >= 1 and non-negative angles, bend and centripetal")


def _scale_to_length(steps: np.ndarray, length: float) -> np.ndarray:
    """Cumulative path (N+1 x 2, starting at 0) of the steps scaled to arc length `length`."""
    total = float(np.hypot(steps[:, 0], steps[:, 1]).sum())
    pts = np.cumsum(np.vstack([np.zeros((1, 2)), steps * (length / max(total, 1e-12))]), axis=0)
    return pts


def shake_trajectory(length: float, rng: np.random.Generator, cfg: TrajectoryConfig) -> np.ndarray:
    """(N, 2) points (y, x) of a random walk with momentum, arc length `length`."""
    n = max(16, int(math.ceil(length * cfg.samples_per_px)))
    anxiety = float(rng.uniform(*cfg.anxiety_range))
    start = rng.uniform(0, 2 * math.pi)
    v = complex(math.cos(start), math.sin(start))
    x = 0j
    steps = np.empty((n, 2))
    for t in range(n):
        dv = anxiety * complex(rng.normal(), rng.normal()) - cfg.centripetal * x
        if rng.random() < cfg.p_jerk:  # impulsive: a push as large as the velocity itself
            turn = rng.uniform(0, 2 * math.pi)
            dv += complex(math.cos(turn), math.sin(turn))
        v = v + dv
        v = v / max(abs(v), 1e-12)  # unit speed: equal arc length per step
        x = x + v / n
        steps[t] = (v.imag, v.real)
    return _scale_to_length(steps, length)


def vehicle_trajectory(length: float, rng: np.random.Generator, cfg: TrajectoryConfig) -> np.ndarray:
    """(N, 3) points (y, x, time weight) of a nearly straight, mostly horizontal path."""
    n = max(16, int(math.ceil(length * cfg.samples_per_px)))
    heading = math.radians(rng.normal(0.0, cfg.vehicle_angle_sd_deg)) + (math.pi if rng.random() < 0.5 else 0.0)
    bend = rng.uniform(-cfg.vehicle_bend, cfg.vehicle_bend)
    t = np.linspace(0.0, 1.0, n)
    angle = heading + bend * t + 0.02 * np.sin(2 * math.pi * rng.uniform(1, 4) * t + rng.uniform(0, 2 * math.pi))
    speed = np.exp(rng.normal(0.0, 0.15) * np.linspace(-1, 1, n))  # accelerating or braking
    steps = np.stack([np.sin(angle), np.cos(angle)], axis=1)
    # Uneven speed: the time spent at each point (1 / speed) becomes its weight in the kernel.
    pts = _scale_to_length(steps, length)
    dwell = np.concatenate([[1.0], 1.0 / speed])
    return np.concatenate([pts, dwell[:, None]], axis=1)


def rasterise(points: np.ndarray) -> np.ndarray:
    """Odd square kernel of a path ((N, 2) y, x; or (N, 3) with a time weight per point)."""
    pts = np.asarray(points, np.float64)
    weight = pts[:, 2] if pts.shape[1] > 2 else np.ones(len(pts))
    yx = pts[:, :2] - (pts[:, :2] * weight[:, None]).sum(axis=0) / weight.sum()  # centroid at 0
    half = int(math.ceil(np.abs(yx).max())) + 1
    size = 2 * half + 1
    kernel = np.zeros((size, size), np.float64)
    py, px = yx[:, 0] + half, yx[:, 1] + half
    y0, x0 = np.floor(py).astype(int), np.floor(px).astype(int)
    fy, fx = py - y0, px - x0
    for dy, dx, wgt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        np.add.at(kernel, (y0 + dy, x0 + dx), wgt * weight)
    return (kernel / kernel.sum()).astype(np.float32)


def arc_length(points: np.ndarray) -> float:
    d = np.diff(np.asarray(points)[:, :2], axis=0)
    return float(np.hypot(d[:, 0], d[:, 1]).sum())


def trajectory_kernel(length: float, rng: np.random.Generator, cfg: TrajectoryConfig | None = None
                      ) -> tuple[np.ndarray, str]:
    """A blur kernel of arc length `length` px and its kind ("vehicle" or "shake")."""
    if length <= 0:
        raise ValueError(f"blur length must be > 0, got {length}")
    cfg = cfg or TrajectoryConfig()
    if rng.random() < cfg.p_vehicle:
        return rasterise(vehicle_trajectory(length, rng, cfg)), "vehicle"
    return rasterise(shake_trajectory(length, rng, cfg)), "shake"
