"""Degradation as a camera makes it: the RAW-domain path (the second synthesis mode).

clean sRGB -> linear -> inverse colour matrix -> inverse white balance (camera RGB) -> scene
light level (a dark base with lit pools: mixed lighting) -> lights boosted and blurred before
clipping (camera shake plus rotation about a random centre: spatially varying) -> Bayer mosaic
-> shot and read noise scaled by the ISO gain, per-row offsets, banding -> clipping at the sensor
white level and ADC quantisation -> demosaic (OpenCV) -> white balance and colour matrix ->
sRGB tone curve -> optional ISP denoise / sharpen -> optional JPEG.

The target is the clean photo. The labels stay exact: the exposure map is the light level that
was applied, the blur map the per-pixel trajectory length (shake plus rotation arc), the noise
map the sensor noise std referred to linear output light. A share of pairs (`p_identity`) is the
clean photo itself, and a share (`p_mild`) is bright and only lightly noisy, so well-exposed frames
are seen too; with `mild_target: input` those mild frames are their own target (a frame that is
fine as it is should come back as it is). With `noise_model: calibrated` the sensor noise of the
dark frames (shot, read, row, banding, ADC quantisation) comes from the camera-calibrated model of
`sensor_noise` instead of the ISO-gain ranges, and `blur_model: trajectories` draws the shake from
`motion_trajectories`. No torch here: numpy + OpenCV only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode
from dap_led_ros.settings import dataclass_from_mapping
from dap_led_ros.training.labels import DegradationLabels, LabelRule
from dap_led_ros.training.motion_trajectories import TrajectoryConfig, trajectory_kernel
from dap_led_ros.training.sensor_noise import NoiseModelConfig, SensorNoise, apply_sensor_noise, sample_sensor_noise
from dap_led_ros.training.synthesis import (
    SyntheticPair,
    check_models,
    check_probabilities_and_ranges,
    highlight_mask,
    log_uniform,
    motion_blur_kernel,
)

# OpenCV Bayer codes by the colour of the top-left 2x2 (first row, second pixel of the first row).
_BAYER_CODES = {"RGGB": cv2.COLOR_BayerRGGB2RGB, "GRBG": cv2.COLOR_BayerGRBG2RGB,
                "GBRG": cv2.COLOR_BayerGBRG2RGB, "BGGR": cv2.COLOR_BayerBGGR2RGB}
# Channel index (R=0, G=1, B=2) of each pixel of the 2x2 tile, per pattern.
_BAYER_TILES = {"RGGB": ((0, 1), (1, 2)), "GRBG": ((1, 0), (2, 1)),
                "GBRG": ((1, 2), (0, 1)), "BGGR": ((2, 1), (1, 0))}


@dataclass
class CameraConfig:
    """Sampling ranges of the RAW-domain path. Field defaults are the single source of defaults."""

    p_identity: float = 0.1        # pairs whose input is the clean photo (labels exactly "clear")
    p_mild: float = 0.15           # bright, lightly noisy pairs (light level in mild_exposure_range)
    mild_exposure_range: tuple[float, float] = (0.45, 1.0)
    mild_target: str = "clean"     # "clean": the photo (learn to fix it) | "input": the mild frame itself
    exposure_range: tuple[float, float] = (0.03, 0.35)   # scene light level times ISO gain, log-uniform
    p_mixed_light: float = 0.5     # lit pools (street lights, headlights) on a darker base
    pools_range: tuple[int, int] = (1, 4)
    pool_gain_range: tuple[float, float] = (2.0, 8.0)    # lit/dark ratio at a pool's centre
    iso_gain_range: tuple[float, float] = (1.0, 16.0)    # analogue gain: noise grows with it
    shot_gain_base: float = 2.5e-4  # shot-noise variance per unit signal at gain 1
    read_noise_base: float = 6e-4   # read-noise std at gain 1 (grows as sqrt(1 + gain^2 / 16))
    row_noise_ratio: tuple[float, float] = (0.0, 0.4)    # per-row offset std / read-noise std
    p_banding: float = 0.3
    adc_bits_range: tuple[int, int] = (10, 14)
    black_level: float = 0.0625    # of the white level
    wb_red_range: tuple[float, float] = (1.6, 2.6)
    wb_blue_range: tuple[float, float] = (1.3, 2.4)
    ccm_strength_range: tuple[float, float] = (0.0, 0.5)  # off-diagonal mixing of the colour matrix
    p_blur: float = 0.8
    shake_length_range: tuple[float, float] = (2.0, 20.0)
    p_rotation: float = 0.5
    rotation_deg_range: tuple[float, float] = (0.2, 2.0)  # roll during the exposure
    highlight_gain_range: tuple[float, float] = (1.5, 10.0)
    p_isp_denoise: float = 0.4
    p_sharpen: float = 0.3
    p_jpeg: float = 0.5
    jpeg_quality_range: tuple[int, int] = (55, 95)
    label_rule: LabelRule = field(default_factory=LabelRule)
    noise_model: str = "legacy"    # "calibrated": `sensor` (sensor_noise.py) on the dark frames
    sensor: NoiseModelConfig = field(default_factory=NoiseModelConfig)
    blur_model: str = "legacy"     # "trajectories": `trajectory` (motion_trajectories.py)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "CameraConfig":
        cfg = dataclass_from_mapping(cls, data, "camera")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        check_probabilities_and_ranges(self, "camera")
        if self.mild_target not in ("clean", "input"):
            raise ValueError(f"camera.mild_target must be 'clean' or 'input', got {self.mild_target!r}")
        if self.p_identity + self.p_mild > 1:
            raise ValueError("camera.p_identity + camera.p_mild must be <= 1")
        for name in ("exposure_range", "mild_exposure_range"):
            lo, hi = getattr(self, name)
            if lo <= 0 or hi > 1:
                raise ValueError(f"camera.{name} must lie in (0, 1], got {(lo, hi)}")
        if self.iso_gain_range[0] < 1 or self.pool_gain_range[0] < 1:
            raise ValueError("camera.iso_gain_range and camera.pool_gain_range values must be >= 1")
        if not 8 <= self.adc_bits_range[0] <= self.adc_bits_range[1] <= 16:
            raise ValueError(f"camera.adc_bits_range must lie in [8, 16], got {self.adc_bits_range}")
        if not 0 <= self.black_level < 0.5:
            raise ValueError(f"camera.black_level must be in [0, 0.5), got {self.black_level}")
        check_models(self, "camera")
        self.label_rule.validate()


@dataclass(eq=False)
class CameraParams:
    """One sampled camera degradation; `identity` means the input is the clean photo."""

    identity: bool = False
    keep_input: bool = False       # the target is the degraded frame itself (mild frames)
    exposure: float = 1.0
    pools: tuple[tuple[float, float, float, float], ...] = ()  # (y, x, radius, gain), relative units
    iso_gain: float = 1.0
    shot_gain: float = 0.0         # shot-noise variance per unit linear sensor signal
    read_noise: float = 0.0        # read-noise std, linear sensor units
    row_noise: float = 0.0         # per-row offset std, linear sensor units
    banding: tuple[float, float] = (0.0, 0.0)  # amplitude, period in rows
    adc_bits: int = 12
    black_level: float = 0.0625
    wb: tuple[float, float, float] = (2.0, 1.0, 1.8)
    ccm: np.ndarray | None = None  # 3x3 camera RGB -> linear sRGB, rows sum to 1
    pattern: str = "RGGB"
    shake_kernel: np.ndarray | None = None
    shake_length: float = 0.0
    rotation_deg: float = 0.0
    rotation_centre: tuple[float, float] = (0.5, 0.5)
    highlight_gain: float = 1.0
    isp_denoise: bool = False
    sharpen: float = 0.0
    jpeg_quality: int | None = None
    sensor: SensorNoise | None = None  # calibrated sensor noise (replaces the noise and ADC terms above)
    blur_kind: str = ""


def _random_ccm(rng: np.random.Generator, strength: float) -> np.ndarray:
    """A colour matrix camera RGB -> sRGB: identity plus mixing, each row summing to 1 (greys stay grey)."""
    off = rng.uniform(0.0, strength, (3, 3)) * (1 - np.eye(3))
    ccm = np.eye(3) * (1 + off.sum(axis=1, keepdims=True)) - off
    return ccm.astype(np.float32)


def sample_camera_params(rng: np.random.Generator, cfg: CameraConfig | None = None) -> CameraParams:
    """Draw one camera degradation from the config's ranges."""
    cfg = cfg or CameraConfig()
    u = rng.random()
    if u < cfg.p_identity:
        return CameraParams(identity=True)
    mild = u < cfg.p_identity + cfg.p_mild
    exposure = log_uniform(rng, *(cfg.mild_exposure_range if mild else cfg.exposure_range))
    pools: tuple = ()
    if not mild and rng.random() < cfg.p_mixed_light:
        n = int(rng.integers(cfg.pools_range[0], cfg.pools_range[1] + 1))
        pools = tuple((float(rng.random()), float(rng.random()), float(rng.uniform(0.1, 0.4)),
                       float(log_uniform(rng, *cfg.pool_gain_range))) for _ in range(n))
    gain = 1.0 if mild else log_uniform(rng, *cfg.iso_gain_range)
    read = cfg.read_noise_base * math.sqrt(1 + gain**2 / 16)
    shake, length, rotation, kind = None, 0.0, 0.0, ""
    if not mild and rng.random() < cfg.p_blur:
        length = float(rng.uniform(*cfg.shake_length_range))
        if cfg.blur_model == "trajectories":
            shake, kind = trajectory_kernel(length, rng, cfg.trajectory)
        else:
            shake, kind = motion_blur_kernel(length, rng), "legacy"
        if rng.random() < cfg.p_rotation:
            rotation = float(rng.uniform(*cfg.rotation_deg_range)) * (1 if rng.random() < 0.5 else -1)
    bands = (float(rng.uniform(0.2, 1.0) * read), float(rng.uniform(8, 64))) if rng.random() < cfg.p_banding else (0.0, 0.0)
    jpeg = int(rng.integers(cfg.jpeg_quality_range[0], cfg.jpeg_quality_range[1] + 1)) \
        if rng.random() < cfg.p_jpeg else None
    sensor = sample_sensor_noise(rng, cfg.sensor) if cfg.noise_model == "calibrated" and not mild else None
    return CameraParams(
        keep_input=mild and cfg.mild_target == "input",
        exposure=exposure, pools=pools, iso_gain=gain, shot_gain=cfg.shot_gain_base * gain, read_noise=read,
        row_noise=float(rng.uniform(*cfg.row_noise_ratio) * read), banding=bands,
        adc_bits=int(rng.integers(cfg.adc_bits_range[0], cfg.adc_bits_range[1] + 1)),
        black_level=cfg.black_level,
        wb=(float(rng.uniform(*cfg.wb_red_range)), 1.0, float(rng.uniform(*cfg.wb_blue_range))),
        ccm=_random_ccm(rng, float(rng.uniform(*cfg.ccm_strength_range))),
        pattern=str(rng.choice(sorted(_BAYER_CODES))),
        shake_kernel=shake, shake_length=length, rotation_deg=rotation,
        rotation_centre=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
        highlight_gain=log_uniform(rng, *cfg.highlight_gain_range) if not mild else 1.0,
        isp_denoise=bool(rng.random() < cfg.p_isp_denoise),
        sharpen=float(rng.uniform(0.2, 0.8)) if rng.random() < cfg.p_sharpen else 0.0,
        jpeg_quality=jpeg,
        sensor=sensor,
        blur_kind=kind,
    )


