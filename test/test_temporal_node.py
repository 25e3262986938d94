"""enhance_node with temporal fusion: the parameters, the history-restart rule, and real nodes
(subprocesses, the shipped real-time model on ONNX Runtime, one thread) fed one static scene with
fresh noise per frame over real DDS: fused output is steadier than frame by frame, a jump of the
stream or a deactivation restarts the history, a bad value fails configure; the burst and the
exposure rule (`target_level`) in real nodes."""
from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from conftest import RosHarness, enhance_node_cmd
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dap_led_ros.enhancer import EnhancerConfig
from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.ros.diagnostics import values_of
from dap_led_ros.ros.enhance_node import EnhanceNodeConfig
from dap_led_ros.runtime.video_stream import RestartPolicy
from dap_led_ros.ros.msg_conversion import make_image_msg
from dap_led_ros.ros.params import ConfigError, config_from_flat

START_TIMEOUT = 90.0
H, W = 96, 128
S = 1_000_000_000
REALTIME = ("model:=realtime", "backend:=onnxruntime", "device:=cpu")


# ----------------------------------------------------------------------------- without ROS

def test_history_restarts_on_a_stamp_going_back_a_gap_or_a_new_frame_id():
    last, policy = (10 * S, "cam"), RestartPolicy(S)
    assert policy.reason(None, 0, "cam") == ""  # the first frame
    assert policy.reason(last, 10 * S, "cam") == ""  # the same stamp again
    assert policy.reason(last, 11 * S, "cam") == ""  # exactly the longest gap
    assert policy.reason(last, 11 * S + 1, "cam") == "gap of 1.000 s"
    assert policy.reason(last, 10 * S - 300_000_000, "cam") == "stamp went back by 0.300 s"
    assert policy.reason(last, 10 * S + 1, "cam2") == "frame_id changed from 'cam' to 'cam2'"
    assert RestartPolicy(5 * S).reason(last, 12 * S, "cam") == ""  # the gap is a parameter


def test_temporal_parameters_default_to_the_enhancers_and_reach_it():
    cfg, core = EnhanceNodeConfig(), EnhancerConfig()
    assert cfg.temporal and not core.temporal  # video on in the node, stills in the core
    assert (cfg.temporal_frames, cfg.temporal_tolerance, cfg.temporal_cut, cfg.temporal_flow_side,
            cfg.exposure_smoothing) == (core.temporal_frames, core.temporal_tolerance, core.temporal_cut,
                                        core.temporal_flow_side, core.exposure_smoothing)
    e = EnhanceNodeConfig(temporal=False, temporal_frames=3, temporal_tolerance=0.1, temporal_cut=0.2,
                          temporal_flow_side=160, exposure_smoothing=1.0).enhancer_config()
    assert (e.temporal, e.temporal_frames, e.temporal_tolerance, e.temporal_cut, e.temporal_flow_side,
            e.exposure_smoothing) == (False, 3, 0.1, 0.2, 160, 1.0)


@pytest.mark.parametrize("flat, message", [
    ({"temporal_frames": 0}, r"temporal_frames must be in \[1, 64\], got 0"),
    ({"temporal_frames": 65}, r"temporal_frames must be in \[1, 64\], got 65"),
    ({"temporal_cut": 0.0}, r"temporal_cut must be in \(0, 1\], got 0.0"),
    ({"temporal_tolerance": 1.5}, r"temporal_tolerance must be in \(0, 1\], got 1.5"),
    ({"temporal_flow_side": 8}, r"temporal_flow_side must be in \[32, 4096\], got 8"),
    ({"exposure_smoothing": 0}, r"exposure_smoothing must be in \(0, 1\], got 0"),
    ({"temporal_max_gap_s": 0.0}, r"temporal_max_gap_s must be in 0.001..3600, got 0"),
    ({"temporal": "on"}, "parameter 'temporal' must be a bool, got 'on'"),
    ({"temporal_frames": 2.5}, "parameter 'temporal_frames' must be an int"),
])
def test_bad_temporal_settings_name_the_problem(flat, message):
    with pytest.raises(ConfigError, match=message):
        config_from_flat(EnhanceNodeConfig, flat)


# ----------------------------------------------------------------------------- real nodes

