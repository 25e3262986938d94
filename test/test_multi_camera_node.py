"""Several cameras on one model: one enhance_node serving 4 camera namespaces, against one
single-camera node, in subprocesses over real DDS.

Checked: every camera's frames come back on its own topics with their headers and its own pixels
(the frames of one arrival batched through the backend), per-camera /diagnostics statuses,
newest-frame-wins per camera, and resident memory below 1.5x that of one single-camera node.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.ros.diagnostics import status_values
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_image_msg

from conftest import NodeProcess, RosHarness, enhance_node_cmd

CAMERAS = ("front", "rear", "left", "right")
NS = "/car"
NODE_STATUS = "car/enhance_node"
START_TIMEOUT = 90.0
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def local(tiny_checkpoint) -> Enhancer:
    return Enhancer(EnhancerConfig(model=str(tiny_checkpoint), backend="torch", threads=1))


_stamps = iter(range(1, 1_000_000))


def header(camera: str) -> Header:
    return Header(stamp=Time(sec=next(_stamps), nanosec=5), frame_id=f"{camera}_optical")


def key_of(h: Header) -> tuple[int, int, str]:
    return (h.stamp.sec, h.stamp.nanosec, h.frame_id)


def frame(seed: int, h: int = 40, w: int = 56) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class Rig:
    """The test's side: per camera an input publisher and output subscriptions; all diagnostics."""

    def __init__(self, ros: RosHarness, ns: str, cameras: tuple[str, ...]) -> None:
        self.ros, self.cameras = ros, cameras
        n = ros.node
        self.pubs = {c: n.create_publisher(Image, f"{ns}/{c}/image_raw", RELIABLE) for c in cameras}
        self.info_pubs = {c: n.create_publisher(CameraInfo, f"{ns}/{c}/camera_info", RELIABLE) for c in cameras}
        self.out: dict[str, dict[tuple, Image]] = {c: {} for c in cameras}
        self.infos: dict[str, dict[tuple, CameraInfo]] = {c: {} for c in cameras}
        self.subs = [n.create_subscription(Image, f"{ns}/{c}/enhanced/image",
                                           lambda m, c=c: self.out[c].__setitem__(key_of(m.header), m), RELIABLE)
                     for c in cameras]
        self.subs += [n.create_subscription(CameraInfo, f"{ns}/{c}/enhanced/camera_info",
                                            lambda m, c=c: self.infos[c].__setitem__(key_of(m.header), m), RELIABLE)
                      for c in cameras]
        self.statuses: dict[str, dict[str, str]] = {}
        self.diag_count = 0
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.statuses[status.name] = status_values(status)
        self.diag_count += 1

    def wait_matched(self) -> None:
        for pub in self.pubs.values():
            self.ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
        for sub in self.subs:
            self.ros.wait_for_publishers(sub, timeout=START_TIMEOUT)
        for c in self.cameras:  # the node's side of each input's match
            self.ros.wait_node_inputs(f"{NODE_STATUS}: {c}", timeout=START_TIMEOUT)

    def fresh_status(self, name: str, predicate=lambda d: True, timeout: float = 30.0) -> dict[str, str]:
        start = self.diag_count
        self.ros.spin_until(lambda: self.diag_count > start and name in self.statuses
                            and predicate(self.statuses[name]), timeout, f"status {name}")
        return self.statuses[name]

    def send_round(self, seeds: dict[str, int]) -> dict[str, Header]:
        """One frame per camera, published back to back (they arrive together)."""
        headers = {}
        for c, seed in seeds.items():
            h = headers[c] = header(c)
            info = CameraInfo(header=h, width=56, height=40, distortion_model="plumb_bob")
            self.info_pubs[c].publish(info)
            self.pubs[c].publish(make_image_msg(frame(seed), h, "rgb8"))
        return headers

    def wait_outputs(self, headers: dict[str, Header], timeout: float = 60.0) -> None:
        self.ros.spin_until(lambda: all(key_of(h) in self.out[c] for c, h in headers.items()), timeout,
                            "every camera's output")


@pytest.fixture(scope="module")
def four(module_ros: RosHarness, tiny_checkpoint, tmp_path_factory):
    cmd = enhance_node_cmd(NS, f"model:={tiny_checkpoint}", "temporal:=false", f"cameras:={','.join(CAMERAS)}",
                           "batch_window_ms:=500.0", "max_batch:=4")  # on the CPU auto would be 1
    proc = NodeProcess(cmd, tmp_path_factory.mktemp("multi") / "node.log")
    rig = Rig(module_ros, NS, CAMERAS)
    rig.wait_matched()
    yield proc, rig
    proc.assert_clean_exit()


