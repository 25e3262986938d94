"""`depth_node`: monocular depth on the enhanced frames, from a user-supplied ONNX model.

Topics (relative: a namespace or remaps place the node beside its enhance_node):
  in   enhanced/image         sensor_msgs/Image       any encoding enhance_node publishes
  in   enhanced/camera_info   sensor_msgs/CameraInfo
  out  depth/image            sensor_msgs/Image 32FC1 the model's output (see DepthConfig.output),
                                                       header (stamp, frame_id) of the input
  out  depth/camera_info      sensor_msgs/CameraInfo  the input's, beside each depth image
  out  depth/colorized        sensor_msgs/Image rgb8  preview, near = bright (publish_colorized)
While disabled (~/enable false) nothing is published on depth/image; with
passthrough_when_disabled the input frame goes out untouched on depth/colorized.
Settings: `DepthNodeConfig`; lifecycle, ~/enable, QoS and diagnostics: `ManagedImageNode`.
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dap_led_ros.perception.depth import DEPTH_PRESETS, DepthConfig, DepthEstimator, depth_config_for_preset
from dap_led_ros.ros.camera_info_cache import CameraInfoCache
from dap_led_ros.ros.lifecycle_base import ManagedImageNode
from dap_led_ros.ros.list_params import format_list, parse_floats
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg
from dap_led_ros.ros.params import ConfigError, ManagedNodeConfig, param_help
from dap_led_ros.ros.runner import main_for

NODE_NAME = "depth_node"
INPUT_TOPIC = "enhanced/image"
INPUT_INFO_TOPIC = "enhanced/camera_info"
DEPTH_TOPIC = "depth/image"
DEPTH_INFO_TOPIC = "depth/camera_info"
COLORIZED_TOPIC = "depth/colorized"

_DEPTH = DepthConfig()  # the one source of the estimator's defaults


@dataclass
class DepthNodeConfig(ManagedNodeConfig):
    """`depth_node` settings. Estimator settings default to DepthConfig's."""

    model: str = field(default=_DEPTH.model, metadata=param_help(
        "ONNX depth model (required), e.g. Depth Anything V2 exported as in docs/pipeline.md"))
    device: str = field(default=_DEPTH.device, metadata=param_help("cpu | cuda | cuda:N"))
    threads: int = field(default=_DEPTH.threads, metadata=param_help(
        "ONNX Runtime CPU threads (0: library default)"))
    preset: str = field(default="", metadata=param_help(
        "input layout of a common model: " + " | ".join(sorted(DEPTH_PRESETS)) + "; sets mean, std, output and "
        "the input size of a dynamic-size model (over those parameters); empty: the parameters below"))
    input_width: int = field(default=_DEPTH.input_width, metadata=param_help(
        "network input width (0: the model's fixed width, else 518)"))
    input_height: int = field(default=_DEPTH.input_height, metadata=param_help(
        "network input height (0: the model's fixed height, else 518)"))
    mean: str = field(default=format_list(_DEPTH.mean), metadata=param_help(
        "per-channel (R, G, B) mean in [0, 1], comma-separated"))
    std: str = field(default=format_list(_DEPTH.std), metadata=param_help(
        "per-channel (R, G, B) std in [0, 1], comma-separated"))
    output: str = field(default=_DEPTH.output, metadata=param_help(
        "what the model predicts: disparity (relative inverse depth, big = near) | depth"))
    interpolation: str = field(default=_DEPTH.interpolation, metadata=param_help(
        "resize of the prediction to the frame: nearest | linear | cubic"))
    colormap: str = field(default=_DEPTH.colormap, metadata=param_help(
        "colormap of depth/colorized (OpenCV name: inferno, turbo, viridis, ...)"))
    publish_colorized: bool = field(default=True, metadata=param_help(
        "publish the depth/colorized preview (only computed while someone subscribes)"))

    def validate(self) -> None:
        super().validate()
        try:
            self.depth_config().validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def depth_config(self) -> DepthConfig:
        if self.preset:
            return depth_config_for_preset(self.preset, self.model, device=self.device, threads=self.threads,
                                           input_width=self.input_width, input_height=self.input_height,
                                           interpolation=self.interpolation, colormap=self.colormap)
        return DepthConfig(model=self.model, device=self.device, threads=self.threads,
                           input_width=self.input_width, input_height=self.input_height,
                           mean=parse_floats("mean", self.mean, 3),
                           std=parse_floats("std", self.std, 3), output=self.output,
                           interpolation=self.interpolation, colormap=self.colormap)


def depth_image_msg(depth: np.ndarray, header: Header) -> Image:
    """An H x W float32 map as a 32FC1 sensor_msgs/Image (native byte order)."""
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    msg = Image()
    msg.header = header
    msg.height, msg.width = depth.shape
    msg.encoding = "32FC1"
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = msg.width * 4
    data = array.array("B")
    data.frombytes(depth.tobytes())
    msg.data = data
    return msg


class DepthNode(ManagedImageNode[DepthNodeConfig]):
    config_class = DepthNodeConfig

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        self._estimator: DepthEstimator | None = None
        self._camera_infos = CameraInfoCache()
        self._pub_depth: Any = None
        self._pub_info: Any = None
        self._pub_colorized: Any = None
        super().__init__(node_name, **kwargs)

    # ------------------------------------------------------------------ lifecycle hooks

    def load(self, cfg: DepthNodeConfig) -> None:
        self._estimator = DepthEstimator(cfg.depth_config())

    def unload(self) -> None:
        estimator, self._estimator = self._estimator, None
        self._camera_infos.clear()
        if estimator is not None:
            estimator.close()

    def create_outputs(self, cfg: DepthNodeConfig) -> None:
        self._pub_depth = self.add_publisher(Image, DEPTH_TOPIC, cfg)
        self._pub_info = self.add_publisher(CameraInfo, DEPTH_INFO_TOPIC, cfg)
        self._pub_colorized = (self.add_publisher(Image, COLORIZED_TOPIC, cfg)
                               if cfg.publish_colorized else None)

    def create_io(self, cfg: DepthNodeConfig) -> None:
        self.add_subscription(CameraInfo, INPUT_INFO_TOPIC, self._camera_infos.add, frames=False)
        self.add_subscription(Image, INPUT_TOPIC, self.submit_frame)

    def backend_description(self) -> str:
        est = self._estimator
        if est is None:
            return ""
        return (f"onnxruntime {Path(est.cfg.model).name} "
                f"{est.input_width}x{est.input_height} ({est.cfg.output})")

    # ------------------------------------------------------------------ frames

    def passthrough(self, msg: Image) -> None:
        if self._pub_colorized is not None:
            self._pub_colorized.publish(msg)

    def process(self, msg: Image) -> None:
        cfg, estimator = self.cfg, self._estimator
        assert cfg is not None and estimator is not None
        decoded = image_msg_to_decoded(msg, max_input_pixels=cfg.max_input_pixels)
        depth = estimator.estimate(decoded.rgb)
        self._pub_depth.publish(depth_image_msg(depth, msg.header))
        info = self._camera_infos.for_image(msg.header)
        if info is not None:
            self._pub_info.publish(info)
        preview = self._pub_colorized
        if preview is not None and preview.get_subscription_count() > 0:
            preview.publish(make_image_msg(estimator.colorize(depth), msg.header, "rgb8"))


def main(argv: list[str] | None = None) -> int:
    return main_for(DepthNode, argv)


if __name__ == "__main__":
    sys.exit(main())
