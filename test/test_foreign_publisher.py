"""enhance_node fed by a camera driver it did not configure: a publisher process with Fast DDS's
default settings (no profile file), reliable or best effort, 640x480 bgr8 frames."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dap_led_ros.ros.diagnostics import status_of, values_of
from dap_led_ros.ros.input_subscription import reliability_for

from conftest import ROOT, RosHarness, enhance_node_cmd

PUBLISHER = ROOT / "scripts" / "foreign_publisher.py"
START_TIMEOUT = 120.0
R, B = ReliabilityPolicy.RELIABLE, ReliabilityPolicy.BEST_EFFORT


def test_the_input_follows_the_publishers_reliability():
    assert reliability_for([], None) == B            # nobody yet: best effort matches anyone
    assert reliability_for([], R) == R               # publishers gone: keep what we have
    assert reliability_for([R], B) == R
    assert reliability_for([R, R], B) == R
    assert reliability_for([R, B], R) == B           # one best-effort camera: it must match too


def test_input_publishers_stay_0_until_the_input_follows_a_new_publishers_reliability():
    """A sender waits for `input_publishers` before its first frame; while the best-effort reader
    that matched it is due to be replaced by a reliable one, that frame would be lost (seen on Jazzy:
    the first frame of test_enhance_node never came back)."""
    from types import SimpleNamespace

    from dap_led_ros.ros.input_subscription import InputSubscription

    class FakeNode:
        def __init__(self) -> None:
            self.offered: list = []

        def create_subscription(self, msg_type, topic, callback, profile, callback_group=None):
            return SimpleNamespace(topic_name=topic, get_publisher_count=lambda: 1)

        def destroy_subscription(self, sub) -> None:
            pass

        def get_publishers_info_by_topic(self, topic):
            return [SimpleNamespace(qos_profile=SimpleNamespace(reliability=r)) for r in self.offered]

    node = FakeNode()
    sub = InputSubscription(node, Image, "image_raw", lambda m: None, QoSProfile(depth=1), None, True)
    assert sub.reliability == "best_effort" and sub.get_publisher_count() == 1
    node.offered = [R]                               # a reliable camera appears: a switch is due
    assert sub.get_publisher_count() == 0
    assert sub.refresh() and sub.reliability == "reliable"
    assert sub.get_publisher_count() == 1


class ForeignCamera:
    """scripts/foreign_publisher.py in its own process, without our DDS profile."""

    def __init__(self, topic: str, log: Path, *extra: str) -> None:
        self.log = log
        self._out = open(log, "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([sys.executable, str(PUBLISHER), topic, *extra], stdin=subprocess.PIPE,
                                     stdout=self._out, stderr=subprocess.STDOUT, text=True, cwd=ROOT)

    def said(self, text: str) -> bool:
        return text in self.log.read_text()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait(timeout=30)
        self._out.close()
        return code


class NodeDiagnostics:
    def __init__(self, ros: RosHarness, status: str) -> None:
        self.values: dict[str, str] = {}
        self.hardware_id = ""
        self._status = status
        ros.node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg: DiagnosticArray) -> None:
        values = values_of(msg, self._status)
        if values is not None:
            self.values = values
            self.hardware_id = status_of(msg, self._status).hardware_id


@pytest.mark.parametrize("offered", ["reliable", "best_effort"])
def test_frames_from_a_default_dds_publisher_arrive(ros: RosHarness, start_node, tiny_checkpoint, tmp_path,
                                                    offered):
    ns = "/foreign"
    node = start_node(enhance_node_cmd(ns, f"model:={tiny_checkpoint}"), name="enhance")
    diag = NodeDiagnostics(ros, f"{ns.strip('/')}/enhance_node")
    restored: set[int] = set()
    ros.node.create_subscription(Image, f"{ns}/enhanced/image", lambda m: restored.add(m.header.stamp.sec),
                                 QoSProfile(depth=10, reliability=R))
    # A best-effort reader loses every frame that loses a UDP fragment (what `auto` avoids for
    # reliable cameras): the best-effort camera sends frames that fit one datagram.
    size = "640x480" if offered == "reliable" else "64x48"
    camera = ForeignCamera(f"{ns}/image_raw", tmp_path / "camera.log", "--rate", "2", "--count", "12",
                           "--size", size, *(["--best-effort"] if offered == "best_effort" else []))
    try:
        ros.spin_until(lambda: camera.said("matched"), START_TIMEOUT, "the camera to see the node")
        # The node's own side: it has matched the camera and subscribes with the camera's reliability.
        ros.spin_until(lambda: diag.values.get("input_publishers") == "1"
                       and diag.values.get("input_reliability") == f"{offered} (auto)", START_TIMEOUT,
                       f"the node to follow the camera's QoS ({diag.values.get('input_reliability')})")
        camera.go()
        ros.spin_until(lambda: camera.said("published"), 60, "the camera to publish")
        if offered == "reliable":
            # The frames reach the node (the acceptance: >= 11 of 12 paced frames; the reader keeps
            # only the newest, so a frame the executor had not taken when the next came is replaced).
            ros.spin_until(lambda: int(diag.values.get("frames_in", "0")) >= 11 and camera.proc.poll() is not None,
                           60, f"11 of 12 frames into the node (frames_in {diag.values.get('frames_in')})")
        ros.spin_until(lambda: len(restored) >= 1, 60, "a restored frame")
        assert restored <= set(range(1000, 1012))
        # diagnostic_updater's shapes: the hardware ID (the camera's frame_id) and its status keys
        ros.spin_until(lambda: diag.hardware_id == "foreign" and "Actual frequency (Hz)" in diag.values
                       and int(diag.values.get("Events since startup", "0")) >= 1, 30,
                       f"diagnostic_updater keys ({diag.hardware_id!r}, {sorted(diag.values)})")
    finally:
        assert camera.close() in (0, -9)
    node.assert_clean_exit()
