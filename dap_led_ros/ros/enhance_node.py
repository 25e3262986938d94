"""`enhance_node`: restores night camera frames with DAP-LED, one node per camera.

Topics (relative: place the node with a namespace, e.g. `--ros-args -r __ns:=/front_cam`):
  in   image_raw              sensor_msgs/Image       (sensor-data QoS by default)
  in   camera_info            sensor_msgs/CameraInfo
  out  enhanced/image         sensor_msgs/Image       header (stamp, frame_id) of the input
  out  enhanced/camera_info   sensor_msgs/CameraInfo  with the image's header, beside each image
  out  enhanced/degradation   sensor_msgs/Image       CLIP heatmaps, when publish_heatmap is true
Settings: `EnhanceNodeConfig` (config/enhance.yaml); lifecycle, ~/enable, QoS and diagnostics
come from `ManagedImageNode`. See docs/ros.md.

Video: with `temporal` (default) each restored frame is fused with the previous ones
(`runtime/temporal_fusion.py`); the history restarts when the stream jumps (`temporal_break`)
and on deactivate.
"""
from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dap_led_ros.enhancer import TILE_MODES, Enhancer, EnhancerConfig
from dap_led_ros.imaging.image_encoding import SAME_FAMILY, SUPPORTED_ENCODINGS, output_encoding_for
from dap_led_ros.ros.camera_info_cache import CameraInfoCache
from dap_led_ros.ros.lifecycle_base import ManagedImageNode
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg
from dap_led_ros.ros.params import (
    MAX_INPUT_PIXELS,
    MAX_THREADS,
    ConfigError,
    ManagedNodeConfig,
    check_choice,
    check_range,
    param_help,
)
from dap_led_ros.ros.runner import main_for
from dap_led_ros.runtime.backends import BACKEND_NAMES
from dap_led_ros.runtime.temporal_fusion import time_jump

NODE_NAME = "enhance_node"


_ENHANCER_DEFAULTS = EnhancerConfig()


def temporal_break(last: tuple[int, str] | None, stamp_ns: int, frame_id: str, max_gap_ns: int) -> str:
    """Why the fusion history must restart before a frame ("" to keep it): `last` is the
    (stamp in ns, frame_id) of the previous frame fused, None before the first one."""
    if last is None:
        return ""
    last_ns, last_frame_id = last
    if frame_id != last_frame_id:
        return f"frame_id changed from '{last_frame_id}' to '{frame_id}'"
    return time_jump(last_ns, stamp_ns, max_gap_ns)


