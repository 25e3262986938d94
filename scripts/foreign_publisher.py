"""A camera driver as users run it: rclpy with Fast DDS's default settings (no profile file).

Publishes COUNT bgr8 frames of WxH on TOPIC, paced at RATE Hz, with the QoS a plain
`create_publisher(Image, topic, 10)` gets (reliable, keep-last 10) unless --best-effort. It waits
for a subscriber, then for a line on stdin ("go") so the caller can first let the other side
settle, publishes, prints "published N" and keeps the participant alive for --linger seconds so
that reliable retransmissions can finish. Frame i carries stamp (STAMP_BASE + i, 0) and frame_id
"foreign". Used by test/test_foreign_publisher.py and scripts/foreign_publisher_check.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

# Outside our profile: Fast DDS reads a profile file only from these variables.
for _var in ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "RMW_FASTRTPS_USE_QOS_FROM_XML"):
    os.environ.pop(_var, None)

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402


def frame(i: int, width: int, height: int) -> bytes:
    """A dark moving gradient with noise, different every frame."""
    rng = np.random.default_rng(i)
    x = (np.arange(width)[None, :] + 7 * i) % 256
    y = np.arange(height)[:, None] % 256
    base = ((x + y) // 8).astype(np.uint8)
    img = np.repeat(base[:, :, None], 3, axis=2) + rng.integers(0, 12, (height, width, 3), dtype=np.uint8)
    return img.tobytes()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("topic")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--count", type=int, default=12)
    p.add_argument("--size", default="640x480")
    p.add_argument("--best-effort", action="store_true", help="offer best effort (a sensor-data driver)")
    p.add_argument("--linger", type=float, default=3.0)
    p.add_argument("--wait", type=float, default=120.0, help="give up when no subscriber comes")
    p.add_argument("--stamp-base", type=int, default=1000, help="frame i has stamp (base + i) s")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    rclpy.init()
    node = rclpy.create_node("foreign_camera")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                     reliability=ReliabilityPolicy.BEST_EFFORT if args.best_effort else ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, args.topic, qos)
    deadline = time.monotonic() + args.wait
    while pub.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            print("no subscriber", flush=True)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    print("matched", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    frames = [frame(i, width, height) for i in range(min(args.count, 30))]
    start = time.monotonic()
    for i in range(args.count):
        wait = start + i / args.rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        msg = Image(header=Header(stamp=Time(sec=args.stamp_base + i, nanosec=0), frame_id="foreign"),
                    height=height, width=width, encoding="bgr8", is_bigendian=0, step=3 * width)
        msg.data = frames[i % len(frames)]
        pub.publish(msg)
    print(f"published {args.count} in {time.monotonic() - start:.2f} s", flush=True)
    end = time.monotonic() + args.linger
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
