"""detect/image: the detector's input, routed by the frame's darkness (runtime/detect_route.py).

The rule and its thresholds in this process; then enhance_node in a subprocess, driven over real DDS,
with only detect/image watched: a bright frame comes back byte for byte as the camera sent it and
skips the network, a dark one comes back restored (the same pixels as the checkpoint run here) at
the detector's own level, while enhanced/image keeps the network's.
"""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.ros.diagnostics import values_of
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg
from dap_led_ros.runtime.detect_route import (
    BY_DETECTOR_KEY,
    FROM_MODEL,
    ROUTE_KEY,
    UNMEASURED,
    TARGET_KEY,
    DetectRoute,
    for_detector,
    model_target_level,
    model_threshold,
)
from dap_led_ros.shipped_models import default_checkpoint, realtime_checkpoint

from conftest import NodeProcess, RosHarness, console_command

NS = "/route"
DIAG_NAME = "route/enhance_node"
START_TIMEOUT = 90.0
THRESHOLD = 0.2
DETECT_LEVEL = 0.45


def _frame(level: float, seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(level * 255, 12, (h, w, 3)), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- the rule

def test_mean_luma_weighs_channels_like_bt601_for_every_dtype():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 255
    assert mean_luma(rgb) == pytest.approx(0.587, abs=1e-6)
    assert mean_luma(rgb.astype(np.uint16) * 257) == pytest.approx(0.587, abs=1e-6)
    assert mean_luma(rgb.astype(np.float32) / 255) == pytest.approx(0.587, abs=1e-6)
    with pytest.raises(ValueError, match="expected H x W x 3"):
        mean_luma(np.zeros((8, 8), np.uint8))


def test_the_route_follows_the_setting_else_the_models_measured_threshold(tmp_path: Path):
    dark, bright = _frame(0.05, 1), _frame(0.5, 2)
    route = DetectRoute.resolve(0.2, None)
    assert (route.restores(dark), route.restores(bright), route.source) == (True, False, "setting")
    assert not DetectRoute.resolve(0.0, None).restores(dark)      # never
    assert DetectRoute.resolve(1.0, None).restores(bright)        # always
    with pytest.raises(ValueError, match="-1 .* or in \\[0, 1\\]"):
        DetectRoute.resolve(1.5, None)
    # The shipped models carry what the perception benchmark measured (docs/evaluation.md).
    assert model_threshold(default_checkpoint())[0] == pytest.approx(0.14)
    assert model_threshold(realtime_checkpoint())[0] == pytest.approx(0.059)
    rt = DetectRoute.resolve(FROM_MODEL, str(realtime_checkpoint()))
    assert (rt.restore_below, rt.target_level) == (pytest.approx(0.059), 0.45)  # measured at that level
    assert model_target_level(default_checkpoint()) == 0.45
    # The Enhancer names the checkpoint it runs, the shipped quality model included (model unset).
    for model, want in (("quality", 0.14), ("realtime", 0.059), (None, 0.14)):
        e = Enhancer(EnhancerConfig(model=model, backend="torch", threads=1))
        assert DetectRoute.resolve(FROM_MODEL, e.checkpoint).restore_below == pytest.approx(want), model
        e.close()
    # A model nobody measured: every frame restored, as before routing existed.
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump({"model": {}, "extra": {}}))
    unmeasured = DetectRoute.resolve(FROM_MODEL, tmp_path / "mine.safetensors")
    assert (unmeasured.restore_below, unmeasured.source.startswith("unmeasured")) == (UNMEASURED, True)
    assert DetectRoute.resolve(FROM_MODEL, None).restore_below == UNMEASURED
    # Hysteresis: a restored stream stays restored up to 10 % above the threshold.
    at = np.full((8, 8, 3), round(0.2 * 1.05 * 255), np.uint8)  # 5 % above 0.2
    assert not route.restores(at) and route.restores(at, restoring=True)
    assert not route.restores(np.full((8, 8, 3), round(0.2 * 1.15 * 255), np.uint8), restoring=True)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"extra": {ROUTE_KEY: 3}}))
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        model_threshold(tmp_path / "bad.safetensors")


