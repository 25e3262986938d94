"""Monocular depth from a user-supplied ONNX model, run with ONNX Runtime (no ROS here).

Made for Depth Anything V2 exported to ONNX by the user (see docs/pipeline.md), and for any
model with the same contract: one input N x 3 x H x W float32 (RGB, normalised with a mean and
std), one output N x H' x W' or N x 1 x H' x W'. The output is resized to the frame and
returned as it is: relative inverse depth (disparity) for the relative Depth Anything models,
metres for the metric ones. `DepthConfig.output` says which, so the preview colours near
objects the same way for both.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dap_led_ros.perception.onnx_models import ModelLoadError, open_session, providers_for, static_dim
from dap_led_ros.settings import validated_from_mapping

log = logging.getLogger(__name__)

# Used when neither the config nor the model fixes the input size (Depth Anything's default).
DEFAULT_INPUT_SIZE = 518
OUTPUT_KINDS = ("disparity", "depth")
COLORMAPS: dict[str, int] = {
    name[len("COLORMAP_"):].lower(): getattr(cv2, name)
    for name in dir(cv2) if name.startswith("COLORMAP_")
}
INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "linear": cv2.INTER_LINEAR,
                  "cubic": cv2.INTER_CUBIC}


# Input layouts of the common relative (inverse-depth) models and of FastDepth (metric); `depth_config_for_preset` fills a
# DepthConfig with them. Sizes are the ones the models were trained at (the model's own fixed size wins).
DEPTH_PRESETS: dict[str, dict[str, Any]] = {
    # Depth Anything V1/V2 (ViT, patch 14): ImageNet normalisation, 518 px, relative disparity
    "depth-anything": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "size": 518,
                       "output": "disparity"},
    # MiDaS v2.1 small (EfficientNet-Lite3): ImageNet normalisation, 256 px, relative disparity
    "midas-small": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "size": 256,
                    "output": "disparity"},
    # MiDaS v3 DPT-Hybrid / DPT-Large: mean 0.5, std 0.5, 384 px, relative disparity
    "dpt": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "size": 384, "output": "disparity"},
    # FastDepth (MobileNet + NNConv5, NYU Depth v2): RGB in 0..1, 224 px, metric depth (metres)
    "fastdepth": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "size": 224, "output": "depth"},
}


class DepthModelError(RuntimeError):
    """The depth model cannot be loaded or does not follow the expected contract."""


@dataclass
class DepthConfig:
    model: str = ""                   # ONNX file (required)
    device: str = "cpu"               # cpu | cuda | cuda:N | tensorrt[:N]
    threads: int = 0                  # ONNX Runtime intra-op threads; 0 = library default
    input_width: int = 0              # 0 = the model's static width, else default_size
    input_height: int = 0             # 0 = the model's static height, else default_size
    default_size: int = DEFAULT_INPUT_SIZE  # input side when neither input_* nor the model fixes it
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])  # ImageNet, RGB
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    output: str = "disparity"         # what the model predicts: disparity (big = near) | depth
    interpolation: str = "linear"     # resize of the prediction to the frame size
    colormap: str = "inferno"         # preview colormap (OpenCV name, lower case)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DepthConfig":
        return validated_from_mapping(DepthConfig, d, "depth settings")

    def validate(self) -> None:
        if not self.model:
            raise ValueError("depth 'model' (path of an ONNX file) is required")
        if self.input_width < 0 or self.input_height < 0:
            raise ValueError(f"input size must be >= 0 (0 = from the model), got "
                             f"{self.input_width}x{self.input_height}")
        if self.default_size <= 0:
            raise ValueError(f"default_size must be positive, got {self.default_size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (R, G, B), got {self.mean} / {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, "
                             f"got {self.interpolation!r}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colormap {self.colormap!r}; choose from {sorted(COLORMAPS)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        providers_for(self.device)  # raises for a bad device string


def depth_config_for_preset(preset: str, model: str, **settings: Any) -> DepthConfig:
    """A DepthConfig for `model` with the normalisation, input size and output kind of a preset
    (`DEPTH_PRESETS`); `settings` are further DepthConfig fields (threads, device, ...)."""
    if preset not in DEPTH_PRESETS:
        raise ValueError(f"unknown depth preset {preset!r}; choose from {sorted(DEPTH_PRESETS)}")
    p = DEPTH_PRESETS[preset]
    fields = {"mean": list(p["mean"]), "std": list(p["std"]), "output": p["output"], "default_size": p["size"]}
    return DepthConfig(model=model, **{**fields, **settings})


class DepthEstimator:
    """Predicts an H x W float32 depth (or disparity) map for an H x W x 3 uint8 RGB frame.

    Not thread-safe: use one estimator per thread.
    """

    def __init__(self, cfg: DepthConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        path = Path(cfg.model).expanduser()
        try:
            self.session = open_session(path, cfg.device, cfg.threads, "depth model")
        except ModelLoadError as exc:
            raise DepthModelError(str(exc)) from None

        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DepthModelError(
                f"depth model must have one N x 3 x H x W input, has "
                f"{[(i.name, i.shape) for i in inputs]}")
        self._input_name = inputs[0].name
        shape = inputs[0].shape
        # N x H x W x 3 (TFLite-converted MiDaS) when the last axis, and only it, is 3
        self._nhwc = static_dim(shape[3]) == 3 and static_dim(shape[1]) != 3
        channels, model_h, model_w = (shape[3], shape[1], shape[2]) if self._nhwc else shape[1:]
        if static_dim(channels) not in (0, 3):
            raise DepthModelError(f"depth model input has {channels} channels, need 3")
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise DepthModelError(f"depth model input type {inputs[0].type} is not supported (float or float16)")
        self._fp16 = inputs[0].type == "tensor(float16)"
        self.input_height = self._resolve_size("height", cfg.input_height, static_dim(model_h), cfg.default_size)
        self.input_width = self._resolve_size("width", cfg.input_width, static_dim(model_w), cfg.default_size)
        self._mean = np.asarray(cfg.mean, np.float32) * 255.0
        self._inv_std = 1.0 / (np.asarray(cfg.std, np.float32) * 255.0)
        log.info("depth model %s: input %dx%d, output %s, providers %s", path.name,
                 self.input_width, self.input_height, cfg.output, self.session.get_providers())

    @staticmethod
    def _resolve_size(name: str, configured: int, static: int, default: int) -> int:
        if configured and static and configured != static:
            raise DepthModelError(f"input_{name} {configured} set, but the model's input "
                                  f"{name} is fixed at {static}")
        return configured or static or default

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> 1 x 3 x h x w (or 1 x h x w x 3) float32, resized and normalised."""
        resized = cv2.resize(rgb, (self.input_width, self.input_height),
                             interpolation=cv2.INTER_CUBIC)
        x = (resized.astype(np.float32) - self._mean) * self._inv_std
        if self._fp16:
            x = x.astype(np.float16)
        return np.ascontiguousarray(x[None] if self._nhwc else x.transpose(2, 0, 1)[None])

    def estimate(self, rgb: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB -> H x W float32 map in the model's units, at the frame's size."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise ValueError(f"expected a non-empty H x W x 3 uint8 image, got "
                             f"{rgb.dtype} {rgb.shape}")
        pred = np.asarray(self.session.run(None, {self._input_name: self.preprocess(rgb)})[0])
        if pred.ndim == 4 and pred.shape[:2] == (1, 1):
            pred = pred[0, 0]
        elif pred.ndim == 3 and pred.shape[0] == 1:
            pred = pred[0]
        elif pred.ndim != 2:
            raise DepthModelError(f"depth model output has shape {pred.shape}; expected "
                                  f"1 x H x W, 1 x 1 x H x W or H x W")
        height, width = rgb.shape[:2]
        return cv2.resize(pred.astype(np.float32, copy=False), (width, height),
                          interpolation=INTERPOLATIONS[self.cfg.interpolation])

    def colorize(self, depth: np.ndarray) -> np.ndarray:
        """Preview of a map from `estimate` with this estimator's colormap and output kind."""
        return colorize_depth(depth, self.cfg.colormap, near_is_high=self.cfg.output == "disparity")

    def close(self) -> None:
        self.session = None


def colorize_depth(depth: np.ndarray, colormap: str = "inferno", near_is_high: bool = True,
                   percentiles: tuple[float, float] = (2.0, 98.0)) -> np.ndarray:
    """H x W float map -> H x W x 3 uint8 RGB preview, near objects bright.

    Scaled per frame between two percentiles of the finite values, so one outlier does not wash
    the preview out; non-finite pixels are black.
    """
    if depth.ndim != 2:
        raise ValueError(f"expected an H x W map, got shape {depth.shape}")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; choose from {sorted(COLORMAPS)}")
    finite = np.isfinite(depth)
    scaled = np.zeros(depth.shape, np.float32)
    if finite.any():
        lo, hi = np.percentile(depth[finite], percentiles)
        span = hi - lo if hi > lo else 1.0
        scaled = np.clip((np.where(finite, depth, lo) - lo) / span, 0.0, 1.0).astype(np.float32)
        if not near_is_high:
            scaled = 1.0 - scaled
    gray = (scaled * 255.0 + 0.5).astype(np.uint8)
    bgr = cv2.applyColorMap(gray, COLORMAPS[colormap])
    bgr[~finite] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