@dataclass
class EnhanceNodeConfig(ManagedNodeConfig):
    """`enhance_node` settings. Network settings default to EnhancerConfig's."""

    # The node serves live video: on the CPU it defaults to the real-time variant (the CLI and the
    # bag tool, which work offline, default to the quality model).
    model: str = field(default="auto", metadata=param_help(
        "auto (the shipped real-time model on the CPU, the quality model on a GPU) | quality | realtime | "
        "a checkpoint (.safetensors with its .yaml); empty: quality"))
    backend: str = field(default=_ENHANCER_DEFAULTS.backend, metadata=param_help(
        "auto | torch | onnxruntime | tensorrt"))
    device: str = field(default=_ENHANCER_DEFAULTS.device, metadata=param_help("auto | cpu | cuda | cuda:N"))
    engine: str = field(default="", metadata=param_help(
        "ONNX model / TensorRT engine (cache) path for those backends; empty: derived"))
    threads: int = field(default=_ENHANCER_DEFAULTS.threads, metadata=param_help(
        "CPU threads for the backend (0: library default)"))
    tile_max_pixels: int = field(default=_ENHANCER_DEFAULTS.max_pixels, metadata=param_help(
        "frames with more pixels than this are restored in overlapping tiles"))
    tile_size: int = field(default=_ENHANCER_DEFAULTS.tile_size, metadata=param_help("tile side (px)"))
    tile_overlap: int = field(default=_ENHANCER_DEFAULTS.tile_overlap, metadata=param_help(
        "blend: tile overlap; exact: context halo per side (px)"))
    tile_mode: str = field(default=_ENHANCER_DEFAULTS.tile_mode, metadata=param_help(
        "exact (tiles reproduce a whole-frame pass, ~5x the time of blend) | blend (independent tiles)"))
    output_encoding: str = field(default=SAME_FAMILY, metadata=param_help(
        "same_family (the input's encoding; bayer -> rgb8) or an encoding name, e.g. rgb8"))
    demosaic: str = field(default="bilinear", metadata=param_help(
        "Bayer demosaicing: bilinear | edge_aware"))
    prior_every: int = field(default=_ENHANCER_DEFAULTS.prior_every, metadata=param_help(
        "reuse the CCM heatmaps on up to this many consecutive frames (1: every frame its own)"))
    prior_change: float = field(default=_ENHANCER_DEFAULTS.prior_change, metadata=param_help(
        "recompute the heatmaps early when the frame's grey thumbnail moves by more than this (0..1)"))
    # Video: unlike EnhancerConfig (stills), the node fuses consecutive frames by default.
    temporal: bool = field(default=True, metadata=param_help(
        "fuse each restored frame with the previous ones, aligned by optical flow, where they agree "
        "(steadier video); false: every frame on its own"))
    temporal_frames: int = field(default=_ENHANCER_DEFAULTS.temporal_frames, metadata=param_help(
        "running mean over at most this many frames (1..64)"))
    temporal_tolerance: float = field(default=_ENHANCER_DEFAULTS.temporal_tolerance, metadata=param_help(
        "local disagreement (0-1, after alignment) at which the history drops out (moving objects, "
        "occlusions), (0, 1]"))
    temporal_cut: float = field(default=_ENHANCER_DEFAULTS.temporal_cut, metadata=param_help(
        "grey-thumbnail change (0-1) that counts as a scene cut and restarts the history, (0, 1]"))
    temporal_flow_side: int = field(default=_ENHANCER_DEFAULTS.temporal_flow_side, metadata=param_help(
        "longest side (px) of the luma the optical flow is computed on (32..4096)"))
    exposure_smoothing: float = field(default=_ENHANCER_DEFAULTS.exposure_smoothing, metadata=param_help(
        "share of a brightness change the output follows at once, (0, 1]; 1: no smoothing"))
    temporal_max_gap_s: float = field(default=1.0, metadata=param_help(
        "restart the history when consecutive stamps are further apart than this (s); also when "
        "the stamp goes back or the frame_id changes"))
    overlap: bool = field(default=True, metadata=param_help(
        "encode and publish a frame on a second thread while the next one is in the network"))
    publish_heatmap: bool = field(default=False, metadata=param_help(
        "publish the CLIP degradation heatmaps on enhanced/degradation (costs a prior pass)"))

    def validate(self) -> None:
        super().validate()
        if self.output_encoding != SAME_FAMILY and self.output_encoding not in SUPPORTED_ENCODINGS:
            raise ConfigError(f"output_encoding must be '{SAME_FAMILY}' or one of "
                              f"{', '.join(SUPPORTED_ENCODINGS)}; got '{self.output_encoding}'")
        check_choice("demosaic", self.demosaic, ("bilinear", "edge_aware"))
        check_choice("backend", self.backend, BACKEND_NAMES)
        check_choice("tile_mode", self.tile_mode, TILE_MODES)
        check_range("threads", self.threads, 0, MAX_THREADS, "0 = library default")
        check_range("tile_max_pixels", self.tile_max_pixels, 1, MAX_INPUT_PIXELS)
        check_range("tile_size", self.tile_size, 64, 8192)
        check_range("prior_every", self.prior_every, 1, 10_000)
        check_range("prior_change", self.prior_change, 0.0, 1.0)
        check_range("temporal_max_gap_s", self.temporal_max_gap_s, 0.001, 3600.0)
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        try:  # also the temporal_* ranges (FusionSettings.validate)
            self.enhancer_config().validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def enhancer_config(self) -> EnhancerConfig:
        return EnhancerConfig(model=self.model or None, backend=self.backend, device=self.device,
                              engine=self.engine or None, threads=self.threads,
                              max_pixels=self.tile_max_pixels, tile_size=self.tile_size,
                              tile_overlap=self.tile_overlap, tile_mode=self.tile_mode,
                              prior_every=self.prior_every, prior_change=self.prior_change,
                              temporal=self.temporal, temporal_frames=self.temporal_frames,
                              temporal_tolerance=self.temporal_tolerance, temporal_cut=self.temporal_cut,
                              temporal_flow_side=self.temporal_flow_side,
                              exposure_smoothing=self.exposure_smoothing)


