"""Data kept beside the checkout: `<checkout>/../shared/data` (the workspace this package is
developed in). Absent in a pip or colcon install; users pass their own folders there."""
from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
SHARED_DATA = CHECKOUT.parent / "shared" / "data"
REAL_NIGHT_DIR = SHARED_DATA / "real-night"  # real night frames (no ground truth)
BENCH_MEDIA_DIR = CHECKOUT / "data" / "bench"  # perception-bench frames (scripts/setup_bench_media.sh)
# Inside a media folder (the same script puts them there): the perception benchmark's depth model,
# FastDepth, and its second, independent detector, MobileNetV3-CenterNet COCO converted from TF.js
# (scripts/setup_second_detector.sh).
BENCH_DEPTH_MODEL = Path("models") / "fastdepth_7.onnx"
SECOND_DETECTOR = Path("models") / "centernet_mbv3_coco.onnx"
