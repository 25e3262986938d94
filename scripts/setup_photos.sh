#!/usr/bin/env bash
# Install the Debian part of the clean photo pool into data/photos (idempotent; docs/training.md).
# Downloads the packages' .deb files to .cache/debs (once), unpacks each into a temporary folder
# and lets dap_led_ros.training.debian_photos pick and copy the photos; writes data/photos/SOURCES.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY="$REPO/.venv/bin/python"
DEBS="$REPO/.cache/debs"
OUT="$REPO/data/photos"
PACKAGES=(
  gcompris-qt-data opencv-doc lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds
  lxqt-themes palapeli-data labelme-examples libjxl-testdata python-kivy-examples
)
# never used: reserved for an independent evaluation (the Python side refuses it too)
FORBIDDEN=plasma-workspace-wallpapers

[ -x "$PY" ] || { echo "setup_photos: $PY missing; run scripts/setup.sh first" >&2; exit 1; }
mkdir -p "$DEBS" "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for pkg in "${PACKAGES[@]}"; do
  [ "$pkg" != "$FORBIDDEN" ] || { echo "setup_photos: $FORBIDDEN is never used" >&2; exit 1; }
  if ! compgen -G "$DEBS/${pkg}_*.deb" >/dev/null; then
    (cd "$DEBS" && apt-get download "$pkg")
  fi
  # newest cached version of the package
  deb=$(printf '%s\n' "$DEBS/${pkg}"_*.deb | sort -V | tail -n 1)
  version=$(dpkg-deb -f "$deb" Version)
  dpkg-deb -x "$deb" "$WORK/$pkg"
  "$PY" -c 'import sys; from dap_led_ros.training.debian_photos import main; sys.exit(main(sys.argv[1:]))' \
    install "$WORK/$pkg" "$pkg" "$version" "$OUT"
  rm -rf "${WORK:?}/$pkg"
done
"$PY" -c 'import sys; from dap_led_ros.training.debian_photos import main; sys.exit(main(sys.argv[1:]))' \
  sources "$OUT"
