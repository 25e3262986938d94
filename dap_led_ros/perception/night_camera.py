"""An independent night-camera degradation for the perception benchmark (numpy/OpenCV, no ROS).

Written apart from the training synthesis (`training/synthesis.py`, `training/camera_synthesis.py`,
`training/sensor_noise.py`, `training/motion_trajectories.py`) and sharing none of its code or
parameters, so that the benchmark does not reward a model for learning the training generator.
Where it differs physically:

- **Raw Bayer sensor**: the clean photo (decoded to linear light) is sampled on an RGGB mosaic,
  one colour per photosite, and demosaicked back by OpenCV's bilinear Bayer conversion, so noise
  is spatially correlated across channels the way a real demosaicked frame's is.
- **Photon counting in electrons**: the clean photo's white is `full_well` electrons at 0 EV; a
  level `ev` stops darker collects `full_well * 2**-ev`; shot noise is Poisson in electrons.
- **Heavy-tailed read noise** (Student-t, 4 degrees of freedom, scaled to `read_noise` electrons
  rms) plus **row banding** (one Gaussian offset per sensor row, `row_noise` x the read noise)
  and a fixed **column pattern** (seeded once per sensor).
- **ADC**: a black level, then quantisation to `adc_bits` bits after the camera's night gain
  (`boost`: the frame comes out `boost`-times brighter than its exposure, not re-exposed to grey).
- **Defocus**: a pillbox (disc) point-spread function of radius `defocus` pixels applied in linear
  light, not a motion trajectory.

The result is an sRGB uint8 frame of the input's size; `degrade` never modifies its input.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode


@dataclass(frozen=True)
class SensorModel:
    full_well: float = 6000.0   # electrons at the clean photo's white, 0 EV
    boost: float = 4.0          # the camera's night gain (2 stops): output level = boost * 2**-ev
    adc_bits: int = 10
    black_level: float = 16.0   # ADC counts added before quantisation and subtracted after
    row_noise: float = 0.25     # row banding rms, as a share of the read noise
    column_pattern: float = 0.5  # fixed column offsets rms, electrons
    pattern_seed: int = 7       # the fixed pattern belongs to the sensor, not to the frame

    def validate(self) -> None:
        if self.full_well <= 0 or self.boost <= 0:
            raise ValueError(f"full_well and boost must be positive, got {self.full_well} / {self.boost}")
        if not 8 <= self.adc_bits <= 16:
            raise ValueError(f"adc_bits must be in 8..16, got {self.adc_bits}")
        if self.black_level < 0 or self.row_noise < 0 or self.column_pattern < 0:
            raise ValueError("black_level, row_noise and column_pattern must be >= 0")


@dataclass(frozen=True)
class NightLevel:
    """One condition of the sweep."""
    name: str
    ev: float               # stops of light below the clean photo (light = 2**-ev)
    read_noise: float = 3.0  # electrons rms
    defocus: float = 0.0    # pillbox PSF radius in pixels (0: sharp)

    def validate(self) -> None:
        if self.ev < 0 or self.read_noise < 0 or self.defocus < 0:
            raise ValueError(f"level {self.name!r}: ev, read_noise and defocus must be >= 0")

    def describe(self) -> str:
        blur = f", defocus {self.defocus:g} px" if self.defocus else ""
        return f"-{self.ev:g} EV, read noise {self.read_noise:g} e-{blur}"


def pillbox(radius: float) -> np.ndarray:
    """A normalised disc kernel of the given radius (pixels), edge pixels weighted by coverage."""
    r = int(np.ceil(radius))
    # 4 x 4 supersampling per pixel gives the disc's partial coverage at its edge
    sub = (np.arange(4) + 0.5) / 4 - 0.5
    ys, xs = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
    yy = ys[..., None, None] + sub[:, None]
    xx = xs[..., None, None] + sub[None, :]
    k = ((yy ** 2 + xx ** 2) <= radius ** 2).mean(axis=(2, 3))
    return (k / k.sum()).astype(np.float32)


def _mosaic(lin: np.ndarray) -> np.ndarray:
    """H x W x 3 linear RGB -> H x W RGGB Bayer samples."""
    m = lin[..., 1].copy()
    m[0::2, 0::2] = lin[0::2, 0::2, 0]
    m[1::2, 1::2] = lin[1::2, 1::2, 2]
    return m


def degrade(rgb: np.ndarray, level: NightLevel, rng: np.random.Generator,
            sensor: SensorModel = SensorModel()) -> np.ndarray:
    """The frame a night camera with `sensor` records of the clean sRGB frame at `level`."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"expected a non-empty H x W x 3 uint8 image, got {rgb.dtype} {rgb.shape}")
    level.validate()
    sensor.validate()
    lin = srgb_decode(rgb)
    if level.defocus > 0:
        lin = cv2.filter2D(lin, -1, pillbox(level.defocus), borderType=cv2.BORDER_REFLECT)
    h, w = lin.shape[:2]
    electrons = _mosaic(lin).astype(np.float64) * sensor.full_well * 2.0 ** -level.ev
    signal = rng.poisson(np.maximum(electrons, 0.0)).astype(np.float64)
    if level.read_noise > 0:
        t = rng.standard_t(4, size=(h, w)) / np.sqrt(2.0)  # Student-t(4) has variance 2
        signal += level.read_noise * t
        signal += (level.read_noise * sensor.row_noise) * rng.standard_normal((h, 1))
    if sensor.column_pattern > 0:
        signal += sensor.column_pattern * np.random.default_rng(sensor.pattern_seed).standard_normal(w)[None, :]
    full = 2 ** sensor.adc_bits - 1
    counts_per_electron = full * sensor.boost / sensor.full_well  # white at 0 EV -> boost x full scale
    dn = np.clip(np.rint(signal * counts_per_electron + sensor.black_level), 0, full)
    raw = np.clip(dn - sensor.black_level, 0, None).astype(np.uint16)
    demosaicked = cv2.cvtColor(raw, cv2.COLOR_BayerBG2RGB)  # RGGB samples -> RGB (OpenCV's naming)
    return srgb_encode(demosaicked.astype(np.float32) / full)
