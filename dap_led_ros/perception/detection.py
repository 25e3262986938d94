"""Object detection with ONNX Runtime (no ROS here).

The default model is SSD-MobileNet-v2 trained on COCO (TensorFlow object detection API, 2018-03-29
release), converted to ONNX by `scripts/convert_detector.sh` and shipped in
`dap_led_ros/weights/` (docs/pipeline.md: origin, licence, how it was checked against OpenCV DNN).
No download and no OpenCV DNN is needed.

Your own ONNX detector works too, in the layouts of `detector_layouts` (Ultralytics YOLO v5/v8/v11
raw or end-to-end exports, TF object detection API SSD outputs, a plain boxes/scores/labels graph),
with class names from the model's metadata (`names`, as Ultralytics writes it) or a names file.
One `Detector.detect` serves detect_node, `dap-led detect`, `dap-led eval --downstream` and the
demo, so they share preprocessing and thresholds.
"""
from __future__ import annotations

import ast
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from dap_led_ros.perception.coco_labels import COCO_LABELS
from dap_led_ros.perception.detector_layouts import (
    LAYOUTS,
    Candidates,
    Letterbox,
    LayoutError,
    decode_boxes_scores_labels,
    decode_tf_ssd,
    decode_yolo,
    decode_yolo_end2end,
    guess_layout,
)
from dap_led_ros.perception.onnx_models import ModelLoadError, open_session, static_dim
from dap_led_ros.settings import validated_from_mapping
from dap_led_ros.shipped_models import shipped_detector

log = logging.getLogger(__name__)

SHIPPED_MODEL = shipped_detector()
RESIZE_MODES = ("auto", "stretch", "letterbox")
# Input size when neither the config nor the model fixes it, per layout.
DEFAULT_INPUT = {"tf-ssd": 300, "yolo": 640, "yolo-end2end": 640, "boxes-scores-labels": 640}
LETTERBOX_FILL = 114  # Ultralytics' padding grey

class DetectorModelError(RuntimeError):
    """The detection model cannot be found or loaded, or gives output we cannot read."""


@dataclass(frozen=True)
class Detection:
    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input frame

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = [round(v, 2) for v in self.box]
        d["score"] = round(self.score, 4)
        return d


@dataclass
class DetectorConfig:
    model: str = ""              # ONNX file; "" = the shipped SSD-MobileNet-v2 COCO
    layout: str = "auto"         # auto (from the outputs and metadata) | one of LAYOUTS
    labels: str = ""             # names file (.txt line i = class i; .yaml/.json list or map); "" = model's
    input_width: int = 0         # 0 = the model's fixed width, else DEFAULT_INPUT of the layout
    input_height: int = 0
    resize: str = "auto"         # auto (letterbox for YOLO, stretch otherwise) | stretch | letterbox
    swap_rb: bool = False        # feed BGR (models trained on BGR input)
    scale: float = 1.0 / 255.0   # float inputs: (pixel - mean) * scale; uint8 inputs take raw pixels
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    score_threshold: float = 0.5
    nms_iou: float = 0.45        # per-class NMS for layouts without NMS in the graph (raw YOLO)
    max_detections: int = 100
    classes: list[str] = field(default_factory=list)  # keep only these labels; empty = all
    threads: int = 0             # ONNX Runtime intra-op threads; 0 = its default
    device: str = "cpu"          # cpu | cuda | cuda:N | tensorrt (ONNX Runtime execution provider)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DetectorConfig":
        return validated_from_mapping(DetectorConfig, d, "detector settings")

    def validate(self) -> None:
        if self.input_width < 0 or self.input_height < 0:
            raise ValueError(f"input size must be >= 0 (0 = from the model), got "
                             f"{self.input_width}x{self.input_height}")
        if self.layout != "auto" and self.layout not in LAYOUTS:
            raise ValueError(f"layout must be auto or one of {LAYOUTS}, got {self.layout!r}")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {self.nms_iou}")
        if self.max_detections <= 0:
            raise ValueError(f"max_detections must be positive, got {self.max_detections}")
        if len(self.mean) != 3:
            raise ValueError(f"mean needs 3 values, got {self.mean}")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


def shipped_model_file() -> Path:
    """The shipped SSD-MobileNet-v2 COCO ONNX file."""
    if not SHIPPED_MODEL.is_file():
        raise DetectorModelError(f"the shipped detector {SHIPPED_MODEL} is missing from this install; "
                                 f"reinstall dap_led_ros or set 'model' to an ONNX detector")
    return SHIPPED_MODEL


