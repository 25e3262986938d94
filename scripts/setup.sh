#!/usr/bin/env bash
# Create .venv in the repo root and install the package with everything it needs (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip wheel setuptools
# torch/torchvision: these pins install from the machine's local wheels (see README).
.venv/bin/python -c "import torch, torchvision" 2>/dev/null \
  || .venv/bin/python -m pip install -q torch==2.14.1 torchvision==0.29.1
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, onnxruntime, rclpy; print("torch", torch.__version__, "onnxruntime", onnxruntime.__version__)'))"
