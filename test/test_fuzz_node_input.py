"""Property-based fuzzing of enhance_node's input (hypothesis): a real node process gets
generated sensor_msgs/Image messages, malformed and valid mixed (wrong steps, short and long
data, zero and huge sizes, unknown encodings with control characters, odd yuv/bayer sizes, both
byte orders, unicode frame_ids with newlines), over reliable QoS with a deep queue.

Properties: the node never dies and still answers; every published frame carries exactly the
header (stamp, frame_id) of its input; every valid frame comes back unless the node's counters
account for it (dropped by newest-frame-wins, or an error for frames under 16 px); everything
the node received is counted as published, rejected, dropped or failed.

Each example sends a batch and then a valid sentinel frame, and waits for the sentinel's output
(the last frame of a batch is never replaced, so this paces the node without sleeping).
"""
from __future__ import annotations

import signal
from dataclasses import dataclass, field

import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dap_led_ros.imaging.image_encoding import SUPPORTED_ENCODINGS, ImageEncodingError, bytes_per_pixel
from dap_led_ros.ros.diagnostics import values_of
from dap_led_ros.ros.msg_conversion import image_msg_to_decoded

from conftest import NodeProcess, RosHarness, console_command, count_fuzz_case, fuzz_examples, record_figure

NS = "/fuzz"
FQN = "/fuzz/enhance_node"
START_TIMEOUT = 90.0
MIN_SIDE = 16  # smaller valid frames may end as processing errors (counted), not as output
QUEUE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module")
def node(module_ros: RosHarness, tiny_checkpoint, tmp_path_factory) -> NodeProcess:
    cmd = console_command("enhance_node", "dap_led_ros.ros.enhance_node") + [
        "--ros-args", "-r", f"__ns:={NS}", "-p", f"model:={tiny_checkpoint}", "-p", "backend:=torch",
        "-p", "threads:=1", "-p", "diagnostics_period_s:=0.2",
        "-p", "qos.input.reliability:=reliable", "-p", "qos.input.depth:=1000",
        "-p", "qos.output.depth:=1000"]
    proc = NodeProcess(cmd, tmp_path_factory.mktemp("fuzz_node") / "node.log")
    yield proc
    if proc.returncode is None:
        proc.stop(signal.SIGKILL)


@dataclass
class Fuzzer:
    ros: RosHarness
    sent: dict[tuple[int, int], Image] = field(default_factory=dict)  # stamp -> message as received
    out: list[Image] = field(default_factory=list)
    diag: dict[str, str] = field(default_factory=dict)
    valid: set[tuple[int, int]] = field(default_factory=set)  # must come back unless dropped
    small: set[tuple[int, int]] = field(default_factory=set)  # valid, a side under MIN_SIDE
    stamp: int = 0

    def __post_init__(self) -> None:
        n = self.ros.node
        self.pub = n.create_publisher(Image, f"{NS}/image_raw", QUEUE)
        self.sub = n.create_subscription(Image, f"{NS}/enhanced/image", self.out.append, QUEUE)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        values = values_of(msg, "fuzz/enhance_node")
        if values is not None:
            self.diag = values

    def next_stamp(self) -> Time:
        self.stamp += 1
        return Time(sec=self.stamp, nanosec=self.stamp % 1_000_000_000)

    def send(self, msg: Image) -> tuple[int, int]:
        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        # What the node will see (DDS carries strings as C strings, for one).
        received = deserialize_message(serialize_message(msg), Image)
        self.sent[key] = received
        try:
            image_msg_to_decoded(received)
        except ImageEncodingError:
            pass
        else:
            (self.small if min(received.width, received.height) < MIN_SIDE else self.valid).add(key)
        self.pub.publish(msg)
        return key

    def wait_for(self, key: tuple[int, int], timeout: float = 60.0) -> None:
        def back() -> bool:
            return any((m.header.stamp.sec, m.header.stamp.nanosec) == key for m in self.out[-50:])
        self.ros.spin_until(back, timeout, f"the sentinel frame {key}")


@pytest.fixture(scope="module")
def fuzzer(module_ros: RosHarness, node: NodeProcess) -> Fuzzer:
    f = Fuzzer(module_ros)
    module_ros.wait_for_subscribers(f.pub, timeout=START_TIMEOUT)
    module_ros.wait_for_publishers(f.sub, timeout=START_TIMEOUT)
    module_ros.wait_node_inputs(f"{NS.strip('/')}/enhance_node", timeout=START_TIMEOUT)
    return f


# ----------------------------------------------------------------------------- strategies

CONTROL = "".join(chr(c) for c in range(1, 32)) + "\x7f\u2028\u202e"
_KNOWN = st.sampled_from(SUPPORTED_ENCODINGS)
_ODD_ENCODINGS = st.one_of(
    _KNOWN.map(str.upper),
    _KNOWN.map(lambda e: f" {e}\t"),
    st.sampled_from(["", "jpeg", "32FC1", "16UC1", "rgb8\n[INFO] forged", "yuv420", "nv12", "8UC3",
                     "bayer_xyzw8", "rgb8 " * 50]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00") | st.sampled_from(CONTROL),
            max_size=40),
)
# Most cases: a known encoding, the other fields right or wrong.
ENCODINGS = st.integers(0, 9).flatmap(lambda i: _KNOWN if i < 6 else _ODD_ENCODINGS)
FRAME_IDS = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")
                    | st.sampled_from("\n\r\t"), max_size=30)
