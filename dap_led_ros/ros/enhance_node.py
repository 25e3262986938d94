"""`enhance_node`: restores night camera frames with DAP-LED, for one camera or several on one model.

Topics (relative: place the node with a namespace, e.g. `--ros-args -r __ns:=/front_cam`), as
image_transport names them:
  in   image_raw                  sensor_msgs/Image            input_transport raw (sensor-data QoS by default)
  in   image_raw/compressed       sensor_msgs/CompressedImage  input_transport compressed (JPEG / PNG)
  in   camera_info                sensor_msgs/CameraInfo
  out  enhanced/image             sensor_msgs/Image            header (stamp, frame_id) of the input
  out  enhanced/image/compressed  sensor_msgs/CompressedImage  when publish_compressed (compressed_format,
                                                               jpeg_quality, png_level)
  out  enhanced/camera_info       sensor_msgs/CameraInfo       with the image's header, beside each image
  out  enhanced/degradation       sensor_msgs/Image            CLIP heatmaps, when publish_heatmap is true
  out  detect/image               sensor_msgs/Image            for a detector: the restored frame when the
                                                               camera frame is darker than
                                                               detect_restore_below, else the camera frame
                                                               as it came (runtime/detect_route.py)
With `cameras` (e.g. "front,rear"), every topic above is per camera under `<camera>/`, one model serves
them all and frames that arrive within `batch_window_ms` go through the backend as one batch.
Lazy (default): a frame is restored only while someone subscribes to an image output (see camera_channel).
Settings: `EnhanceNodeConfig` (config/enhance.yaml); lifecycle, ~/enable, QoS and diagnostics
come from `ManagedImageNode`. See docs/ros.md.

Video: each camera is a `VideoStream` of the Enhancer (`runtime/video_stream.py`); with `temporal`
(default) its restored frames are fused with its previous ones. The stream restarts its history when
the stamp jumps, the frame_id or the size changes; a deactivation closes it.
"""
from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, make_dataclass
from functools import partial
from typing import Any, get_type_hints

import numpy as np
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from dap_led_ros.enhancer import TILE_MODES, Enhancer, EnhancerConfig
from dap_led_ros.runtime.detect_route import FROM_MODEL, DetectRoute, for_detector
from dap_led_ros.runtime.video_stream import VideoStream
from dap_led_ros.imaging.compressed_image import (
    CODECS,
    DEFAULT_JPEG_QUALITY,
    DEFAULT_PNG_LEVEL,
    compress_for_encoding,
    decode_compressed,
)
from dap_led_ros.imaging.image_encoding import SAME_FAMILY, SUPPORTED_ENCODINGS, output_encoding_for
from dap_led_ros.ros import diagnostics
from dap_led_ros.ros.camera_channel import INPUT_TRANSPORTS, CameraChannel, CameraFrame
from dap_led_ros.ros.lifecycle_base import ManagedImageNode
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_compressed_msg, make_image_msg
from dap_led_ros.ros.params import (
    MAX_INPUT_PIXELS,
    MAX_THREADS,
    RANGE,
    ConfigError,
    ManagedNodeConfig,
    check_choice,
    param_help,
)
from dap_led_ros.ros.runner import main_for
from dap_led_ros.runtime.backends import BACKEND_NAMES
from dap_led_ros.runtime.backends.base import is_model_file

NODE_NAME = "enhance_node"
DETECT_TOPIC = "detect/image"  # the detector's input, routed by darkness


_CAMERA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")


# The ranges a parameter declares (ros2 param describe, rqt) for the embedded Enhancer settings; the
# Enhancer checks what it needs itself, these bound what a node accepts.
_ENHANCER_RANGES: dict[str, tuple[float, float, str]] = {
    "threads": (0, MAX_THREADS, "0 = library default"),
    "tile_max_pixels": (1, MAX_INPUT_PIXELS, ""),
    "tile_size": (64, 8192, ""),
    "prior_every": (1, 10_000, ""),
    "prior_change": (0.0, 1.0, ""),
    "temporal_max_gap_s": (0.001, 3600.0, ""),
    "burst_frames": (1, 64, ""),
    "burst_reject": (0.5, 20.0, ""),
    "target_level": (0.0, 0.9, "0 = the network's own level, else above 0.02"),
    "target_strength": (0.0, 1.0, ""),
}


