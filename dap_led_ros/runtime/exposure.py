"""The exposure rule: the restored output's mean level as a decision, not only the network's guess.

`target_level` 0 (the default): the output keeps the network's level (its learned scene prior);
nothing runs. `target_level` L > 0: the frame gets one gain g in linear light, the same on all
three channels (white balance kept), clipped to [0, 1] after. The full gain g* solves

    mean BT.601 luma of srgb(clip(g* . linear(frame))) = L      (sRGB values, 0-1)

limited to [1/8, 8]; the applied gain is g = g*^strength (`target_strength` 1: the target; 0.5: the
geometric middle of the network's level and the target; 0: the network's level). A video stream
steadies log g: it follows `smoothing` of each frame's change (exponential; 1: none) and starts
afresh when the stream restarts (`ExposureState`); a still takes its own gain.

Frames are read on a grid of sRGB values (4096 steps for float frames, 256 for uint8 ones): g* is
solved by bisection in log gain on the frame's luma-weighted histogram over that grid, and g is
applied as a lookup table over it, so the cost is about two passes over the frame.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from dap_led_ros.imaging.luma import BT601
from dap_led_ros.imaging.srgb import linear_to_srgb, srgb_to_linear

MIN_TARGET, MAX_TARGET = 0.02, 0.9   # target_level: 0 or in (MIN_TARGET, MAX_TARGET]
MAX_GAIN = 8.0                       # the full gain stays within [1 / MAX_GAIN, MAX_GAIN]
FLOAT_STEPS = 4096                   # grid of a float frame's sRGB values
_BISECTIONS = 24                     # log-gain interval 2 ln 8 / 2^24: far below a grey level
_SAMPLE_PIXELS = 1 << 16             # the histogram reads about this many pixels at most


@dataclass(frozen=True)
class ExposureSettings:
    target_level: float = 0.0   # mean luma (sRGB, 0-1) to move the output to; 0: the network's own
    strength: float = 1.0       # share of the way to the target, in log gain, [0, 1]
    smoothing: float = 0.5      # a stream's log gain follows this share of each change, (0, 1]

    def validate(self) -> None:
        if not (self.target_level == 0 or MIN_TARGET < self.target_level <= MAX_TARGET):
            raise ValueError(f"target_level must be 0 (the network's own level) or in "
                             f"({MIN_TARGET}, {MAX_TARGET}], got {self.target_level}")
        if not 0 <= self.strength <= 1:
            raise ValueError(f"target_strength must be in [0, 1], got {self.strength}")
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"exposure_smoothing must be in (0, 1], got {self.smoothing}")


class ExposureState:
    """One stream's steadied log gain (thread-safe); `reset` when the stream restarts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log_gain: float | None = None

    def follow(self, gain: float, share: float) -> float:
        """The steadied gain after a frame whose own gain is `gain`."""
        with self._lock:
            step = math.log(gain)
            if self._log_gain is None:
                self._log_gain = step
            else:
                self._log_gain += share * (step - self._log_gain)
            return math.exp(self._log_gain)

    def reset(self) -> None:
        with self._lock:
            self._log_gain = None

    @property
    def gain(self) -> float:
        """The last steadied gain (1 before the first frame and after a reset)."""
        value = self._log_gain
        return 1.0 if value is None else math.exp(value)


def _grid(steps: int) -> np.ndarray:
    """Linear light of the grid's sRGB values (float64)."""
    return srgb_to_linear(np.arange(steps, dtype=np.float64) / (steps - 1))


_LINEAR = {256: _grid(256), FLOAT_STEPS: _grid(FLOAT_STEPS)}


def grid_index(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """(each value's step on the grid, the grid's steps) of an H x W x 3 sRGB frame: uint8 as it
    is, float (0-1, clipped) rounded to 1/4095."""
    if frame.dtype == np.uint8:
        return frame, 256
    idx = frame * np.float32(FLOAT_STEPS - 1)
    idx += 0.5
    np.clip(idx, 0.0, FLOAT_STEPS - 0.5, out=idx)
    return idx.astype(np.uint16), FLOAT_STEPS


def luma_histogram(idx: np.ndarray, steps: int) -> np.ndarray:
    """Share of the frame's mean luma weight at each grid step: sum_c w_c x (count of c at step) / pixels."""
    h, w = idx.shape[:2]
    stride = max(1, int(math.sqrt(h * w / _SAMPLE_PIXELS)))  # every stride-th row and column, centred
    sample = idx[stride // 2::stride, stride // 2::stride]
    pixels = max(1, sample.shape[0] * sample.shape[1])
    hist = np.zeros(steps, np.float64)
    for c, weight in enumerate(BT601):
        hist += (weight / pixels) * np.bincount(sample[..., c].ravel(), minlength=steps)
    return hist


def _encoded(gain: float, steps: int) -> np.ndarray:
    """The grid's sRGB values after `gain` in linear light, clipped (float64, 0-1)."""
    return linear_to_srgb(np.minimum(_LINEAR[steps] * gain, 1.0))


def solve_gain(hist: np.ndarray, target: float) -> float:
    """The gain g in [1/8, 8] with mean luma = `target` after it (the nearest limit when out of reach)."""
    steps = hist.size
    lo, hi = -math.log(MAX_GAIN), math.log(MAX_GAIN)
    if float(hist @ _encoded(MAX_GAIN, steps)) <= target:
        return MAX_GAIN
    if float(hist @ _encoded(1.0 / MAX_GAIN, steps)) >= target:
        return 1.0 / MAX_GAIN
    for _ in range(_BISECTIONS):  # the level rises with the gain
        mid = 0.5 * (lo + hi)
        if float(hist @ _encoded(math.exp(mid), steps)) < target:
            lo = mid
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


class ExposureRule:
    """Applies `ExposureSettings` to restored frames (H x W x 3 sRGB, float 0-1 or uint8)."""

    def __init__(self, settings: ExposureSettings | None = None) -> None:
        self.settings = settings or ExposureSettings()
        self.settings.validate()

    @property
    def active(self) -> bool:
        """False when the rule leaves every frame as it is (no target, or strength 0)."""
        return self.settings.target_level > 0 and self.settings.strength > 0

    def gain(self, frame: np.ndarray) -> float:
        """The gain a still gets: g*^strength (1 when the rule is off)."""
        if not self.active:
            return 1.0
        return self._gain(*grid_index(frame))

    def expose(self, frame: np.ndarray, state: ExposureState | None = None) -> np.ndarray:
        """The frame at the rule's level, float32 sRGB 0-1; `state`: the frame's stream."""
        idx, steps, gain = self._prepare(frame, state)
        return np.take(_encoded(gain, steps).astype(np.float32), idx)

    def expose_rgb8(self, frame: np.ndarray, state: ExposureState | None = None) -> np.ndarray:
        """As `expose`, as H x W x 3 uint8 (rounded half up, as the Enhancer's conversion)."""
        idx, steps, gain = self._prepare(frame, state)
        return np.take((_encoded(gain, steps) * 255.0 + 0.5).astype(np.uint8), idx)

    def _prepare(self, frame: np.ndarray, state: ExposureState | None) -> tuple[np.ndarray, int, float]:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 frame, got {frame.dtype} {frame.shape}")
        idx, steps = grid_index(frame)
        gain = self._gain(idx, steps) if self.active else 1.0
        if state is not None:
            gain = state.follow(gain, self.settings.smoothing)
        return idx, steps, gain

    def _gain(self, idx: np.ndarray, steps: int) -> float:
        full = solve_gain(luma_histogram(idx, steps), self.settings.target_level)
        return full ** self.settings.strength
