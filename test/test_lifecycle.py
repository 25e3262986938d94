"""enhance_node as a managed node: lifecycle services, ~/enable and QoS overrides, driven from
this process over real DDS (node in a subprocess)."""
from __future__ import annotations

import signal

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool

from dap_led_ros.ros.msg_conversion import make_image_msg

from conftest import RosHarness, copy_checkpoint, enhance_node_cmd

START_TIMEOUT = 90.0
QUIET_S = 1.5  # how long "no output" is watched for


class Feed:
    """Publishes a small frame every 0.1 s and records what comes out of the node."""

    def __init__(self, ros: RosHarness, ns: str, publisher_qos: QoSProfile | None = None) -> None:
        self.ros = ros
        self.frame = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
        self.pub = ros.node.create_publisher(Image, f"{ns}/image_raw",
                                             publisher_qos or QoSProfile(depth=10))
        self.out: list[Image] = []
        self.sub = ros.node.create_subscription(Image, f"{ns}/enhanced/image", self.out.append,
                                                QoSProfile(depth=50))
        self.diag: DiagnosticStatus | None = None
        name = f"{ns.strip('/')}/enhance_node"
        ros.node.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: self._on_diag(m, name), 10)
        self.count = 0
        self.running = True
        ros.node.create_timer(0.1, self._tick)

    def _on_diag(self, msg: DiagnosticArray, name: str) -> None:
        for status in msg.status:
            if status.name == name:
                self.diag = status

    def diag_value(self, key: str) -> str | None:
        if self.diag is None:
            return None
        return next((kv.value for kv in self.diag.values if kv.key == key), None)

    def _tick(self) -> None:
        if self.running:
            self.count += 1
            header = Header(stamp=Time(sec=self.count), frame_id="lc_cam")
            self.pub.publish(make_image_msg(self.frame, header, "rgb8"))

    def expect_output(self, what: str, timeout: float = 30.0) -> Image:
        self.out.clear()
        self.ros.spin_until(lambda: len(self.out) > 0, timeout, what)
        return self.out[-1]

    def expect_silence(self, what: str) -> None:
        self.ros.spin_for(0.5)  # a frame already in flight may still arrive
        self.out.clear()
        self.ros.spin_for(QUIET_S)
        assert not self.out, f"{len(self.out)} frame(s) published {what}"


def test_lifecycle_gates_output_and_a_failed_configure_can_be_retried(
        ros: RosHarness, start_node, tiny_checkpoint, tmp_path):
    model = tmp_path / "arrives_later.safetensors"
    node = start_node(enhance_node_cmd("/lc", "autostart:=false", f"model:={model}",
                                       "passthrough_when_disabled:=false", "max_rate_hz:=4.0"),
                      name="lc")
    fqn = "/lc/enhance_node"
    feed = Feed(ros, "/lc")
    assert ros.lifecycle_state(fqn, timeout=START_TIMEOUT) == "unconfigured"
    feed.expect_silence("before configure")
    assert feed.sub.get_publisher_count() == 0

    # Missing model: configure fails with the reason, the node stays up and unconfigured.
    assert ros.change_state(fqn, Transition.TRANSITION_CONFIGURE) is False
    assert ros.lifecycle_state(fqn) == "unconfigured"
    node.wait_for_output("configure failed")
    assert str(model) in node.output() and "not found" in node.output()
    ros.spin_until(lambda: feed.diag is not None and feed.diag.level == DiagnosticStatus.ERROR,
                   10, "an ERROR diagnostic")
    assert "not found" in feed.diag.message and feed.diag_value("state") == "unconfigured"

    # The file appears: the retry succeeds. Inactive still publishes nothing.
    copy_checkpoint(tiny_checkpoint, model)
    assert ros.change_state(fqn, Transition.TRANSITION_CONFIGURE) is True
    assert ros.lifecycle_state(fqn) == "inactive"
    feed.expect_silence("while inactive")

    assert ros.change_state(fqn, Transition.TRANSITION_ACTIVATE) is True
    assert ros.lifecycle_state(fqn) == "active"
    out = feed.expect_output("output after activate")
    assert out.header.frame_id == "lc_cam" and (out.width, out.height) == (32, 24)
    # Frames come at 10 Hz, max_rate_hz is 4: the surplus is skipped and counted.
    ros.spin_until(lambda: int(feed.diag_value("rate_skipped") or 0) > 0, 10,
                   "rate-limited frames in diagnostics")

    # Disabled with passthrough_when_disabled=false: silence; enabled again: output.
    assert ros.call(SetBool, f"{fqn}/enable", SetBool.Request(data=False)).success
    feed.expect_silence("while disabled (passthrough off)")
    ros.spin_until(lambda: feed.diag_value("enabled") == "false", 10, "enabled=false diagnostic")
    assert ros.call(SetBool, f"{fqn}/enable", SetBool.Request(data=True)).success
    feed.expect_output("output after re-enabling")

    assert ros.change_state(fqn, Transition.TRANSITION_DEACTIVATE) is True
    assert ros.lifecycle_state(fqn) == "inactive"
    feed.expect_silence("after deactivate")
    assert feed.sub.get_publisher_count() == 1  # a lifecycle publisher: still in the graph, silent

    # Cleanup then configure + activate again works (resources freed and re-made).
    assert ros.change_state(fqn, Transition.TRANSITION_CLEANUP) is True
    assert ros.lifecycle_state(fqn) == "unconfigured"
    ros.spin_until(lambda: feed.sub.get_publisher_count() == 0, 10, "the publisher to go on cleanup")
    assert ros.change_state(fqn, Transition.TRANSITION_CONFIGURE) is True
    assert ros.change_state(fqn, Transition.TRANSITION_ACTIVATE) is True
    feed.expect_output("output after a second activation")

    feed.running = False
    out = node.assert_clean_exit(signal.SIGTERM)
    assert "Traceback" not in out


