#!/usr/bin/env bash
# INT8 versions of a model's exported graph, for measuring (docs/benchmarks.md, "INT8"):
#   scripts/quantize_int8.sh MODEL OUT_DIR     MODEL: quality | realtime | a checkpoint path
# Calibration: 64 degraded training crops (scripts/int8_calibration.py, the project's venv);
# quantisation: NNCF in a throw-away venv (.cache/int8-venv). Writes OUT_DIR/dapled.int8.onnx.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: scripts/quantize_int8.sh MODEL OUT_DIR}; OUT=${2:?usage: scripts/quantize_int8.sh MODEL OUT_DIR}
VENV=.cache/int8-venv
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "nncf==3.4.0" "onnx" "onnxruntime" "openvino" "numpy"
fi
ONNX=$(.venv/bin/python -c "import sys
from dap_led_ros.shipped_models import resolve_model
from dap_led_ros.runtime.backends.engine_cache import cached_onnx
print(cached_onnx(resolve_model(sys.argv[1], 'cpu')))" "$MODEL")
.venv/bin/python scripts/int8_calibration.py "$OUT/calibration.npy"
"$VENV/bin/python" scripts/quantize_int8.py "$ONNX" "$OUT/calibration.npy" "$OUT/dapled.int8.onnx"
