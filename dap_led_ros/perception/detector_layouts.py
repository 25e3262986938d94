"""Raw detector outputs -> boxes in the model input's pixels (numpy only, no model here).

Each decoder returns `Candidates`: N x 4 boxes (x0, y0, x1, y1 in pixels of the network input),
N scores and N integer class ids, already thresholded and de-duplicated (NMS where the graph does
not do it). `Letterbox` maps those boxes back to the original frame.

Layouts:
- `tf-ssd`: the TensorFlow object detection API's outputs `num_detections` [B],
  `detection_boxes` [B, N, 4] (ymin, xmin, ymax, xmax in 0..1), `detection_scores` [B, N],
  `detection_classes` [B, N] (1-based label-map ids); NMS is in the graph.
- `yolo`: Ultralytics exports. v8/v11 `[B, 4 + C, A]` (cx, cy, w, h in input pixels, then C class
  scores); v5 `[B, A, 5 + C]` (cx, cy, w, h, objectness, C class probabilities; score =
  objectness x class). No NMS in the graph: per-class NMS here.
- `yolo-end2end`: `[B, N, 6]` rows of (x0, y0, x1, y1, score, class) in input pixels (exports
  with NMS in the graph, YOLOv10/YOLO26 style).
- `boxes-scores-labels`: outputs named boxes [B, N, 4] or [N, 4] (x0, y0, x1, y1; input pixels,
  or 0..1 when every coordinate is), scores [B, N] or [N], labels [B, N] or [N]; NMS in the graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LAYOUTS = ("tf-ssd", "yolo", "yolo-end2end", "boxes-scores-labels")


class LayoutError(ValueError):
    """Model outputs that do not fit the layout they are decoded as."""


@dataclass
class Candidates:
    boxes: np.ndarray    # N x 4 float32, x0 y0 x1 y1 in network-input pixels
    scores: np.ndarray   # N float32
    classes: np.ndarray  # N int64

    @staticmethod
    def empty() -> "Candidates":
        return Candidates(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def keep(self, index: np.ndarray) -> "Candidates":
        return Candidates(self.boxes[index], self.scores[index], self.classes[index])


@dataclass(frozen=True)
class Letterbox:
    """How a frame was fitted into the network input: scale per axis and padding before it."""

    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    @staticmethod
    def stretch(width: int, height: int, in_w: int, in_h: int) -> "Letterbox":
        return Letterbox(in_w / width, in_h / height)

    @staticmethod
    def fit(width: int, height: int, in_w: int, in_h: int) -> tuple["Letterbox", tuple[int, int]]:
        """Aspect kept, centred, padded: (geometry, resized (w, h)) as Ultralytics letterboxes.

        Boxes map back with the one gain `r` on both axes, as Ultralytics' scale_boxes does (the
        resized sides are rounded, so this differs from the exact per-axis ratio by < 1 %)."""
        r = min(in_w / width, in_h / height)
        new_w, new_h = max(1, round(width * r)), max(1, round(height * r))
        left, top = round((in_w - new_w) / 2 - 0.1), round((in_h - new_h) / 2 - 0.1)
        return Letterbox(r, r, float(left), float(top)), (new_w, new_h)

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        out = boxes.astype(np.float32, copy=True)
        out[:, 0::2] = (out[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (out[:, 1::2] - self.pad_y) / self.scale_y
        return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes.T
    area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    kept: list[int] = []
    while order.size:
        i = order[0]
        kept.append(int(i))
        rest = order[1:]
        w = np.clip(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0, None)
        h = np.clip(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0, None)
        inter = w * h
        union = area[i] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(kept, np.int64)


def nms_per_class(c: Candidates, iou: float) -> Candidates:
    """NMS within each class (boxes of different classes never suppress each other)."""
    if not len(c.scores):
        return c
    # Offsetting each class far apart makes one pass equal to one pass per class.
    offset = c.classes.astype(np.float32)[:, None] * (float(np.abs(c.boxes).max()) + 1.0)
    kept = nms(c.boxes + offset, c.scores, iou)
    return c.keep(kept)


def _first_image(a: np.ndarray, rank: int, what: str) -> np.ndarray:
    """The first image's slice of a batched output (or the output itself when unbatched)."""
    a = np.asarray(a)
    if a.ndim == rank + 1:
        return a[0]
    if a.ndim == rank:
        return a
    raise LayoutError(f"{what} has shape {a.shape}; expected rank {rank} or {rank + 1}")


def decode_tf_ssd(outputs: dict[str, np.ndarray], in_w: int, in_h: int,
                  score_threshold: float) -> Candidates:
    """TensorFlow object detection API outputs (matched by name) -> candidates."""
    def pick(key: str) -> np.ndarray:
        found = [v for k, v in outputs.items() if key in k]
        if len(found) != 1:
            raise LayoutError(f"tf-ssd needs one output named *{key}*, outputs are {sorted(outputs)}")
        return np.asarray(found[0])

    boxes = _first_image(pick("detection_boxes"), 2, "detection_boxes")
    scores = _first_image(pick("detection_scores"), 1, "detection_scores")
    classes = _first_image(pick("detection_classes"), 1, "detection_classes")
    n = int(np.asarray(pick("num_detections")).reshape(-1)[0])
    if boxes.shape[-1] != 4 or not len(boxes) == len(scores) == len(classes):
        raise LayoutError(f"tf-ssd shapes disagree: boxes {boxes.shape}, scores {scores.shape}, "
                          f"classes {classes.shape}")
    n = max(0, min(n, len(scores)))
    ymin, xmin, ymax, xmax = boxes[:n].astype(np.float32).T
    c = Candidates(np.stack([xmin * in_w, ymin * in_h, xmax * in_w, ymax * in_h], axis=1),
                   scores[:n].astype(np.float32), np.rint(classes[:n]).astype(np.int64))
    return c.keep(np.nonzero(c.scores >= score_threshold)[0])


