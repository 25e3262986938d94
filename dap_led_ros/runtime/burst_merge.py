"""Burst merging of video *input* frames: noise averaged out before the network sees it.

Each dark input frame is merged with the stream's history of earlier inputs, aligned to it by dense
optical flow, as a running mean over up to `frames` frames. The merge works on the values as the
camera encoded them (sRGB, scaled to 0-1), the scale the network was trained on: averaged in linear
light instead, the merged frame came out brighter (the mean of decoded noise is not the decoded
mean), the network's exposure followed, and the gain through the network halved (measured at 4x
the noise: +0.54 dB against +1.12 dB in sRGB, on a static burst of 8 frames). A
history pixel counts only where it agrees with the new frame within what the sensor noise
explains: the frame's noise level function (variance against intensity, per channel, estimated
from the frame itself) predicts the spread of a 5x5 mean difference between two aligned noisy
frames; a difference beyond `reject` of those standard deviations is motion the flow missed (a
moving object, an occlusion, a light switched on), and there the new frame stands alone.
Dark frames are far noisier than restored ones, so the flow runs on a heavily downscaled,
brightness-normalised luma (the averaging of the downscale removes most of the noise).

A scene cut (the normalised thumbnail changes by more than `cut`), a new frame size or `reset()`
starts the history again. The merged frame stays float32 (no 8-bit rounding: the average carries
sub-level detail) and is what the network restores.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dap_led_ros.imaging.luma import BT601

_LUMA_601 = np.asarray(BT601, np.float32)
_THUMB = (32, 24)
_FLOW_LEVEL = 0.4        # the flow's luma is scaled to this mean level
_NOISE_BINS = 16         # intensity bins of the noise level function
_BOX = 5                 # side of the box mean the disagreement is measured over
_HISTORY_INTERPOLATION = cv2.INTER_LINEAR
_QUANTISATION_VARIANCE = (1.0 / 255.0) ** 2 / 12.0
_LUT_STEPS = 1024        # the noise level function is tabulated at this many intensities
_LUT_X = np.linspace(0.0, 1.0, _LUT_STEPS)


@dataclass(frozen=True)
class BurstSettings:
    frames: int = 8           # running mean over at most this many input frames
    flow_side: int = 160      # longest side of the luma the flow is computed on
    reject: float = 3.0       # disagreement (in std of the noise-only difference) where history starts to drop out
    cut: float = 0.12         # normalised thumbnail change (0-1) that counts as a scene cut

    def validate(self) -> None:
        if not 1 <= self.frames <= 64:
            raise ValueError(f"burst_frames must be in [1, 64], got {self.frames}")
        if not 32 <= self.flow_side <= 4096:
            raise ValueError(f"burst flow_side must be in [32, 4096], got {self.flow_side}")
        if not 0.5 <= self.reject <= 20:
            raise ValueError(f"burst_reject must be in [0.5, 20], got {self.reject}")
        if not 0 < self.cut <= 1:
            raise ValueError(f"burst cut must be in (0, 1], got {self.cut}")


def noise_variance(img: np.ndarray) -> np.ndarray:
    """Per-pixel expected noise variance of an H x W x 3 float frame in [0, 1], from its own noise
    level function: per channel, the residual against a 3x3 mean, its robust (median) variance in
    equal-count intensity bins, tabulated and looked up at each pixel's local mean. Texture
    inflates a bin's figure little: the median ignores the edges of a minority of pixels."""
    local = cv2.blur(img, (3, 3))
    resid = cv2.absdiff(img, local)
    out = np.empty_like(img)
    for c in range(3):
        m = local[..., c]
        sub_m, sub_r = m[::4, ::4].ravel(), resid[::4, ::4, c].ravel()  # 1 in 16 pixels: enough per bin
        k = sub_m.size // _NOISE_BINS
        order = np.argsort(sub_m)[:k * _NOISE_BINS]
        centres = sub_m[order].reshape(_NOISE_BINS, k).mean(axis=1)
        # median |r| of a normal residual = 0.6745 sigma_r; sigma_r^2 = 8/9 sigma^2 (3x3 mean removed)
        sigma_r = np.median(sub_r[order].reshape(_NOISE_BINS, k), axis=1) / 0.6745
        # never below the 8-bit quantisation's own variance (black and clipped areas read 0)
        variances = np.maximum(sigma_r * sigma_r * (9.0 / 8.0), _QUANTISATION_VARIANCE)
        lut = np.interp(_LUT_X, centres, variances).astype(np.float32)
        out[..., c] = lut[np.clip(m * (_LUT_STEPS - 1) + 0.5, 0, _LUT_STEPS - 1).astype(np.int32)]
    return out


