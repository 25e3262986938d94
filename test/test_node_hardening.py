"""enhance_node under hostile input and floods (issue 15): logs that cannot be flooded or forged,
overload told in /diagnostics, services that answer under a 640x480 flood and during configure,
parameters checked for range and spelling. Real nodes in subprocesses, driven over real DDS;
the flood comes from a separate publisher process.
"""
from __future__ import annotations

import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool

from dap_led_ros.ros.diagnostics import status_values
from dap_led_ros.ros.log_safety import MAX_LINE_CHARS

from conftest import NodeProcess, RosHarness, enhance_node_cmd, long_mode, record_figure

START_TIMEOUT = 90.0
SERVICE_BOUND_S = 0.2  # the acceptance bound
# The normal suite runs beside CPU-bound processes on 2 cores: a scheduler stall of a second
# (measured: 1.16 s once, p50 4 ms) is not a failure of the node. What the suite guards is that
# services are not queued behind the flood's frames (that would take many seconds); the figure is
# recorded, and --long asserts the 200 ms of the acceptance.
CI_SERVICE_BOUND_S = 5.0


# A flood of 640x480 bgr8 frames at RATE Hz (argv: topic rate seconds) from its own process.
FLOOD = textwrap.dedent("""
    import sys, time
    import numpy as np
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from dap_led_ros.ros.msg_conversion import make_image_msg

    topic, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    rclpy.init()
    node = rclpy.create_node("flood")
    pub = node.create_publisher(Image, topic, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT))
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    msg = make_image_msg(frame, None, "bgr8")
    msg.header.frame_id = "flood"
    while pub.get_subscription_count() == 0:
        rclpy.spin_once(node, timeout_sec=0.05)
    print("flooding", flush=True)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        n += 1
        msg.header.stamp.sec = n
        pub.publish(msg)
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"sent {n} in {time.monotonic() - start:.1f} s", flush=True)
    node.destroy_node()
    rclpy.shutdown()
""")


def start_flood(start_node, topic: str, rate: float = 40.0, seconds: float = 120.0) -> NodeProcess:
    proc = start_node([sys.executable, "-c", FLOOD, topic, str(rate), str(seconds)], name="flood")
    proc.wait_for_output("flooding", timeout=START_TIMEOUT)
    return proc


class Diag:
    """The latest /diagnostics status of one node."""

    def __init__(self, ros: RosHarness, name: str) -> None:
        self.status: DiagnosticStatus | None = None
        self.name = name
        ros.node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 10)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self.name:
                self.status = status

    @property
    def values(self) -> dict[str, str]:
        return status_values(self.status) if self.status is not None else {}


def timed_call(ros: RosHarness, srv_type, name: str, request, timeout: float = 30.0) -> float:
    """Seconds from sending a request to its response (the client is already matched)."""
    client = ros._client(srv_type, name)
    t0 = time.monotonic()
    future = client.call_async(request)
    ros.spin_until(future.done, timeout, f"the response of {name}")
    elapsed = time.monotonic() - t0
    assert future.result() is not None
    return elapsed


def service_bound() -> float:
    return SERVICE_BOUND_S if long_mode() else CI_SERVICE_BOUND_S


# ----------------------------------------------------------------------------- flood

