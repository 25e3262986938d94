"""`Enhancer`: the one Python API that the CLI, the ROS nodes and the bag tool share."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from dap_led_ros.runtime.backends import Backend, BackendError, backend_model, create_backend, resolve_device
from dap_led_ros.runtime.backends.base import is_model_file
from dap_led_ros.runtime.burst_merge import BurstSettings
from dap_led_ros.runtime.exposure import ExposureRule, ExposureSettings
from dap_led_ros.runtime.prior_cache import PriorCache
from dap_led_ros.runtime.stage_timing import StageTimes
from dap_led_ros.runtime.temporal_fusion import FusionSettings
from dap_led_ros.runtime.video_stream import DEFAULT_MAX_GAP_S, RestartPolicy, VideoStream
from dap_led_ros.runtime.tiling import blend_weights, crop_upsampled, plan_tiles
from dap_led_ros.settings import validated_from_mapping
from dap_led_ros.shipped_models import default_checkpoint

log = logging.getLogger(__name__)

TILE_MODES = ("exact", "blend")


def _help(text: str) -> dict[str, str]:
    """Field metadata: what the setting means (the node's parameter descriptions read it too)."""
    return {"help": text}


@dataclass
class EnhancerConfig:
    """The network's settings: every entry point (node parameters, CLI options) takes these
    defaults and descriptions from here."""

    model: str | None = field(default=None, metadata=_help(
        "quality (the shipped quality model; also empty) | realtime (the shipped real-time variant) | "
        "auto (realtime on the CPU, quality on a GPU) | a checkpoint (.safetensors with its .yaml) | "
        "an exported .onnx or a TensorRT .engine (run without a checkpoint or torch)"))
    backend: str = field(default="auto", metadata=_help("auto | openvino | onnxruntime | torch | tensorrt"))
    device: str = field(default="auto", metadata=_help("auto (cuda when a GPU is visible) | cpu | cuda | cuda:N"))
    engine: str | None = field(default=None, metadata=_help(
        "ONNX model / TensorRT engine (cache) path for those backends; empty: derived"))
    engine_config: str | None = field(default=None, metadata=_help(
        "TensorRT: the engine YAML (config/engine.yaml: cameras, max_batch, precision) whose cached "
        "engine runs, as `dap-led build-engine --config` built it; empty: the built-in defaults"))
    cache_dir: str | None = field(default=None, metadata=_help(
        "folder of cached ONNX exports and TensorRT engines; empty: $DAP_LED_CACHE or ~/.cache/dap_led_ros"))
    build_engine: bool = field(default=False, metadata=_help(
        "backend auto: build the TensorRT engine when none is cached for engine_config (minutes, logged, "
        "during configure); false: run only an engine `dap-led build-engine` made, else fall back "
        "(backend tensorrt always builds a missing engine)"))
    threads: int = field(default=0, metadata=_help("CPU threads for the backend (0: library default)"))
    tile_max_pixels: int = field(default=1920 * 1088, metadata=_help(
        "frames with more pixels than this are restored in overlapping tiles"))
    tile_size: int = field(default=768, metadata=_help("tile side (px)"))
    tile_overlap: int = field(default=96, metadata=_help(
        "blend: tile overlap; exact: context halo per side (px)"))
    tile_mode: str = field(default="exact", metadata=_help(
        "exact (tiles reproduce a whole-frame pass, ~5x the time of blend) | blend (independent tiles)"))
    prior_every: int = field(default=1, metadata=_help(
        "reuse the CCM heatmaps on up to this many consecutive frames (1: every frame its own)"))
    prior_change: float = field(default=0.03, metadata=_help(
        "recompute the heatmaps early when the frame's 32x24 grey thumbnail moves by more than this (0..1)"))
    # Video: a stream's restored frames are blended with its previous ones, aligned by optical flow,
    # where they agree (`runtime/temporal_fusion.py`), and their mean level is steadied. A stream
    # (`Enhancer.stream`) fuses only while this is on; the node, the bag tool and the pipeline turn it on.
    temporal: bool = field(default=False, metadata=_help(
        "fuse each restored frame with the previous ones, aligned by optical flow, where they agree "
        "(steadier video); false: every frame on its own"))
    temporal_frames: int = field(default=FusionSettings.frames, metadata=_help(
        "running mean over at most this many frames (1..64)"))
    temporal_tolerance: float = field(default=FusionSettings.tolerance, metadata=_help(
        "local disagreement (0-1, after alignment) at which the history drops out (moving objects, "
        "occlusions), (0, 1]"))
    temporal_cut: float = field(default=FusionSettings.cut, metadata=_help(
        "grey-thumbnail change (0-1) that counts as a scene cut and restarts the history, (0, 1]"))
    temporal_flow_side: int = field(default=FusionSettings.flow_side, metadata=_help(
        "longest side (px) of the luma the optical flow is computed on (32..4096)"))
    exposure_smoothing: float = field(default=FusionSettings.exposure_smoothing, metadata=_help(
        "share of a brightness change the output follows at once, (0, 1]; 1: no smoothing (on a "
        "stream also the share of a change of the target_level gain)"))
    temporal_max_gap_s: float = field(default=DEFAULT_MAX_GAP_S, metadata=_help(
        "restart the history when consecutive stamps are further apart than this (s); also when "
        "the stamp goes back or the frame_id changes"))
    # Burst: a stream's *input* frames are aligned and merged before the network (noise averaged
    # where frames agree within the sensor noise, `runtime/burst_merge.py`); stills are untouched.
    burst: bool = field(default=False, metadata=_help(
        "merge each video stream's aligned input frames before the network, where they agree within "
        "the frame's own noise level (less noise for the network to remove); false: the network "
        "sees each frame as it came"))
    burst_frames: int = field(default=BurstSettings.frames, metadata=_help(
        "burst: running mean over at most this many input frames (1..64)"))
    burst_reject: float = field(default=BurstSettings.reject, metadata=_help(
        "burst: local disagreement, in standard deviations of the noise-only difference, above which "
        "an earlier frame starts to drop out (gone at twice this) (0.5..20)"))
    # Exposure rule (`runtime/exposure.py`): the output's mean level moved to a target by one gain
    # in linear light, after fusion; 0 keeps the network's level (its learned scene prior).
    target_level: float = field(default=ExposureSettings.target_level, metadata=_help(
        "mean BT.601 luma (sRGB, 0-1) the output is moved to by one gain in linear light (gain within "
        "1/8..8, steadied on a stream by exposure_smoothing); 0: the network's own level, else (0.02, 0.9]"))
    target_strength: float = field(default=ExposureSettings.strength, metadata=_help(
        "how far towards target_level, in log gain, [0, 1]: 1 all the way, 0.5 the geometric middle of "
        "the network's level and the target, 0 the network's level"))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "EnhancerConfig":
        return validated_from_mapping(EnhancerConfig, d, "enhancer settings")

    def validate(self) -> None:
        if self.tile_max_pixels <= 0:
            raise ValueError("tile_max_pixels must be positive")
        if self.tile_size < 64 or not 0 <= self.tile_overlap < self.tile_size // 2:
            raise ValueError(f"need tile_size >= 64 and 0 <= tile_overlap < tile_size/2, "
                             f"got {self.tile_size}/{self.tile_overlap}")
        if self.prior_every < 1 or self.prior_change < 0:
            raise ValueError(f"need prior_every >= 1 and prior_change >= 0, got {self.prior_every}/{self.prior_change}")
        if self.tile_mode not in TILE_MODES:
            raise ValueError(f"tile_mode must be one of {', '.join(TILE_MODES)}, got {self.tile_mode!r}")
        self.fusion_settings().validate()
        self.burst_settings().validate()
        self.exposure_settings().validate()
        if not 0.001 <= self.temporal_max_gap_s <= 3600.0:
            raise ValueError(f"temporal_max_gap_s must be in [0.001, 3600], got {self.temporal_max_gap_s}")

    def fusion_settings(self) -> FusionSettings:
        return FusionSettings(frames=self.temporal_frames, flow_side=self.temporal_flow_side, cut=self.temporal_cut,
                              tolerance=self.temporal_tolerance, exposure_smoothing=self.exposure_smoothing)

    def burst_settings(self) -> BurstSettings:
        return BurstSettings(frames=self.burst_frames, reject=self.burst_reject)
    def exposure_settings(self) -> ExposureSettings:
        return ExposureSettings(target_level=self.target_level, strength=self.target_strength,
                                smoothing=self.exposure_smoothing)


def _glibc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc
        return None


_LIBC = _glibc()
_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
# Buffers above this size get their own mapping, returned to the system when freed. glibc's default
# threshold rises to the largest buffer freed so far (up to 32 MiB): after one large frame, later
# buffers of that size stay in the heap, fragmented across its per-thread arenas, and RSS only grows.
# 4 MiB keeps the buffers of a 640x480 frame (3.7 MB as float32) in the heap, where they are reused.
MMAP_THRESHOLD_BYTES = 4 << 20
_heap_bounded = False


def bound_heap_growth() -> None:
    """Process-wide: a fixed mmap threshold instead of glibc's rising one (no-op elsewhere)."""
    global _heap_bounded
    if _LIBC is not None and not _heap_bounded:
        _heap_bounded = bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (what frames of another size freed)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def to_input(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 (or float32 in [0, 1], a merged burst) -> 1 x 3 x H x W float32 in [0, 1]."""
    if rgb.dtype == np.float32:
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    return (rgb.astype(np.float32) * (1.0 / 255.0)).transpose(2, 0, 1)[None]


def to_rgb8(x: np.ndarray) -> np.ndarray:
    """3 x H x W float in [0, 1] -> H x W x 3 uint8 (rounded)."""
    return np.clip(x.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


class Enhancer:
    """Restores H x W x 3 uint8 RGB frames of any size with the configured backend."""

    def __init__(self, cfg: EnhancerConfig | None = None, backend: Backend | None = None) -> None:
        self.cfg = cfg or EnhancerConfig()
        self.cfg.validate()
        bound_heap_growth()
        if is_model_file(self.cfg.model):  # an exported graph or a built engine: no checkpoint, no torch
            if self.cfg.engine and self.cfg.engine != self.cfg.model:
                raise BackendError(f"model {self.cfg.model} is a graph/engine file and engine names another "
                                   f"({self.cfg.engine}); give one of them")
            self.cfg = replace(self.cfg, engine=self.cfg.model, model=None)
        # A shipped model's name becomes its path here, for the logs and an exact-tiling twin.
        elif self.cfg.engine is None or self.cfg.model is not None:
            self.cfg = replace(self.cfg, model=backend_model(self.cfg.backend, self.cfg.model, self.cfg.device))
        self.backend = backend or create_backend(self.cfg.backend, self.cfg.model, self.cfg.device,
                                                 **self._backend_options())
        log.info("enhancer backend: %s", self.backend.describe())
        # The backend that restores exact tiles: this one, or a torch twin made on first need.
        self._exact: Backend | None = self.backend if self.backend.supports_exact_tiling else None
        # A twin needs the checkpoint the backend runs: known unless the backend was handed in
        # or runs an engine file given without its checkpoint.
        self._twin_checkpoint_known = backend is None and (self.cfg.engine is None or self.cfg.model is not None)
        self._exact_tried = self._exact is not None
        # Per-stage wall times of enhance(); the prior is a stage of its own only with heatmap reuse.
        self.stages = StageTimes()
        # Heatmap reuse for stills; each stream has its own (cameras must not reuse each other's).
        self.prior_cache = self._new_prior_cache()
        self._last_hw: tuple[int, int] | None = None
        self._streams: dict[str, VideoStream] = {}
        self.exposure = ExposureRule(self.cfg.exposure_settings())

    def _backend_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.cfg.threads:
            opts["threads"] = self.cfg.threads
        if self.cfg.engine and self.cfg.backend != "torch":
            opts["engine"] = self.cfg.engine
        if self.cfg.backend in ("auto", "tensorrt"):
            opts["engine_config"] = self.cfg.engine_config
            # A named tensorrt backend builds what is missing; auto only when build_engine says so.
            opts["build"] = self.cfg.build_engine or self.cfg.backend == "tensorrt"
        if self.cfg.cache_dir and self.cfg.backend != "torch":
            opts["cache_dir"] = self.cfg.cache_dir
        return opts

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint the backend runs (the shipped quality model when none is named); None for
        an exported graph or engine given without its checkpoint."""
        if self.cfg.model:
            return self.cfg.model
        return str(default_checkpoint()) if self.cfg.engine is None else None

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @staticmethod
    def _check(rgb: np.ndarray) -> None:
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {rgb.dtype} {rgb.shape}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"empty image {rgb.shape}")

    def enhance(self, rgb: np.ndarray) -> np.ndarray:
        """A still: the restored frame, fused with nothing. Times its stages in `stages`: convert_in,
        network, convert_out, and with heatmap reuse (`prior_every` > 1) the prior as a stage of its
        own (else it runs inside the network's one graph, which measured ~8 % faster than two).
        Consecutive frames of a video go through `stream(name)` instead."""
        return self.enhance_batch_deferred([rgb])[0]()

    def stream(self, name: str, clock: str = "stamp") -> VideoStream:
        """The video stream `name` (a camera, a bag topic), made on first use: its fusion history,
        heatmap cache and restart policy (`clock` names its times in the restart reasons)."""
        stream = self._streams.get(name)
        if stream is None:
            policy = RestartPolicy(round(self.cfg.temporal_max_gap_s * 1e9), clock)
            fusion = self.cfg.fusion_settings() if self.cfg.temporal else None
            burst = self.cfg.burst_settings() if self.cfg.burst else None
            stream = self._streams[name] = VideoStream(self, name, fusion, self._new_prior_cache(), policy, burst)
        return stream

    def close_stream(self, name: str) -> None:
        """Forget stream `name` (its recording or activation ended); `stream(name)` makes a new one."""
        self._streams.pop(name, None)

    @property
    def streams(self) -> dict[str, VideoStream]:
        return dict(self._streams)

    def _new_prior_cache(self) -> PriorCache:
        return PriorCache(self.cfg.prior_every, self.cfg.prior_change)

    def _network(self, rgb: np.ndarray, cache: PriorCache) -> np.ndarray:
        with self.stages.measure("convert_in"):
            x = to_input(rgb)
        if self.backend.supports_prior_input and self.cfg.prior_every > 1:
            with self.stages.measure("prior"):
                maps = cache.maps(rgb, lambda: self.backend.heatmaps(x))
            with self.stages.measure("network"):
                y = self.backend.infer_with_prior(x, maps) if maps else self.backend.infer(x)
        else:
            with self.stages.measure("network"):
                y = self.backend.infer(x)
        return y

    def enhance_batch(self, frames: list[np.ndarray], streams: list[VideoStream | None] | None = None,
                      stamps: list[int | None] | None = None, frame_ids: list[str] | None = None) -> list[np.ndarray]:
        """The restored frames (see `enhance_batch_deferred`)."""
        return [finish() for finish in self.enhance_batch_deferred(frames, streams, stamps, frame_ids)]

    def enhance_batch_deferred(self, frames: list[np.ndarray], streams: list[VideoStream | None] | None = None,
                               stamps: list[int | None] | None = None,
                               frame_ids: list[str] | None = None) -> list[Callable[[], np.ndarray]]:
        """Runs the network now and returns each frame's rest (fusion, conversion to uint8) as a
        callable, so a caller can overlap it with the next frames' network (the node's two-stage
        worker). Frames of one size (within `tile_max_pixels`) go through the backend together (at most
        its `max_batch` per call), others one by one, larger ones in tiles. Frame i belongs to
        `streams[i]` (None: a still) at `stamps[i]` / `frame_ids[i]`; frames enter their streams in
        list order once every network call succeeded (a failed call leaves every stream as it was),
        and each stream's callables must be called in that order. A batch skips heatmap reuse.
        A stream with `burst` on hands the network its merged input instead of the frame."""
        n = len(frames)
        streams = streams if streams is not None else [None] * n
        stamps = stamps if stamps is not None else [None] * n
        frame_ids = frame_ids if frame_ids is not None else [""] * n
        if not len(streams) == len(stamps) == len(frame_ids) == n:
            raise ValueError(f"{n} frames but {len(streams)} streams, {len(stamps)} stamps, "
                             f"{len(frame_ids)} frame_ids")
        for f in frames:
            self._check(f)
        merging = [s for s in streams if s is not None and s.merges]
        if merging:
            saved = [s.input_state() for s in merging]
            try:
                return self._restore_deferred(self._merged(frames, streams, stamps, frame_ids),
                                              streams, stamps, frame_ids)
            except BaseException:
                for s, state in zip(merging, saved):
                    s.restore_input_state(state)
                raise
        return self._restore_deferred(frames, streams, stamps, frame_ids)

    @staticmethod
    def _merged(frames: list[np.ndarray], streams: list[VideoStream | None], stamps: list[int | None],
                frame_ids: list[str]) -> list[np.ndarray]:
        """Each frame, or its stream's merged burst (float32) where the stream merges its input."""
        with_input = []
        for f, stream, stamp, frame_id in zip(frames, streams, stamps, frame_ids):
            with_input.append(stream.merge_input(f, stamp, frame_id) if stream is not None and stream.merges else f)
        return with_input

    def _restore_deferred(self, frames: list[np.ndarray], streams: list[VideoStream | None],
                          stamps: list[int | None], frame_ids: list[str]) -> list[Callable[[], np.ndarray]]:
        n = len(frames)
        outputs: list[tuple[str, np.ndarray] | None] = [None] * n  # ("chw" | "rgb8", array)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, f in enumerate(frames):
            if f.shape[0] * f.shape[1] <= self.cfg.tile_max_pixels:
                groups.setdefault(f.shape, []).append(i)
        for group in groups.values():
            if len(group) < 2:
                continue
            limit = self.backend.max_batch or n  # an engine built for smaller batches: in chunks
            for start in range(0, len(group), limit):
                indices = group[start:start + limit]
                if len(indices) < 2:
                    continue
                with self.stages.measure("convert_in"):
                    x = np.concatenate([to_input(frames[i]) for i in indices])
                with self.stages.measure("network"):
                    y = self.backend.infer(x)
                for k, i in enumerate(indices):
                    outputs[i] = ("chw", y[k])
        for i, f in enumerate(frames):
            if outputs[i] is None:
                outputs[i] = self._restore_one(f, streams[i])
        rests = []
        for (kind, out), stream, stamp, frame_id in zip(outputs, streams, stamps, frame_ids):
            reason = stream.admit(stamp, frame_id) if stream is not None else ""
            rests.append(self._finisher(kind, out, stream, reason))
        return rests

    def _restore_one(self, rgb: np.ndarray, stream: VideoStream | None) -> tuple[str, np.ndarray]:
        """One frame through the network (whole, or in tiles above `tile_max_pixels`)."""
        h, w = rgb.shape[:2]
        if (h, w) != self._last_hw:
            self._last_hw = (h, w)
            release_free_memory()
        if h * w > self.cfg.tile_max_pixels:
            with self.stages.measure("tiled"):
                return "rgb8", self._enhance_tiled(rgb)
        cache = stream.prior if stream is not None else self.prior_cache
        return "chw", self._network(rgb, cache)[0]

    def _finisher(self, kind: str, out: np.ndarray, stream: VideoStream | None,
                  reason: str) -> Callable[[], np.ndarray]:
        def finish() -> np.ndarray:
            if stream is not None:
                stream.begin(reason)
                if stream.fuses:
                    hwc = out.transpose(1, 2, 0) if kind == "chw" else out.astype(np.float32) * (1.0 / 255.0)
                    with self.stages.measure("temporal"):
                        fused = stream.fuse(hwc)
                    if self.exposure.active:
                        return self._exposed(fused, stream)
                    with self.stages.measure("convert_out"):
                        # Rounded as to_rgb8 rounds (half up): a restarted stream's frame is the
                        # byte-identical frame the unfused path gives (convertScaleAbs rounds half
                        # to even, which bf16 outputs hit).
                        return np.clip(fused * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if self.exposure.active:
                return self._exposed(out.transpose(1, 2, 0) if kind == "chw" else out, stream)
            if kind == "rgb8":
                return out
            with self.stages.measure("convert_out"):
                return to_rgb8(out)
        return finish

    def _exposed(self, hwc: np.ndarray, stream: VideoStream | None) -> np.ndarray:
        """The exposure rule on a restored frame (float 0-1 or uint8), to uint8; a stream's gain is
        steadied by its own state."""
        with self.stages.measure("exposure"):
            return self.exposure.expose_rgb8(hwc, stream.exposure if stream is not None else None)

    def _exact_backend(self) -> Backend | None:
        if not self._exact_tried:
            self._exact_tried = True
            if not self._twin_checkpoint_known:
                log.warning("exact tiling: %s cannot gather attention over tiles and its checkpoint is "
                            "unknown; large frames are restored in blended tiles", self.backend.name)
                return None
            try:
                self._exact = create_backend("torch", self.cfg.model, resolve_device(self.cfg.device),
                                             **({"threads": self.cfg.threads} if self.cfg.threads else {}))
                log.info("exact tiling: %s cannot gather attention over tiles; large frames go "
                         "through %s", self.backend.name, self._exact.describe())
            except (BackendError, ImportError, OSError, RuntimeError) as exc:
                log.warning("exact tiling unavailable (%s); large frames are restored in blended tiles",
                            exc)
        return self._exact

    def _enhance_tiled(self, rgb: np.ndarray) -> np.ndarray:
        exact = self._exact_backend() if self.cfg.tile_mode == "exact" else None
        if exact is not None:
            maps = self._frame_heatmaps(rgb, exact) or None
            return to_rgb8(exact.infer_exact_tiled(to_input(rgb), maps, self.cfg.tile_size,
                                                   self.cfg.tile_overlap)[0])
        return self._enhance_blended(rgb)

    def _enhance_blended(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        x = to_input(rgb)
        maps = self._whole_frame_heatmaps(rgb)
        acc = np.zeros((3, h, w), np.float64)
        weight = np.zeros((h, w), np.float64)
        for t in plan_tiles(h, w, self.cfg.tile_size, self.cfg.tile_overlap):
            tile = x[:, :, t.y0:t.y1, t.x0:t.x1]
            if maps is not None:
                out = self.backend.infer_with_prior(tile, [crop_upsampled(m, (h, w), t) for m in maps])
            else:
                out = self.backend.infer(tile)
            wgt = blend_weights(t.y1 - t.y0, t.x1 - t.x0, self.cfg.tile_overlap)
            acc[:, t.y0:t.y1, t.x0:t.x1] += out[0] * wgt
            weight[t.y0:t.y1, t.x0:t.x1] += wgt
        return to_rgb8((acc / weight).astype(np.float32))

    def _whole_frame_heatmaps(self, rgb: np.ndarray) -> list[np.ndarray] | None:
        """Heatmaps of the whole frame so every tile sees the same prior (None: not supported)."""
        if not self.backend.supports_prior_input:
            log.debug("backend %s restores tiles with per-tile heatmaps", self.backend.name)
            return None
        return self._frame_heatmaps(rgb) or None

    def _frame_heatmaps(self, rgb: np.ndarray, backend: Backend | None = None) -> list[np.ndarray]:
        return (backend or self.backend).heatmaps(to_input(self._prior_view(rgb)))

    @staticmethod
    def _prior_view(rgb: np.ndarray, longest: int = 1024) -> np.ndarray:
        """A downscaled copy for the CLIP crops (they are resized to the encoder size anyway)."""
        h, w = rgb.shape[:2]
        s = longest / max(h, w)
        if s >= 1:
            return rgb
        return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)

    def heatmap_image(self, rgb: np.ndarray) -> np.ndarray:
        """Colour visualisation (H x W x 3 uint8) of the finest grid's heatmaps: one tile per prompt."""
        self._check(rgb)
        if not self.backend.supports_prior_input:
            raise ValueError(f"backend {self.backend.name} does not expose heatmaps")
        maps = self._frame_heatmaps(rgb)
        if not maps:
            raise ValueError("this model has no CLIP prior (use_prior=false)")
        h, w = rgb.shape[:2]
        k = maps[-1].shape[1]
        tw = max(1, w // k)
        panels = [cv2.applyColorMap(cv2.resize((maps[-1][0, i] * 255).astype(np.uint8), (tw, h),
                                               interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_JET)
                  for i in range(k)]
        return cv2.cvtColor(np.concatenate(panels, axis=1), cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._exact is not None and self._exact is not self.backend:
            self._exact.close()
        self.backend.close()
