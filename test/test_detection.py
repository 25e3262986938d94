"""Detector on ONNX Runtime: the shipped SSD-MobileNet-v2 COCO and YOLO / boxes-scores-labels graphs,
each checked against a reference decoder written here independently of `detector_layouts`."""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import skimage.data

from dap_led_ros.perception.detection import (
    COCO_LABELS,
    SHIPPED_MODEL,
    Detection,
    Detector,
    DetectorConfig,
    DetectorModelError,
    draw_detections,
    metadata_names,
    read_labels,
)
from tiny_detectors import boxes_scores_labels_model, yolo_model


@pytest.fixture(scope="module")
def detector():
    return Detector(DetectorConfig(score_threshold=0.3))


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()  # 512 x 512 RGB, a person filling the left two thirds


# ---------------------------------------------------------------- reference decoders (independent)

def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def reference_ssd(rgb, threshold):
    """The TF object detection API contract, read straight off an ONNX Runtime session."""
    session = ort.InferenceSession(str(SHIPPED_MODEL), providers=["CPUExecutionProvider"])
    h, w = rgb.shape[:2]
    x = cv2.resize(rgb, (300, 300), interpolation=cv2.INTER_LINEAR)[None]
    result = dict(zip([o.name for o in session.get_outputs()], session.run(None, {"image_tensor:0": x})))
    out = []
    for i in range(int(result["num_detections:0"][0])):
        score = float(result["detection_scores:0"][0, i])
        if score >= threshold:
            ymin, xmin, ymax, xmax = (float(v) for v in result["detection_boxes:0"][0, i])
            out.append((COCO_LABELS[int(result["detection_classes:0"][0, i])], score,
                        [xmin * w, ymin * h, xmax * w, ymax * h]))
    return sorted(out, key=lambda d: -d[1])


