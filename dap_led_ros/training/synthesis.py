"""LOL-Blur-like degradation synthesis: clean sRGB photo -> (dark, blurry, noisy) low image + labels.

Pipeline, in linear light (sRGB decoded):
1. scene = clean photo (+ optional small synthetic light sources, which the clean target also shows);
2. highlight boosting: the brightest pixels (light sources, top percentile of luminance) are
   multiplied by `highlight_gain / exposure`, so after darkening they are still
   `highlight_gain` times over-exposed;
3. camera-shake motion blur with a random-trajectory kernel, applied *before* any clipping so
   boosted lights smear into saturated streaks; optionally its strength varies smoothly across
   the frame (blend of blurred and sharp, weight map `w`);
4. darkening by a smoothly varying exposure map (a coarse random field around `exposure`);
5. Poisson-Gaussian sensor noise (shot noise with variance `shot_gain * signal`, plus read noise),
   or with `noise_model: calibrated` the camera-calibrated model of `sensor_noise` (shot, read,
   row, banding, quantisation); `blur_model: trajectories` draws the kernel from
   `motion_trajectories` (camera shake and vehicle motion) instead of the legacy random path;
6. clip to [0, 1], sRGB encode, optional JPEG.

The high (target) image is the clean photo itself (with the synthetic lights drawn in, if any).
The labels are per-pixel maps of what was applied, and `patch_labels(grid)` turns them into a
soft distribution over `prompts.DEGRADATION_PROMPTS` for every cell of a grid x grid split of the frame.

No torch here: numpy + OpenCV only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

import cv2
import numpy as np

from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode
from dap_led_ros.settings import dataclass_from_mapping
from dap_led_ros.training.labels import DegradationLabels, LabelRule
from dap_led_ros.training.motion_trajectories import TrajectoryConfig, rasterise, trajectory_kernel
from dap_led_ros.training.sensor_noise import NoiseModelConfig, SensorNoise, apply_sensor_noise, sample_sensor_noise

NOISE_MODELS = ("legacy", "calibrated")
BLUR_MODELS = ("legacy", "trajectories")

# Colours (linear RGB, max 1) of synthetic lights: sodium, warm white, cool LED, red, green.
_LIGHT_COLOURS = np.array(
    [[1.0, 0.55, 0.2], [1.0, 0.85, 0.6], [0.85, 0.92, 1.0], [1.0, 0.12, 0.08], [0.3, 1.0, 0.45]],
    dtype=np.float32,
)
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # linear-light luminance weights


# ---------------------------------------------------------------------------------------------
# Configuration and parameters


@dataclass
class SynthesisConfig:
    """Sampling ranges of the degradations. The field defaults are the single source of defaults."""

    # Share of pairs whose input is the clean photo itself (target = input, labels exactly "clear"):
    # frames that need no help. 0 keeps the random stream of earlier configs unchanged.
    p_identity: float = 0.0
    # Exposure factor (linear light), log-uniform; the exposure map stays inside this range.
    exposure_range: tuple[float, float] = (0.03, 0.3)
    # Probability that exposure varies smoothly across the frame, and the max/min ratio range.
    p_exposure_varies: float = 0.7
    exposure_spread_range: tuple[float, float] = (1.5, 4.0)
    # Probability of camera-shake blur and its trajectory length in pixels (uniform).
    p_blur: float = 0.85
    blur_length_range: tuple[float, float] = (3.0, 25.0)
    # Max turning rate of the trajectory (radians per pixel travelled).
    blur_max_curvature: float = 0.25
    # Probability that blur strength varies across the frame, and the weight drop range.
    p_blur_varies: float = 0.3
    blur_spread_range: tuple[float, float] = (0.3, 1.0)
    # Sensor noise in linear light: read-noise std and shot-noise gain (variance per unit
    # signal), both log-uniform. `exact_poisson` draws real Poisson counts (~4x slower) instead
    # of the Gaussian with the same signal-dependent variance.
    read_noise_range: tuple[float, float] = (0.0005, 0.004)
    shot_gain_range: tuple[float, float] = (0.0002, 0.004)
    exact_poisson: bool = False
    # JPEG compression probability and quality range.
    p_jpeg: float = 0.3
    jpeg_quality_range: tuple[int, int] = (60, 95)
    # Highlights: factor by which they stay over-exposed after darkening (log-uniform), the top
    # percentage of luminance treated as light sources, and the minimum linear luminance for that.
    highlight_gain_range: tuple[float, float] = (1.5, 12.0)
    highlight_top_percent: float = 1.0
    highlight_min_level: float = 0.8
    # Synthetic point lights added to the scene (count range inclusive, Gaussian radius in px,
    # peak intensity in clean-image linear units).
    lights_range: tuple[int, int] = (0, 3)
    light_radius_range: tuple[float, float] = (1.0, 4.0)
    light_intensity_range: tuple[float, float] = (1.0, 3.0)
    # Coarse grid size of the smooth random fields (exposure, blur strength).
    field_grid: int = 3
    # Patch-label rule (see `LabelRule`).
    label_rule: LabelRule = field(default_factory=LabelRule)
    # "legacy": the read/shot ranges above; "calibrated": `sensor` (sensor_noise.py).
    noise_model: str = "legacy"
    sensor: NoiseModelConfig = field(default_factory=NoiseModelConfig)
    # "legacy": `motion_blur_kernel`; "trajectories": `trajectory` (motion_trajectories.py).
    blur_model: str = "legacy"
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "SynthesisConfig":
        cfg = dataclass_from_mapping(cls, data, "synthesis")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return plain_dict(self)

    def validate(self) -> None:
        check_probabilities_and_ranges(self, "synthesis")
        lo, hi = self.exposure_range
        if lo <= 0 or hi > 1:
            raise ValueError(f"synthesis.exposure_range must lie in (0, 1], got {self.exposure_range}")
        if self.exposure_spread_range[0] < 1:
            raise ValueError("synthesis.exposure_spread_range values must be >= 1 (max/min ratio)")
        if self.blur_spread_range[1] > 1:
            raise ValueError("synthesis.blur_spread_range values must be <= 1")
        if self.highlight_gain_range[0] < 1:
            raise ValueError("synthesis.highlight_gain_range values must be >= 1")
        q_lo, q_hi = self.jpeg_quality_range
        if not 1 <= q_lo <= q_hi <= 100:
            raise ValueError(f"synthesis.jpeg_quality_range must be within [1, 100], got {self.jpeg_quality_range}")
        if self.field_grid < 2:
            raise ValueError("synthesis.field_grid must be >= 2")
        check_models(self, "synthesis")
        self.label_rule.validate()


def check_models(cfg: Any, section: str) -> None:
    """The noise and blur model names, and their nested settings."""
    if cfg.noise_model not in NOISE_MODELS:
        raise ValueError(f"{section}.noise_model must be one of {NOISE_MODELS}, got {cfg.noise_model!r}")
    if cfg.blur_model not in BLUR_MODELS:
        raise ValueError(f"{section}.blur_model must be one of {BLUR_MODELS}, got {cfg.blur_model!r}")
    cfg.sensor.validate()
    cfg.trajectory.validate()


def plain_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as YAML-ready values (tuples as lists, nested dataclasses as dicts)."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
    return {f.name: plain(asdict(v) if is_dataclass(v := getattr(cfg, f.name)) else v) for f in fields(cfg)}


def check_probabilities_and_ranges(cfg: Any, section: str) -> None:
    """`p_*` fields must be probabilities, tuple fields [low, high] pairs with 0 <= low <= high."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if f.name.startswith("p_") and not 0.0 <= value <= 1.0:
            raise ValueError(f"{section}.{f.name} must be a probability in [0, 1], got {value}")
        if isinstance(value, tuple):
            if len(value) != 2:
                raise ValueError(f"{section}.{f.name} must be a [low, high] pair, got {list(value)}")
            lo, hi = value
            if lo > hi or lo < 0:
                raise ValueError(f"{section}.{f.name} must be [low, high] with 0 <= low <= high, got {value}")