def static_scene(n: int) -> list[np.ndarray]:
    """A dark static scene with fresh noise in each of `n` frames."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    base = 0.04 + 0.12 * (0.5 + 0.5 * np.sin(7 * xx[..., None] + 5 * yy[..., None] + np.array([0.0, 1.0, 2.0])))
    return [np.clip((base + rng.normal(0, 0.03, base.shape)) * 255, 0, 255).astype(np.uint8) for _ in range(n)]


class Cameras:
    """Publishes the same frames to several namespaces, collects each node's output and diagnostics."""

    def __init__(self, ros: RosHarness, namespaces: list[str]) -> None:
        self.ros = ros
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {ns: ros.node.create_publisher(Image, f"{ns}/image_raw", reliable) for ns in namespaces}
        self.out: dict[str, dict[tuple[int, int, str], Image]] = {ns: {} for ns in namespaces}
        self.subs = {ns: ros.node.create_subscription(Image, f"{ns}/enhanced/image",
                                                      lambda m, ns=ns: self._on_image(ns, m), QoSProfile(depth=50))
                     for ns in namespaces}
        self.diag: dict[str, dict[str, str]] = {ns: {} for ns in namespaces}
        ros.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    @staticmethod
    def key(h: Header) -> tuple[int, int, str]:
        return h.stamp.sec, h.stamp.nanosec, h.frame_id

    def _on_image(self, ns: str, msg: Image) -> None:
        self.out[ns][self.key(msg.header)] = msg

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for ns in self.diag:
            values = values_of(msg, f"{ns.strip('/')}/enhance_node")
            if values is not None:
                self.diag[ns] = values

    def wait_ready(self, ns: str) -> None:
        self.ros.wait_for_subscribers(self.pubs[ns], timeout=START_TIMEOUT)
        self.ros.wait_for_publishers(self.subs[ns], timeout=START_TIMEOUT)
        self.ros.wait_node_inputs(f"{ns.strip('/')}/enhance_node", timeout=START_TIMEOUT)

    def round_trip(self, rgb: np.ndarray, stamp_ns: int, frame_id: str = "cam",
                   namespaces: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Send one frame and wait for every node's output (one frame in flight: none is dropped)."""
        h = Header(stamp=Time(sec=stamp_ns // S, nanosec=stamp_ns % S), frame_id=frame_id)
        namespaces = namespaces or tuple(self.pubs)
        for ns in namespaces:
            self.pubs[ns].publish(make_image_msg(rgb, h, "rgb8"))
        k = self.key(h)
        try:
            self.ros.spin_until(lambda: all(k in self.out[ns] for ns in namespaces), 60, f"the outputs of {k}")
        except AssertionError as exc:
            got = {ns: k in self.out[ns] for ns in namespaces}
            raise AssertionError(f"{exc}: got {got}; diagnostics {self.diag}") from None
        return {ns: np.asarray(self.out[ns][k].data, np.uint8).reshape(H, W, 3) for ns in namespaces}

    def wait_diag(self, ns: str, key: str, value: str) -> dict[str, str]:
        self.ros.spin_until(lambda: self.diag[ns].get(key) == value, 10, f"{key}={value} in {ns}'s diagnostics "
                            f"(last: {self.diag[ns]})")
        return self.diag[ns]


def steadiness(frames: list[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames (levels): smaller is steadier."""
    return float(np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(frames, frames[1:])]))


def test_fused_output_is_steadier_and_restarts_when_the_stream_jumps(ros: RosHarness, start_node):
    on, off = "/temporal_on", "/temporal_off"
    nodes = {on: start_node(enhance_node_cmd(on, *REALTIME), name="on"),
             off: start_node(enhance_node_cmd(off, *REALTIME, "temporal:=false"), name="off")}
    cams = Cameras(ros, [on, off])
    for ns in (on, off):
        cams.wait_ready(ns)
    assert "onnxruntime" in nodes[on].output()

    frames = static_scene(11)
    t0 = 100 * S
    outs = [cams.round_trip(rgb, t0 + k * 100_000_000) for k, rgb in enumerate(frames[:8])]
    fused, single = [o[on] for o in outs], [o[off] for o in outs]
    assert np.array_equal(fused[0], single[0])  # the first frame has no history
    assert steadiness(fused) < 0.75 * steadiness(single), (steadiness(fused), steadiness(single))
    diag = cams.wait_diag(on, "frames_out", "8")  # diagnostics from after the last frame (the weight is its)
    assert diag["temporal_resets"] == "0"
    assert float(diag["temporal_weight"]) > 0.2 and float(diag["stage_temporal_p50_ms"]) >= 0
    assert "temporal_weight" not in cams.wait_diag(off, "state", "active")

    # A jump of the stream: the next frame stands alone again (as it comes from the node without fusion).
    jumps = [(frames[8], 50 * S, "cam", "stamp went back by 50.700 s"),
             (frames[9], 50 * S + 100_000_000, "cam_left", "frame_id changed from 'cam' to 'cam_left'"),
             (frames[10], 52 * S, "cam_left", "gap of 1.900 s")]
    for n, (rgb, stamp, frame_id, reason) in enumerate(jumps, start=1):
        got = cams.round_trip(rgb, stamp, frame_id)
        assert np.array_equal(got[on], got[off]), reason
        assert cams.wait_diag(on, "temporal_resets", str(n))["temporal_last_reset"] == reason
    got = cams.round_trip(frames[0], 52 * S + 100_000_000, "cam_left")
    assert not np.array_equal(got[on], got[off])  # a steady stream again: fused with the frame before

    # Deactivate forgets the history: the next frame, though it continues the stream, stands alone.
    fqn = f"{on}/enhance_node"
    assert ros.change_state(fqn, Transition.TRANSITION_DEACTIVATE)
    assert ros.change_state(fqn, Transition.TRANSITION_ACTIVATE)
    cams.wait_ready(on)
    got = cams.round_trip(frames[1], 52 * S + 200_000_000, "cam_left")
    assert np.array_equal(got[on], got[off])
    assert cams.wait_diag(on, "frames_out", "1")["temporal_resets"] == "0"  # counters of this activation
    for node in nodes.values():
        node.assert_clean_exit()


def test_a_bad_temporal_value_fails_configure_with_the_reason(ros: RosHarness, start_node):
    node = start_node(enhance_node_cmd("/temporal_bad", *REALTIME, "temporal_frames:=0"), name="bad")
    node.wait_for_output("configure failed: temporal_frames must be in [1, 64], got 0", timeout=START_TIMEOUT)
    assert ros.settled_lifecycle_state("/temporal_bad/enhance_node") == "unconfigured"
    node.assert_clean_exit()


def test_burst_merges_the_input_before_the_network(ros: RosHarness, start_node):
    burst, off = "/burst_on", "/burst_off"
    nodes = {burst: start_node(enhance_node_cmd(burst, *REALTIME, "temporal:=false", "burst:=true"), name="burst"),
             off: start_node(enhance_node_cmd(off, *REALTIME, "temporal:=false"), name="plain")}
    cams = Cameras(ros, [burst, off])
    for ns in (burst, off):
        cams.wait_ready(ns)
    frames = static_scene(12)
    outs = [cams.round_trip(rgb, 100 * S + k * 100_000_000) for k, rgb in enumerate(frames[:8])]
    merged, single = [o[burst] for o in outs], [o[off] for o in outs]
    assert np.array_equal(merged[0], single[0])  # the first frame has no burst behind it
    assert steadiness(merged[2:]) < 0.75 * steadiness(single[2:]), (steadiness(merged[2:]), steadiness(single[2:]))
    diag = cams.wait_diag(burst, "frames_out", "8")
    assert float(diag["burst_weight"]) > 0.3 and "temporal_weight" not in diag
    assert "burst_weight" not in cams.wait_diag(off, "state", "active")
    got = cams.round_trip(frames[8], 50 * S, "cam")  # the stamp went back: the burst restarts
    assert np.array_equal(got[burst], got[off])
    for node in nodes.values():
        node.assert_clean_exit()


def test_the_exposure_rule_pins_a_cameras_level_and_a_bad_target_fails_configure(ros: RosHarness, start_node):
    ruled, own = "/target_on", "/target_off"
    nodes = {ruled: start_node(enhance_node_cmd(ruled, *REALTIME, "target_level:=0.45"), name="ruled"),
             own: start_node(enhance_node_cmd(own, *REALTIME), name="own")}
    cams = Cameras(ros, [ruled, own])
    for ns in (ruled, own):
        cams.wait_ready(ns)
    frames = static_scene(4)
    outs = [cams.round_trip(rgb, 100 * S + k * 100_000_000) for k, rgb in enumerate(frames)]
    levels = [255 * mean_luma(o[ruled], stride=1) for o in outs]
    assert all(abs(v - 0.45 * 255) < 3.0 for v in levels), levels  # the same scene: the steadied gain holds it
    assert abs(255 * mean_luma(outs[0][own], stride=1) - 0.45 * 255) > 5.0  # the network's own level differs
    bad = start_node(enhance_node_cmd("/target_bad", *REALTIME, "target_level:=0.01"), name="bad_target")
    bad.wait_for_output("target_level must be 0 (the network's own level) or in (0.02, 0.9], got 0.01",
                        timeout=START_TIMEOUT)
    assert ros.settled_lifecycle_state("/target_bad/enhance_node") == "unconfigured"
    for node in (*nodes.values(), bad):
        node.assert_clean_exit()