def _names_from(value: Any, where: str) -> list[str]:
    """A list (index = class id) or a {id: name} map -> list of names ("" for unnamed ids)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        try:
            ids = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise DetectorModelError(f"class names in {where} are not keyed by integer ids") from None
        if not ids or min(ids) < 0:
            raise DetectorModelError(f"class names in {where} need ids >= 0")
        return [ids.get(i, "") for i in range(max(ids) + 1)]
    raise DetectorModelError(f"class names in {where} must be a list or an id -> name map")


def read_labels(path: str) -> list[str]:
    """Class names from a file: .yaml/.yml/.json (a list, a map, or a `names:` key as in
    Ultralytics' data YAML) or text (line i = class id i)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DetectorModelError(f"labels file not found: {p}")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        try:
            data = yaml.safe_load(text)  # JSON is YAML
        except yaml.YAMLError as exc:
            raise DetectorModelError(f"labels file {p} is not valid YAML/JSON: {exc}") from None
        if isinstance(data, dict) and "names" in data:
            data = data["names"]
        return _names_from(data, str(p))
    return [line.strip() for line in text.splitlines()]


def metadata_names(metadata: dict[str, str]) -> list[str] | None:
    """Class names from ONNX metadata `names`: JSON, or the Python literal Ultralytics writes."""
    raw = metadata.get("names")
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        try:
            value = ast.literal_eval(raw)  # literals only; never executes code
        except (ValueError, SyntaxError):
            raise DetectorModelError(f"model metadata 'names' is neither JSON nor a literal: "
                                     f"{raw[:80]!r}") from None
    return _names_from(value, "the model metadata")


class Detector:
    """Detects objects in H x W x 3 uint8 RGB frames. Not thread-safe: one per thread."""

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()
        self.cfg.validate()
        path = Path(self.cfg.model).expanduser() if self.cfg.model else shipped_model_file()
        try:
            self.session = open_session(path, self.cfg.device, self.cfg.threads, "detection model")
        except ModelLoadError as exc:
            raise DetectorModelError(str(exc)) from None
        meta = self.session.get_modelmeta().custom_metadata_map or {}
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DetectorModelError(f"a detector needs one image input of rank 4, {path.name} has "
                                     f"{[(i.name, i.shape) for i in inputs]}")
        self._input = inputs[0]
        self._uint8 = self._input.type == "tensor(uint8)"
        if not self._uint8 and self._input.type not in ("tensor(float)", "tensor(float16)"):
            raise DetectorModelError(f"detector input type {self._input.type} is not supported "
                                     f"(uint8, float or float16)")
        shape = self._input.shape
        self._nhwc = static_dim(shape[3]) == 3 or (static_dim(shape[1]) != 3 and self._uint8)
        model_h, model_w = (shape[1], shape[2]) if self._nhwc else (shape[2], shape[3])
        try:
            self.layout = (self.cfg.layout if self.cfg.layout != "auto" else
                           meta.get("dap_led_layout") or guess_layout(
                               [o.name for o in outputs], [tuple(o.shape) for o in outputs],
                               end2end=str(meta.get("end2end", "")).lower() == "true"))
        except LayoutError as exc:
            raise DetectorModelError(f"{path.name}: {exc}") from None
        if self.layout not in LAYOUTS:
            raise DetectorModelError(f"{path.name}: metadata layout {self.layout!r} is not one of {LAYOUTS}")
        default = DEFAULT_INPUT[self.layout]
        self.input_width = self._size("width", self.cfg.input_width, static_dim(model_w), default)
        self.input_height = self._size("height", self.cfg.input_height, static_dim(model_h), default)
        self.letterbox = (self.cfg.resize == "letterbox" or
                          (self.cfg.resize == "auto" and self.layout.startswith("yolo")))
        if self.cfg.labels:
            self.labels = read_labels(self.cfg.labels)
        else:
            self.labels = metadata_names(meta) or (list(COCO_LABELS) if self.layout == "tf-ssd" else [])
        unknown = set(self.cfg.classes) - set(self.labels)
        if unknown:
            raise DetectorModelError(f"classes {sorted(unknown)} are not labels of this model")
        self._keep = set(self.cfg.classes)
        self._mean = np.asarray(self.cfg.mean, np.float32)
        self.model_name = path.name
        log.info("detector %s: layout %s, input %dx%d %s (%s), providers %s", path.name, self.layout,
                 self.input_width, self.input_height, "NHWC" if self._nhwc else "NCHW",
                 "letterbox" if self.letterbox else "stretch", self.session.get_providers())

    @staticmethod
    def _size(name: str, configured: int, static: int, default: int) -> int:
        if configured and static and configured != static:
            raise DetectorModelError(f"input_{name} {configured} set, but the model's input {name} "
                                     f"is fixed at {static}")
        return configured or static or default

    def describe(self) -> str:
        return f"{self.model_name} ({self.layout}, {self.input_width}x{self.input_height})"

    def label_of(self, class_id: int) -> str:
        if 0 <= class_id < len(self.labels) and self.labels[class_id]:
            return self.labels[class_id]
        return f"class_{class_id}"

    def preprocess(self, rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """The network input for one frame and the geometry that maps boxes back to it."""
        height, width = rgb.shape[:2]
        in_w, in_h = self.input_width, self.input_height
        if self.letterbox:
            geometry, (new_w, new_h) = Letterbox.fit(width, height, in_w, in_h)
            canvas = np.full((in_h, in_w, 3), LETTERBOX_FILL, np.uint8)
            left, top = int(geometry.pad_x), int(geometry.pad_y)
            canvas[top:top + new_h, left:left + new_w] = cv2.resize(
                rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
            image = canvas
        else:
            geometry = Letterbox.stretch(width, height, in_w, in_h)
            image = cv2.resize(rgb, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        if self.cfg.swap_rb:
            image = image[..., ::-1]
        if self._uint8:
            x = image
        else:
            x = (image.astype(np.float32) - self._mean) * np.float32(self.cfg.scale)
            if self._input.type == "tensor(float16)":
                x = x.astype(np.float16)
        if not self._nhwc:
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None]), geometry

    def _decode(self, outputs: dict[str, np.ndarray]) -> Candidates:
        cfg, in_w, in_h = self.cfg, self.input_width, self.input_height
        if self.layout == "tf-ssd":
            return decode_tf_ssd(outputs, in_w, in_h, cfg.score_threshold)
        if self.layout == "boxes-scores-labels":
            return decode_boxes_scores_labels(outputs, in_w, in_h, cfg.score_threshold)
        if len(outputs) != 1:
            raise LayoutError(f"{self.layout} needs one output, the model has {sorted(outputs)}")
        (raw,) = outputs.values()
        if self.layout == "yolo-end2end":
            return decode_yolo_end2end(raw, cfg.score_threshold)
        return decode_yolo(raw, cfg.score_threshold, cfg.nms_iou, num_classes=len(self.labels))

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detections above the score threshold, best first, boxes clipped to the frame."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise ValueError(f"expected a non-empty H x W x 3 uint8 image, got "
                             f"{rgb.dtype} {rgb.shape}")
        x, geometry = self.preprocess(rgb)
        names = [o.name for o in self.session.get_outputs()]
        try:
            found = self._decode(dict(zip(names, self.session.run(None, {self._input.name: x}))))
        except LayoutError as exc:
            raise DetectorModelError(f"{self.model_name}: {exc}") from None
        height, width = rgb.shape[:2]
        boxes = geometry.to_frame(found.boxes)
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
        detections: list[Detection] = []
        for i in np.argsort(-found.scores, kind="stable"):
            label = self.label_of(int(found.classes[i]))
            if self._keep and label not in self._keep:
                continue
            box = tuple(float(v) for v in boxes[i])
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # degenerate after clipping
            detections.append(Detection(int(found.classes[i]), label, float(found.scores[i]), box))
            if len(detections) == self.cfg.max_detections:
                break
        return detections

    def close(self) -> None:
        self.session = None


def _class_color(class_id: int) -> tuple[int, int, int]:
    """A stable, saturated colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 180)
    hsv = np.array([[[hue, 220, 255]]], np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_detections(rgb: np.ndarray, detections: list[Detection]) -> np.ndarray:
    """A copy of the RGB frame with each detection's box, label and score drawn on it."""
    out = np.ascontiguousarray(rgb).copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    font_scale = max(0.4, min(out.shape[:2]) / 800)
    for det in detections:
        color = _class_color(det.class_id)
        x1, y1, x2, y2 = (int(round(v)) for v in det.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        text = f"{det.label} {det.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y1 - th - base, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), color, cv2.FILLED)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return out