@dataclass(frozen=True)
class LightSource:
    """A small Gaussian light added to the scene (position relative to the frame)."""

    y: float  # 0 = top, 1 = bottom
    x: float  # 0 = left, 1 = right
    radius: float  # Gaussian sigma in pixels
    colour: tuple[float, float, float]  # linear RGB, max 1
    intensity: float  # peak, in clean-image linear units (>= 1 saturates the clean image too)


@dataclass(eq=False)  # holds arrays: compare fields explicitly
class DegradationParams:
    """One sampled degradation. The defaults mean "no degradation" (low == high)."""

    exposure: float = 1.0  # geometric centre of the exposure map
    exposure_spread: float = 1.0  # max/min ratio of the exposure map (1 = uniform)
    exposure_field: np.ndarray | None = None  # coarse grid in [-1, 1]; None = uniform
    blur_kernel: np.ndarray | None = None  # normalised, odd square; None = no blur
    blur_length: float = 0.0  # trajectory length of the kernel in pixels
    blur_spread: float = 0.0  # blur weight falls to (1 - blur_spread) where the field is 1
    blur_field: np.ndarray | None = None  # coarse grid in [0, 1]; None = uniform blur
    read_noise: float = 0.0  # std, linear light
    shot_gain: float = 0.0  # shot-noise variance per unit linear signal
    exact_poisson: bool = False
    jpeg_quality: int | None = None
    highlight_gain: float = 1.0  # highlights stay this many times over-exposed after darkening
    highlight_top_percent: float = 1.0
    highlight_min_level: float = 0.8
    lights: tuple[LightSource, ...] = ()
    sensor: SensorNoise | None = None  # calibrated sensor noise (then read_noise/shot_gain are summaries)
    blur_kind: str = ""  # "", "legacy", "shake" or "vehicle"

    def __post_init__(self) -> None:
        if not 0 < self.exposure <= 1:
            raise ValueError(f"exposure must be in (0, 1], got {self.exposure}")
        if self.exposure_spread < 1:
            raise ValueError(f"exposure_spread must be >= 1, got {self.exposure_spread}")
        if self.blur_kernel is not None:
            k = self.blur_kernel
            if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
                raise ValueError(f"blur_kernel must be an odd square 2-D array, got shape {k.shape}")
        if not 0 <= self.blur_spread <= 1:
            raise ValueError(f"blur_spread must be in [0, 1], got {self.blur_spread}")
        if self.read_noise < 0 or self.shot_gain < 0:
            raise ValueError("read_noise and shot_gain must be >= 0")
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100] or None, got {self.jpeg_quality}")
        if self.highlight_gain < 1:
            raise ValueError(f"highlight_gain must be >= 1, got {self.highlight_gain}")

    def scalars(self) -> dict[str, float]:
        """Scalar summary (for logs and dataset items)."""
        return {
            "exposure": float(self.exposure),
            "exposure_spread": float(self.exposure_spread),
            "blur_length": float(self.blur_length if self.blur_kernel is not None else 0.0),
            "read_noise": float(self.read_noise),
            "shot_gain": float(self.shot_gain),
            "jpeg_quality": float(self.jpeg_quality or 0),
            "highlight_gain": float(self.highlight_gain),
        }


