"""Sensor noise calibrated to real cameras: shot, read, row, banding and quantisation noise.

The model is ELD's (Wei et al., CVPR 2020 / TPAMI 2021): in raw numbers above black (DN), a pixel
reads K * Poisson(electrons) + read noise + a per-row offset + ADC quantisation, where K (DN per
electron) is the system gain set by the ISO, and the read and row noise scales follow log-linear
relations ln(sigma) = slope * ln(K) + bias + N(0, spread) calibrated per camera. The read noise
is Gaussian or, as ELD found for some sensors, Tukey-lambda (heavier tails). The published
relations and their sources are in docs/noise_calibration.md; the numbers are in `PROFILES`.

Referred to the output's white level (signal in [0, 1]) the variance of a pixel is
`shot_gain * signal + read_sigma^2 + row_sigma^2 + banding^2 / 2 + quant_step^2 / 12`, with
`shot_gain = K / white_dn`. Two extensions past the calibrated DSLRs cover night cameras: a
small-pixel sensor (`area` times fewer electrons per output level: K and the DN noise scale by
`area`) and digital gain after the ADC (`digital_gain`: every noise term and the quantisation
step scale by it). Which noise a frame gets is drawn by `sample_sensor_noise` with a night prior:
the analogue gain sits near the top of its range more often than not (exposure time is capped
by the frame rate, so the camera raises the gain first). numpy only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dap_led_ros.settings import dataclass_from_mapping


@dataclass(frozen=True)
class LogLinear:
    """ln(y) = slope * ln(K) + bias, with a per-frame N(0, spread) on ln(y)."""

    slope: float
    bias: float
    spread: float

    def sample(self, k: float, rng: np.random.Generator) -> float:
        return float(math.exp(self.slope * math.log(k) + self.bias + rng.normal(0.0, self.spread)))


@dataclass(frozen=True)
class SensorProfile:
    """One calibrated camera: K range (DN/e-), noise relations in DN, raw range above black."""

    name: str
    source: str
    k_range: tuple[float, float]
    read: LogLinear                  # Gaussian read-noise std (DN)
    row: LogLinear                   # per-row offset std (DN)
    tukey: LogLinear | None = None   # Tukey-lambda read-noise scale (DN), when calibrated
    tukey_lambdas: tuple[float, ...] = ()  # the shapes measured across the ISO range
    white_dn: float = 16383 - 512    # raw range above black (14-bit ADC, black 512)
    adc_bits: int = 14


# ELD's calibrations of two of its four cameras as published with LED (Jin et al., ICCV 2023,
# options/base/noise_g/noise_g_{SonyA7S2,NikonD850}.yaml); docs/noise_calibration.md.
PROFILES: dict[str, SensorProfile] = {
    "sony_a7s2": SensorProfile(
        name="sony_a7s2", source="ELD calibration (Sony A7S II), via LED noise_g_SonyA7S2.yaml",
        k_range=(0.09391607086816033, 6.010628535562261),
        read=LogLinear(0.5407496082896145, 1.218237123334061, 0.26751211630129734),
        row=LogLinear(0.5275360468633209, -0.5917002648887661, 0.29428813016491145),
        tukey=LogLinear(0.46210495986526035, 0.5657147358616816, 0.2633712220097871),
        tukey_lambdas=(0.114, 0.129, 0.057, 0.043, -0.043, -0.057, -0.086, -0.086, -0.086, -0.086,
                       -0.114, -0.114, -0.143, -0.129, -0.143, -0.143)),
    "nikon_d850": SensorProfile(
        name="nikon_d850", source="ELD calibration (Nikon D850), via LED noise_g_NikonD850.yaml",
        k_range=(0.4150393264348262, 26.562516891828878),
        read=LogLinear(0.5634612649498357, 0.799410107756515, 0.21408231874600314),
        row=LogLinear(0.44829219631519307, -1.7977103277112132, 0.2321799439489326),
        tukey=LogLinear(0.4773896839219417, -0.09044499670414502, 0.23920060971003035),
        tukey_lambdas=(-0.114, -0.114, -0.2, -0.2, -0.214, -0.214, -0.229, -0.229, -0.243, -0.243,
                       -0.171, -0.171, -0.143, -0.143, -0.1, -0.1)),
    # The envelope LED's virtual cameras are drawn from (noise_g_virtual.yaml), which spans ELD's
    # calibrated cameras (Canon EOS 70D and 700D included): relations drawn inside it per frame.
    "eld_envelope": SensorProfile(
        name="eld_envelope", source="LED virtual-camera ranges over ELD's calibrations (noise_g_virtual.yaml)",
        k_range=(0.1, 30.0),
        read=LogLinear(0.6089, 1.4396, 0.2408),   # centre of the envelope; widened in _envelope()
        row=LogLinear(0.5888, -1.1947, 0.2632),
        tukey=LogLinear(0.5590, 0.7233, 0.3140),
        tukey_lambdas=(-0.243, -0.15, -0.05, 0.05, 0.15, 0.2)),
}

# LED's virtual-camera ranges [low, high] for slope and bias (noise_g_virtual.yaml).
_ENVELOPE = {"read": ((0.5407, 0.6771), (0.7994, 2.0799)), "row": ((0.4483, 0.7292), (-1.7977, -0.5917)),
             "tukey": ((0.4621, 0.6559), (-0.0904, 1.5370))}


@dataclass
class NoiseModelConfig:
    """How a frame's sensor noise is drawn. Field defaults are the single source of defaults."""

    profiles: tuple[str, ...] = ("sony_a7s2", "nikon_d850", "eld_envelope")
    profile_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    # Analogue gain: u ~ Beta(gain_skew, 1) along the profile's log K range (1 = log-uniform;
    # 3: half the frames in the top 21 % of the range, as at night).
    gain_skew: float = 3.0
    # Small-pixel sensors (phones, automotive): `area` times fewer electrons per output level.
    p_small_pixel: float = 0.5
    small_pixel_area_range: tuple[float, float] = (2.0, 8.0)
    small_pixel_adc_bits: tuple[int, int] = (10, 12)
    # Digital gain after the ADC (the frame pushed brighter than the analogue gain allows).
    p_digital_gain: float = 0.4
    digital_gain_range: tuple[float, float] = (1.0, 4.0)
    p_tukey: float = 0.5           # read noise Tukey-lambda (heavy tails) instead of Gaussian
    p_banding: float = 0.3         # sinusoidal row banding on top of the random row offsets
    banding_ratio_range: tuple[float, float] = (0.5, 2.0)   # amplitude / row-noise std
    banding_period_range: tuple[float, float] = (8.0, 64.0)  # rows

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "NoiseModelConfig":
        cfg = dataclass_from_mapping(cls, data, "sensor noise")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        unknown = [p for p in self.profiles if p not in PROFILES]
        if unknown or not self.profiles:
            raise ValueError(f"sensor noise profiles must be among {sorted(PROFILES)}, got {list(self.profiles)}")
        if len(self.profile_weights) != len(self.profiles) or min(self.profile_weights) < 0 \
                or sum(self.profile_weights) <= 0:
            raise ValueError("sensor noise profile_weights: one weight >= 0 per profile, not all 0")
        if self.gain_skew <= 0:
            raise ValueError(f"sensor noise gain_skew must be > 0, got {self.gain_skew}")
        for name in ("p_small_pixel", "p_digital_gain", "p_tukey", "p_banding"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"sensor noise {name} must be a probability")
        for name in ("small_pixel_area_range", "digital_gain_range", "banding_ratio_range", "banding_period_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"sensor noise {name} must be [low, high] with 0 < low <= high")
        if self.small_pixel_area_range[0] < 1 or self.digital_gain_range[0] < 1:
            raise ValueError("sensor noise area and digital gain ranges must be >= 1")
        if not 8 <= self.small_pixel_adc_bits[0] <= self.small_pixel_adc_bits[1] <= 16:
            raise ValueError("sensor noise small_pixel_adc_bits must lie in [8, 16]")


@dataclass(frozen=True)
class SensorNoise:
    """One frame's noise, referred to output white = 1 (linear light)."""

    shot_gain: float = 0.0         # shot-noise variance per unit signal (= K_eff / white_dn)
    read_sigma: float = 0.0        # read-noise std
    tukey_lambda: float | None = None  # None: Gaussian read noise
    row_sigma: float = 0.0         # per-row offset std
    banding: float = 0.0           # sinusoid amplitude (rows)
    banding_period: float = 32.0
    quant_step: float = 0.0        # ADC step (times the digital gain)
    profile: str = ""
    k: float = 0.0                 # analogue system gain, DN/e-
    area: float = 1.0
    digital_gain: float = 1.0

    def read_variance(self) -> float:
        return self.read_sigma**2 * (tukey_variance(self.tukey_lambda) if self.tukey_lambda is not None else 1.0)

    def variance(self, signal: np.ndarray | float) -> np.ndarray | float:
        """Expected variance of a pixel at `signal` (before clipping)."""
        return (self.shot_gain * np.maximum(signal, 0.0) + self.read_variance() + self.row_sigma**2
                + self.banding**2 / 2 + self.quant_step**2 / 12)


def tukey_quantile(u: np.ndarray, lam: float) -> np.ndarray:
    """Quantile function of the standard Tukey-lambda distribution."""
    if abs(lam) < 1e-6:
        return np.log(u / (1 - u))
    return (u**lam - (1 - u) ** lam) / lam


def tukey_variance(lam: float) -> float:
    """Variance of the standard Tukey-lambda distribution (finite for lambda > -1/2)."""
    if lam <= -0.5:
        raise ValueError(f"Tukey-lambda variance is infinite for lambda <= -1/2, got {lam}")
    if abs(lam) < 1e-6:
        return math.pi**2 / 3
    beta = math.exp(2 * math.lgamma(lam + 1) - math.lgamma(2 * lam + 2))
    return 2 / lam**2 * (1 / (1 + 2 * lam) - beta)


def _beta_skewed(rng: np.random.Generator, skew: float) -> float:
    return float(rng.random() ** (1.0 / skew))  # Beta(skew, 1) by inversion


def _envelope(rng: np.random.Generator, which: str, base: LogLinear) -> LogLinear:
    (s0, s1), (b0, b1) = _ENVELOPE[which]
    return LogLinear(float(rng.uniform(s0, s1)), float(rng.uniform(b0, b1)), base.spread)


def sample_sensor_noise(rng: np.random.Generator, cfg: NoiseModelConfig | None = None) -> SensorNoise:
    """Draw one frame's camera, gain and noise (see the module docstring)."""
    cfg = cfg or NoiseModelConfig()
    w = np.asarray(cfg.profile_weights, np.float64)
    prof = PROFILES[cfg.profiles[int(rng.choice(len(w), p=w / w.sum()))]]
    read_rel, row_rel, tukey_rel = prof.read, prof.row, prof.tukey
    if prof.name == "eld_envelope":
        read_rel, row_rel = _envelope(rng, "read", prof.read), _envelope(rng, "row", prof.row)
        tukey_rel = _envelope(rng, "tukey", prof.tukey) if prof.tukey else None
    lo, hi = prof.k_range
    k = math.exp(math.log(lo) + _beta_skewed(rng, cfg.gain_skew) * (math.log(hi) - math.log(lo)))
    area, bits = 1.0, prof.adc_bits
    if rng.random() < cfg.p_small_pixel:
        area = float(math.exp(rng.uniform(*np.log(cfg.small_pixel_area_range))))
        bits = int(rng.integers(cfg.small_pixel_adc_bits[0], cfg.small_pixel_adc_bits[1] + 1))
    digital = float(math.exp(rng.uniform(*np.log(cfg.digital_gain_range)))) if rng.random() < cfg.p_digital_gain else 1.0
    scale = area * digital / prof.white_dn  # DN at the analogue gain -> output units
    lam = None
    if tukey_rel is not None and prof.tukey_lambdas and rng.random() < cfg.p_tukey:
        lam = float(rng.choice(prof.tukey_lambdas))
        read = tukey_rel.sample(k, rng) * scale
    else:
        read = read_rel.sample(k, rng) * scale
    row = row_rel.sample(k, rng) * scale
    band, period = 0.0, 32.0
    if rng.random() < cfg.p_banding:
        band = float(rng.uniform(*cfg.banding_ratio_range)) * row
        period = float(rng.uniform(*cfg.banding_period_range))
    # The ADC's step is one DN of a `bits`-bit converter over the same range, times the digital gain.
    step = digital * 2.0 ** (prof.adc_bits - bits) / prof.white_dn
    return SensorNoise(shot_gain=k * area * digital / prof.white_dn, read_sigma=read, tukey_lambda=lam,
                       row_sigma=row, banding=band, banding_period=period, quant_step=step,
                       profile=prof.name, k=k, area=area, digital_gain=digital)


def apply_sensor_noise(signal: np.ndarray, noise: SensorNoise, rng: np.random.Generator) -> np.ndarray:
    """`signal` (H x W or H x W x C, output units, >= 0 expected) with the frame's noise, float32.

    Shot noise is exact Poisson photon counting; row offsets and banding are shared by every
    pixel (and channel) of a row; quantisation rounds to the ADC step. Not clipped.
    """
    sig = np.maximum(signal, 0.0).astype(np.float32, copy=False)
    if noise.shot_gain > 0:
        out = rng.poisson(sig / noise.shot_gain).astype(np.float32) * np.float32(noise.shot_gain)
    else:
        out = sig.copy()
    if noise.read_sigma > 0:
        if noise.tukey_lambda is None:
            out += noise.read_sigma * rng.standard_normal(sig.shape, dtype=np.float32)
        else:
            u = rng.uniform(1e-7, 1 - 1e-7, sig.shape)
            out += (noise.read_sigma * tukey_quantile(u, noise.tukey_lambda)).astype(np.float32)
    h = sig.shape[0]
    row_shape = (h,) + (1,) * (sig.ndim - 1)
    if noise.row_sigma > 0:
        out += noise.row_sigma * rng.standard_normal(row_shape, dtype=np.float32)
    if noise.banding > 0:
        rows = np.arange(h, dtype=np.float32).reshape(row_shape)
        out += noise.banding * np.sin(2 * np.pi * rows / noise.banding_period + rng.uniform(0, 2 * np.pi))
    if noise.quant_step > 0:
        out = np.round(out / noise.quant_step) * np.float32(noise.quant_step)
    return out.astype(np.float32, copy=False)


# Noise of the legacy ranges, for comparison in docs and tests: the largest shot gain and read std
# either synthesis path drew before the calibrated model (SynthesisConfig / CameraConfig defaults).
LEGACY_MAX_SHOT_GAIN = 0.004
LEGACY_MAX_READ_SIGMA = 0.004


def noise_summary(noise: SensorNoise) -> dict[str, float]:
    """Scalars for logs: the noise std at output level 0.1 and its terms."""
    return {"shot_gain": noise.shot_gain, "read_sigma": noise.read_sigma, "row_sigma": noise.row_sigma,
            "sigma_at_0.1": float(math.sqrt(noise.variance(0.1))), "k": noise.k, "area": noise.area,
            "digital_gain": noise.digital_gain}

