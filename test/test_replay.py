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
from std_msgs.msg import Header, String

from dap_led_ros.bag import replay as replay_module
from dap_led_ros.bag.bag_io import open_reader
from dap_led_ros.bag.sample_bag import SampleBagConfig, make_sample_bag
from dap_led_ros.cli import main as cli_main
from dap_led_ros.ros.diagnostics import values_of
from dap_led_ros.ros.msg_conversion import make_image_msg

from conftest import EXTERNAL_BAG_NAMES, EXTERNAL_BAGS as EXTERNAL, NodeProcess, RosHarness, console_command, needs_external

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
    with open_reader(bag) as reader:
        return [(r.log_time // 10**9, r.log_time % 10**9) for r in reader.messages([t.key for t in reader.topic(topic)])]


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
    ros.wait_node_inputs(DIAG_NAME, timeout=90)

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
    with open_reader(bag) as reader:
        stored = [r.data for r in reader.messages([t.key for t in reader.topic("/imu")])]
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


@needs_external
@pytest.mark.parametrize("name", ["r2_talker_sqlite3", "r2_talker_mcap"])
def test_replay_of_a_cpp_recorded_bag_publishes_every_message(name, ros: RosHarness):
    """The C++ writer's metadata.yaml QoS strings differ from its storage's: every message still goes out."""
    bag = EXTERNAL / name
    with open_reader(bag) as reader:
        stored = [r.data for r in reader.messages([t.key for t in reader.topic("/topic")])]
    assert len(stored) == 10
    received: list[bytes] = []
    sub = ros.node.create_subscription(String, "/talker_replayed", received.append, QoSProfile(depth=100), raw=True)
    proc = _replay(bag, "--topics", "/topic", "--remap", "/topic:=/talker_replayed", "--wait-subscribers", "1",
                   "--rate", "10")
    ros.wait_for_publishers(sub, timeout=90)
    out = _finish(proc, ros)
    assert proc.returncode == 0, out
    assert "/talker_replayed: 10" in out
    ros.spin_until(lambda: len(received) == 10, 30, "all 10 talker messages")
    assert received == stored


@needs_external
def test_replay_refuses_topics_whose_types_are_not_installed(ros_domain_id, capsys):
    assert cli_main(["replay", str(EXTERNAL / "r2_cdr_sqlite3")]) == 2
    err = capsys.readouterr().err
    assert "not installed" in err and "/test_topic (test_msgs/msg/BasicTypes)" in err


class _FakePublisher:
    def __init__(self, name: str, log: list) -> None:
        self.topic_name, self.log, self.acks = name, log, 0

    def publish(self, data: bytes) -> None:
        self.log.append(("publish", self.topic_name))

    def wait_for_all_acked(self, timeout) -> bool:
        self.acks += 1
        self.log.append(("acked?", self.topic_name))
        return self.acks >= 3  # the subscriber matches us only on the third look


def test_first_message_is_confirmed_before_the_next_is_published(bag):
    """--wait-subscribers: a matched subscription may not have matched us yet; the replay waits
    until the first message on each publisher is acknowledged before it publishes more."""
    log: list = []
    with open_reader(bag) as reader:
        topic = reader.topic("/imu")[0]
        pub = _FakePublisher("/imu", log)
        options = replay_module.ReplayOptions(rate=1000.0, wait_subscribers=1)
        stats = replay_module.ReplayStats()
        replay_module._play(reader, {topic.key: pub}, options, replay_module._Stopper(), stats)
    assert log[:4] == [("publish", "/imu"), ("acked?", "/imu"), ("acked?", "/imu"), ("acked?", "/imu")]
    assert all(entry == ("publish", "/imu") for entry in log[4:]) and stats.first_loop["/imu"] == len(log) - 3


@needs_external
@pytest.mark.parametrize("name", EXTERNAL_BAG_NAMES)
def test_replay_of_every_external_bag_publishes_all_or_refuses_clearly(name, ros_domain_id, capsys):
    rc = cli_main(["replay", str(EXTERNAL / name), "--rate", "1000", "--drain-timeout", "0"])
    out, err = capsys.readouterr()
    if rc == 2:
        assert ("is a ROS 1 bag" in err) if name.endswith(".bag") else ("not installed" in err), err
        return
    assert rc == 0, out + err
    with open_reader(EXTERNAL / name) as reader:
        counts = reader.check_counts()
    total = sum(counts.values())
    assert f"published {total} messages" in out
    for (topic, _), n in counts.items():
        if n:
            assert f"  /{topic.lstrip('/')}: {n}" in out
