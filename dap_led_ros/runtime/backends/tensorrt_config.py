"""TensorRT engine build settings (config/engine.yaml) and optimisation profiles. No TensorRT import."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dap_led_ros.settings import load_yaml_mapping, validated_from_mapping

Shape3 = tuple[int, int, int]  # (batch, height, width)

from dap_led_ros.runtime.onnx_files import DEFAULT_FP32_NAME_PATTERNS

# Weak typing only (TensorRT 10): TensorRT layer types pinned to FP32 by precision constraints,
# with the layers whose ONNX node name contains one of DEFAULT_FP32_NAME_PATTERNS.
DEFAULT_FP32_LAYER_TYPES: tuple[str, ...] = ("NORMALIZATION", "SOFTMAX", "REDUCE")
TYPINGS = ("strong", "weak")


class ProfileError(ValueError):
    """No optimisation profile of the engine covers the requested input shape."""


@dataclass(frozen=True)
class ShapeProfile:
    """One TensorRT optimisation profile for the image input, as (batch, height, width) triples."""

    min: Shape3
    opt: Shape3
    max: Shape3

    def __post_init__(self) -> None:
        for i, name in enumerate(("batch", "height", "width")):
            if not 1 <= self.min[i] <= self.opt[i] <= self.max[i]:
                raise ValueError(f"profile {self}: need 1 <= min <= opt <= max for {name}")

    def covers(self, batch: int, height: int, width: int) -> bool:
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, (batch, height, width), self.max))

    def as_tuple(self) -> tuple[Shape3, Shape3, Shape3]:
        return self.min, self.opt, self.max

    def nchw(self) -> tuple[tuple[int, int, int, int], ...]:
        """(min, opt, max) as 4-D NCHW shapes for `IOptimizationProfile.set_shape`."""
        return tuple((b, 3, h, w) for b, h, w in (self.min, self.opt, self.max))  # type: ignore[return-value]


def select_profile(profiles: list[ShapeProfile] | tuple[ShapeProfile, ...], batch: int, height: int,
                   width: int) -> int:
    """Index of the profile to run a (batch, height, width) input with.

    Among the profiles that cover the shape, the one whose `opt` is closest in pixel count
    (kernels were tuned for `opt`), ties broken by the smaller `max` area.
    """
    candidates = [i for i, p in enumerate(profiles) if p.covers(batch, height, width)]
    if not candidates:
        ranges = "; ".join(f"#{i}: {p.min[1]}x{p.min[2]}..{p.max[1]}x{p.max[2]} (HxW), batch {p.min[0]}..{p.max[0]}"
                           for i, p in enumerate(profiles))
        raise ProfileError(f"no engine profile covers batch {batch}, {height}x{width} (HxW); profiles: {ranges}. "
                           "Add the camera resolution to config/engine.yaml (portrait frames: "
                           "`portrait: true`) and rebuild the engine.")
    px = height * width
    return min(candidates, key=lambda i: (abs(profiles[i].opt[1] * profiles[i].opt[2] - px),
                                          profiles[i].max[1] * profiles[i].max[2], i))


@dataclass
class EngineConfig:
    """How `dap-led build-engine` builds a TensorRT engine."""

    # Camera resolutions as [width, height]; each gets a profile tuned (opt) for it.
    cameras: list[list[int]] = field(default_factory=lambda: [[640, 480], [1280, 720], [1920, 1080]])
    # Smallest height/width a profile accepts (the network needs >= its pad multiple, 16 for tiny).
    min_side: int = 16
    # Frames up to this many pixels larger than the camera on each side still fit its profile.
    slack: int = 0
    opt_batch: int = 1
    max_batch: int = 1
    precision: str = "fp16"  # fp16 | fp32
    # strong: the precision is the graph's own (`dap-led export --precision fp16`: float16 with
    # float32 islands), built as a strongly typed network (TensorRT 10 and 11). weak: a float32 graph
    # with BuilderFlag.FP16 and FP32 precision constraints (TensorRT 10 only; removed in 11).
    typing: str = "strong"
    # Also a profile for each camera turned upright (height x width swapped), for portrait frames.
    portrait: bool = False
    workspace_mib: int = 2048
    # >= 0 on Jetson (Xavier/Orin) to place layers on that DLA core; DLA takes fixed shapes only,
    # so it needs explicit `profiles` with min == opt == max.
    dla_core: int = -1
    # None: beside the engine cache (<cache>/engines/timing.cache).
    timing_cache: str | None = None
    fp32_layer_types: list[str] = field(default_factory=lambda: list(DEFAULT_FP32_LAYER_TYPES))
    fp32_name_patterns: list[str] = field(default_factory=lambda: list(DEFAULT_FP32_NAME_PATTERNS))
    # Explicit profiles override `cameras`: a list of {min: [b,h,w], opt: [b,h,w], max: [b,h,w]}.
    profiles: list[dict[str, list[int]]] | None = None

    def validate(self) -> None:
        if self.precision not in ("fp16", "fp32"):
            raise ValueError(f"engine.precision must be fp16 or fp32, got {self.precision!r}")
        if self.typing not in TYPINGS:
            raise ValueError(f"engine.typing must be one of {', '.join(TYPINGS)}, got {self.typing!r}")
        if self.workspace_mib < 64:
            raise ValueError(f"engine.workspace_mib must be >= 64, got {self.workspace_mib}")
        if not 1 <= self.opt_batch <= self.max_batch:
            raise ValueError(f"need 1 <= engine.opt_batch <= engine.max_batch, got {self.opt_batch}/{self.max_batch}")
        if self.min_side < 1 or self.slack < 0:
            raise ValueError("engine.min_side must be >= 1 and engine.slack >= 0")
        for cam in self.cameras:
            if len(cam) != 2 or min(cam) < self.min_side:
                raise ValueError(f"engine.cameras entries are [width, height] >= min_side, got {cam}")
        if not self.cameras and not self.profiles:
            raise ValueError("engine.cameras (or engine.profiles) must list at least one resolution")
        profiles = self.shape_profiles()  # raises on malformed explicit profiles
        dynamic = [p for p in profiles if p.min != p.max]
        if self.dla_core >= 0 and dynamic:
            raise ValueError(f"engine.dla_core {self.dla_core}: DLA does not run dynamic shapes, and "
                             f"{len(dynamic)} profile(s) have min != max; give explicit engine.profiles with "
                             "min == opt == max for each camera, or dla_core: -1 (GPU)")

    def shape_profiles(self) -> list[ShapeProfile]:
        """One profile per camera resolution (sorted by area), or the explicit `profiles`."""
        if self.profiles:
            try:
                return [ShapeProfile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))  # type: ignore[arg-type]
                        for p in self.profiles]
            except (KeyError, TypeError) as exc:
                raise ValueError(f"engine.profiles entries need min/opt/max [batch, height, width]: {exc}") from exc
        out = []
        sizes = {(int(c[0]), int(c[1])) for c in self.cameras}
        if self.portrait:
            sizes |= {(h, w) for w, h in sizes}
        for w, h in sorted(sizes, key=lambda c: (c[0] * c[1], c)):
            out.append(ShapeProfile(min=(1, self.min_side, self.min_side), opt=(self.opt_batch, h, w),
                                    max=(self.max_batch, h + self.slack, w + self.slack)))
        return out

    def graph_precision(self) -> str:
        """The precision of the ONNX graph the engine is built from: fp16 only with strong typing."""
        return self.precision if self.typing == "strong" else "fp32"

    def fp32_layers(self) -> tuple[str, ...]:
        """What the precision constraints keep in FP32 (weak FP16 builds), as it enters the engine key."""
        if self.precision != "fp16" or self.typing != "weak":
            return ()
        return tuple(f"type:{t}" for t in self.fp32_layer_types) + tuple(f"name:{p}" for p in self.fp32_name_patterns)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "EngineConfig":
        return validated_from_mapping(EngineConfig, d, "engine settings")

    @staticmethod
    def from_yaml(path: str | Path) -> "EngineConfig":
        """Read the `engine:` section of a YAML file (missing keys keep the dataclass defaults)."""
        doc = load_yaml_mapping(path, "engine config")
        section = doc.get("engine", doc)
        if not isinstance(section, dict):
            raise ValueError(f"{path}: expected a mapping under `engine:`")
        return EngineConfig.from_dict(section)