def test_a_flood_is_told_in_diagnostics_while_services_answer_at_once(ros: RosHarness, start_node,
                                                                      tiny_checkpoint):
    ns, fqn = "/hard", "/hard/enhance_node"
    # Nobody subscribes to the output here: lazy off, so that the flood is restored.
    node = start_node(enhance_node_cmd(ns, f"model:={tiny_checkpoint}", "lazy:=false"), name="hard")
    diag = Diag(ros, "hard/enhance_node")
    # Match the clients before the flood (the first request of a fresh client may be lost).
    ros.spin_until(lambda: diag.status is not None and diag.values.get("state") == "active",
                   START_TIMEOUT, "the node to be active")
    assert ros.lifecycle_state(fqn) == "active"
    assert ros.call(SetBool, f"{fqn}/enable", SetBool.Request(data=True)).success

    flood = start_flood(start_node, f"{ns}/image_raw", rate=40.0)
    ros.spin_until(lambda: diag.status.level == DiagnosticStatus.WARN
                   and diag.status.message.startswith("overloaded:") and float(diag.values["fps_out"]) > 0, 90,
                   f"an overload warning (last: {diag.status.message!r}, {diag.values})")
    message = diag.status.message
    m = re.fullmatch(r"overloaded: input ([\d.]+) fps, restored ([\d.]+) fps, dropping (\d+) %", message)
    assert m, message
    fps_in, fps_out, dropping = float(m[1]), float(m[2]), int(m[3])
    assert fps_in > fps_out and dropping >= 20, message
    assert diag.values["overloaded"] == "true" and int(diag.values["dropped"]) > 0
    record_figure("flood 640x480: input fps (node's view)", fps_in)
    record_figure("flood 640x480: restored fps", fps_out)

    # Services under the flood: lifecycle get_state and ~/enable, 50 calls each.
    get_state, enable = [], []
    for _ in range(50):
        get_state.append(timed_call(ros, GetState, f"{fqn}/get_state", GetState.Request()))
        enable.append(timed_call(ros, SetBool, f"{fqn}/enable", SetBool.Request(data=True)))
    assert flood.alive(), "the flood ended before the measurement did"
    record_figure("flood 640x480: diagnostics during the flood", diag.status.message)
    worst = max(get_state + enable)
    record_figure("flood 640x480 @40 Hz: get_state max latency ms", round(1000 * max(get_state), 1))
    record_figure("flood 640x480 @40 Hz: ~/enable max latency ms", round(1000 * max(enable), 1))
    record_figure("flood 640x480 @40 Hz: service p50 latency ms",
                  round(1000 * float(np.median(get_state + enable)), 1))
    assert worst < service_bound(), \
        f"services answered in up to {worst * 1000:.0f} ms under the flood (p50 {np.median(get_state) * 1000:.0f} ms)"

    # The flood stops: back to OK once the node keeps up.
    flood.stop(signal.SIGKILL)
    ros.spin_until(lambda: diag.status.level == DiagnosticStatus.OK and diag.values["overloaded"] == "false",
                   30, f"OK after the flood (last: {diag.status.message!r})")
    assert diag.status.message == "processing"
    node.assert_clean_exit(signal.SIGINT)


def test_services_answer_while_configure_loads_the_model(ros: RosHarness, start_node, tiny_checkpoint,
                                                         tmp_path):
    # onnxruntime: configure loads the checkpoint's ONNX export (made here first, as a node's
    # first start would; that one-off export runs torch's C++ graph passes, which hold the GIL
    # for up to ~0.5 s, so it is not what this measures).
    from dap_led_ros.runtime.backends.engine_cache import cached_onnx

    cached_onnx(tiny_checkpoint, root=tmp_path / "cache")
    fqn = "/slowcfg/enhance_node"
    cmd = enhance_node_cmd("/slowcfg", f"model:={tiny_checkpoint}", "autostart:=false") \
        + ["-p", "backend:=onnxruntime"]
    proc = NodeProcess(cmd, tmp_path / "slowcfg.log", env={**__import__("os").environ,
                                                           "DAP_LED_CACHE": str(tmp_path / "cache")})
    try:
        assert ros.lifecycle_state(fqn, timeout=START_TIMEOUT) == "unconfigured"
        assert ros.call(SetBool, f"{fqn}/enable", SetBool.Request(data=True)).success
        request = ChangeState.Request()
        request.transition.id = Transition.TRANSITION_CONFIGURE
        configure = ros._client(ChangeState, f"{fqn}/change_state")
        ros.spin_until(configure.service_is_ready, 30, "change_state")
        future = configure.call_async(request)
        during: list[float] = []
        states: set[str] = set()
        while not future.done() and len(during) < 200:
            client = ros._client(GetState, f"{fqn}/get_state")
            t0 = time.monotonic()
            got = client.call_async(GetState.Request())
            ros.spin_until(got.done, 30, "get_state during configure")
            state = got.result().current_state.label
            if state == "configuring":
                during.append(time.monotonic() - t0)
                during.append(timed_call(ros, SetBool, f"{fqn}/enable", SetBool.Request(data=True)))
            states.add(state)
        ros.spin_until(future.done, 120, "the configure to finish")
        assert future.result().success, proc.output()
        assert "configuring" in states and len(during) >= 4, (states, len(during))
        record_figure("configure (onnxruntime load): services max latency ms", round(1000 * max(during), 1))
        record_figure("configure (onnxruntime load): service calls answered", len(during))
        assert max(during) < service_bound(), f"{max(during) * 1000:.0f} ms during configure"
        assert ros.lifecycle_state(fqn) == "inactive"
        proc.assert_clean_exit(signal.SIGINT)
    finally:
        if proc.returncode is None:
            proc.stop(signal.SIGKILL)


