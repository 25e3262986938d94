"""`enhance_node`: restores night camera frames with DAP-LED, one node per camera.

Topics (relative: place the node with a namespace, e.g. `--ros-args -r __ns:=/front_cam`):
  in   image_raw              sensor_msgs/Image       (sensor-data QoS by default)
  in   camera_info            sensor_msgs/CameraInfo
  out  enhanced/image         sensor_msgs/Image       header (stamp, frame_id) of the input
  out  enhanced/camera_info   sensor_msgs/CameraInfo  with the image's header, beside each image
  out  enhanced/degradation   sensor_msgs/Image       CLIP heatmaps, when publish_heatmap is true
Settings: `EnhanceNodeConfig` (config/enhance.yaml); lifecycle, ~/enable, QoS and diagnostics
come from `ManagedImageNode`. See docs/ros.md.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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

NODE_NAME = "enhance_node"


_ENHANCER_DEFAULTS = EnhancerConfig()


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
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        try:
            self.enhancer_config().validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def enhancer_config(self) -> EnhancerConfig:
        return EnhancerConfig(model=self.model or None, backend=self.backend, device=self.device,
                              engine=self.engine or None, threads=self.threads,
                              max_pixels=self.tile_max_pixels, tile_size=self.tile_size,
                              tile_overlap=self.tile_overlap, tile_mode=self.tile_mode,
                              prior_every=self.prior_every, prior_change=self.prior_change)


class EnhanceNode(ManagedImageNode[EnhanceNodeConfig]):
    config_class = EnhanceNodeConfig
    output_verb = "restored"

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        self._enhancer: Enhancer | None = None
        self._camera_infos = CameraInfoCache()
        self._pub_image: Any = None
        self._pub_info: Any = None
        self._pub_heatmap: Any = None
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
        if enhancer is not None:
            enhancer.close()

    def create_io(self, cfg: EnhanceNodeConfig) -> None:
        self._pub_image = self.add_publisher(Image, "enhanced/image")
        self._pub_info = self.add_publisher(CameraInfo, "enhanced/camera_info")
        heatmaps = (cfg.publish_heatmap and self._enhancer is not None
                    and self._enhancer.backend.supports_prior_input)
        self._pub_heatmap = self.add_publisher(Image, "enhanced/degradation") if heatmaps else None
        self.add_subscription(CameraInfo, "camera_info", self._camera_infos.add)
        self.add_subscription(Image, "image_raw", self.submit_frame)

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
        restored = enhancer.enhance_deferred(decoded.rgb)
        pub_image, pub_heatmap = self._pub_image, self._pub_heatmap

        def publish() -> None:
            rgb = restored()
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