def test_the_threshold_belongs_to_the_model_and_the_detector_reading_its_frames(tmp_path: Path):
    # The shipped quality model: SSD gains from -6 EV down, the independent CenterNet nowhere.
    q = default_checkpoint()
    assert DetectRoute.resolve(FROM_MODEL, q).restore_below == pytest.approx(0.14)
    assert DetectRoute.resolve(FROM_MODEL, q, "").restore_below == pytest.approx(0.14)
    assert DetectRoute.resolve(FROM_MODEL, q, "/opt/ssd_mobilenet_v2_coco.onnx").restore_below == pytest.approx(0.14)
    centernet = DetectRoute.resolve(FROM_MODEL, q, "data/bench/models/centernet_mbv3_coco.onnx")
    assert (centernet.restore_below, centernet.source) == (0.0, "model dapled_tiny, detector centernet_mbv3_coco")
    # A detector nobody measured: restored only where restoration helped every detector measured.
    mine = DetectRoute.resolve(FROM_MODEL, q, "/home/me/yolo11n.onnx")
    assert mine.restore_below == 0.0 and "yolo11n unmeasured: the lowest measured threshold (centernet_mbv3_coco)" in mine.source
    # the node's own setting wins whatever the detector
    assert DetectRoute.resolve(0.3, q, "/home/me/yolo11n.onnx").restore_below == 0.3
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"extra": {ROUTE_KEY: 0.1, BY_DETECTOR_KEY: {"a": 0.05, "b": 0.2}}}))
    assert model_threshold(tmp_path / "m.safetensors", "x/b.onnx") == (0.2, "model m, detector b")
    assert model_threshold(tmp_path / "m.safetensors", "c.onnx")[0] == 0.05
    (tmp_path / "n.yaml").write_text(yaml.safe_dump({"extra": {BY_DETECTOR_KEY: {"a": 0.2}}}))
    assert model_threshold(tmp_path / "n.safetensors")[0] == 0.2  # only another detector measured
    (tmp_path / "bad2.yaml").write_text(yaml.safe_dump({"extra": {BY_DETECTOR_KEY: [0.1]}}))
    with pytest.raises(ValueError, match="must map detector names"):
        model_threshold(tmp_path / "bad2.safetensors")
    (tmp_path / "bad3.yaml").write_text(yaml.safe_dump({"extra": {BY_DETECTOR_KEY: {"a": -0.5}}}))
    with pytest.raises(ValueError, match="by_detector.a must be in"):
        model_threshold(tmp_path / "bad3.safetensors")


def test_restored_frames_reach_the_detector_at_the_level_the_thresholds_were_measured_at(tmp_path: Path):
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"extra": {ROUTE_KEY: 0.14, TARGET_KEY: 0.45}}))
    ckpt = tmp_path / "m.safetensors"
    assert model_target_level(ckpt) == 0.45
    route = DetectRoute.resolve(FROM_MODEL, ckpt)
    assert (route.restore_below, route.target_level) == (0.14, 0.45)
    assert "at mean luma 0.45" in route.describe()
    assert DetectRoute.resolve(FROM_MODEL, ckpt, "", 0.0).rule() is None      # the network's own level
    assert DetectRoute.resolve(0.3, ckpt, "", 0.3).target_level == 0.3       # settings win
    assert model_target_level(None) == 0.0 and DetectRoute.resolve(FROM_MODEL, None).rule() is None
    with pytest.raises(ValueError, match="target_level"):
        DetectRoute.resolve(FROM_MODEL, ckpt, "", 0.95)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"extra": {TARGET_KEY: 0.01}}))
    with pytest.raises(ValueError, match="target_level"):
        model_target_level(tmp_path / "bad.safetensors")
    # the level: one gain, white balance kept; uint8 stays uint8, float stays float
    dark = _frame(0.25, 1)  # within the rule's 8x gain of the level
    rule = route.rule()
    out = for_detector(rule, dark)
    assert out.dtype == np.uint8 and mean_luma(out) == pytest.approx(0.45, abs=0.01)
    assert for_detector(None, dark) is dark
    f = for_detector(rule, dark.astype(np.float32) / 255)
    assert f.dtype == np.float32 and mean_luma(f) == pytest.approx(0.45, abs=0.01)


# ----------------------------------------------------------------------------- the node

@pytest.fixture(scope="module")
def node(module_ros: RosHarness, tiny_checkpoint, tmp_path_factory) -> NodeProcess:
    cmd = console_command("enhance_node", "dap_led_ros.ros.enhance_node") + [
        "--ros-args", "-r", f"__ns:={NS}", "-p", f"model:={tiny_checkpoint}",
        "-p", "backend:=torch", "-p", "threads:=1", "-p", "diagnostics_period_s:=0.5",
        "-p", "temporal:=false", "-p", f"detect_restore_below:={THRESHOLD}",
        "-p", f"detect_target_level:={DETECT_LEVEL}"]
    proc = NodeProcess(cmd, tmp_path_factory.mktemp("route_node") / "node.log")
    yield proc
    proc.assert_clean_exit(signal.SIGINT)


