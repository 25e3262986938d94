"""`detect_node`: object detection on the enhanced frames (ONNX Runtime; SSD-MobileNet-v2 COCO shipped).

Topics (relative: a namespace or remaps place the node beside its enhance_node):
  in   enhanced/image     sensor_msgs/Image              any encoding enhance_node publishes
  out  detections         vision_msgs/Detection2DArray   only where vision_msgs is installed;
                                                         class_id = label, header of the input
  out  detections/json    std_msgs/String                always; JSON with the input's stamp and
                                                         frame_id (String has no header)
  out  detections/image   sensor_msgs/Image              the frame with boxes drawn, header of
                                                         the input (rgb8; bgr8 for BGR input)
The JSON message:
  {"header": {"stamp": {"sec": 12, "nanosec": 5}, "frame_id": "cam"},
   "width": 640, "height": 480, "model": "ssd_mobilenet_v2_coco.onnx (tf-ssd, 300x300)",
   "detections": [{"class_id": 1, "label": "person", "score": 0.91, "box": [x1, y1, x2, y2]}]}
with boxes in pixels of the input frame. While disabled (~/enable false) no detections are
published; with passthrough_when_disabled the input frame goes out untouched on detections/image.
Settings: `DetectNodeConfig`; lifecycle, ~/enable, QoS and diagnostics: `ManagedImageNode`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from dap_led_ros.perception.detection import Detection, Detector, DetectorConfig, draw_detections
from dap_led_ros.ros.lifecycle_base import ManagedImageNode
from dap_led_ros.ros.list_params import format_list, parse_floats, parse_names
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg
from dap_led_ros.ros.params import ConfigError, ManagedNodeConfig, param_help
from dap_led_ros.ros.runner import main_for

try:  # vision_msgs is a ROS package with no PyPI wheel; optional
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:
    Detection2DArray = None

NODE_NAME = "detect_node"
INPUT_TOPIC = "enhanced/image"
DETECTIONS_TOPIC = "detections"
JSON_TOPIC = "detections/json"
IMAGE_TOPIC = "detections/image"

_DETECTOR = DetectorConfig()  # the one source of the detector's defaults


@dataclass
class DetectNodeConfig(ManagedNodeConfig):
    """`detect_node` settings. Detector settings default to DetectorConfig's."""

    model: str = field(default=_DETECTOR.model, metadata=param_help(
        "ONNX detector (YOLO v5/v8/v11, TF object detection API SSD, boxes/scores/labels); "
        "empty: the shipped SSD-MobileNet-v2 COCO"))
    layout: str = field(default=_DETECTOR.layout, metadata=param_help(
        "auto | tf-ssd | yolo | yolo-end2end | boxes-scores-labels"))
    labels: str = field(default=_DETECTOR.labels, metadata=param_help(
        "class names file (.txt line i = class i, .yaml/.json); empty: the model's metadata, else COCO"))
    input_width: int = field(default=_DETECTOR.input_width, metadata=param_help(
        "network input width; 0: the model's, else the layout's default"))
    input_height: int = field(default=_DETECTOR.input_height, metadata=param_help(
        "network input height; 0: the model's, else the layout's default"))
    resize: str = field(default=_DETECTOR.resize, metadata=param_help(
        "auto (letterbox for YOLO, stretch otherwise) | stretch | letterbox"))
    swap_rb: bool = field(default=_DETECTOR.swap_rb, metadata=param_help(
        "feed BGR instead of RGB (models trained on BGR)"))
    scale: float = field(default=_DETECTOR.scale, metadata=param_help(
        "float inputs: (pixel - mean) * scale; uint8 inputs take raw pixels"))
    mean: str = field(default=format_list(_DETECTOR.mean), metadata=param_help(
        "per-channel mean in pixel units (0..255), comma-separated"))
    score_threshold: float = field(default=_DETECTOR.score_threshold, metadata=param_help(
        "minimum score of a published detection (0..1)"))
    nms_iou: float = field(default=_DETECTOR.nms_iou, metadata=param_help(
        "IoU of per-class NMS for raw YOLO outputs"))
    max_detections: int = field(default=_DETECTOR.max_detections, metadata=param_help(
        "at most this many detections per frame, best first"))
    classes: str = field(default=format_list(_DETECTOR.classes), metadata=param_help(
        "comma-separated labels to keep (e.g. 'person, car'); empty: all"))
    device: str = field(default=_DETECTOR.device, metadata=param_help(
        "cpu | cuda[:N] | tensorrt[:N] (ONNX Runtime execution provider)"))
    threads: int = field(default=_DETECTOR.threads, metadata=param_help(
        "ONNX Runtime intra-op threads (0: its default)"))
    publish_image: bool = field(default=True, metadata=param_help(
        "publish detections/image (only drawn while someone subscribes)"))

    def validate(self) -> None:
        super().validate()
        try:
            self.detector_config().validate()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def detector_config(self) -> DetectorConfig:
        return DetectorConfig(model=self.model, layout=self.layout, labels=self.labels,
                              input_width=self.input_width, input_height=self.input_height,
                              resize=self.resize, swap_rb=self.swap_rb, scale=self.scale,
                              mean=parse_floats("mean", self.mean, 3),
                              score_threshold=self.score_threshold, nms_iou=self.nms_iou,
                              max_detections=self.max_detections,
                              classes=parse_names(self.classes), device=self.device,
                              threads=self.threads)