def _light_map(p: CameraParams, h: int, w: int) -> np.ndarray:
    """The scene's light level per pixel: `exposure`, raised towards lit pools (capped at 1)."""
    light = np.full((h, w), p.exposure, np.float32)
    if p.pools:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        boost = np.ones((h, w), np.float32)
        scale = float(max(h, w))
        for y, x, r, g in p.pools:
            d2 = ((yy - y * h) ** 2 + (xx - x * w) ** 2) / (r * scale) ** 2
            boost += (g - 1) * np.exp(-0.5 * d2)
        light = light * boost
    return np.minimum(light, 1.0)


def _rotation_blur(img: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """Average of the frame rotated through `degrees` about `centre` (a roll during the exposure)."""
    h, w = img.shape[:2]
    cy, cx = centre[0] * h, centre[1] * w
    steps = max(3, int(math.ceil(abs(degrees) * math.pi / 180 * max(h, w))))  # ~1 px per step at the edge
    steps = min(steps, 24)
    acc = np.zeros_like(img)
    for a in np.linspace(-degrees / 2, degrees / 2, steps):
        m = cv2.getRotationMatrix2D((cx, cy), float(a), 1.0)
        acc += cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return acc / steps


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """H x W Bayer samples of an H x W x 3 image (H, W even)."""
    out = np.empty(rgb.shape[:2], np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            out[dy::2, dx::2] = rgb[dy::2, dx::2, _BAYER_TILES[pattern][dy][dx]]
    return out


def _legacy_sensor(signal: np.ndarray, p: CameraParams, rng: np.random.Generator) -> np.ndarray:
    """Noise sized by the ISO gain drawn when sampling, then the ADC; 16-bit Bayer samples."""
    he = signal.shape[0]
    noisy = signal + np.sqrt(p.shot_gain * np.maximum(signal, 0.0)) * rng.standard_normal(signal.shape, dtype=np.float32)
    noisy += p.read_noise * rng.standard_normal(signal.shape, dtype=np.float32)
    if p.row_noise:
        noisy += p.row_noise * rng.standard_normal((he, 1), dtype=np.float32)
    if p.banding[0]:
        rows = np.arange(he, dtype=np.float32)[:, None]
        noisy += p.banding[0] * np.sin(2 * math.pi * rows / p.banding[1] + rng.uniform(0, 2 * math.pi))
    # ADC: black level offset, clipping at white, quantisation; black subtracted again.
    levels = 2**p.adc_bits - 1
    bl = p.black_level
    raw = np.clip(np.round((noisy * (1 - bl) + bl) * levels), 0, levels)
    return np.round(np.clip(raw / levels - bl, 0.0, 1.0 - bl) / (1 - bl) * 65535).astype(np.uint16)


def synthesize_camera(clean_rgb: np.ndarray, p: CameraParams, rng: np.random.Generator,
                      rule: LabelRule | None = None) -> SyntheticPair:
    """Degrade a clean HxWx3 uint8 RGB photo through the RAW-domain path. `rng` draws the noise."""
    if clean_rgb.dtype != np.uint8 or clean_rgb.ndim != 3 or clean_rgb.shape[2] != 3:
        raise ValueError(f"clean image must be HxWx3 uint8 RGB, got {clean_rgb.dtype} {clean_rgb.shape}")
    h, w = clean_rgb.shape[:2]
    rule = rule or LabelRule()
    if p.identity:
        return SyntheticPair(low=clean_rgb.copy(), high=clean_rgb.copy(),
                             labels=DegradationLabels.clean(h, w, rule), params=p)
    # Even sides for the 2x2 mosaic: the last row/column is replicated and dropped again below.
    he, we = h + h % 2, w + w % 2
    scene = srgb_decode(clean_rgb)
    if (he, we) != (h, w):
        scene = cv2.copyMakeBorder(scene, 0, he - h, 0, we - w, cv2.BORDER_REPLICATE)
    ccm = p.ccm if p.ccm is not None else np.eye(3, dtype=np.float32)
    wb = np.asarray(p.wb, np.float32)
    cam = np.clip(scene @ np.linalg.inv(ccm).T.astype(np.float32), 0.0, None) / wb  # camera RGB
    light = _light_map(p, he, we)
    mask = highlight_mask(scene, 1.0, 0.8)
    radiance = cam * (1.0 + (p.highlight_gain / light - 1.0) * mask)[:, :, None]
    blur = np.zeros((he, we), np.float32)
    if p.shake_kernel is not None:
        radiance = cv2.filter2D(radiance, -1, p.shake_kernel, borderType=cv2.BORDER_REFLECT)
        blur += p.shake_length
    if p.rotation_deg:
        radiance = _rotation_blur(radiance, p.rotation_deg, p.rotation_centre)
        yy, xx = np.mgrid[0:he, 0:we].astype(np.float32)
        arc = np.hypot(yy - p.rotation_centre[0] * he, xx - p.rotation_centre[1] * we) * abs(p.rotation_deg) * math.pi / 180
        blur = np.sqrt(blur**2 + arc**2)
    signal = _mosaic(radiance * light[:, :, None], p.pattern)  # linear sensor units, white = 1
    if p.sensor is not None:  # calibrated: shot, read, row, banding and the ADC's step in one model
        bayer16 = np.round(np.clip(apply_sensor_noise(signal, p.sensor, rng), 0.0, 1.0) * 65535).astype(np.uint16)
    else:
        bayer16 = _legacy_sensor(signal, p, rng)
    demosaiced = cv2.cvtColor(bayer16, _BAYER_CODES[p.pattern]).astype(np.float32) / 65535.0
    # White balance, then clipping to the white level (saturated lights stay white, not magenta).
    out = np.clip(demosaiced * wb, 0.0, 1.0) @ ccm.T
    low = srgb_encode(out)[:h, :w]
    if p.isp_denoise:
        low = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(low), None, 3, 5, 5, 15)
    if p.sharpen:
        soft = cv2.GaussianBlur(low, (0, 0), 1.0)
        low = cv2.addWeighted(low, 1 + p.sharpen, soft, -p.sharpen, 0)
    if p.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(low[:, :, ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, int(p.jpeg_quality)])
        if not ok:
            raise RuntimeError("OpenCV JPEG encoding failed")
        low = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    # Noise referred to linear output light: sensor std times the mean white-balance gain.
    if p.sensor is not None:
        sensor_sd = np.sqrt(p.sensor.variance(np.clip(signal, 0, 1)))
    else:
        sensor_sd = np.sqrt(p.shot_gain * np.clip(signal, 0, 1) + p.read_noise**2)
    labels = DegradationLabels(exposure=light[:h, :w].copy(), blur_length=blur[:h, :w].copy(),
                               noise_sigma=(sensor_sd * float(wb.mean()))[:h, :w].astype(np.float32), rule=rule)
    low = np.ascontiguousarray(low)
    return SyntheticPair(low=low, high=low.copy() if p.keep_input else clean_rgb.copy(), labels=labels, params=p)
