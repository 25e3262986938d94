"""depth_node in a subprocess (namespace /cam) with the tiny ONNX model, over real DDS."""
from __future__ import annotations

import signal

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dap_led_ros.ros.msg_conversion import make_image_msg

from conftest import NodeProcess, RosHarness, console_command
from resend import publish_until
from tiny_depth_model import build_tiny_depth_model

NS = "/cam"
START_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def node(module_ros: RosHarness, tmp_path_factory) -> NodeProcess:
    folder = tmp_path_factory.mktemp("depth_node")
    model = build_tiny_depth_model(folder / "tiny_depth.onnx")
    # mean 0 / std 1: the prediction is the mean of the RGB channels / 255, exactly checkable.
    cmd = console_command("depth_node", "dap_led_ros.ros.depth_node") + [
        "--ros-args", "-r", f"__ns:={NS}", "-p", f"model:={model}", "-p", "threads:=1",
        "-p", "input_width:=64", "-p", "input_height:=48",
        "-p", "mean:=0, 0, 0", "-p", "std:=1, 1, 1"]
    proc = NodeProcess(cmd, folder / "node.log")
    yield proc
    if proc.returncode is None:
        proc.stop(signal.SIGKILL)


def _key(h: Header) -> tuple[int, int]:
    return (h.stamp.sec, h.stamp.nanosec)


def test_depth_image_keeps_the_source_header_and_camera_info_follows(module_ros: RosHarness,
                                                                     node: NodeProcess):
    n = module_ros.node
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = n.create_publisher(Image, f"{NS}/enhanced/image", reliable)
    pub_info = n.create_publisher(CameraInfo, f"{NS}/enhanced/camera_info", reliable)
    got: dict[str, dict[tuple[int, int], object]] = {"depth": {}, "info": {}, "color": {}}
    subs = {
        "depth": n.create_subscription(Image, f"{NS}/depth/image",
                                       lambda m: got["depth"].__setitem__(_key(m.header), m),
                                       reliable),
        "info": n.create_subscription(CameraInfo, f"{NS}/depth/camera_info",
                                      lambda m: got["info"].__setitem__(_key(m.header), m),
                                      reliable),
        "color": n.create_subscription(Image, f"{NS}/depth/colorized",
                                       lambda m: got["color"].__setitem__(_key(m.header), m),
                                       reliable),
    }
    module_ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
    for sub in subs.values():
        module_ros.wait_for_publishers(sub, timeout=START_TIMEOUT)

    rgb = np.zeros((36, 40, 3), np.uint8)
    rgb[:, :20] = (30, 60, 90)     # mean 60
    rgb[:, 20:] = (200, 210, 220)  # mean 210
    sent = []
    for i in range(3):
        header = Header(stamp=Time(sec=100 + i, nanosec=7_000 + i), frame_id=f"cam_optical_{i}")
        info = CameraInfo(header=header, width=40, height=36, distortion_model="plumb_bob")
        msg = make_image_msg(rgb[..., ::-1].copy(), header, "bgr8")  # BGR in, like a camera
        sent.append(header)
        key = _key(header)
        # Resent until it comes out: the node's best-effort input may match a moment after ours.
        publish_until(module_ros, lambda: (pub_info.publish(info), pub.publish(msg)),
                      lambda: key in got["depth"] and key in got["color"],
                      f"depth outputs of frame {key}")

    for header in sent:
        depth = got["depth"][_key(header)]
        assert depth.header.frame_id == header.frame_id
        assert (depth.encoding, depth.width, depth.height, depth.step) == ("32FC1", 40, 36, 160)
        values = np.frombuffer(bytes(depth.data), "<f4" if not depth.is_bigendian else ">f4")
        values = values.reshape(36, 40)
        np.testing.assert_allclose(values[:, :6], 60 / 255, atol=3e-3)
        np.testing.assert_allclose(values[:, -6:], 210 / 255, atol=3e-3)
        color = got["color"][_key(header)]
        assert (color.encoding, color.width, color.height) == ("rgb8", 40, 36)
        assert color.header.frame_id == header.frame_id
    module_ros.spin_until(lambda: all(_key(h) in got["info"] for h in sent[1:]), 10.0,
                          "depth/camera_info beside the depth images")
    assert got["info"][_key(sent[-1])].header.frame_id == sent[-1].frame_id

    # A malformed frame is dropped with a log line; the next good frame still comes out.
    bad = Image(header=Header(stamp=Time(sec=500), frame_id="bad"), encoding="weird9",
                width=4, height=4, step=4)
    bad.data = bytes(16)
    pub.publish(bad)
    node.wait_for_output("weird9", timeout=30.0)
    good = Header(stamp=Time(sec=501), frame_id="good")
    good_msg = make_image_msg(rgb, good, "rgb8")
    publish_until(module_ros, lambda: pub.publish(good_msg), lambda: _key(good) in got["depth"],
                  "the frame after a bad one")
    assert (500, 0) not in got["depth"]


def test_sigterm_stops_the_node_cleanly(node: NodeProcess):
    node.assert_clean_exit(signal.SIGTERM)