@dataclass
class SyntheticPair:
    low: np.ndarray  # HxWx3 uint8 RGB, degraded
    high: np.ndarray  # HxWx3 uint8 RGB, clean target
    labels: DegradationLabels
    params: DegradationParams


# ---------------------------------------------------------------------------------------------
# Sampling


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if lo > 0 else float(rng.uniform(lo, hi))


def motion_blur_kernel(length: float, rng: np.random.Generator, max_curvature: float = 0.25) -> np.ndarray:
    """Camera-shake kernel: a random smooth trajectory of arc length `length` px, rasterised.

    The heading turns with a random, temporally correlated rate (up to `max_curvature` rad/px)
    and the speed varies along the path (slow parts collect more light). The kernel sums to 1
    and its centroid is at the centre pixel, so blurring does not shift the image.
    """
    if length <= 0:
        raise ValueError(f"blur length must be > 0, got {length}")
    n = max(32, int(math.ceil(length * 4)))
    turn = np.zeros(n)
    rate_sd = rng.uniform(0.0, max_curvature)
    for t in range(1, n):  # AR(1) turning rate: smooth curves with occasional changes
        turn[t] = 0.9 * turn[t - 1] + rng.normal(0.0, rate_sd)
    speed = np.exp(rng.normal(0.0, 0.4, n))
    step = speed / speed.sum() * length  # arc length adds up to `length`
    heading = rng.uniform(0, 2 * math.pi) + np.cumsum(turn * step)
    pts = np.cumsum(np.stack([step * np.sin(heading), step * np.cos(heading)], axis=1), axis=0)
    return rasterise(pts)  # equal time per sample; the centroid of the light lands on the centre pixel