SIDES = st.one_of(st.integers(1, 48), st.sampled_from([0, 2, 3, 15, 16, 17, 65535, 2**31, 2**32 - 1]))


@st.composite
def image_messages(draw) -> Image:
    encoding = draw(ENCODINGS)
    width, height = draw(SIDES), draw(SIDES)
    try:
        bpp = bytes_per_pixel(encoding)
    except ImageEncodingError:
        bpp = draw(st.integers(1, 8))
    row = width * bpp
    step = draw(st.one_of(st.just(row), st.just(row + draw(st.integers(1, 9))),
                          st.integers(0, max(0, row - 1)) if row else st.just(0),
                          st.integers(0, 2**32 - 1)))
    step = min(step, 2**32 - 1)
    nominal = step * height
    size = draw(st.one_of(st.just(nominal), st.just(max(0, nominal - draw(st.integers(1, 64)))),
                          st.just(nominal + draw(st.integers(1, 64))), st.integers(0, 256)))
    size = min(size, 200_000)  # huge headers carry little data
    msg = Image(encoding=encoding, width=width, height=height, step=step,
                is_bigendian=draw(st.sampled_from([0, 1, 0, 255])))
    msg.data = draw(st.binary(min_size=min(size, 64), max_size=min(size, 64))) * (size // 64 + 1) \
        if size else b""
    msg.data = bytes(msg.data)[:size]
    msg.header.frame_id = draw(FRAME_IDS)
    return msg


def sentinel(f: Fuzzer) -> Image:
    msg = Image(header=Header(stamp=f.next_stamp(), frame_id="sentinel"), encoding="rgb8",
                width=32, height=24, step=96)
    msg.data = bytes(range(256)) * 9
    return msg


# ----------------------------------------------------------------------------- the property

@settings(max_examples=fuzz_examples(ci=120, long=2500))
@given(batch=st.lists(image_messages(), min_size=1, max_size=4))
def test_generated_input_never_crashes_the_node_or_publishes_a_wrong_header(fuzzer: Fuzzer, node: NodeProcess,
                                                                             batch: list[Image]):
    for msg in batch:
        msg.header.stamp = fuzzer.next_stamp()
        fuzzer.send(msg)
    key = fuzzer.send(sentinel(fuzzer))
    count_fuzz_case("node input", len(batch))
    fuzzer.wait_for(key)
    assert node.alive(), node.output()[-3000:]


def test_after_the_fuzzing_every_frame_is_accounted_for(fuzzer: Fuzzer, node: NodeProcess):
    ros = fuzzer.ros
    assert node.alive()
    assert ros.lifecycle_state(FQN) == "active"
    total = len(fuzzer.sent)
    assert total > 100
    ros.spin_until(lambda: int(fuzzer.diag.get("frames_in", -1)) >= total
                   and int(fuzzer.diag.get("frames_out", -1)) >= len(fuzzer.out), 30,
                   f"diagnostics counting {total} frames (last: {fuzzer.diag})")
    d = {k: int(fuzzer.diag[k]) for k in ("frames_in", "frames_out", "rejected", "errors", "dropped")}
    assert d["frames_in"] == total, d
    # No wrong header: each output is the answer to a frame that was sent, with its exact header.
    returned = set()
    for out in fuzzer.out:
        key = (out.header.stamp.sec, out.header.stamp.nanosec)
        assert key in fuzzer.sent, f"an output with a stamp never sent: {key}"
        assert out.header.frame_id == fuzzer.sent[key].header.frame_id, key
        assert key not in returned, f"frame {key} published twice"
        returned.add(key)
    assert d["frames_out"] == len(fuzzer.out)
    assert d["frames_in"] == d["frames_out"] + d["rejected"] + d["errors"] + d["dropped"], d
    missing = fuzzer.valid - returned
    assert len(missing) <= d["dropped"], f"{len(missing)} valid frames missing, {d}"
    assert d["errors"] <= len(fuzzer.small - returned), f"errors on frames of >= {MIN_SIDE} px: {d}"
    assert d["rejected"] > 0 and int(fuzzer.diag["log_suppressed"]) > 0
    record_figure("node input fuzz: messages sent (with sentinels)", total)
    record_figure("node input fuzz: rejected / dropped / errors / published",
                  f"{d['rejected']} / {d['dropped']} / {d['errors']} / {d['frames_out']}")
    record_figure("node input fuzz: wrong headers", 0)
    # Lines stay short and single (escaped) whatever was thrown at it.
    lines = node.output().splitlines()
    assert all(len(line) < 600 for line in lines), max(map(len, lines))
    assert not any(line.startswith("[INFO] forged") for line in lines)
    node.assert_clean_exit(signal.SIGINT)
