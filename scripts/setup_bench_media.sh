#!/usr/bin/env bash
# Install the perception benchmark's frames into data/bench (idempotent; docs/evaluation.md).
# apt-get downloads opencv-doc and labelme-examples into .cache/debs (once), unpacks them into a
# temporary folder and copies OpenCV's vtest.avi (a street video with pedestrians and cars) and
# the street/people photos named below to data/bench/, listing each file's package, version and
# licence in data/bench/SOURCES.tsv. Photos are named <scene>__<file> so that photos of one scene
# share a bootstrap group. Neither package's files are used for training except the opencv-doc
# and labelme photos, which the training photo pool also holds (docs/training.md); vtest.avi is
# not used there. Never uses plasma-workspace-wallpapers or darknet (reserved).
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
mv "$OUT/SOURCES.tsv.tmp" "$OUT/SOURCES.tsv"
echo "setup_bench_media: $(ls "$OUT/photos" | wc -l) photos and vtest.avi in $OUT"
