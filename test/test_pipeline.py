"""`dap-led pipeline` in a subprocess: enhance + detect + depth in one process, over real DDS.

The enhancer is the random tiny test checkpoint and depth the tiny ONNX model the tests build,
so only wiring, stamps, headers, QoS and lifecycle are checked here, not image quality.
"""
from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import cv2
import pytest
import skimage.data
import yaml
from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import Transition
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from dap_led_ros.ros.msg_conversion import make_image_msg

from conftest import NodeProcess, RosHarness, console_command
from resend import publish_until
from tiny_depth_model import build_tiny_depth_model

NS = "/cam"
CAMERA = "/front/image_color"
START_TIMEOUT = 120.0
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def pipeline_command(*args: str) -> list[str]:
    return console_command("dap-led", "dap_led_ros.cli") + ["pipeline", *args]


@pytest.fixture(scope="module")
def params_file(tiny_checkpoint, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline")
    depth_model = build_tiny_depth_model(folder / "tiny_depth.onnx")
    doc = {
        "/**/enhance_node": {"ros__parameters": {
            "model": str(tiny_checkpoint), "backend": "torch", "threads": 1}},
        "/**/detect_node": {"ros__parameters": {"score_threshold": 0.3, "threads": 1}},
        "/**/depth_node": {"ros__parameters": {
            "model": str(depth_model), "threads": 1, "input_width": 64, "input_height": 48}},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _key(header: Header) -> tuple[int, int]:
    return (header.stamp.sec, header.stamp.nanosec)


def _frame(i: int) -> tuple[Header, Image, CameraInfo]:
    rgb = cv2.resize(skimage.data.astronaut(), (128, 96), interpolation=cv2.INTER_AREA)
    header = Header(stamp=Time(sec=1_700_000_100 + i, nanosec=1_000 * i + 7),
                    frame_id=f"front_optical_{i}")
    info = CameraInfo(header=header, width=128, height=96, distortion_model="plumb_bob")
    return header, make_image_msg(rgb[..., ::-1].copy(), header, "bgr8"), info


def test_enhance_detect_depth_keep_the_source_stamps(ros: RosHarness, params_file: Path,
                                                     start_node):
    proc: NodeProcess = start_node(pipeline_command(
        "--params", str(params_file), "--nodes", "enhance,detect,depth", "--namespace", NS,
        "--camera-topic", CAMERA, "--input-reliability", "reliable", "--input-depth", "2"),
        name="pipeline")
    n = ros.node
    pub = n.create_publisher(Image, CAMERA, RELIABLE)
    pub_info = n.create_publisher(CameraInfo, "/front/camera_info", RELIABLE)
    docs: dict[tuple[int, int], dict] = {}
    depths: dict[tuple[int, int], Image] = {}

    def on_json(msg: String) -> None:
        doc = json.loads(msg.data)
        docs[(doc["header"]["stamp"]["sec"], doc["header"]["stamp"]["nanosec"])] = doc

    sub_json = n.create_subscription(String, f"{NS}/detections/json", on_json, RELIABLE)
    sub_depth = n.create_subscription(Image, f"{NS}/depth/image",
                                      lambda m: depths.__setitem__(_key(m.header), m), RELIABLE)
    ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
    ros.wait_for_publishers(sub_json, timeout=START_TIMEOUT)
    ros.wait_for_publishers(sub_depth, timeout=START_TIMEOUT)

    # The QoS override reached every node's input: all subscriptions are reliable now.
    for topic in (CAMERA, f"{NS}/enhanced/image"):
        infos = n.get_subscriptions_info_by_topic(topic)
        assert infos, f"no subscription on {topic}"
        assert all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos), topic

    sent = []
    for i in range(3):
        header, image, info = _frame(i)
        sent.append(header)
        key = _key(header)
        publish_until(ros, lambda: (pub_info.publish(info), pub.publish(image)),
                      lambda: key in docs and key in depths, f"the outputs of frame {key}",
                      timeout=60.0, period=2.0)

    by_stamp = {_key(h): h for h in sent}
    for key, doc in docs.items():  # every detections message is stamped like a source frame
        assert key in by_stamp, f"detections stamped {key}, which no frame had"
        assert doc["header"]["frame_id"] == by_stamp[key].frame_id
        assert (doc["width"], doc["height"]) == (128, 96)
    for key, depth in depths.items():
        assert key in by_stamp and depth.header.frame_id == by_stamp[key].frame_id
        assert (depth.encoding, depth.width, depth.height) == ("32FC1", 128, 96)
    out = proc.assert_clean_exit(signal.SIGTERM)
    assert "pipeline running /cam/enhance_node, /cam/detect_node, /cam/depth_node" in out


def test_autostart_false_waits_for_the_lifecycle_manager(ros: RosHarness, params_file: Path,
                                                         start_node):
    proc = start_node(pipeline_command("--params", str(params_file), "--nodes", "detect",
                                       "--autostart", "false"), name="managed")
    n = ros.node
    pub = n.create_publisher(Image, "detect/image", RELIABLE)  # detect_input routed: enhance_node's output
    docs: list[dict] = []
    n.create_subscription(String, "detections/json", lambda m: docs.append(json.loads(m.data)),
                          RELIABLE)
    assert ros.lifecycle_state("/detect_node", timeout=START_TIMEOUT) == "unconfigured"
    ros.spin_for(1.0)
    assert pub.get_subscription_count() == 0 and docs == []  # no I/O before activation

    assert ros.change_state("/detect_node", Transition.TRANSITION_CONFIGURE)
    assert ros.change_state("/detect_node", Transition.TRANSITION_ACTIVATE)
    assert ros.lifecycle_state("/detect_node") == "active"
    ros.wait_for_subscribers(pub, timeout=30.0)
    _, image, _ = _frame(7)
    publish_until(ros, lambda: pub.publish(image), lambda: bool(docs), "detections after activate")
    assert docs[0]["header"]["frame_id"] == "front_optical_7"
    proc.assert_clean_exit(signal.SIGINT)


def test_bad_parameters_exit_with_a_message(tmp_path: Path, ros_domain_id: int):
    no_model = tmp_path / "no_depth_model.yaml"
    no_model.write_text("/**/depth_node:\n  ros__parameters:\n    threads: 1\n")
    result = subprocess.run(pipeline_command("--params", str(no_model), "--nodes", "depth"),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "error: /depth_node: depth 'model' (path of an ONNX file) is required" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--nodes", "enhance,radar"], "nodes: a comma-separated subset of enhance, detect, depth"),
    (["--params", "missing.yaml"], "params file not found: missing.yaml"),
    (["--params", "{}", "--nodes", "detect"], "must map node names"),
    (["--input-reliability", "sometimes"], "invalid choice: 'sometimes'"),
    (["--autostart", "maybe"], "expected true or false"),
    (["--detect-input", "raw"], "invalid choice: 'raw'"),
])
def test_bad_options_exit_2_with_a_message(args, message, tmp_path: Path,
                                           capsys):
    from dap_led_ros.cli import main

    not_a_mapping = tmp_path / "list.yaml"
    not_a_mapping.write_text("- 1\n- 2\n")
    args = [str(not_a_mapping) if a == "{}" else a for a in args]
    try:
        code = main(["pipeline", *args])
    except SystemExit as exc:  # argparse rejects bad option values itself
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_two_cameras_on_one_enhance_node_each_with_its_detect_node(ros: RosHarness, params_file: Path,
                                                                   start_node):
    proc: NodeProcess = start_node(pipeline_command(
        "--params", str(params_file), "--nodes", "enhance,detect", "--namespace", "/car",
        "--cameras", "front,rear", "--input-reliability", "reliable"), name="pipeline_cameras")
    n = ros.node
    pubs = {c: n.create_publisher(Image, f"/car/{c}/image_raw", RELIABLE) for c in ("front", "rear")}
    docs: dict[str, dict[tuple[int, int], dict]] = {"front": {}, "rear": {}}

    def on_json(camera: str, msg: String) -> None:
        doc = json.loads(msg.data)
        docs[camera][(doc["header"]["stamp"]["sec"], doc["header"]["stamp"]["nanosec"])] = doc

    subs = {c: n.create_subscription(String, f"/car/{c}/detections/json",
                                     lambda m, c=c: on_json(c, m), RELIABLE) for c in pubs}
    for c in pubs:
        ros.wait_for_subscribers(pubs[c], timeout=START_TIMEOUT)
        ros.wait_for_publishers(subs[c], timeout=START_TIMEOUT)
    for i, camera in enumerate(("front", "rear")):
        header, image, _ = _frame(10 + i)
        publish_until(ros, lambda: pubs[camera].publish(image), lambda: _key(header) in docs[camera],
                      f"{camera}'s detections", timeout=60.0, period=2.0)
        assert docs[camera][_key(header)]["header"]["frame_id"] == header.frame_id
    assert all(_key(_frame(10 + i)[0]) not in docs[c] for i, c in enumerate(("rear", "front")))
    out = proc.assert_clean_exit(signal.SIGTERM)
    assert "pipeline running /car/enhance_node, /car/front/detect_node, /car/rear/detect_node" in out