def reference_yolo(raw, frame_w, frame_h, in_w, in_h, anchors_first, names, conf=0.25, iou=0.45):
    """Ultralytics' decode: per-anchor best class, per-class greedy NMS, letterbox undone."""
    rows = raw[0].tolist() if anchors_first else raw[0].T.tolist()
    found = []
    for r in rows:
        scores = [r[4] * c for c in r[5:]] if anchors_first else r[4:]
        k = max(range(len(scores)), key=scores.__getitem__)
        if scores[k] >= conf:
            cx, cy, bw, bh = r[:4]
            found.append((k, scores[k], [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
    found.sort(key=lambda d: -d[1])
    kept = []
    for cand in found:
        if all(k[0] != cand[0] or _iou(k[2], cand[2]) <= iou for k in kept):
            kept.append(cand)
    gain = min(in_w / frame_w, in_h / frame_h)
    pad_x = round((in_w - frame_w * gain) / 2 - 0.1)
    pad_y = round((in_h - frame_h * gain) / 2 - 0.1)
    out = []
    for k, s, (x0, y0, x1, y1) in kept:
        box = [min(max((x0 - pad_x) / gain, 0), frame_w), min(max((y0 - pad_y) / gain, 0), frame_h),
               min(max((x1 - pad_x) / gain, 0), frame_w), min(max((y1 - pad_y) / gain, 0), frame_h)]
        out.append((names[k], s, box))
    return out


def _same(dets: list[Detection], ref, tol=0.5):
    assert [(d.label, round(d.score, 5)) for d in dets] == [(r[0], round(r[1], 5)) for r in ref]
    for d, r in zip(dets, ref):
        assert np.allclose(d.box, r[2], atol=tol), (d, r)


# ---------------------------------------------------------------- the shipped model

def test_shipped_model_is_onnx_with_its_names_and_layout(detector):
    assert SHIPPED_MODEL.suffix == ".onnx" and SHIPPED_MODEL.stat().st_size > 60e6
    meta = ort.InferenceSession(str(SHIPPED_MODEL), providers=["CPUExecutionProvider"]) \
        .get_modelmeta().custom_metadata_map
    assert json.loads(meta["names"]) == list(COCO_LABELS)
    assert detector.layout == "tf-ssd" and (detector.input_width, detector.input_height) == (300, 300)
    assert detector.labels == list(COCO_LABELS)


def test_opencv_dnn_is_not_needed(monkeypatch, astronaut):
    monkeypatch.delattr(cv2, "dnn", raising=False)  # OpenCV 5 builds without TF import, or none
    assert Detector(DetectorConfig(score_threshold=0.5)).detect(astronaut)[0].label == "person"


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_ssd_layout_matches_the_reference_decoder(detector, name):
    rgb = getattr(skimage.data, name)()
    _same(detector.detect(rgb), reference_ssd(rgb, 0.3), tol=1e-3)


def test_finds_the_person(detector, astronaut):
    dets = detector.detect(astronaut)
    assert dets, "no detection at all"
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    best = dets[0]
    assert (best.label, best.class_id) == ("person", 1) and best.score > 0.6
    x1, y1, x2, y2 = best.box
    # The astronaut spans about x 0..370, y 0..512 of the picture.
    assert x1 < 60 and y1 < 60 and 300 < x2 < 430 and y2 > 450
    assert all(0 <= v <= 512 for d in dets for v in d.box)


def test_finds_the_cat_and_the_cup(detector):
    assert detector.detect(skimage.data.chelsea())[0].label == "cat"
    assert detector.detect(skimage.data.coffee())[0].label == "cup"


def test_boxes_are_in_pixels_of_a_non_square_frame(detector, astronaut):
    frame = cv2.resize(astronaut, (256, 192), interpolation=cv2.INTER_AREA)
    person = next(d for d in detector.detect(frame) if d.label == "person")
    x1, y1, x2, y2 = person.box
    assert x2 <= 256 and y2 <= 192
    assert 150 < x2 < 215 and y2 > 165  # same place as in the full picture, scaled


def test_threshold_class_filter_and_limit(astronaut):
    only_mouse = Detector(DetectorConfig(score_threshold=0.3, classes=["mouse"]))
    assert all(d.label == "mouse" for d in only_mouse.detect(astronaut))
    one = Detector(DetectorConfig(score_threshold=0.0, max_detections=1))
    assert len(one.detect(astronaut)) == 1
    strict = Detector(DetectorConfig(score_threshold=0.99))
    assert strict.detect(astronaut) == []


def test_empty_scene_and_bad_input(detector):
    assert detector.detect(np.zeros((64, 64, 3), np.uint8)) == []
    with pytest.raises(ValueError, match="uint8"):
        detector.detect(np.zeros((64, 64), np.uint8))


def test_config_and_model_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown detector settings"):
        DetectorConfig.from_dict({"treshold": 0.3})
    with pytest.raises(ValueError, match="score_threshold"):
        DetectorConfig.from_dict({"score_threshold": 1.5})
    with pytest.raises(ValueError, match="layout"):
        DetectorConfig.from_dict({"layout": "detr"})
    with pytest.raises(DetectorModelError, match="not found"):
        Detector(DetectorConfig(model=str(tmp_path / "none.onnx")))
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(DetectorModelError, match="cannot load"):
        Detector(DetectorConfig(model=str(tmp_path / "junk.onnx")))
    with pytest.raises(DetectorModelError, match="not labels"):
        Detector(DetectorConfig(classes=["unicorn"]))
    with pytest.raises(DetectorModelError, match="input_width 320 set"):
        Detector(DetectorConfig(model=str(yolo_model(tmp_path / "y.onnx", np.zeros((1, 6, 8)))),
                                input_width=320))
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nperson\n")
    custom = Detector(DetectorConfig(labels=str(labels)))
    assert custom.label_of(1) == "person" and custom.label_of(7) == "class_7"


# ---------------------------------------------------------------- YOLO layouts

NAMES = {0: "person", 1: "car", 2: "dog"}


def _yolo_raw(rng, anchors_first: bool, in_w=64, in_h=64, n=40):
    """n candidates around three objects (several overlapping per object) plus noise rows."""
    centres = [(20, 30, 1), (44, 34, 0), (46, 36, 2)]  # two different classes overlap: both kept
    rows = []
    for i in range(n):
        cx, cy, cls = centres[i % 3]
        cx, cy = cx + rng.uniform(-1.5, 1.5), cy + rng.uniform(-1.5, 1.5)
        w, h = rng.uniform(8, 14), rng.uniform(10, 16)
        probs = rng.uniform(0, 0.1, 3)
        probs[cls] = rng.uniform(0.3, 0.95)
        rows.append([cx, cy, w, h, *( [rng.uniform(0.5, 1.0)] if anchors_first else []), *probs])
    for _ in range(20):  # background: low scores everywhere
        rows.append([rng.uniform(0, in_w), rng.uniform(0, in_h), 5, 5,
                     *([0.05] if anchors_first else []), *rng.uniform(0, 0.2, 3)])
    a = np.asarray(rows, np.float32)
    return a[None] if anchors_first else a.T[None]


@pytest.mark.parametrize("anchors_first", [False, True], ids=["v8-channels-first", "v5-anchors-first"])
@pytest.mark.parametrize("frame", [(200, 100), (90, 150), (64, 64)])
def test_yolo_layouts_match_the_reference_decoder(tmp_path, anchors_first, frame):
    raw = _yolo_raw(np.random.default_rng(3), anchors_first)
    path = yolo_model(tmp_path / "yolo.onnx", raw, names=NAMES)
    det = Detector(DetectorConfig(model=str(path), score_threshold=0.25))
    assert det.layout == "yolo" and det.labels == ["person", "car", "dog"] and det.letterbox
    rgb = np.full((frame[1], frame[0], 3), 90, np.uint8)
    ref = reference_yolo(raw, frame[0], frame[1], 64, 64, anchors_first, NAMES)
    got = det.detect(rgb)
    assert len(got) >= 3 and {d.label for d in got} == {"person", "car", "dog"}
    _same(got, ref)


def test_yolo_class_names_from_a_file_and_no_names(tmp_path):
    raw = _yolo_raw(np.random.default_rng(4), False)
    path = yolo_model(tmp_path / "yolo.onnx", raw)
    nameless = Detector(DetectorConfig(model=str(path), score_threshold=0.25))
    assert {d.label for d in nameless.detect(np.zeros((64, 64, 3), np.uint8))} == {"class_0", "class_1", "class_2"}
    names = tmp_path / "data.yaml"  # Ultralytics' dataset YAML
    names.write_text("path: x\nnames:\n  0: pedestrian\n  1: vehicle\n  2: animal\n")
    named = Detector(DetectorConfig(model=str(path), labels=str(names), score_threshold=0.25))
    assert {d.label for d in named.detect(np.zeros((64, 64, 3), np.uint8))} == {"pedestrian", "vehicle", "animal"}


def test_yolo_end2end_rows(tmp_path):
    rows = np.array([[[10, 12, 30, 40, 0.9, 2], [40, 8, 60, 30, 0.6, 0], [0, 0, 5, 5, 0.1, 1]]], np.float32)
    path = yolo_model(tmp_path / "e2e.onnx", rows, names=NAMES, end2end=True)
    det = Detector(DetectorConfig(model=str(path), score_threshold=0.25))
    assert det.layout == "yolo-end2end"
    got = det.detect(np.zeros((128, 128, 3), np.uint8))  # 2x the 64x64 input, no padding
    assert [(d.label, round(d.score, 3)) for d in got] == [("dog", 0.9), ("person", 0.6)]
    assert np.allclose(got[0].box, [20, 24, 60, 80])


def test_boxes_scores_labels_graph(tmp_path):
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 1.0]]], np.float32)  # normalised
    path = boxes_scores_labels_model(tmp_path / "bsl.onnx", boxes, np.array([[0.8, 0.4]]),
                                     np.array([[3, 1]]))
    det = Detector(DetectorConfig(model=str(path), score_threshold=0.3, labels=""))
    assert det.layout == "boxes-scores-labels" and not det.letterbox
    got = det.detect(np.zeros((100, 200, 3), np.uint8))
    assert [(d.class_id, d.label) for d in got] == [(3, "class_3"), (1, "class_1")]
    assert np.allclose(got[0].box, [20, 20, 100, 60], atol=1e-4)