def test_four_cameras_served_with_their_own_pixels_and_headers(four, local):
    proc, rig = four
    for round_ in range(3):
        seeds = {c: 100 * round_ + i for i, c in enumerate(CAMERAS)}
        headers = rig.send_round(seeds)
        rig.wait_outputs(headers)
        for c, h in headers.items():
            out = rig.out[c][key_of(h)]
            assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == key_of(h)
            assert out.encoding == "rgb8" and (out.width, out.height) == (56, 40)
            got = np.asarray(image_msg_to_decoded(out).rgb).astype(np.int16)
            want = local.enhance(frame(seeds[c])).astype(np.int16)
            # A batch of 4 may take other convolution kernels than one frame: last-bit differences.
            assert np.abs(got - want).max() <= 1, c
            other = local.enhance(frame(seeds[CAMERAS[(CAMERAS.index(c) + 1) % 4]])).astype(np.int16)
            assert np.abs(got - other).mean() > 5  # not another camera's frame
        rig.ros.spin_until(lambda: all(key_of(h) in rig.infos[c] for c, h in headers.items()), 30.0,
                           "every camera's camera_info")
    node = rig.fresh_status(NODE_STATUS, lambda d: int(d.get("batches", "0")) >= 1)
    assert node["cameras"] == ",".join(CAMERAS)
    assert int(node["restored"]) == 12
    # Frames of one round arrive within the 500 ms window: batched (the window ends once all 4 are in).
    assert int(node["batch_max"]) >= 2, node
    for c in CAMERAS:
        cam = rig.fresh_status(f"{NODE_STATUS}: {c}")
        assert int(cam["frames_out"]) == 3 and int(cam["restored"]) == 3, (c, cam)
        assert cam["input"] == f"{c}/image_raw"


def test_one_camera_flooding_does_not_starve_the_others(four):
    proc, rig = four
    before = {c: int(rig.fresh_status(f"{NODE_STATUS}: {c}")["frames_out"]) for c in CAMERAS}
    assert all(int(rig.statuses[f"{NODE_STATUS}: {c}"]["frames_in"]) == before[c] for c in CAMERAS)
    # front sends 30 frames back to back, the others one each: front's extra frames are dropped
    # (newest wins), every camera's last frame is served.
    last = {}
    for k in range(30):
        h = last["front"] = header("front")
        rig.pubs["front"].publish(make_image_msg(frame(1000 + k), h, "rgb8"))
    for c in CAMERAS[1:]:
        h = last[c] = header(c)
        rig.pubs[c].publish(make_image_msg(frame(2000), h, "rgb8"))
    rig.wait_outputs(last)
    # Best-effort input: DDS may drop some of the 30 before the node sees them; what it saw was
    # restored or replaced by a newer one.
    front = rig.fresh_status(f"{NODE_STATUS}: front", lambda d: int(d["frames_in"]) > before["front"]
                             and int(d["frames_out"]) + int(d["dropped"]) == int(d["frames_in"]))
    assert int(front["frames_out"]) > before["front"]
    for c in CAMERAS[1:]:
        cam = rig.fresh_status(f"{NODE_STATUS}: {c}")
        assert int(cam["frames_out"]) == before[c] + 1 and int(cam["dropped"]) == 0, (c, cam)


def test_memory_of_four_cameras_below_one_and_a_half_single_nodes(four, module_ros, tiny_checkpoint,
                                                                  tmp_path_factory):
    proc, rig = four
    single_cmd = enhance_node_cmd("/solo", f"model:={tiny_checkpoint}", "temporal:=false")
    single = NodeProcess(single_cmd, tmp_path_factory.mktemp("solo") / "node.log")
    try:
        pub = module_ros.node.create_publisher(Image, "/solo/image_raw", RELIABLE)
        got: dict[tuple, Image] = {}
        sub = module_ros.node.create_subscription(Image, "/solo/enhanced/image",
                                                  lambda m: got.__setitem__(key_of(m.header), m), RELIABLE)
        module_ros.wait_for_subscribers(pub, timeout=START_TIMEOUT)
        module_ros.wait_for_publishers(sub, timeout=START_TIMEOUT)
        module_ros.wait_node_inputs("solo/enhance_node", timeout=START_TIMEOUT)
        for k in range(3):  # served as many frames per camera as the 4-camera node
            h = header("solo")
            pub.publish(make_image_msg(frame(k), h, "rgb8"))
            module_ros.spin_until(lambda: key_of(h) in got, 60.0, "the single node's output")
        single_rss, four_rss = single.rss_bytes(), proc.rss_bytes()
        print(f"RSS: one camera {single_rss / 2**20:.0f} MiB, four cameras on one node {four_rss / 2**20:.0f} MiB "
              f"({four_rss / single_rss:.2f}x)")
        assert four_rss < 1.5 * single_rss
    finally:
        single.assert_clean_exit()


def test_bad_camera_lists_are_refused(ros, tiny_checkpoint, start_node):
    node = start_node(enhance_node_cmd("/bad", f"model:={tiny_checkpoint}", "cameras:=front,front"), "bad")
    node.wait_for_output("cameras: front listed twice", timeout=START_TIMEOUT)
    node.assert_clean_exit()