def test_enable_switch_and_qos_overrides(ros: RosHarness, start_node, tiny_checkpoint):
    node = start_node(enhance_node_cmd(
        "/q", f"model:={tiny_checkpoint}", "qos.input.reliability:=reliable",
        "qos.input.depth:=1", "qos.output.durability:=transient_local", "qos.output.depth:=1",
        "publish_heatmap:=true"), name="qos")
    fqn = "/q/enhance_node"
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    feed = Feed(ros, "/q", publisher_qos=reliable)
    feed.running = False
    best_effort_pub = ros.node.create_publisher(
        Image, "/q/image_raw", QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT))
    ros.wait_for_subscribers(feed.pub, timeout=START_TIMEOUT)
    ros.wait_for_publishers(feed.sub, timeout=START_TIMEOUT)

    # The override is applied: the node's subscription is reliable (a best-effort publisher
    # cannot match it) and its publisher transient-local; the depth parameter reads 1.
    # (Endpoints are discovered before the name of their node.)
    ros.spin_until(lambda: [i.node_name for i in ros.node.get_subscriptions_info_by_topic(
        "/q/image_raw")] == ["enhance_node"], 30, "the node's name in the graph")
    [sub_info] = ros.node.get_subscriptions_info_by_topic("/q/image_raw")
    assert sub_info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    [pub_info] = ros.node.get_publishers_info_by_topic("/q/enhanced/image")
    assert pub_info.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert pub_info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    ros.spin_for(1.0)
    assert best_effort_pub.get_subscription_count() == 0
    params = ros.call(GetParameters, f"{fqn}/get_parameters",
                      GetParameters.Request(names=["qos.input.depth", "qos.input.reliability"]))
    assert [params.values[0].integer_value, params.values[1].string_value] == [1, "reliable"]

    # Invalid values are refused when set, with the reason: out of a declared range by rclpy (its
    # descriptor's range, as `ros2 param set` users see it), other rules by the node.
    bad = Parameter("qos.output.depth", Parameter.Type.INTEGER, 0).to_parameter_msg()
    [result] = ros.call(SetParameters, f"{fqn}/set_parameters",
                        SetParameters.Request(parameters=[bad])).results
    assert not result.successful and "qos.output.depth out of range. Min: 1, Max: 1000" in result.reason
    bad = Parameter("qos.output.reliability", Parameter.Type.STRING, "auto").to_parameter_msg()
    [result] = ros.call(SetParameters, f"{fqn}/set_parameters",
                        SetParameters.Request(parameters=[bad])).results
    assert not result.successful and "qos.output.reliability must be one of best_effort, reliable" in result.reason

    heatmaps: list[Image] = []
    ros.node.create_subscription(Image, "/q/enhanced/degradation", heatmaps.append, 10)
    feed.running = True
    enhanced = feed.expect_output("enhanced output", timeout=START_TIMEOUT)
    assert bytes(enhanced.data) != feed.frame.tobytes()
    ros.spin_until(lambda: len(heatmaps) > 0, 30, "a degradation heatmap")
    assert (heatmaps[0].encoding, heatmaps[0].height) == ("rgb8", 24)
    assert heatmaps[0].header.frame_id == "lc_cam"

    # Disabled (pass-through by default): the input frame comes back untouched.
    assert ros.call(SetBool, f"{fqn}/enable", SetBool.Request(data=False)).message == "disabled"
    feed.ros.spin_for(0.5)
    passed = feed.expect_output("pass-through output")
    assert (passed.encoding, passed.step) == ("rgb8", 32 * 3)
    assert bytes(passed.data) == feed.frame.tobytes()
    ros.spin_until(lambda: feed.diag_value("enabled") == "false"
                   and int(feed.diag_value("passed_through") or 0) > 0, 10,
                   "pass-through in diagnostics")

    assert ros.call(SetBool, f"{fqn}/enable", SetBool.Request(data=True)).message == "enabled"
    feed.ros.spin_for(0.5)
    again = feed.expect_output("enhanced output again")
    assert bytes(again.data) != feed.frame.tobytes()
    assert bytes(again.data) == bytes(enhanced.data)  # same frame, same network

    # Output depth 1 + transient local: a late subscriber gets exactly the last frame.
    feed.running = False
    ros.spin_for(1.0)
    late: list[Image] = []
    ros.node.create_subscription(Image, "/q/enhanced/image", late.append, QoSProfile(
        depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    ros.spin_until(lambda: len(late) > 0, 30, "the latched frame")
    ros.spin_for(0.5)
    assert len(late) == 1 and late[0].header.stamp.sec == feed.count

    node.assert_clean_exit(signal.SIGINT)


def test_invalid_parameters_fail_configure_with_the_reason(ros: RosHarness, start_node,
                                                           tiny_checkpoint):
    # (Every validation rule is unit-tested in test_node_config.py; this is the node's side.)
    node = start_node(enhance_node_cmd("/bad", f"model:={tiny_checkpoint}",
                                       "qos.input.reliability:=sometimes"), name="bad")
    node.wait_for_output("qos.input.reliability must be one of best_effort, reliable, auto; "
                         "got 'sometimes'", timeout=START_TIMEOUT)
    assert ros.settled_lifecycle_state("/bad/enhance_node") == "unconfigured"
    node.assert_clean_exit(signal.SIGINT)


def test_parameters_declare_their_ranges_and_an_out_of_range_start_value_fails_configure(
        ros: RosHarness, start_node, tiny_checkpoint):
    node = start_node(enhance_node_cmd("/ranges", f"model:={tiny_checkpoint}", "jpeg_quality:=500"),
                      name="ranges")
    node.wait_for_output("jpeg_quality must be in 1..100, got 500", timeout=START_TIMEOUT)
    assert ros.settled_lifecycle_state("/ranges/enhance_node") == "unconfigured"  # alive, says why
    names = ["png_level", "prior_change", "qos.input.depth", "jpeg_quality", "model"]
    described = ros.call(DescribeParameters, "/ranges/enhance_node/describe_parameters",
                         DescribeParameters.Request(names=names)).descriptors
    by_name = {d.name: d for d in described}
    png = by_name["png_level"].integer_range[0]
    assert (png.from_value, png.to_value) == (0, 9)
    change = by_name["prior_change"].floating_point_range[0]
    assert (change.from_value, change.to_value) == (0.0, 1.0)
    assert by_name["qos.input.depth"].integer_range[0].to_value == 1000
    # The value given at start was out of range: declared without it, so configure could say why.
    assert not by_name["jpeg_quality"].integer_range
    assert not by_name["model"].integer_range and not by_name["model"].floating_point_range
    assert "checkpoint" in by_name["model"].description
    node.assert_clean_exit(signal.SIGINT)