def _enhancer_parameters() -> type:
    """EnhancerConfig's settings as node parameters: the same names, defaults and descriptions,
    embedded (an optional text setting is the empty string when unset), with the node's ranges."""
    hints = get_type_hints(EnhancerConfig)
    specs = []
    for f in fields(EnhancerConfig):
        kind, default = hints[f.name], f.default
        if kind == (str | None):
            kind, default = str, default or ""
        metadata = dict(f.metadata)
        if f.name in _ENHANCER_RANGES:
            metadata[RANGE] = _ENHANCER_RANGES[f.name]
        specs.append((f.name, kind, field(default=default, metadata=metadata)))
    return make_dataclass("EnhancerParameters", specs)


EnhancerParameters = _enhancer_parameters()
_ENHANCER_FIELDS = {f.name: f for f in fields(EnhancerConfig)}
_OPTIONAL = {f.name for f in fields(EnhancerConfig) if f.default is None}  # "" -> None


@dataclass
class EnhanceNodeConfig(ManagedNodeConfig, EnhancerParameters):
    """`enhance_node` settings: the Enhancer's (`EnhancerConfig`, embedded) and the node's own."""

    # The node serves live video: on the CPU it defaults to the real-time variant (the CLI and the
    # bag tool, which work offline, default to the quality model), and it fuses consecutive frames.
    model: str = field(default="auto", metadata=_ENHANCER_FIELDS["model"].metadata)
    temporal: bool = field(default=True, metadata=_ENHANCER_FIELDS["temporal"].metadata)
    output_encoding: str = field(default=SAME_FAMILY, metadata=param_help(
        "same_family (the input's encoding; bayer -> rgb8) or an encoding name, e.g. rgb8"))
    demosaic: str = field(default="bilinear", metadata=param_help(
        "Bayer demosaicing: bilinear | edge_aware"))
    cameras: str = field(default="", metadata=param_help(
        "several cameras on one model: comma-separated camera namespaces relative to the node's "
        "(e.g. 'front,rear'; topics under '<camera>/'); empty: one camera, topics in the node's namespace"))
    batch_window_ms: float = field(default=5.0, metadata=param_help(
        "several cameras: after a frame arrives, wait at most this long for the other cameras' frames "
        "to batch them through the backend (0: take what is waiting)", 0.0, 1000.0))
    max_batch: int = field(default=0, metadata=param_help(
        "several cameras: at most this many frames per backend call; 0: auto (1 on the CPU, where a "
        "batch only adds latency; one per camera on a GPU)", 0, 64, "0 = auto"))
    input_transport: str = field(default="raw", metadata=param_help(
        "raw (sensor_msgs/Image on image_raw) | compressed (CompressedImage on image_raw/compressed)"))
    publish_compressed: bool = field(default=True, metadata=param_help(
        "also publish enhanced/image/compressed (encoded only while someone subscribes)"))
    compressed_format: str = field(default="jpeg", metadata=param_help(
        "enhanced/image/compressed codec, as image_transport's compressed plugin names it: jpeg | png"))
    jpeg_quality: int = field(default=DEFAULT_JPEG_QUALITY, metadata=param_help("JPEG quality", 1, 100))
    png_level: int = field(default=DEFAULT_PNG_LEVEL, metadata=param_help("PNG compression level", 0, 9))
    lazy: bool = field(default=True, metadata=param_help(
        "restore frames only while someone subscribes to an image output (the input stays subscribed; "
        "the newest unwatched frame is restored when a subscriber appears)"))
    overlap: bool = field(default=True, metadata=param_help(
        "encode and publish a frame on a second thread while the next one is in the network"))
    publish_heatmap: bool = field(default=False, metadata=param_help(
        "publish the CLIP degradation heatmaps on enhanced/degradation (costs a prior pass)"))
    detect_restore_below: float = field(default=FROM_MODEL, metadata=param_help(
        "detect/image carries the restored frame when the camera frame's mean luma (0-1) is below this, "
        "else the camera frame untouched; -1: the model's benchmark-measured value (its YAML; 1 if it "
        "has none), 0: never restored, 1: always", -1.0, 1.0))
    detector_model: str = field(default="", metadata=param_help(
        "the detector that reads detect/image (detect_node's model; '' = the shipped SSD-MobileNet-v2): "
        "with detect_restore_below -1, the model's threshold measured for that detector; one measured "
        "for none gets the lowest the model records (the pipeline and launch file set it)"))
    detect_target_level: float = field(default=FROM_MODEL, metadata=param_help(
        "restored frames reach detect/image at this mean luma (0-0.9, the exposure rule; enhanced/image "
        "keeps the network's level); -1: the level the model's routing thresholds were measured at "
        "(its YAML; 0 if none), 0: the network's own level", -1.0, 0.9))

    def validate(self) -> None:
        super().validate()
        if self.output_encoding != SAME_FAMILY and self.output_encoding not in SUPPORTED_ENCODINGS:
            raise ConfigError(f"output_encoding must be '{SAME_FAMILY}' or one of "
                              f"{', '.join(SUPPORTED_ENCODINGS)}; got '{self.output_encoding}'")
        check_choice("demosaic", self.demosaic, ("bilinear", "edge_aware"))
        check_choice("backend", self.backend, BACKEND_NAMES)
        check_choice("tile_mode", self.tile_mode, TILE_MODES)
        check_choice("input_transport", self.input_transport, INPUT_TRANSPORTS)
        check_choice("compressed_format", self.compressed_format, CODECS)
        self.camera_names()
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got '{self.device}'")
        try:  # also the temporal_* ranges (FusionSettings.validate)
            self.enhancer_config().validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def camera_names(self) -> list[str]:
        """The `cameras` list ([] for one camera in the node's namespace); ConfigError if malformed."""
        names = [c.strip().strip("/") for c in self.cameras.split(",")] if self.cameras.strip() else []
        for name in names:
            if not _CAMERA_NAME.fullmatch(name):
                raise ConfigError(f"cameras: '{name}' is not a relative namespace (letters, digits, _ "
                                  "and / between names, not starting with a digit), in '{self.cameras}'")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"cameras: {', '.join(twice)} listed twice")
        return names

    def enhancer_config(self) -> EnhancerConfig:
        values = {f.name: getattr(self, f.name) for f in fields(EnhancerParameters)}
        return EnhancerConfig(**{name: (value or None) if name in _OPTIONAL else value
                                 for name, value in values.items()})