class EnhanceNode(ManagedImageNode[EnhanceNodeConfig]):
    config_class = EnhanceNodeConfig
    output_verb = "restored"

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        self._enhancer: Enhancer | None = None
        self._camera_infos = CameraInfoCache()
        self._pub_image: Any = None
        self._pub_info: Any = None
        self._pub_heatmap: Any = None
        # Fusion state is sequential: a history reset and a frame's fusion (in the finish stage)
        # never run at once, and finishes run in frame order (FrameWorker hands them over one by one).
        self._fusion_lock = threading.Lock()
        self._last_fused: tuple[int, str] | None = None  # (stamp ns, frame_id) of the last frame into the network
        self._temporal_resets = 0  # history restarts for stream jumps (temporal_break)
        self._temporal_cuts = 0    # scene cuts and size changes of the histories before the current one
        self._last_reset = ""
        super().__init__(node_name, **kwargs)

    # ------------------------------------------------------------------ lifecycle hooks

    def load(self, cfg: EnhanceNodeConfig) -> None:
        self._enhancer = Enhancer(cfg.enhancer_config())
        if cfg.publish_heatmap and not self._enhancer.backend.supports_prior_input:
            self.get_logger().warning(f"publish_heatmap: backend {self._enhancer.backend_name} "
                                      "does not expose heatmaps; enhanced/degradation stays silent")

    def preload(self) -> None:
        # Every backend's load imports torch (checkpoints, exports); ONNX Runtime for the
        # backends that may use it.
        backend = str(self.get_parameter("backend").value)
        for name in ("torch", "onnxruntime") if backend in ("auto", "onnxruntime") else ("torch",):
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - configure reports a missing backend
                pass

    def unload(self) -> None:
        enhancer, self._enhancer = self._enhancer, None
        self._camera_infos.clear()
        self._last_fused = None
        if enhancer is not None:
            enhancer.close()

    def create_io(self, cfg: EnhanceNodeConfig) -> None:
        # Counters cover the current activation (set before the first frame can arrive).
        self._temporal_resets, self._temporal_cuts, self._last_reset = 0, 0, ""
        self._pub_image = self.add_publisher(Image, "enhanced/image")
        self._pub_info = self.add_publisher(CameraInfo, "enhanced/camera_info")
        heatmaps = (cfg.publish_heatmap and self._enhancer is not None
                    and self._enhancer.backend.supports_prior_input)
        self._pub_heatmap = self.add_publisher(Image, "enhanced/degradation") if heatmaps else None
        self.add_subscription(CameraInfo, "camera_info", self._camera_infos.add)
        self.add_subscription(Image, "image_raw", self.submit_frame)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)  # the worker has finished its frames and stopped
        with self._fusion_lock:  # a new activation starts every stream's history afresh
            self._last_fused = None
            if self._enhancer is not None:
                self._restart_history(self._enhancer, all_streams=True)
        return result

    def _restart_history(self, enhancer: Enhancer, all_streams: bool = False) -> None:
        """Forget the fusion history (holding `_fusion_lock`), keeping its scene-cut count."""
        fusion = enhancer.fusion_state(None)
        if fusion is not None:
            self._temporal_cuts += fusion.resets
        enhancer.reset_temporal(all_streams=all_streams)

    def _fuse_in_order(self, enhancer: Enhancer, restored: Callable[[], np.ndarray], reset: str) -> np.ndarray:
        """A frame's finish (fusion, conversion), after the history restart it calls for, if any."""
        with self._fusion_lock:
            if reset:
                self._restart_history(enhancer)
                self._temporal_resets += 1
                self._last_reset = reset
            return restored()

    def backend_description(self) -> str:
        return self._enhancer.backend.describe() if self._enhancer is not None else ""

    def extra_diagnostics(self) -> dict[str, Any]:
        """p50/p95 ms per stage of the recent frames (decode, convert_in, prior, network, ...)."""
        enhancer = self._enhancer
        if enhancer is None:
            return {}
        out: dict[str, Any] = {}
        for stage, t in enhancer.stages.summary().items():
            out[f"stage_{stage}_p50_ms"] = f"{t['p50_ms']:.1f}"
            out[f"stage_{stage}_p95_ms"] = f"{t['p95_ms']:.1f}"
        cache = enhancer.prior_cache
        if cache.every > 1:
            out["prior_reused"], out["prior_computed"] = cache.reused, cache.computed
        if enhancer.cfg.temporal:
            fusion = enhancer.fusion_state(None)
            out["temporal_weight"] = f"{fusion.last_weight:.3f}" if fusion is not None else "0.000"
            out["temporal_gain"] = f"{fusion.last_gain:.3f}" if fusion is not None else "1.000"
            out["temporal_cuts"] = self._temporal_cuts + (fusion.resets if fusion is not None else 0)
            out["temporal_resets"] = self._temporal_resets
            out["temporal_last_reset"] = self._last_reset
        return out

    # ------------------------------------------------------------------ frames

    def passthrough(self, msg: Image) -> None:
        self._pub_image.publish(msg)
        self._publish_camera_info(msg.header)

    def process(self, msg: Image) -> Callable[[], None] | None:
        """Decode and run the network; the returned rest (convert, encode, publish) runs on the
        worker's second stage while the next frame is in the network."""
        cfg, enhancer = self.cfg, self._enhancer
        assert cfg is not None and enhancer is not None
        if self.divert_if_disabled(msg):  # switched off while this frame waited
            return None
        stages = enhancer.stages
        with stages.measure("decode"):
            decoded = image_msg_to_decoded(msg, max_pixels=cfg.max_input_pixels,
                                           demosaic=cfg.demosaic)
        encoding = output_encoding_for(decoded.encoding, cfg.output_encoding)
        reset = ""
        if cfg.temporal:  # decided here, in frame order; applied before this frame's fusion
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            reset = temporal_break(self._last_fused, stamp_ns, msg.header.frame_id,
                                   round(cfg.temporal_max_gap_s * 1e9))
            self._last_fused = (stamp_ns, msg.header.frame_id)
        restored = enhancer.enhance_deferred(decoded.rgb)
        pub_image, pub_heatmap = self._pub_image, self._pub_heatmap

        def publish() -> None:
            rgb = self._fuse_in_order(enhancer, restored, reset)
            with stages.measure("encode"):
                out = make_image_msg(rgb, msg.header, encoding, alpha=decoded.alpha,
                                     bigendian=bool(msg.is_bigendian))
            if self.divert_if_disabled(msg):  # switched off during inference
                return
            with stages.measure("publish"):
                pub_image.publish(out)
                self._publish_camera_info(msg.header)
            if pub_heatmap is not None and pub_heatmap.get_subscription_count() > 0:
                pub_heatmap.publish(make_image_msg(enhancer.heatmap_image(decoded.rgb), msg.header,
                                                   "rgb8"))
        if cfg.overlap:
            return publish
        publish()
        return None

    def _publish_camera_info(self, header: Header) -> None:
        info = self._camera_infos.for_image(header)
        if info is not None:
            self._pub_info.publish(info)


def main(argv: list[str] | None = None) -> int:
    return main_for(EnhanceNode, argv)


if __name__ == "__main__":
    sys.exit(main())