def test_metadata_and_names_files(tmp_path):
    assert metadata_names({"names": "{0: 'a', 2: 'c'}"}) == ["a", "", "c"]
    assert metadata_names({"names": '["a", "b"]'}) == ["a", "b"]
    assert metadata_names({}) is None
    with pytest.raises(DetectorModelError, match="neither JSON"):
        metadata_names({"names": "__import__('os').system('true')"})
    f = tmp_path / "n.json"
    f.write_text('{"0": "x", "1": "y"}')
    assert read_labels(str(f)) == ["x", "y"]


def test_draw_detections_marks_the_box_only(astronaut):
    det = Detection(1, "person", 0.9, (100.0, 120.0, 300.0, 400.0))
    drawn = draw_detections(astronaut, [det])
    assert drawn.shape == astronaut.shape and drawn.dtype == np.uint8
    assert not np.shares_memory(drawn, astronaut)
    changed = np.any(drawn != astronaut, axis=2)
    assert changed[250, 100] and changed[400, 200]   # left and bottom edges
    assert not changed[250, 200]                      # inside the box
    assert not changed[480, 480]                      # far away
    assert det.to_dict() == {"class_id": 1, "label": "person", "score": 0.9,
                             "box": [100.0, 120.0, 300.0, 400.0]}
    assert len(COCO_LABELS) == 91 and COCO_LABELS[3] == "car"
