"""`dap-led detect IN OUT` on ordinary photos with the shipped detector and a YOLO ONNX."""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import skimage.data

from dap_led_ros.cli import main as cli_main
from tiny_detectors import yolo_model


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "pets").mkdir(parents=True)
    assert cv2.imwrite(str(folder / "astronaut.jpg"), skimage.data.astronaut()[..., ::-1])
    assert cv2.imwrite(str(folder / "cameraman.png"), skimage.data.camera())  # grayscale
    assert cv2.imwrite(str(folder / "pets" / "cat.png"), skimage.data.chelsea()[..., ::-1])
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def test_a_folder_of_photos_gives_json_and_overlays(tmp_path, photos, capsys):
    before = _digest(photos)
    out = tmp_path / "out"
    assert cli_main(["detect", str(photos), str(out), "--threads", "1"]) == 1  # broken.png failed
    err = capsys.readouterr().err
    assert "broken.png" in err and "truncated" in err
    assert _digest(photos) == before  # inputs untouched
    found = {}
    for name in ("astronaut", "cameraman", "pets/cat"):
        doc = json.loads((out / f"{name}.json").read_text())
        found[name] = [d["label"] for d in doc["detections"]]
        for d in doc["detections"]:
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 < x1 <= doc["width"] and 0 <= y0 < y1 <= doc["height"]
            assert 0.5 <= d["score"] <= 1.0
        overlay = cv2.imread(str(out / f"{name}.png"))
        assert overlay.shape[:2] == (doc["height"], doc["width"])
    assert found["astronaut"][0] == "person" and found["cameraman"][0] == "person"
    assert found["pets/cat"][0] == "cat"
    assert not (out / "broken.json").exists()


def test_existing_outputs_need_force_and_out_inside_in_is_refused(tmp_path, photos, capsys):
    one = photos / "pets" / "cat.png"
    out = tmp_path / "single"
    assert cli_main(["detect", str(one), str(out), "--no-overlay"]) == 0
    assert [p.name for p in out.iterdir()] == ["cat.json"]
    assert cli_main(["detect", str(one), str(out), "--no-overlay"]) == 2
    assert "--force" in capsys.readouterr().err
    assert cli_main(["detect", str(one), str(out), "--no-overlay", "--force"]) == 0
    assert cli_main(["detect", str(photos), str(photos / "out")]) == 2
    assert "inside" in capsys.readouterr().err
    assert not (photos / "out").exists()
    assert cli_main(["detect", str(tmp_path / "absent.png"), str(out)]) == 2
    assert cli_main(["detect", str(one), str(out), "--model", str(tmp_path / "none.onnx"), "--force"]) == 2
    assert "not found" in capsys.readouterr().err


def test_any_supported_onnx_detector(tmp_path, photos):
    rows = np.array([[[8, 16, 24, 48, 0.8, 1]]], np.float32)  # end-to-end YOLO rows, 64x64 input
    model = yolo_model(tmp_path / "e2e.onnx", rows, names={0: "a", 1: "b"}, end2end=True)
    out = tmp_path / "yolo"
    frame = photos / "cameraman.png"  # 512 x 512: gain 8 from the 64 x 64 input
    assert cli_main(["detect", str(frame), str(out), "--model", str(model), "--score", "0.3"]) == 0
    doc = json.loads((out / "cameraman.json").read_text())
    assert doc["detections"] == [{"label": "b", "class_id": 1, "score": 0.8, "box": [64.0, 128.0, 192.0, 384.0]}]