def yolo_orientation(shape: tuple[int, ...], num_classes: int = 0) -> str:
    """'channels-first' ([B, 4+C, A], v8/v11) or 'anchors-first' ([B, A, 5+C], v5).

    With the class count known (model metadata) the shape decides; otherwise the shorter axis is
    the attribute axis (A is in the thousands for every input size Ultralytics exports).
    """
    if len(shape) != 3:
        raise LayoutError(f"a YOLO output is [B, 4+C, A] or [B, A, 5+C], got shape {shape}")
    _, d1, d2 = shape
    if num_classes:
        if d1 == 4 + num_classes and d2 != 5 + num_classes:
            return "channels-first"
        if d2 == 5 + num_classes and d1 != 4 + num_classes:
            return "anchors-first"
    return "channels-first" if d1 < d2 else "anchors-first"


def decode_yolo(output: np.ndarray, score_threshold: float, iou: float,
                num_classes: int = 0) -> Candidates:
    """One raw Ultralytics output -> candidates after per-class NMS."""
    a = np.asarray(output, np.float32)
    if a.ndim == 2:
        a = a[None]
    orientation = yolo_orientation(a.shape, num_classes)
    rows = a[0].T if orientation == "channels-first" else a[0]  # A x attributes
    if orientation == "channels-first":
        if rows.shape[1] < 5:
            raise LayoutError(f"YOLO output {a.shape} has no class scores")
        class_scores = rows[:, 4:]
    else:
        if rows.shape[1] < 6:
            raise LayoutError(f"YOLO output {a.shape} has no class scores after objectness")
        class_scores = rows[:, 5:] * rows[:, 4:5]
    classes = np.argmax(class_scores, axis=1)
    scores = class_scores[np.arange(len(rows)), classes]
    keep = scores >= score_threshold
    cx, cy, w, h = rows[keep, :4].T
    c = Candidates(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1),
                   scores[keep], classes[keep].astype(np.int64))
    return nms_per_class(c, iou)


def decode_yolo_end2end(output: np.ndarray, score_threshold: float) -> Candidates:
    rows = _first_image(output, 2, "end-to-end YOLO output").astype(np.float32)
    if rows.shape[-1] != 6:
        raise LayoutError(f"yolo-end2end rows are (x0, y0, x1, y1, score, class), got {rows.shape}")
    rows = rows[rows[:, 4] >= score_threshold]
    return Candidates(rows[:, :4], rows[:, 4], np.rint(rows[:, 5]).astype(np.int64))


def decode_boxes_scores_labels(outputs: dict[str, np.ndarray], in_w: int, in_h: int,
                               score_threshold: float) -> Candidates:
    def pick(key: str) -> np.ndarray:
        found = [v for k, v in outputs.items() if k.lower() == key]
        if len(found) != 1:
            raise LayoutError(f"boxes-scores-labels needs an output named {key!r}, outputs are "
                              f"{sorted(outputs)}")
        return np.asarray(found[0])

    boxes = _first_image(pick("boxes"), 2, "boxes").astype(np.float32)
    scores = _first_image(pick("scores"), 1, "scores").astype(np.float32)
    labels = _first_image(pick("labels"), 1, "labels")
    if boxes.shape[-1] != 4 or not len(boxes) == len(scores) == len(labels):
        raise LayoutError(f"shapes disagree: boxes {boxes.shape}, scores {scores.shape}, "
                          f"labels {labels.shape}")
    if len(boxes) and float(np.abs(boxes).max()) <= 1.0:  # normalised coordinates
        boxes = boxes * np.array([in_w, in_h, in_w, in_h], np.float32)
    c = Candidates(boxes, scores, np.rint(labels).astype(np.int64))
    return c.keep(np.nonzero(c.scores >= score_threshold)[0])


def guess_layout(output_names: list[str], output_shapes: list[tuple], end2end: bool = False) -> str:
    """The layout a model's outputs look like, or a LayoutError saying what was found."""
    lowered = [n.lower() for n in output_names]
    if all(any(key in n for n in lowered) for key in
           ("detection_boxes", "detection_scores", "detection_classes", "num_detections")):
        return "tf-ssd"
    if {"boxes", "scores", "labels"} <= set(lowered):
        return "boxes-scores-labels"
    if len(output_names) == 1 and len(output_shapes[0]) == 3:
        return "yolo-end2end" if end2end else "yolo"
    raise LayoutError(
        f"cannot tell the detector layout from its outputs {list(zip(output_names, output_shapes))}; "
        f"set layout to one of {LAYOUTS}")