def detections_json(detections: list[Detection], header: Header, width: int, height: int,
                    model: str) -> String:
    """The detections of one frame as a std_msgs/String carrying the frame's stamp and frame_id."""
    doc = {
        "header": {"stamp": {"sec": int(header.stamp.sec), "nanosec": int(header.stamp.nanosec)},
                   "frame_id": header.frame_id},
        "width": width,
        "height": height,
        "model": model,
        "detections": [d.to_dict() for d in detections],
    }
    return String(data=json.dumps(doc, separators=(",", ":")))


def detection2d_array(detections: list[Detection], header: Header) -> Any:
    """vision_msgs/Detection2DArray (vision_msgs 4.x layout, Humble and later; 3.x tolerated)."""
    out = Detection2DArray()
    out.header = header
    for det in detections:
        msg = Detection2D()
        msg.header = header
        x1, y1, x2, y2 = det.box
        center = msg.bbox.center
        position = getattr(center, "position", center)  # 4.x: Pose2D.position; 3.x: Pose2D.x/y
        position.x, position.y = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        msg.bbox.size_x, msg.bbox.size_y = x2 - x1, y2 - y1
        hypothesis = ObjectHypothesisWithPose()
        target = getattr(hypothesis, "hypothesis", hypothesis)  # 4.x nests ObjectHypothesis
        if hasattr(target, "class_id"):
            target.class_id = det.label
        else:
            target.id = det.label
        target.score = det.score
        msg.results.append(hypothesis)
        out.detections.append(msg)
    return out


class DetectNode(ManagedImageNode[DetectNodeConfig]):
    config_class = DetectNodeConfig

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        self._detector: Detector | None = None
        self._pub_json: Any = None
        self._pub_array: Any = None
        self._pub_image: Any = None
        self._last_count = 0
        super().__init__(node_name, **kwargs)
        if Detection2DArray is None:
            self.get_logger().info("vision_msgs is not installed: publishing detections/json and "
                                   "detections/image only")

    # ------------------------------------------------------------------ lifecycle hooks

    def load(self, cfg: DetectNodeConfig) -> None:
        self._detector = Detector(cfg.detector_config())

    def unload(self) -> None:
        detector, self._detector = self._detector, None
        if detector is not None:
            detector.close()

    def create_outputs(self, cfg: DetectNodeConfig) -> None:
        self._pub_json = self.add_publisher(String, JSON_TOPIC, cfg)
        self._pub_array = (self.add_publisher(Detection2DArray, DETECTIONS_TOPIC, cfg)
                           if Detection2DArray is not None else None)
        self._pub_image = self.add_publisher(Image, IMAGE_TOPIC, cfg) if cfg.publish_image else None

    def create_io(self, cfg: DetectNodeConfig) -> None:
        self.add_subscription(Image, INPUT_TOPIC, self.submit_frame)

    def backend_description(self) -> str:
        det = self._detector
        return f"onnxruntime {det.describe()}" if det is not None else ""

    def extra_diagnostics(self) -> dict[str, Any]:
        return {"detections_last_frame": self._last_count,
                "vision_msgs": Detection2DArray is not None}

    # ------------------------------------------------------------------ frames

    def passthrough(self, msg: Image) -> None:
        if self._pub_image is not None:
            self._pub_image.publish(msg)

    def process(self, msg: Image) -> None:
        cfg, detector = self.cfg, self._detector
        assert cfg is not None and detector is not None
        decoded = image_msg_to_decoded(msg, max_input_pixels=cfg.max_input_pixels)
        detections = detector.detect(decoded.rgb)
        self._last_count = len(detections)
        height, width = decoded.rgb.shape[:2]
        self._pub_json.publish(detections_json(detections, msg.header, width, height,
                                               detector.describe()))
        if self._pub_array is not None:
            self._pub_array.publish(detection2d_array(detections, msg.header))
        image_pub = self._pub_image
        if image_pub is not None and image_pub.get_subscription_count() > 0:
            encoding = "bgr8" if decoded.encoding in ("bgr8", "bgra8") else "rgb8"
            image_pub.publish(make_image_msg(draw_detections(decoded.rgb, detections),
                                             msg.header, encoding))


def main(argv: list[str] | None = None) -> int:
    return main_for(DetectNode, argv)


if __name__ == "__main__":
    sys.exit(main())
