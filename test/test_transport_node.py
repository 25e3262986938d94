"""enhance_node's image_transport topics and lazy publishing, in subprocesses driven over real DDS.

- input_transport compressed: JPEG / PNG CompressedImage on image_raw/compressed in, raw
  enhanced/image and enhanced/image/compressed out, headers exact, pixels as the raw path's
  within JPEG tolerance;
- lazy: no inference while nobody subscribes (counted in /diagnostics), and the first frame after a
  subscriber appears is published.
"""
from __future__ import annotations

import array
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.imaging.compressed_image import compress_for_encoding, decode_compressed
from dap_led_ros.ros.diagnostics import values_of
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded, make_compressed_msg, make_image_msg

from conftest import RosHarness, enhance_node_cmd

START_TIMEOUT = 90.0
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def local(tiny_checkpoint) -> Enhancer:
    return Enhancer(EnhancerConfig(model=str(tiny_checkpoint), backend="torch", threads=1))


_stamps = iter(range(1, 1_000_000))


def header(frame_id: str = "cam_optical") -> Header:
    return Header(stamp=Time(sec=next(_stamps), nanosec=987_654_321), frame_id=frame_id)


def key_of(h: Header) -> tuple[int, int]:
    return (h.stamp.sec, h.stamp.nanosec)


def scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A smooth frame (JPEG keeps it well) with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x / w, y / h, 0.5 + 0.3 * np.sin(x / 7.0 + y / 5.0)], axis=-1)
    noisy = base * 200 + 20 + rng.normal(0, 2, (h, w, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def compressed_msg(h: Header, rgb: np.ndarray, codec: str, encoding: str = "rgb8") -> CompressedImage:
    return make_compressed_msg(*compress_for_encoding(rgb, encoding, codec, jpeg_quality=95), h)


@dataclass
class Peer:
    """The test's side of one camera namespace: publishes input, collects outputs and diagnostics."""

    ros: RosHarness
    ns: str
    diag_name: str
    compressed_input: bool = False
    raw: dict[tuple[int, int], Image] = field(default_factory=dict)
    compressed: dict[tuple[int, int], CompressedImage] = field(default_factory=dict)
    diag: dict[str, str] = field(default_factory=dict)
    diag_count: int = 0

    def __post_init__(self) -> None:
        n = self.ros.node
        self.pub = (n.create_publisher(CompressedImage, f"{self.ns}/image_raw/compressed", RELIABLE)
                    if self.compressed_input else n.create_publisher(Image, f"{self.ns}/image_raw", RELIABLE))
        self.pub_info = n.create_publisher(CameraInfo, f"{self.ns}/camera_info", RELIABLE)
        self.sub_raw = self.sub_compressed = None
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def subscribe_raw(self) -> None:
        self.sub_raw = self.ros.node.create_subscription(
            Image, f"{self.ns}/enhanced/image", lambda m: self.raw.__setitem__(key_of(m.header), m), RELIABLE)

    def subscribe_compressed(self) -> None:
        self.sub_compressed = self.ros.node.create_subscription(
            CompressedImage, f"{self.ns}/enhanced/image/compressed",
            lambda m: self.compressed.__setitem__(key_of(m.header), m), RELIABLE)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        values = values_of(msg, self.diag_name)
        if values is not None:
            self.diag = values
            self.diag_count += 1

    def fresh_diag(self, predicate=lambda d: True, timeout: float = 30.0, what: str = "diagnostics") -> dict:
        """The first diagnostics published after now that satisfy `predicate`."""
        start = self.diag_count
        self.ros.spin_until(lambda: self.diag_count > start and predicate(self.diag), timeout, what)
        return self.diag

    def wait_input_matched(self) -> None:
        self.ros.wait_for_subscribers(self.pub, timeout=START_TIMEOUT)
        self.ros.wait_node_inputs(self.diag_name, timeout=START_TIMEOUT)

    def wait_outputs_matched(self) -> None:
        for sub in (self.sub_raw, self.sub_compressed):
            if sub is not None:
                self.ros.wait_for_publishers(sub, timeout=START_TIMEOUT)
        # The node's side of the match too (its diagnostics count the subscribers it sees).
        want = sum(s is not None for s in (self.sub_raw, self.sub_compressed))
        self.fresh_diag(lambda d: int(d.get("subscribers", "0")) >= want, START_TIMEOUT,
                        f"the node to see {want} subscriber(s)")


def decoded_rgb(msg: Image) -> np.ndarray:
    return np.asarray(image_msg_to_decoded(msg).rgb)


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


# ----------------------------------------------------------------------------- compressed transport

@pytest.fixture(scope="module")
def compressed_node(module_ros: RosHarness, tiny_checkpoint, tmp_path_factory):
    from conftest import NodeProcess

    cmd = enhance_node_cmd("/zcam", f"model:={tiny_checkpoint}", "temporal:=false",
                           "input_transport:=compressed", "publish_compressed:=true", "jpeg_quality:=90")
    proc = NodeProcess(cmd, tmp_path_factory.mktemp("transport") / "node.log")
    peer = Peer(module_ros, "/zcam", "zcam/enhance_node", compressed_input=True)
    peer.subscribe_raw()
    peer.subscribe_compressed()
    peer.wait_input_matched()
    peer.wait_outputs_matched()
    yield proc, peer
    proc.assert_clean_exit()


@pytest.mark.parametrize("codec", ["jpeg", "png"])
def test_compressed_in_gives_raw_and_compressed_out(compressed_node, local, codec):
    proc, peer = compressed_node
    rgb = scene(seed=1 if codec == "jpeg" else 2)
    h = header()
    src = compressed_msg(h, rgb, codec)
    peer.pub.publish(src)
    k = key_of(h)
    peer.ros.spin_until(lambda: k in peer.raw and k in peer.compressed, 60.0, f"both outputs of {codec} frame {k}")
    raw, comp = peer.raw[k], peer.compressed[k]
    # Headers exact, encoding from the input's format string.
    for out in (raw, comp):
        assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == \
            (h.stamp.sec, h.stamp.nanosec, h.frame_id)
    assert raw.encoding == "rgb8" and (raw.width, raw.height) == (64, 48)
    assert comp.format == "rgb8; jpeg compressed bgr8"  # the node's compressed_format (jpeg)
    # Raw output: exactly the restoration of the decoded input ...
    received = decode_compressed(src.format, bytes(src.data)).rgb
    np.testing.assert_array_equal(decoded_rgb(raw), local.enhance(received))
    # ... and the raw path's restoration within the codec's tolerance.
    via_raw = local.enhance(rgb)
    tolerance = 4.0 if codec == "jpeg" else 0.0
    assert mean_abs(decoded_rgb(raw), via_raw) <= tolerance
    # Compressed output: the raw output, JPEG-coded at the node's quality (the same libjpeg here).
    assert bytes(comp.data) == compress_for_encoding(decoded_rgb(raw), "rgb8", "jpeg", jpeg_quality=90)[1]


def test_compressed_mono_png_keeps_mono(compressed_node, local):
    proc, peer = compressed_node
    grey = cv2.cvtColor(scene(seed=3), cv2.COLOR_RGB2GRAY)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    h = header()
    src = compressed_msg(h, rgb, "png", encoding="mono8")
    assert src.format == "mono8; png compressed mono8"
    peer.pub.publish(src)
    k = key_of(h)
    peer.ros.spin_until(lambda: k in peer.raw and k in peer.compressed, 60.0, f"outputs of mono frame {k}")
    raw, comp = peer.raw[k], peer.compressed[k]
    assert raw.encoding == "mono8"
    expected = make_image_msg(local.enhance(rgb), h, "mono8")
    assert bytes(raw.data) == bytes(expected.data)
    assert comp.format == "mono8; jpeg compressed mono8"


def test_bad_compressed_frame_is_dropped_and_the_node_goes_on(compressed_node, local):
    proc, peer = compressed_node
    before = peer.fresh_diag()
    h_bad = header()
    bad = CompressedImage(header=h_bad, format="rgb8; jpeg compressed bgr8")
    bad.data = array.array("B", b"\xff\xd8\xff\x00garbage")
    peer.pub.publish(bad)
    peer.fresh_diag(lambda d: int(d["rejected"]) > int(before["rejected"]), 30.0, "the corrupt frame rejected")
    h = header()
    peer.pub.publish(compressed_msg(h, scene(seed=4), "jpeg"))
    peer.ros.spin_until(lambda: key_of(h) in peer.raw, 60.0, "the next good frame")
    assert key_of(h_bad) not in peer.raw
    assert "corrupt jpeg data" in proc.output()
    d = peer.fresh_diag(lambda d: "stage_decompress_p50_ms" in d and "stage_compress_p50_ms" in d)
    assert float(d["stage_decompress_p50_ms"]) >= 0.0 and d["input_transport"] == "compressed"
    assert d["output_transports"] == "raw,compressed"


# ----------------------------------------------------------------------------- lazy

def test_lazy_no_inference_without_subscribers_first_frame_after_one_appears(ros, tiny_checkpoint, start_node):
    # Depth 5: the burst of 5 frames below must reach the node to be counted (the default depth 1
    # keeps only the newest frame waiting in the reader).
    node = start_node(enhance_node_cmd("/lazy", f"model:={tiny_checkpoint}", "temporal:=false",
                                       "qos.input.depth:=5"), "lazy")
    peer = Peer(ros, "/lazy", "lazy/enhance_node")
    peer.wait_input_matched()
    rgb = scene(seed=5)
    # Nobody subscribes: frames are counted, none restored.
    d = peer.fresh_diag(lambda d: d.get("state") == "active", START_TIMEOUT, "the node active")
    assert d["lazy"] == "true" and int(d["subscribers"]) == 0
    unwatched = [header() for _ in range(5)]
    for i, h in enumerate(unwatched, 1):
        # One at a time: the input keeps only the newest frame (qos.input.depth 1), so frames sent in
        # a burst replace one another before the node takes them (2-3 of 5 arrived, Kilted and Jazzy).
        peer.pub.publish(make_image_msg(rgb, h, "rgb8"))
        d = peer.fresh_diag(lambda d, i=i: int(d["lazy_skipped"]) == i, 30.0, f"{i} frame(s) skipped while unwatched")
    assert int(d["restored"]) == 0 and int(d["frames_in"]) == 0 and int(d["frames_out"]) == 0
    # A subscriber appears: the newest unwatched frame is restored for it at once ...
    peer.subscribe_raw()
    ros.spin_until(lambda: key_of(unwatched[-1]) in peer.raw, 60.0, "the newest unwatched frame")
    assert [k for k in peer.raw] == [key_of(unwatched[-1])]
    # ... and the first frame sent after it matched (on this side) is published, however late the
    # node's side of the match is reported.
    ros.wait_for_publishers(peer.sub_raw, timeout=START_TIMEOUT)
    h = header()
    peer.pub.publish(make_image_msg(rgb, h, "rgb8"))
    ros.spin_until(lambda: key_of(h) in peer.raw, 60.0, "the first frame after the subscriber appeared")
    d = peer.fresh_diag(lambda d: int(d["subscribers"]) == 1)
    assert int(d["restored"]) == 2  # the newest unwatched frame and this one
    restored = int(d["restored"])
    # The subscriber leaves: inference stops again.
    ros.node.destroy_subscription(peer.sub_raw)
    peer.sub_raw = None
    peer.fresh_diag(lambda d: int(d["subscribers"]) == 0, 30.0, "the node to see the subscriber gone")
    skipped = int(peer.diag["lazy_skipped"])
    for i in range(1, 4):  # one at a time, as above
        peer.pub.publish(make_image_msg(rgb, header(), "rgb8"))
        d = peer.fresh_diag(lambda d, i=i: int(d["lazy_skipped"]) == skipped + i, 30.0, f"{i} more frame(s) skipped")
    assert int(d["restored"]) == restored
    node.assert_clean_exit()


def test_not_lazy_restores_without_subscribers(ros, tiny_checkpoint, start_node):
    node = start_node(enhance_node_cmd("/busy", f"model:={tiny_checkpoint}", "temporal:=false", "lazy:=false"),
                      "busy")
    peer = Peer(ros, "/busy", "busy/enhance_node")
    peer.wait_input_matched()
    peer.fresh_diag(lambda d: d.get("state") == "active", START_TIMEOUT, "the node active")
    deadline = time.monotonic() + 60.0
    sent = 0
    while time.monotonic() < deadline:  # newest frame wins: resend until some are restored
        peer.pub.publish(make_image_msg(scene(seed=6), header(), "rgb8"))
        sent += 1
        d = peer.fresh_diag()
        if int(d["restored"]) >= 2:
            break
    assert int(peer.diag["restored"]) >= 2 and int(peer.diag["lazy_skipped"]) == 0
    node.assert_clean_exit()


def test_disabled_passes_compressed_frames_through(compressed_node, module_ros):
    from std_srvs.srv import SetBool

    proc, peer = compressed_node
    assert module_ros.call(SetBool, "/zcam/enhance_node/enable", SetBool.Request(data=False)).success
    try:
        rgb = scene(seed=7)
        h = header()
        src = compressed_msg(h, rgb, "jpeg")
        peer.pub.publish(src)
        k = key_of(h)
        peer.ros.spin_until(lambda: k in peer.raw and k in peer.compressed, 60.0, "the passed-through frame")
        comp, raw = peer.compressed[k], peer.raw[k]
        assert comp.format == src.format and bytes(comp.data) == bytes(src.data)  # untouched
        np.testing.assert_array_equal(decoded_rgb(raw), decode_compressed(src.format, bytes(src.data)).rgb)
        assert raw.encoding == "rgb8"
    finally:
        assert module_ros.call(SetBool, "/zcam/enhance_node/enable", SetBool.Request(data=True)).success