class BurstMerge:
    """One stream's input history. `merge` takes an H x W x 3 uint8 frame and returns the merged
    frame as H x W x 3 float32 in [0, 1] (value / 255)."""

    def __init__(self, settings: BurstSettings | None = None) -> None:
        self.settings = settings or BurstSettings()
        self.settings.validate()
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.resets = 0           # scene cuts and size changes (not counting the first frame)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None  # pixel coordinates (y, x) of the frame size
        self.reset()

    def reset(self) -> None:
        self._history: np.ndarray | None = None   # merged frame (0-1), H x W x 3
        self._var: np.ndarray | None = None       # its expected noise variance per pixel
        self._count: np.ndarray | None = None     # frames averaged into each history pixel
        self._luma: np.ndarray | None = None      # its flow luma (small, 8-bit)
        self._thumb: np.ndarray | None = None
        self.last_weight = 0.0                    # mean history share of the last merged frame

    @property
    def active(self) -> bool:
        return self._history is not None

    _STATE = ("_history", "_var", "_count", "_luma", "_thumb", "last_weight", "resets")

    def state(self) -> tuple:
        """The history as it is now (its arrays are replaced, never changed in place, by `merge`)."""
        return tuple(getattr(self, k) for k in self._STATE)

    def set_state(self, state: tuple) -> None:
        for k, v in zip(self._STATE, state):
            setattr(self, k, v)

    def _flow_luma(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """(8-bit flow luma, thumbnail, scale to full size) of a frame."""
        h, w = img.shape[:2]
        s = min(1.0, self.settings.flow_side / max(h, w))
        size = (max(8, round(w * s)), max(8, round(h * s)))
        small = cv2.resize(img, size, interpolation=cv2.INTER_AREA) @ _LUMA_601
        small *= _FLOW_LEVEL / max(float(small.mean()), 1e-4)  # brightness-normalised
        thumb = cv2.resize(small, _THUMB, interpolation=cv2.INTER_AREA)
        return np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8), thumb, w / size[0]

    def merge(self, rgb: np.ndarray) -> np.ndarray:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 frame, got {rgb.dtype} {rgb.shape}")
        x = rgb.astype(np.float32) * (1.0 / 255.0)  # exactly what the network takes of an 8-bit frame
        var = noise_variance(x)
        luma, thumb, scale = self._flow_luma(x)
        hist = self._history
        if hist is None or hist.shape != x.shape or \
                float(np.abs(thumb - self._thumb).mean()) > self.settings.cut:
            if hist is not None:
                self.resets += 1
            self._restart(x, var, luma, thumb)
            return x.copy()
        h, w = x.shape[:2]
        # Flow from the new frame to the history: cur(x) ~ hist(x + flow(x)).
        flow_small = self._flow.calc(luma, self._luma, None)
        flow = cv2.resize(flow_small, (w, h), interpolation=cv2.INTER_LINEAR) * scale
        if self._grid is None or self._grid[0].shape != (h, w):
            self._grid = tuple(np.mgrid[0:h, 0:w].astype(np.float32))
        gy, gx = self._grid
        mx, my = gx + flow[..., 0], gy + flow[..., 1]
        warped = cv2.remap(hist, mx, my, _HISTORY_INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
        wvar = cv2.remap(self._var, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        count = cv2.remap(self._count, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # Disagreement: the 5x5 mean difference in units of its noise-only std, the worst channel,
        # spread by a pixel so the edges of a moving object count as disagreeing.
        diff = np.abs(cv2.blur(warped - x, (_BOX, _BOX)))
        sigma = np.sqrt(np.maximum(cv2.blur(var + wvar, (_BOX, _BOX)), 0.0)) / _BOX + 1e-6
        z = cv2.dilate((diff / sigma).max(axis=2), np.ones((3, 3), np.uint8))
        k = self.settings.reject
        confidence = np.clip(2.0 - z / k, 0.0, 1.0)  # 1 below k std, 0 above 2k
        confidence *= (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        n = count * confidence
        alpha = (n / (n + 1.0))[..., None]
        merged = x + alpha * (warped - x)
        # Variance of the running mean: the history's share weighs its own variance.
        self._var = ((1 - alpha) ** 2 * var + alpha ** 2 * wvar).astype(np.float32)
        self._history = merged.astype(np.float32)
        self._count = np.minimum(n + 1.0, float(self.settings.frames)).astype(np.float32)
        self._luma = self._flow_luma(self._history)[0]  # the next flow aligns to the cleaner merge
        self._thumb = thumb
        self.last_weight = float(alpha.mean())
        return self._history.copy()  # the caller may write into it; the history stays

    def _restart(self, x: np.ndarray, var: np.ndarray, luma: np.ndarray, thumb: np.ndarray) -> None:
        self._history, self._var = x, var
        self._count = np.ones(x.shape[:2], np.float32)
        self._luma, self._thumb = luma, thumb
        self.last_weight = 0.0
