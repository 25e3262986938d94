#!/usr/bin/env bash
# Run test/test_cv_bridge_parity.py (and test_msg_conversion.py) against a real cv_bridge build on
# a machine without ROS: Debian 12's python3-cv-bridge (ROS 1 cv_bridge 1.16.2: the same C++
# conversion tables as ROS 2's, compiled against OpenCV 4.6 and NumPy 1.x for Python 3.11).
# Nothing is installed system-wide: the .debs are unpacked under .cache/cv_bridge_debian and
# loaded through LD_LIBRARY_PATH/PYTHONPATH beside .venv, with NumPy 1.26 and OpenCV 4.10 (the
# boost module needs NumPy 1.x, and cv2 must be OpenCV 4: its type numbers are cv_bridge's).
# Needs apt (Debian bookworm sources) and .venv (scripts/setup.sh). Extra pytest arguments pass on.
set -euo pipefail
cd "$(dirname "$0")/.."
D=.cache/cv_bridge_debian
if [ ! -f "$D/ready" ]; then
  rm -rf "$D" && mkdir -p "$D/debs" "$D/root" "$D/py"
  # The runtime closure of the C++ library and the Python module, less what this system has.
  pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
           --no-replaces --no-enhances libcv-bridge2d libboost-python1.74.0 2>/dev/null \
         | grep -v '^[ <]' | sort -u | while read -r p; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  (cd "$D/debs" && apt-get download -q $pkgs python3-cv-bridge)
  for deb in "$D"/debs/*.deb; do
    case $deb in *python3-cv-bridge_*) dpkg -x "$deb" "$D/py" ;; *) dpkg -x "$deb" "$D/root" ;; esac
  done
  .venv/bin/python -m pip install -q --no-deps --target "$D/np1" "numpy<2" "opencv-python-headless>=4.6,<4.11"
  touch "$D/ready"
fi
L=$PWD/$D/root/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$L:$L/blas:$L/lapack:$PWD/$D/root/usr/lib:$PWD/$D/root/usr/lib/ogdi
export PYTHONPATH=$PWD/$D/np1:$PWD/$D/py/usr/lib/python3/dist-packages
.venv/bin/python -c 'from dap_led_ros.ros.msg_conversion import conversion_summary; print(conversion_summary())'
exec nice .venv/bin/python -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
  test/test_cv_bridge_parity.py test/test_msg_conversion.py "$@"
