"""Temporal fusion of restored video frames: motion-aligned, occlusion-aware recursive averaging.

After the network restores frame t, the fused history (the previous fused output) is warped onto
it by dense optical flow (OpenCV's DIS on a downscaled luma of the two restored frames, which are
far cleaner than the dark inputs), and blended in per pixel as a running mean over up to
`frames` frames. A pixel's history weight falls to zero where the warped history disagrees with
the current frame (occlusion, a moving object the flow missed, a light switching on): there the
current frame stands alone, so nothing ghosts. A scene cut (the frame's grey thumbnail changes by
more than `cut`), a new frame size or `reset()` starts the history again.

Steady exposure: the output's mean level follows only `exposure_smoothing` of each frame's
change (an exponential moving average, applied as one gain), so it follows the scene and not the
noise; a change beyond `LEVEL_JUMP` (a light switched on, a tunnel exit) is followed at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dap_led_ros.imaging.luma import BT601

_LUMA_601 = np.asarray(BT601, np.float32)
_THUMB = (32, 24)
LEVEL_JUMP = 0.15        # relative level change followed at once by the exposure smoothing
MAX_LEVEL_GAIN = 1.25    # the smoothing's gain stays within [1 / this, this]
NOISE_TOLERANCE = 1.5    # tolerance added per unit of the median disagreement (the noise floor)


@dataclass(frozen=True)
class FusionSettings:
    frames: int = 8            # running mean over at most this many frames
    flow_side: int = 320       # longest side of the luma the flow is computed on
    cut: float = 0.12          # thumbnail mean absolute change (0-1) that counts as a scene cut
    tolerance: float = 0.06    # local mean |history - current| (0-1 luma) at which history drops out
    exposure_smoothing: float = 0.5  # share of a level change followed at once (1 = no smoothing)

    def validate(self) -> None:
        if not 1 <= self.frames <= 64:
            raise ValueError(f"temporal_frames must be in [1, 64], got {self.frames}")
        if not 32 <= self.flow_side <= 4096:
            raise ValueError(f"temporal_flow_side must be in [32, 4096], got {self.flow_side}")
        if not 0 < self.cut <= 1:
            raise ValueError(f"temporal_cut must be in (0, 1], got {self.cut}")
        if not 0 < self.tolerance <= 1:
            raise ValueError(f"temporal_tolerance must be in (0, 1], got {self.tolerance}")
        if not 0 < self.exposure_smoothing <= 1:
            raise ValueError(f"exposure_smoothing must be in (0, 1], got {self.exposure_smoothing}")


class TemporalFusion:
    """One stream's history. `fuse` takes and returns H x W x 3 float32 frames in [0, 1]."""

    def __init__(self, settings: FusionSettings | None = None) -> None:
        self.settings = settings or FusionSettings()
        self.settings.validate()
        # Ultra-fast preset: ~1 ms at 320x200; finer presets measured no better after fusion.
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self.resets = 0          # scene cuts and size changes seen (not counting the first frame)
        self._grids: dict[tuple, Any] = {}  # per-size constants (grids, ones), of the sizes in use
        self.reset()

    def reset(self) -> None:
        self._history: np.ndarray | None = None   # fused previous frame, H x W x 3
        self._count: np.ndarray | None = None     # frames averaged into each history pixel
        self._small: np.ndarray | None = None     # its downscaled copy (RGB float32)
        self._thumb: np.ndarray | None = None
        self._level: float | None = None          # steadied mean level of the output
        self.last_weight = 0.0                    # mean history weight of the last frame
        self.noise_floor = 0.0                    # median disagreement of the last frame (0-1)
        self.last_gain = 1.0                      # exposure-smoothing gain of the last frame

    @property
    def active(self) -> bool:
        return self._history is not None

    def _downscaled(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = rgb.shape[:2]
        s = min(1.0, self.settings.flow_side / max(h, w))
        size = (max(8, round(w * s)), max(8, round(h * s)))
        return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), w / size[0]

    def _cached(self, key: tuple, make: Any) -> Any:
        """A per-size constant, made on first use; the cache is emptied when sizes keep changing."""
        value = self._grids.get(key)
        if value is None:
            if len(self._grids) >= 8:
                self._grids.clear()
            value = self._grids[key] = make()
        return value

    def _grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (x, y) of an h x w image (the small flow grid)."""
        def make() -> tuple[np.ndarray, np.ndarray]:
            gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
            return gx, gy
        return self._cached(("xy", h, w), make)

    def _grid2(self, h: int, w: int) -> np.ndarray:
        """Pixel coordinates of an h x w image as one H x W x 2 map (x, y), as cv2.remap takes it."""
        return self._cached(("map", h, w), lambda: cv2.merge(list(self._grid(h, w))))

    @staticmethod
    def _luma8(luma: np.ndarray) -> np.ndarray:
        """0-1 luma as the 8-bit image DIS takes."""
        return np.clip(luma * 255 + 0.5, 0, 255).astype(np.uint8)

    def fuse(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.float32:
            raise ValueError(f"expected an H x W x 3 float32 frame, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        small, scale = self._downscaled(frame)
        luma = small @ _LUMA_601
        thumb = cv2.resize(luma, _THUMB, interpolation=cv2.INTER_AREA)
        hist = self._history
        if hist is None or hist.shape != frame.shape or \
                float(np.abs(thumb - self._thumb).mean()) > self.settings.cut:
            if hist is not None:
                self.resets += 1
            return self._restart(frame, small, thumb, float(luma.mean()))

        # Flow from the current frame to the previous one: cur(x) ~ prev(x + flow(x)).
        flow_small = self._flow.calc(self._luma8(luma), self._luma8(self._small @ _LUMA_601), None)
        sh, sw = small.shape[:2]
        gx, gy = self._grid(sh, sw)
        sx, sy = gx + flow_small[..., 0], gy + flow_small[..., 1]
        warped_small = cv2.remap(self._small, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Disagreement after alignment: the mean colour difference, averaged over 5x5 (noise
        # averages out), then spread by a pixel so edges of a moving object count as disagreeing.
        raw = np.abs(warped_small - small).mean(axis=2)
        diff = cv2.dilate(cv2.blur(raw, (5, 5)), np.ones((3, 3), np.uint8))
        # The tolerance grows with the frame's noise: the median disagreement, which noise sets
        # where most of the frame is aligned (a noisy frame would otherwise reject every history).
        self.noise_floor = float(np.median(raw))
        tolerance = self.settings.tolerance + NOISE_TOLERANCE * self.noise_floor
        confidence = np.clip(2.0 - 2.0 * diff / tolerance, 0.0, 1.0)
        confidence *= (sx >= 0) & (sx <= sw - 1) & (sy >= 0) & (sy <= sh - 1)  # no history outside the frame

        # The full-resolution half, in OpenCV calls (one pass each): the flow upscaled into one
        # two-channel map, history and its counts warped by it, and the running mean.
        flow = cv2.resize(flow_small, (w, h), interpolation=cv2.INTER_LINEAR)
        cv2.scaleAdd(flow, scale, self._grid2(h, w), dst=flow)
        warped = cv2.remap(hist, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        count = cv2.remap(self._count, flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        n = cv2.multiply(count, cv2.resize(confidence, (w, h), interpolation=cv2.INTER_LINEAR))
        # frame + alpha * (warped - frame), alpha = n / (n + 1): exactly the frame where the history
        # agrees with it (cv2.blendLinear's epsilon moved such pixels by a grey level).
        fused = cv2.subtract(warped, frame, dst=warped)
        fused *= cv2.divide(n, n + 1.0)[:, :, None]
        cv2.add(fused, frame, dst=fused)
        fused_small, _ = self._downscaled(fused)
        gain = self._steady_gain(float((fused_small @ _LUMA_601).mean()))
        if gain != 1.0:
            cv2.multiply(fused, gain, dst=fused)
            fused_small *= gain
        self._history = fused
        self._count = np.minimum(n + 1.0, float(self.settings.frames), out=n)
        self._small = fused_small
        self._thumb = thumb
        # The history's share of the output: n / (n + 1), averaged (on the small confidence grid).
        count_small = cv2.resize(count, (sw, sh), interpolation=cv2.INTER_AREA) * confidence
        self.last_weight = float((count_small / (count_small + 1.0)).mean())
        return fused

    def _steady_gain(self, level: float) -> float:
        """Gain that moves the output's level only part of the way to this frame's `level`."""
        prev = self._level
        k = self.settings.exposure_smoothing
        if prev is None or k >= 1.0 or level <= 1e-4 or abs(level - prev) > LEVEL_JUMP * max(prev, 1e-3):
            self._level, self.last_gain = level, 1.0
            return 1.0
        target = prev + k * (level - prev)
        gain = min(MAX_LEVEL_GAIN, max(1.0 / MAX_LEVEL_GAIN, target / level))
        self._level, self.last_gain = level * gain, gain
        return gain

    def _restart(self, frame: np.ndarray, small: np.ndarray, thumb: np.ndarray, level: float) -> np.ndarray:
        self._history = frame
        self._count = np.ones(frame.shape[:2], np.float32)
        self._small = small
        self._thumb = thumb
        self._level = level
        self.last_weight, self.last_gain = 0.0, 1.0
        return frame