# ----------------------------------------------------------------------------- logs

def _frame(encoding: str, width: int, height: int, step: int, data: bytes, sec: int,
           frame_id: str = "cam") -> Image:
    msg = Image(header=Header(stamp=Time(sec=sec), frame_id=frame_id), encoding=encoding,
                width=width, height=height, step=step)
    msg.data = data
    return msg


def test_malformed_floods_cannot_flood_or_forge_the_log(ros: RosHarness, start_node, tiny_checkpoint):
    ns = "/logs"
    node = start_node(enhance_node_cmd(ns, f"model:={tiny_checkpoint}", "qos.input.reliability:=reliable",
                               "qos.input.depth:=1000"), name="logs")
    diag = Diag(ros, "logs/enhance_node")
    pub = ros.node.create_publisher(Image, f"{ns}/image_raw",
                                    QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    out: list[Image] = []
    ros.node.create_subscription(Image, f"{ns}/enhanced/image", out.append, QoSProfile(depth=100))
    ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
    ros.wait_node_inputs("logs/enhance_node", timeout=START_TIMEOUT)
    forged = "[INFO] [1700000000.000000000] [logs.enhance_node]: all is well"
    sent = 0
    start = time.monotonic()
    for i in range(300):  # three kinds of problem, values all different
        sent += 1
        pub.publish(_frame("mono8", 100_000 + i, 100_000, 100_000 + i, b"", sent))
        sent += 1
        pub.publish(_frame(f"enc{i}\n{forged}", 32, 24, 96, bytes(96 * 24), sent))
        sent += 1
        pub.publish(_frame("rgb8", 32, 24 + i, 96, bytes(10), sent))
        if i % 20 == 0:
            ros.spin_for(0.01)
    huge = _frame("x" * 200_000, 32, 24, 96, bytes(96 * 24), sent + 1)
    pub.publish(huge)
    # Each frame is rejected, or dropped before its turn by a newer one (newest frame wins).
    ros.spin_while(lambda: int(diag.values.get("frames_in", 0)) < sent + 1, 60)
    counts = {k: int(diag.values.get(k, -1)) for k in ("frames_in", "rejected", "dropped", "frames_out")}
    assert counts["frames_in"] == sent + 1 and counts["rejected"] + counts["dropped"] == sent + 1, counts
    elapsed = time.monotonic() - start
    assert node.alive()
    log = node.output()
    lines = log.splitlines()
    dropped = [line for line in lines if "dropped a malformed frame" in line]
    # One line per kind per 5 s (four kinds here, the huge encoding being the 'unsupported' kind).
    periods = int(elapsed // 5) + 2
    assert len(dropped) <= 3 * periods, "\n".join(dropped)
    assert int(diag.values["log_suppressed"]) >= counts["rejected"] - len(dropped)
    assert not any(line.startswith("[INFO] [1700000000") for line in lines), log[-2000:]
    assert all(len(line) < MAX_LINE_CHARS + 120 for line in lines), max(map(len, lines))
    assert "\\n[INFO] [1700000000" in log  # the forged text is there, escaped on its own line
    # A good frame still comes back.
    good = _frame("rgb8", 32, 24, 96, bytes(np.arange(96 * 24, dtype=np.uint8)), 999_999)
    pub.publish(good)
    ros.spin_until(lambda: any(m.header.stamp.sec == 999_999 for m in out), 30, "the good frame")
    node.assert_clean_exit(signal.SIGINT)


# ----------------------------------------------------------------------------- parameters

def test_unknown_parameter_fails_configure_with_a_suggestion(ros: RosHarness, start_node, tiny_checkpoint):
    node = start_node(enhance_node_cmd("/typo", f"model:={tiny_checkpoint}", "thread:=2"), name="typo")
    diag = Diag(ros, "typo/enhance_node")
    node.wait_for_output("unknown parameter 'thread' (did you mean 'threads'?)", timeout=START_TIMEOUT)
    assert ros.settled_lifecycle_state("/typo/enhance_node") == "unconfigured"
    ros.spin_until(lambda: diag.status is not None and diag.status.level == DiagnosticStatus.ERROR,
                   30, "an ERROR diagnostic")
    assert "unknown parameter 'thread'" in diag.status.message
    assert node.alive()
    node.assert_clean_exit(signal.SIGINT)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_range_parameters_are_refused_at_start_and_at_runtime(ros: RosHarness, start_node,
                                                                      tiny_checkpoint):
    # threads:=-4 and diagnostics_period_s:=0.00001 were accepted (the idle node burnt a core).
    node = start_node(enhance_node_cmd("/range", f"model:={tiny_checkpoint}", "threads:=-4",
                               "diagnostics_period_s:=0.00001"), name="range")
    fqn = "/range/enhance_node"
    node.wait_for_output("configure failed: threads must be in 0..256 (0 = library default), got -4",
                         timeout=START_TIMEOUT)
    assert ros.settled_lifecycle_state(fqn) == "unconfigured"
    cpu0, t0 = _cpu_seconds(node.pid), time.monotonic()
    ros.spin_for(3.0)  # a measurement window, not a synchronisation
    share = (_cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)
    assert share < 0.3, f"the idle node used {share:.0%} of a core"

    # Runtime changes are validated at once, for every parameter (backend=foo was accepted).
    def set_param(name: str, value) -> tuple[bool, str]:
        msg = Parameter(name, value=value).to_parameter_msg()
        [result] = ros.call(SetParameters, f"{fqn}/set_parameters",
                            SetParameters.Request(parameters=[msg])).results
        return result.successful, result.reason

    # Two bad values are fixed one at a time (each change is fine on its own).
    assert set_param("threads", 1) == (True, "")
    assert set_param("diagnostics_period_s", 0.5) == (True, "")
    for name, value, reason in [("backend", "foo", "backend must be one of"),
                                ("threads", -4, "threads must be in 0..256"),
                                ("diagnostics_period_s", 0.00001, "diagnostics_period_s must be in 0.1..3600"),
                                ("tile_mode", "mosaic", "tile_mode must be one of"),
                                ("max_rate_hz", float("nan"), "max_rate_hz out of range"),  # rclpy: the declared range
                                ("qos.input.reliability", "sometimes", "qos.input.reliability must be one of")]:
        ok, why = set_param(name, value)
        assert not ok and reason in why, (name, why)
    assert ros.change_state(fqn, Transition.TRANSITION_CONFIGURE) is True
    node.assert_clean_exit(signal.SIGINT)
