"""`dap-led replay`: a bag published over loopback DDS into a live enhance_node and a test subscriber."""
from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, Imu
from std_msgs.msg import Header

from dap_led_ros.bag.bag_io import open_reader
from dap_led_ros.bag.sample_bag import SampleBagConfig, make_sample_bag
from dap_led_ros.cli import main as cli_main
from dap_led_ros.ros.diagnostics import values_of
from dap_led_ros.ros.msg_conversion import make_image_msg

from conftest import NodeProcess, RosHarness, console_command

NS = "/camera"
DIAG_NAME = "camera/enhance_node"
PROBES = 4
FPS = 10.0
FRAMES = 30


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> Path:
    return make_sample_bag(tmp_path_factory.mktemp("replay") / "drive",
                           SampleBagConfig(frames=FRAMES, width=64, height=48, fps=FPS, storage="mcap"),
                           progress=False)


def _stamps(bag: Path, topic: str) -> list[tuple[int, int]]:
    reader = open_reader(bag)
    try:
        conns = [c for c in reader.connections if c.topic == topic]
        return [(t // 10**9, t % 10**9) for _, t, _ in reader.messages(conns)]
    finally:
        reader.close()


def _replay(bag: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(console_command("dap-led", "dap_led_ros.cli") + ["replay", str(bag), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen, ros: RosHarness, timeout: float = 120.0) -> str:
    """Spin the harness while the replay runs; its output once it has exited."""
    ros.spin_until(lambda: proc.poll() is not None, timeout, "the replay to finish")
    return proc.communicate(timeout=10)[0]


def test_replay_into_enhance_node(bag, ros: RosHarness, start_node, tiny_checkpoint):
    # Reliable input with a deep queue: every replayed frame reaches the node, and the only
    # frames that may go missing are the ones its newest-frame-wins worker drops (counted in
    # /diagnostics), so the test holds however loaded the machine is.
    node: NodeProcess = start_node(console_command("enhance_node", "dap_led_ros.ros.enhance_node") + [
        "--ros-args", "-r", f"__ns:={NS}", "-p", f"model:={tiny_checkpoint}", "-p", "backend:=torch",
        "-p", "threads:=1", "-p", "diagnostics_period_s:=0.3", "-p", "qos.input.reliability:=reliable",
        "-p", "qos.input.depth:=100"], name="enhance_node")
    got: dict[tuple[int, int], Image] = {}
    diag: dict[str, str] = {}
    sub = ros.node.create_subscription(Image, f"{NS}/enhanced/image",
                                       lambda m: got.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m),
                                       QoSProfile(depth=100))
    ros.node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: diag.update(values_of(m, DIAG_NAME) or {}), 10)
    probe = ros.node.create_publisher(Image, f"{NS}/image_raw", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    ros.wait_for_publishers(sub, timeout=90)
    ros.wait_for_subscribers(probe, timeout=90)

    # The node's throughput, one frame in flight at a time (stamps 1..4 s, before the bag's).
    frame = np.random.default_rng(0).integers(0, 80, (48, 64, 3), dtype=np.uint8)
    times = []
    for sec in range(1, PROBES + 1):
        t0 = time.monotonic()
        probe.publish(make_image_msg(frame, Header(stamp=Time(sec=sec), frame_id="probe"), "rgb8"))
        ros.spin_until(lambda: (sec, 0) in got, 60, f"probe frame {sec}")
        times.append(time.monotonic() - t0)
    throughput = 1.0 / max(times[1:])  # the first one warms up
    rate = min(1.0, 0.5 * throughput / FPS)  # replay at half the measured throughput at most
    ros.node.destroy_publisher(probe)
    assert node.alive()

    proc = _replay(bag, "--topics", f"{NS}/image_raw", f"{NS}/camera_info", "--wait-subscribers", "2",
                   "--rate", f"{rate:.4f}")
    out = _finish(proc, ros)
    assert proc.returncode == 0, out
    assert f"{NS}/image_raw: {FRAMES}" in out
    expected = _stamps(bag, f"{NS}/image_raw")

    def settled() -> bool:
        # The node has taken in every frame and accounted for each: published or dropped.
        if int(diag.get("frames_in", -1)) != PROBES + FRAMES:
            return False
        out_, dropped = int(diag["frames_out"]), int(diag["dropped"])
        return out_ + dropped == PROBES + FRAMES and len(got) == out_

    ros.spin_until(settled, 60 + 5 / rate, f"the node to account for all {PROBES + FRAMES} frames "
                   f"(last diagnostics: {diag}; not back: {[k for k in expected if k not in got]})")
    back = [k for k in expected if k in got]
    assert len(back) == int(diag["frames_out"]) - PROBES
    assert expected[-1] in got  # newest-frame-wins never drops the last frame
    assert int(diag["rejected"]) == int(diag["errors"]) == 0
    # Replayed at half the node's throughput, most frames make it even on a busy machine.
    assert len(back) >= 0.5 * len(expected), f"{len(back)}/{len(expected)} frames came back at rate {rate:.3f}"
    first = got[back[0]]
    assert (first.width, first.height, first.encoding, first.header.frame_id) == (64, 48, "bgr8", "camera_optical_frame")
    node.assert_clean_exit()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_replay_publishes_the_stored_bytes_loops_remaps_and_stops_on_a_signal(bag, ros: RosHarness,
                                                                              stop_signal):
    received: list[bytes] = []
    sub = ros.node.create_subscription(Imu, "/imu_replayed", received.append, QoSProfile(depth=1000), raw=True)
    reader = open_reader(bag)
    try:
        stored = [bytes(d) for c, _, d in reader.messages([c for c in reader.connections if c.topic == "/imu"])]
    finally:
        reader.close()
    proc = _replay(bag, "--topics", "/imu", "--remap", "/imu:=/imu_replayed", "--loop", "--rate", "4",
                   "--wait-subscribers", "1")
    try:
        ros.wait_for_publishers(sub, timeout=90)
        ros.spin_until(lambda: len(received) > len(stored) + 5, 90, "a second loop of /imu")
    finally:
        proc.send_signal(stop_signal)
    out = _finish(proc, ros, timeout=30)
    assert proc.returncode == 0, out
    assert "stopped: published" in out and "loops" in out
    assert "Traceback" not in out and "Exception ignored" not in out
    assert received[:len(stored)] == stored  # byte for byte, in order
    assert received[len(stored):len(stored) + 5] == stored[:5]  # and again from the start


def test_replay_errors(bag, tmp_path, ros_domain_id, capsys):
    for args, message in (([str(tmp_path / "nope")], "no such bag"),
                          ([str(bag), "--topics", "/nope"], "not in the bag"),
                          ([str(bag), "--rate", "0"], "--rate must be > 0"),
                          ([str(bag), "--drain-timeout", "-1"], "--drain-timeout must be >= 0"),
                          ([str(bag), "--topics", "/imu", "--wait-subscribers", "1", "--wait-timeout", "0.5"],
                           "0 of 1 subscription(s) matched")):
        assert cli_main(["replay", *args]) == 2, args
        assert message in capsys.readouterr().err, args