def sample_params(rng: np.random.Generator, cfg: SynthesisConfig | None = None) -> DegradationParams:
    """Draw one degradation from the config's ranges."""
    cfg = cfg or SynthesisConfig()
    if cfg.p_identity > 0 and rng.random() < cfg.p_identity:
        return DegradationParams()  # no degradation: low == high
    lo, hi = cfg.exposure_range
    spread = 1.0
    exposure_field = None
    if rng.random() < cfg.p_exposure_varies and hi > lo:
        spread = min(log_uniform(rng, *cfg.exposure_spread_range), hi / lo)
        exposure_field = rng.uniform(-1.0, 1.0, (cfg.field_grid, cfg.field_grid)).astype(np.float32)
    # Centre chosen so that centre * spread**(+-1/2) stays inside the exposure range.
    exposure = log_uniform(rng, lo * math.sqrt(spread), hi / math.sqrt(spread))

    kernel, length, blur_spread, blur_field, kind = None, 0.0, 0.0, None, ""
    if rng.random() < cfg.p_blur and cfg.blur_length_range[1] > 0:
        length = float(rng.uniform(*cfg.blur_length_range))
        if length > 0:
            if cfg.blur_model == "trajectories":
                kernel, kind = trajectory_kernel(length, rng, cfg.trajectory)
            else:
                kernel, kind = motion_blur_kernel(length, rng, cfg.blur_max_curvature), "legacy"
            if rng.random() < cfg.p_blur_varies:
                blur_spread = float(rng.uniform(*cfg.blur_spread_range))
                blur_field = rng.uniform(0.0, 1.0, (cfg.field_grid, cfg.field_grid)).astype(np.float32)
        else:
            length = 0.0

    jpeg = None
    if rng.random() < cfg.p_jpeg:
        jpeg = int(rng.integers(cfg.jpeg_quality_range[0], cfg.jpeg_quality_range[1] + 1))
    lights = tuple(
        LightSource(
            y=float(rng.random()),
            x=float(rng.random()),
            radius=float(rng.uniform(*cfg.light_radius_range)),
            colour=tuple(float(c) for c in _LIGHT_COLOURS[rng.integers(len(_LIGHT_COLOURS))]),
            intensity=float(rng.uniform(*cfg.light_intensity_range)),
        )
        for _ in range(int(rng.integers(cfg.lights_range[0], cfg.lights_range[1] + 1)))
    )
    sensor = None
    if cfg.noise_model == "calibrated":
        sensor = sample_sensor_noise(rng, cfg.sensor)
        read_noise, shot_gain = math.sqrt(sensor.read_variance()), sensor.shot_gain
    else:
        read_noise, shot_gain = log_uniform(rng, *cfg.read_noise_range), log_uniform(rng, *cfg.shot_gain_range)
    return DegradationParams(
        exposure=exposure,
        exposure_spread=spread,
        exposure_field=exposure_field,
        blur_kernel=kernel,
        blur_length=length,
        blur_spread=blur_spread,
        blur_field=blur_field,
        read_noise=read_noise,
        shot_gain=shot_gain,
        exact_poisson=cfg.exact_poisson,
        jpeg_quality=jpeg,
        highlight_gain=log_uniform(rng, *cfg.highlight_gain_range),
        highlight_top_percent=cfg.highlight_top_percent,
        highlight_min_level=cfg.highlight_min_level,
        lights=lights,
        sensor=sensor,
        blur_kind=kind,
    )


# ---------------------------------------------------------------------------------------------
# Synthesis


def _upsample_field(coarse: np.ndarray, height: int, width: int) -> np.ndarray:
    """Smooth H x W field from a coarse grid (bicubic, clipped to the grid's value range)."""
    up = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(up, float(coarse.min()), float(coarse.max()))


def _add_lights(scene: np.ndarray, lights: tuple[LightSource, ...]) -> None:
    h, w = scene.shape[:2]
    for light in lights:
        cy, cx = light.y * (h - 1), light.x * (w - 1)
        r = int(math.ceil(4 * light.radius))
        y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 2)
        x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * light.radius**2)).astype(np.float32)
        scene[y0:y1, x0:x1] += light.intensity * blob[:, :, None] * np.asarray(light.colour, np.float32)


