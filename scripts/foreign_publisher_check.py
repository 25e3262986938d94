"""How many frames of a default-DDS camera driver enhance_node receives and restores.

For each input reliability of the node (auto, the default, and best_effort, the old default) it
starts `enhance_node` with its defaults, then runs scripts/foreign_publisher.py (Fast DDS defaults,
no profile file, reliable QoS as `create_publisher(Image, topic, 10)` gives) at each rate and size,
12 paced frames each, and prints: frames the node received (its diagnostics' frames_in), frames
restored (seen on enhanced/image) and the node's output rate.

    .venv/bin/python scripts/foreign_publisher_check.py            # 1 and 30 Hz, 640x480 and 1920x1080
    .venv/bin/python scripts/foreign_publisher_check.py --rates 1 --sizes 640x480
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_DOMAIN_ID", "97")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

from dap_led_ros.ros.dds import configure_dds_environment  # noqa: E402

configure_dds_environment()  # this process (the subscriber) and the node use the shipped profile

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from dap_led_ros.ros.diagnostics import values_of  # noqa: E402

NS = "/foreign_check"
COUNT = 12


def spin_until(node, predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


def run(reliability: str, rates: list[float], sizes: list[str], params: list[str]) -> list[dict]:
    node = rclpy.create_node("foreign_check")
    diag: dict[str, str] = {}
    restored: dict[int, float] = {}
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: diag.update(values_of(m, f"{NS.strip('/')}/enhance_node") or {}), 10)
    node.create_subscription(Image, f"{NS}/enhanced/image",
                             lambda m: restored.setdefault(m.header.stamp.sec, time.monotonic()),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    cmd = [str(Path(sys.executable).parent / "enhance_node"), "--ros-args", "-r", f"__ns:={NS}",
           "-p", f"qos.input.reliability:={reliability}", "-p", "diagnostics_period_s:=0.3"]
    for p in params:
        cmd += ["-p", p]
    enhance = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=ROOT)
    rows = []
    try:
        if not spin_until(node, lambda: diag.get("state") == "active", 300):
            raise SystemExit(f"enhance_node did not start ({diag})")
        base = 1000
        for size in sizes:
            for rate in rates:
                before = int(diag.get("frames_in", "0"))
                restored.clear()
                camera = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "foreign_publisher.py"),
                                           f"{NS}/image_raw", "--rate", str(rate), "--count", str(COUNT),
                                           "--size", size, "--stamp-base", str(base)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
                assert camera.stdout is not None and camera.stdin is not None
                if camera.stdout.readline().strip() != "matched":
                    raise SystemExit("the camera saw no subscriber")
                spin_until(node, lambda: diag.get("input_publishers") == "1", 30)
                spin_until(node, lambda: False, 1.0)  # the node's QoS follows within 0.25 s
                camera.stdin.write("go\n")
                camera.stdin.flush()
                spin_until(node, lambda: camera.poll() is not None, COUNT / rate + 60)
                spin_until(node, lambda: False, 2.0)
                received = int(diag.get("frames_in", "0")) - before
                times = sorted(restored.values())
                fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
                rows.append({"input": reliability, "size": size, "rate": rate, "received": received,
                             "restored": len(restored), "restored_fps": fps})
                print(f"  input {reliability:11s} {size:9s} {rate:4.0f} Hz: node received {received:2d}/{COUNT}, "
                      f"restored {len(restored):2d}, output {fps:5.2f} fps", flush=True)
                base += 100
    finally:
        enhance.terminate()
        enhance.wait(timeout=30)
        node.destroy_node()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rates", type=float, nargs="+", default=[1.0, 30.0])
    p.add_argument("--sizes", nargs="+", default=["640x480", "1920x1080"])
    p.add_argument("--reliability", nargs="+", default=["auto", "best_effort"])
    p.add_argument("-p", "--param", action="append", default=[], help="more enhance_node parameters")
    args = p.parse_args()
    rclpy.init()
    try:
        for reliability in args.reliability:
            run(reliability, args.rates, args.sizes, args.param)
    finally:
        rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