def test_only_the_detector_watching_bright_frames_pass_untouched_and_dark_ones_come_restored(
        module_ros: RosHarness, node: NodeProcess, tiny_checkpoint):
    torch.set_num_threads(1)
    ros, n = module_ros, module_ros.node
    got: dict[int, Image] = {}
    diag: dict[str, str] = {}

    def on_diag(msg: DiagnosticArray) -> None:
        values = values_of(msg, DIAG_NAME)
        if values is not None:
            diag.update(values)

    pub = n.create_publisher(Image, f"{NS}/image_raw", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    sub = n.create_subscription(Image, f"{NS}/detect/image", lambda m: got.__setitem__(m.header.stamp.sec, m),
                                QoSProfile(depth=10))
    n.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
    ros.wait_for_publishers(sub, timeout=START_TIMEOUT)
    ros.wait_node_inputs(DIAG_NAME, timeout=START_TIMEOUT)

    bright = make_image_msg(_frame(0.5, 3)[:, :, ::-1].copy(), Header(stamp=Time(sec=1), frame_id="cam"), "bgr8")
    dark_rgb = _frame(0.05, 4)
    dark = make_image_msg(dark_rgb, Header(stamp=Time(sec=2), frame_id="cam"), "rgb8")
    for msg in (bright, dark):
        sec = msg.header.stamp.sec
        pub.publish(msg)
        ros.spin_until(lambda: sec in got, 60.0, f"detect/image for frame {sec}")

    out = got[1]  # bright: the camera's own message
    assert (out.header, out.encoding, out.width, out.height, out.step) == \
        (bright.header, "bgr8", bright.width, bright.height, bright.step)
    assert bytes(out.data) == bytes(bright.data)
    out = got[2]  # dark: restored, as the same checkpoint restores it here, at the detector's level
    enhancer = Enhancer(EnhancerConfig(model=str(tiny_checkpoint), backend="torch", threads=1))
    want = enhancer.enhance(dark_rgb)
    rule = DetectRoute(THRESHOLD, target_level=DETECT_LEVEL).rule()
    restored = image_msg_to_decoded(out).rgb
    assert out.header == dark.header and out.encoding == "rgb8"
    assert np.abs(restored.astype(int) - for_detector(rule, want).astype(int)).max() <= 2
    assert mean_luma(restored) > mean_luma(want) + 0.05  # brighter (the random network's frame needs the 8x cap)
    assert np.abs(restored.astype(int) - dark_rgb.astype(int)).max() > 1  # not the input
    # Nothing else watched: the bright frame never went through the network.
    ros.spin_until(lambda: diag.get("restored") == "1" and diag.get("detect_camera_frames") == "1", 30.0,
                   f"diagnostics counting one restored and one camera frame ({diag})")
    assert diag["detect_restore_below"] == f"{THRESHOLD:g}" and diag["detect_target_level"] == f"{DETECT_LEVEL:g}"

    # With the restored output watched too, a bright frame goes through the network for it and
    # detect/image still carries the camera's frame.
    enhanced: dict[int, Image] = {}
    esub = n.create_subscription(Image, f"{NS}/enhanced/image", lambda m: enhanced.__setitem__(m.header.stamp.sec, m),
                                 QoSProfile(depth=10))
    ros.wait_for_publishers(esub, timeout=START_TIMEOUT)
    ros.spin_until(lambda: diag.get("subscribers") == "2", 30.0, f"the node counting both subscribers ({diag})")
    bright2 = make_image_msg(_frame(0.5, 5), Header(stamp=Time(sec=3), frame_id="cam"), "rgb8")
    pub.publish(bright2)
    ros.spin_until(lambda: 3 in got and 3 in enhanced, 60.0, "detect/image and enhanced/image for frame 3")
    assert bytes(got[3].data) == bytes(bright2.data)
    assert bytes(enhanced[3].data) != bytes(bright2.data)
    ros.spin_until(lambda: diag.get("restored") == "2" and diag.get("detect_camera_frames") == "2", 30.0,
                   f"diagnostics counting two restored and two camera frames ({diag})")
    # A dark frame with both watched: enhanced/image at the network's level, detect/image at the detector's.
    dark2_rgb = _frame(0.04, 6)
    pub.publish(make_image_msg(dark2_rgb, Header(stamp=Time(sec=4), frame_id="cam"), "rgb8"))
    ros.spin_until(lambda: 4 in got and 4 in enhanced, 60.0, "detect/image and enhanced/image for frame 4")
    network = image_msg_to_decoded(enhanced[4]).rgb
    assert np.abs(network.astype(int) - enhancer.enhance(dark2_rgb).astype(int)).max() <= 1
    detect = image_msg_to_decoded(got[4]).rgb
    assert np.abs(detect.astype(int) - for_detector(rule, network).astype(int)).max() <= 2
    assert mean_luma(detect) > mean_luma(network) + 0.05