@dataclass
class _Prepared:
    """A decoded frame and what publishing it needs."""

    rgb: np.ndarray
    encoding: str               # the raw output encoding
    alpha: np.ndarray | None
    bigendian: bool
    stamp_ns: int               # the header's stamp and frame_id: where the frame is in its stream
    frame_id: str
    to_detector: str = ""       # detect/image: "restored", "camera" or "" (not watched)


class EnhanceNode(ManagedImageNode[EnhanceNodeConfig]):
    config_class = EnhanceNodeConfig
    output_verb = "restored"

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        self._enhancer: Enhancer | None = None
        self._channels: list[CameraChannel] = []
        self._route = DetectRoute()
        self._detect_rule = None
        super().__init__(node_name, **kwargs)

    # ------------------------------------------------------------------ lifecycle hooks

    def load(self, cfg: EnhanceNodeConfig) -> None:
        enhancer_cfg = cfg.enhancer_config()
        if cfg.backend == "tensorrt" or (cfg.backend == "auto" and cfg.build_engine):
            self.get_logger().warning(
                "configure: a TensorRT engine missing from the cache is built now (minutes; the transition "
                "waits); build it beforehand with `dap-led build-engine --config <engine_config>`")
        self._enhancer = Enhancer(enhancer_cfg)
        backend = self._enhancer.backend
        if cfg.backend == "auto" and not backend.runs_on_cpu and backend.name != "tensorrt":
            self.get_logger().warning(
                f"running {backend.name} on the GPU, not TensorRT: no engine cached for engine_config "
                f"'{cfg.engine_config or 'built-in defaults'}' (cache_dir '{cfg.cache_dir or 'default'}'); "
                "build it with `dap-led build-engine` or set build_engine: true")
        self.get_logger().info(f"network: {backend.describe()}")
        self._channels = [CameraChannel(name) for name in cfg.camera_names() or [""]]
        self._route = DetectRoute.resolve(cfg.detect_restore_below, self._enhancer.checkpoint, cfg.detector_model,
                                          cfg.detect_target_level)
        self._detect_rule = self._route.rule()
        self.get_logger().info(f"detect/image: {self._route.describe()}")
        if cfg.publish_heatmap and not self._enhancer.backend.supports_prior_input:
            self.get_logger().warning(f"publish_heatmap: backend {self._enhancer.backend_name} "
                                      "does not expose heatmaps; enhanced/degradation stays silent")

    def preload(self) -> None:
        # A checkpoint may need torch (an export not cached yet); an .onnx or engine file does not.
        # ONNX Runtime for the backends that may use it.
        backend = str(self.get_parameter("backend").value)
        names = ("onnxruntime",) if backend in ("auto", "onnxruntime") else ()
        if not is_model_file(str(self.get_parameter("model").value)):
            names = ("torch", *names)
        for name in names:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - configure reports a missing backend
                pass

    def unload(self) -> None:
        enhancer, self._enhancer = self._enhancer, None
        self._channels = []
        if enhancer is not None:
            enhancer.close()

    @property
    def multi_camera(self) -> bool:
        return len(self._channels) > 1 or bool(self._channels and self._channels[0].name)

    def worker_options(self) -> dict[str, Any]:
        cfg = self.cfg
        assert cfg is not None
        return {"keys": [c.name for c in self._channels], "batch_window_s": cfg.batch_window_ms / 1000.0,
                "max_batch": self.max_batch}

    @property
    def max_batch(self) -> int:
        """Frames per backend call (0: one per camera): `max_batch`, or for 0 one frame on the CPU,
        where a batch brings no speed and only latency (docs/benchmarks.md), one per camera on a GPU."""
        cfg, enhancer = self.cfg, self._enhancer
        if cfg is None:
            return 0
        if cfg.max_batch or enhancer is None:
            return cfg.max_batch
        return 1 if enhancer.backend.runs_on_cpu else 0

    def frame_key(self, frame: CameraFrame) -> str:
        return frame.channel.name

    def create_outputs(self, cfg: EnhanceNodeConfig) -> None:
        heatmaps = (cfg.publish_heatmap and self._enhancer is not None
                    and self._enhancer.backend.supports_prior_input)
        for ch in self._channels:
            ch.pub_image = self.add_publisher(Image, ch.topic("enhanced/image"), cfg,
                                              on_matched=partial(self._on_matched, ch, "image"))
            ch.pub_compressed = (self.add_publisher(CompressedImage, ch.topic("enhanced/image/compressed"), cfg,
                                                    on_matched=partial(self._on_matched, ch, "compressed"))
                                 if cfg.publish_compressed else None)
            ch.pub_info = self.add_publisher(CameraInfo, ch.topic("enhanced/camera_info"), cfg)
            ch.pub_heatmap = (self.add_publisher(Image, ch.topic("enhanced/degradation"), cfg,
                                                 on_matched=partial(self._on_matched, ch, "heatmap"))
                              if heatmaps else None)
            ch.pub_detect = self.add_publisher(Image, ch.topic(DETECT_TOPIC), cfg,
                                               on_matched=partial(self._on_matched, ch, "detect"))

    def create_io(self, cfg: EnhanceNodeConfig) -> None:
        in_type = CompressedImage if cfg.input_transport == "compressed" else Image
        for ch in self._channels:
            # Counters cover the current activation (set before the first frame can arrive).
            ch.reset()
            ch.lazy = cfg.lazy
            self.add_subscription(CameraInfo, ch.topic("camera_info"), ch.camera_infos.add, frames=False)
            ch.sub_input = self.add_subscription(in_type, ch.input_topic(cfg.input_transport),
                                                 partial(self._on_image, ch))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_deactivate(state)  # the worker has finished its frames and stopped
        for ch in self._channels:  # a new activation starts every camera's stream afresh
            if self._enhancer is not None:
                self._enhancer.close_stream(ch.stream_name)
            ch.sub_input = None  # destroyed; the lifecycle publishers stay until cleanup
        return result

    def _stream(self, ch: CameraChannel) -> VideoStream:
        assert self._enhancer is not None
        return self._enhancer.stream(ch.stream_name)

    def backend_description(self) -> str:
        return self._enhancer.backend.describe() if self._enhancer is not None else ""

    # ------------------------------------------------------------------ diagnostics

    def extra_diagnostics(self) -> dict[str, Any]:
        """p50/p95 ms per stage of the recent frames (decode, decompress, network, encode, compress, ...),
        the transports and lazy counts; for one camera also its fusion figures (else per camera)."""
        enhancer, cfg = self._enhancer, self.cfg
        if enhancer is None or cfg is None:
            return {}
        out: dict[str, Any] = {}
        for stage, t in enhancer.stages.summary().items():
            out[f"stage_{stage}_p50_ms"] = f"{t['p50_ms']:.1f}"
            out[f"stage_{stage}_p95_ms"] = f"{t['p95_ms']:.1f}"
        out["input_transport"] = cfg.input_transport
        out["output_transports"] = "raw,compressed" if cfg.publish_compressed else "raw"
        out["lazy"] = cfg.lazy
        out["restored"] = sum(ch.restored for ch in self._channels)
        out["lazy_skipped"] = sum(ch.lazy_skipped for ch in self._channels)
        out["detect_camera_frames"] = sum(ch.detect_camera_frames for ch in self._channels)
        out["detect_restore_below"] = f"{self._route.restore_below:g}"
        out["detect_target_level"] = f"{self._route.target_level:g}"
        out["subscribers"] = sum(ch.subscribers() for ch in self._channels)
        if self.multi_camera:
            out["cameras"] = ",".join(ch.name for ch in self._channels)
            worker = self._worker
            if worker is not None:
                b = worker.batch_stats()
                out["batches"], out["batch_mean"], out["batch_max"] = b.batches, f"{b.mean_size:.2f}", b.max_size
                out["max_batch"] = self.max_batch or len(self._channels)
        else:
            out.update(self._camera_values(enhancer, self._channels[0]) if self._channels else {})
        return out

    def _camera_values(self, enhancer: Enhancer, ch: CameraChannel) -> dict[str, Any]:
        out: dict[str, Any] = {}
        stream = enhancer.streams.get(ch.stream_name)
        if stream is not None and stream.prior.every > 1:
            out["prior_reused"], out["prior_computed"] = stream.prior.reused, stream.prior.computed
        if enhancer.cfg.temporal:
            out["temporal_weight"] = f"{stream.weight if stream else 0.0:.3f}"
            out["temporal_gain"] = f"{stream.gain if stream else 1.0:.3f}"
            out["temporal_cuts"] = stream.cuts if stream else 0
            out["temporal_resets"] = stream.restarts if stream else 0
            out["temporal_last_reset"] = stream.last_restart if stream else ""
        if enhancer.cfg.burst:
            out["burst_weight"] = f"{stream.burst_weight if stream else 0.0:.3f}"
        return out

    def extra_statuses(self) -> list[diagnostics.Status]:
        """One status per camera of a multi-camera node: its fps, latency, drops, lazy counts, fusion."""
        worker, enhancer = self._worker, self._enhancer
        if not self.multi_camera or enhancer is None:
            return []
        per_key = worker.stats_by_key() if worker is not None else {}
        statuses = []
        for ch in self._channels:
            stats = per_key.get(ch.name)
            values = {**diagnostics.worker_values(stats), "errors": stats.failed if stats else 0,
                      "restored": ch.restored, "lazy_skipped": ch.lazy_skipped, "subscribers": ch.subscribers(),
                      "detect_camera_frames": ch.detect_camera_frames,
                      "input": ch.input_topic(self.cfg.input_transport) if self.cfg else "",
                      "input_publishers": ch.input_publishers(),
                      **self._camera_values(enhancer, ch)}
            overload = diagnostics.overload_message(stats, self.output_verb)
            level, message = (diagnostics.WARN, overload) if overload else (diagnostics.OK, "serving")
            if self.state_label != "active":
                level, message = diagnostics.WARN, f"{self.state_label}: not processing"
            statuses.append(diagnostics.Status(ch.name, level, message, values))
        return statuses

    # ------------------------------------------------------------------ frames

    def _on_image(self, ch: CameraChannel, msg: Any) -> None:
        """A camera's input (executor thread): lazy skip, else on to the worker."""
        frame = CameraFrame(ch, msg)
        if self._enabled and ch.skip_if_unwatched(frame):
            return
        ch.take_held()  # a newer frame goes through: the unwatched one must not follow it out of order
        self.submit_frame(frame)

    def _on_matched(self, ch: CameraChannel, role: str, info: Any) -> None:
        """A subscriber matched an output (or left): from now on frames count as watched, even
        before the publisher's own count says so; the newest frame that nobody watched is restored.
        In the frames' callback group, so never between a frame's lazy check and its hand-over."""
        ch.note_matched(role, info.current_count)
        if info.current_count_change > 0:
            held = ch.take_held()
            if held is not None:
                self.submit_frame(held)

    def passthrough(self, frame: CameraFrame) -> None:
        ch, msg = frame.channel, frame.msg
        if isinstance(msg, CompressedImage):
            if ch.wants("compressed"):
                ch.pub_compressed.publish(msg)
            if ch.wants("image") or ch.wants("detect"):
                image = self._as_image(frame)  # decoded once for both
                if ch.wants("image"):
                    ch.pub_image.publish(image)
                if ch.wants("detect"):
                    ch.pub_detect.publish(image)
        else:
            if ch.wants("image"):
                ch.pub_image.publish(msg)
            if ch.wants("detect"):
                ch.pub_detect.publish(msg)
            if ch.wants("compressed"):
                prepared = self._decode(frame)
                ch.pub_compressed.publish(self._compressed_msg(prepared.rgb, prepared.encoding, msg.header))
        self._publish_camera_info(ch, msg.header)

    def _as_image(self, frame: CameraFrame, prepared: _Prepared | None = None) -> Image:
        """The camera's frame as sensor_msgs/Image: its own message, or a compressed one decoded."""
        msg = frame.msg
        if isinstance(msg, Image):
            return msg
        prepared = prepared or self._decode(frame)
        return make_image_msg(prepared.rgb, msg.header, prepared.encoding, alpha=prepared.alpha)

    def _decode(self, frame: CameraFrame) -> _Prepared:
        cfg, enhancer = self.cfg, self._enhancer
        assert cfg is not None and enhancer is not None
        msg = frame.msg
        if isinstance(msg, CompressedImage):
            with enhancer.stages.measure("decompress"):
                d = decode_compressed(msg.format, msg.data, max_input_pixels=cfg.max_input_pixels)
            return _Prepared(d.rgb, output_encoding_for(d.encoding, cfg.output_encoding), d.alpha, False,
                             *_position(msg.header))
        with enhancer.stages.measure("decode"):
            decoded = image_msg_to_decoded(msg, max_input_pixels=cfg.max_input_pixels, demosaic=cfg.demosaic)
        return _Prepared(decoded.rgb, output_encoding_for(decoded.encoding, cfg.output_encoding), decoded.alpha,
                         bool(msg.is_bigendian), *_position(msg.header))

    def process_items(self, items: list[tuple[str, CameraFrame]]) -> list[object]:
        """The frames the worker took (one per camera; one for a single camera): decoded one by one,
        through the backend together, each one's rest (fuse, convert, encode, publish) returned to run
        on the worker's second stage while the next frames are in the network."""
        cfg, enhancer = self.cfg, self._enhancer
        assert cfg is not None and enhancer is not None
        results: list[object] = [None] * len(items)
        ready: list[tuple[int, CameraFrame, _Prepared]] = []
        for i, (_, frame) in enumerate(items):
            if self.divert_if_disabled(frame):
                continue
            try:
                prepared = self._decode(frame)
                if self._route_detector(frame, prepared) == "camera" and not frame.channel.wants_restored():
                    # Only the detector watches, and it reads this frame as it came: no network.
                    send = partial(self._publish_detect_camera, frame, prepared)
                    results[i] = send if cfg.overlap else send()
                    continue
                ready.append((i, frame, prepared))
            except Exception as exc:  # noqa: BLE001 - that frame fails, the others go on
                results[i] = exc
        if not ready:
            return results
        rests = enhancer.enhance_batch_deferred([p.rgb for _, _, p in ready],
                                                [self._stream(f.channel) for _, f, _ in ready],
                                                [p.stamp_ns for _, _, p in ready], [p.frame_id for _, _, p in ready])
        for (i, frame, prepared), restored in zip(ready, rests):
            frame.channel.restored += 1
            publish = partial(self._finish, frame, prepared, restored)
            if cfg.overlap:
                results[i] = publish
                continue
            try:
                publish()
            except Exception as exc:  # noqa: BLE001
                results[i] = exc
        return results

    def _route_detector(self, frame: CameraFrame, prepared: _Prepared) -> str:
        """detect/image: which frame the detector reads ("restored", "camera"; "" when unwatched),
        kept in prepared.to_detector and, for the hysteresis, in the camera's channel."""
        ch = frame.channel
        if ch.wants("detect"):
            was = ch.detect_restoring
            ch.detect_restoring = self._route.restores(prepared.rgb, was)
            if ch.detect_restoring and not was:  # a new stretch of restored frames: the level afresh
                ch.detect_exposure.reset()
            prepared.to_detector = "restored" if ch.detect_restoring else "camera"
        return prepared.to_detector

    def _publish_detect_camera(self, frame: CameraFrame, prepared: _Prepared) -> None:
        """The camera's own frame on detect/image (a compressed input decoded to Image), in frame
        order with the restored ones: on the second stage when `overlap` is on, like them."""
        ch = frame.channel
        ch.pub_detect.publish(self._as_image(frame, prepared))
        ch.detect_camera_frames += 1

    def _finish(self, frame: CameraFrame, prepared: _Prepared, restored: Callable[[], np.ndarray]) -> None:
        cfg, enhancer = self.cfg, self._enhancer
        assert cfg is not None and enhancer is not None
        ch, msg = frame.channel, frame.msg
        rgb = restored()  # fused in frame order: the workers hand finishes over in order
        if self.divert_if_disabled(frame):  # switched off during inference
            return
        stages = enhancer.stages
        if prepared.to_detector == "camera" and ch.wants("detect"):
            self._publish_detect_camera(frame, prepared)
        to_detector = prepared.to_detector == "restored" and ch.wants("detect")
        if ch.wants("image") or to_detector:
            with stages.measure("encode"):
                out = make_image_msg(rgb, msg.header, prepared.encoding, alpha=prepared.alpha,
                                     bigendian=prepared.bigendian)
                detect_out = out
                if to_detector and self._detect_rule is not None:  # the detector's own level
                    detect_out = make_image_msg(for_detector(self._detect_rule, rgb, ch.detect_exposure), msg.header,
                                                prepared.encoding, alpha=prepared.alpha, bigendian=prepared.bigendian)
            with stages.measure("publish"):
                if ch.wants("image"):
                    ch.pub_image.publish(out)
                if to_detector:
                    ch.pub_detect.publish(detect_out)
        if ch.wants("compressed"):
            with stages.measure("compress"):
                compressed = self._compressed_msg(rgb, prepared.encoding, msg.header)
            ch.pub_compressed.publish(compressed)
        self._publish_camera_info(ch, msg.header)
        if ch.count("heatmap") > 0:
            ch.pub_heatmap.publish(make_image_msg(enhancer.heatmap_image(prepared.rgb), msg.header, "rgb8"))

    def _compressed_msg(self, rgb: np.ndarray, encoding: str, header: Header) -> CompressedImage:
        cfg = self.cfg
        assert cfg is not None
        fmt, data = compress_for_encoding(rgb, encoding, cfg.compressed_format, jpeg_quality=cfg.jpeg_quality,
                                          png_level=cfg.png_level)
        return make_compressed_msg(fmt, data, header)

    def _publish_camera_info(self, ch: CameraChannel, header: Header) -> None:
        info = ch.camera_infos.for_image(header)
        if info is not None and ch.pub_info is not None:
            ch.pub_info.publish(info)


def _position(header: Header) -> tuple[int, str]:
    """(stamp in ns, frame_id): where a frame is in its camera's stream."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec, header.frame_id


def main(argv: list[str] | None = None) -> int:
    return main_for(EnhanceNode, argv)


if __name__ == "__main__":
    sys.exit(main())
