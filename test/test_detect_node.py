"""detect_node in a subprocess (namespace /cam) with the real SSD model, over real DDS."""
from __future__ import annotations

import json
import signal

import cv2
import numpy as np
import pytest
import skimage.data
from builtin_interfaces.msg import Time
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from dap_led_ros.ros.msg_conversion import make_image_msg

from conftest import NodeProcess, RosHarness, console_command
from resend import publish_until

NS = "/cam"
START_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def node(module_ros: RosHarness, tmp_path_factory) -> NodeProcess:
    cmd = console_command("detect_node", "dap_led_ros.ros.detect_node") + [
        "--ros-args", "-r", f"__ns:={NS}", "-p", "score_threshold:=0.4", "-p", "threads:=1"]
    proc = NodeProcess(cmd, tmp_path_factory.mktemp("detect_node") / "node.log")
    yield proc
    if proc.returncode is None:
        proc.stop(signal.SIGKILL)


def _stamp(doc: dict) -> tuple[int, int]:
    return (doc["header"]["stamp"]["sec"], doc["header"]["stamp"]["nanosec"])


def test_detections_carry_the_source_stamp_and_the_annotated_image_its_header(
        module_ros: RosHarness, node: NodeProcess):
    n = module_ros.node
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = n.create_publisher(Image, f"{NS}/enhanced/image", reliable)
    docs: dict[tuple[int, int], dict] = {}
    images: dict[tuple[int, int], Image] = {}
    sub_json = n.create_subscription(
        String, f"{NS}/detections/json",
        lambda m: docs.__setitem__(_stamp(json.loads(m.data)), json.loads(m.data)), reliable)
    sub_image = n.create_subscription(
        Image, f"{NS}/detections/image",
        lambda m: images.__setitem__((m.header.stamp.sec, m.header.stamp.nanosec), m), reliable)
    module_ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
    module_ros.wait_for_publishers(sub_json, timeout=START_TIMEOUT)
    module_ros.wait_for_publishers(sub_image, timeout=START_TIMEOUT)

    person = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = {  # frame_id -> (rgb, labels expected)
        "astronaut": (person, {"person"}),
        "empty": (np.zeros((120, 160, 3), np.uint8), set()),
    }
    for i, (frame_id, (rgb, _)) in enumerate(frames.items()):
        header = Header(stamp=Time(sec=1_700_000_000 + i, nanosec=42 + i), frame_id=frame_id)
        msg = make_image_msg(rgb[..., ::-1].copy(), header, "bgr8")
        key = (header.stamp.sec, header.stamp.nanosec)
        publish_until(module_ros, lambda: pub.publish(msg),
                      lambda: key in docs and key in images, f"detections of {frame_id}")

    by_frame = {doc["header"]["frame_id"]: (key, doc) for key, doc in docs.items()}
    assert set(by_frame) == set(frames)
    for frame_id, (rgb, expected) in frames.items():
        key, doc = by_frame[frame_id]
        assert (doc["width"], doc["height"]) == (rgb.shape[1], rgb.shape[0])
        labels = {d["label"] for d in doc["detections"]}
        assert expected <= labels, doc
        for det in doc["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 < x2 <= rgb.shape[1] and 0 <= y1 < y2 <= rgb.shape[0]
            assert det["score"] >= 0.4
        annotated = images[key]
        assert annotated.header.frame_id == frame_id
        assert (annotated.encoding, annotated.width, annotated.height) == (
            "bgr8", rgb.shape[1], rgb.shape[0])
        pixels = np.frombuffer(bytes(annotated.data), np.uint8).reshape(rgb.shape)[..., ::-1]
        assert np.array_equal(pixels, rgb) == (not doc["detections"])  # boxes drawn iff found
    assert by_frame["empty"][1]["detections"] == []
    assert "vision_msgs is not installed" in node.output()


def test_disabled_passes_frames_through_without_detections(module_ros: RosHarness,
                                                          node: NodeProcess):
    from std_srvs.srv import SetBool

    n = module_ros.node
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = n.create_publisher(Image, f"{NS}/enhanced/image", reliable)
    docs: list[dict] = []
    images: dict[str, Image] = {}
    n.create_subscription(String, f"{NS}/detections/json",
                          lambda m: docs.append(json.loads(m.data)), reliable)
    sub_image = n.create_subscription(Image, f"{NS}/detections/image",
                                      lambda m: images.__setitem__(m.header.frame_id, m), reliable)
    module_ros.wait_for_subscribers(pub)
    module_ros.wait_for_publishers(sub_image)
    person = cv2.resize(skimage.data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)

    def send(frame_id: str, sec: int) -> None:
        msg = make_image_msg(person, Header(stamp=Time(sec=sec), frame_id=frame_id), "rgb8")
        publish_until(module_ros, lambda: pub.publish(msg), lambda: frame_id in images,
                      f"detections/image of {frame_id}")

    assert module_ros.call(SetBool, f"{NS}/detect_node/enable", SetBool.Request(data=False)).success
    send("while_disabled", 10)
    passed = images["while_disabled"]
    assert passed.encoding == "rgb8" and bytes(passed.data) == person.tobytes()  # untouched
    assert not any(d["header"]["frame_id"] == "while_disabled" for d in docs)

    assert module_ros.call(SetBool, f"{NS}/detect_node/enable", SetBool.Request(data=True)).success
    send("enabled_again", 11)
    module_ros.spin_until(lambda: any(d["header"]["frame_id"] == "enabled_again" for d in docs),
                          30.0, "detections after enabling")
    assert bytes(images["enabled_again"].data) != person.tobytes()  # boxes drawn


def test_sigint_stops_the_node_cleanly(node: NodeProcess):
    node.assert_clean_exit(signal.SIGINT)