def highlight_mask(scene: np.ndarray, top_percent: float, min_level: float) -> np.ndarray:
    """Soft mask (H x W) of light sources: luminance above the top-percentile threshold."""
    luma = scene @ _LUMA
    threshold = max(min_level, float(np.percentile(luma[::4, ::4], 100.0 - top_percent)))
    if threshold >= 1.0 - 1e-6:
        return (luma >= threshold).astype(np.float32)
    return np.clip((luma - threshold) / (1.0 - threshold), 0.0, 1.0)


def _legacy_noise(signal: np.ndarray, params: DegradationParams, rng: np.random.Generator) -> np.ndarray:
    noisy = signal
    if params.shot_gain > 0:
        if params.exact_poisson:
            noisy = rng.poisson(np.maximum(signal, 0.0) / params.shot_gain).astype(np.float32) * params.shot_gain
        else:
            shot_sd = np.sqrt(params.shot_gain * np.maximum(signal, 0.0))
            noisy = signal + shot_sd * rng.standard_normal(signal.shape, dtype=np.float32)
    if params.read_noise > 0:
        noisy = noisy + params.read_noise * rng.standard_normal(signal.shape, dtype=np.float32)
    return noisy


def synthesize(
    clean_rgb: np.ndarray,
    params: DegradationParams,
    rng: np.random.Generator,
    rule: LabelRule | None = None,
) -> SyntheticPair:
    """Degrade a clean HxWx3 uint8 RGB photo. `rng` draws the sensor noise only."""
    if clean_rgb.dtype != np.uint8 or clean_rgb.ndim != 3 or clean_rgb.shape[2] != 3:
        raise ValueError(f"clean image must be HxWx3 uint8 RGB, got {clean_rgb.dtype} {clean_rgb.shape}")
    h, w = clean_rgb.shape[:2]
    scene = srgb_decode(clean_rgb)
    if params.lights:
        scene = scene.copy()
        _add_lights(scene, params.lights)
        high = srgb_encode(scene)
    else:
        high = clean_rgb.copy()

    # Exposure map around the centre value.
    if params.exposure_field is not None and params.exposure_spread > 1:
        f = _upsample_field(params.exposure_field, h, w)
        exposure = (params.exposure * params.exposure_spread ** (0.5 * f)).astype(np.float32)
    else:
        exposure = np.full((h, w), params.exposure, np.float32)

    # Light sources: boost so they stay `highlight_gain` times over-exposed after darkening.
    if params.highlight_gain > 1 or np.any(exposure < 1):
        mask = highlight_mask(scene, params.highlight_top_percent, params.highlight_min_level)
        boost = 1.0 + (params.highlight_gain / exposure - 1.0) * mask
        radiance = scene * boost[:, :, None]
    else:
        radiance = scene

    # Camera shake, before clipping.
    blur_length = np.zeros((h, w), np.float32)
    if params.blur_kernel is not None:
        blurred = cv2.filter2D(radiance, -1, params.blur_kernel, borderType=cv2.BORDER_REFLECT)
        if params.blur_field is not None and params.blur_spread > 0:
            weight = 1.0 - params.blur_spread * _upsample_field(params.blur_field, h, w)
            radiance = radiance + weight[:, :, None] * (blurred - radiance)
            blur_length = (params.blur_length * weight).astype(np.float32)
        else:
            radiance = blurred
            blur_length[:] = params.blur_length

    signal = radiance * exposure[:, :, None]

    # Poisson-Gaussian noise (variance = shot_gain * signal + read_noise^2), or the calibrated model.
    expected = np.clip(signal, 0.0, 1.0)
    if params.sensor is not None:
        variance = params.sensor.variance(expected)
        noisy = apply_sensor_noise(signal, params.sensor, rng)
    else:
        variance = params.shot_gain * expected + params.read_noise**2
        noisy = _legacy_noise(signal, params, rng)
    low = srgb_encode(noisy)

    if params.jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", low[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(params.jpeg_quality)])
        if not ok:
            raise RuntimeError("OpenCV JPEG encoding failed")
        low = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    low = np.ascontiguousarray(low)

    labels = DegradationLabels(
        exposure=exposure,
        blur_length=blur_length,
        noise_sigma=np.sqrt(variance @ (np.ones(3, np.float32) / 3)).astype(np.float32),
        rule=rule or LabelRule(),
    )
    return SyntheticPair(low=low, high=high, labels=labels, params=params)
