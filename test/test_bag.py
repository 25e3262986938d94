"""`dap-led bag`: real rosbag2 files (sqlite3 and mcap) written and read back with rosbags."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from dap_led_ros.bag.bag_enhance import BagEnhanceOptions, enhance_bag
from dap_led_ros.bag.bag_errors import BagError
from dap_led_ros.bag.bag_io import TYPESTORE, open_reader, storage_of
from dap_led_ros.bag.sample_bag import SampleBagConfig, camera_info_msg, make_sample_bag
from dap_led_ros.cli import main as cli_main
from dap_led_ros.enhancer import Enhancer, EnhancerConfig

IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
RAW_TOPIC, JPEG_TOPIC = "/cam/image_raw", "/cam/image_raw/compressed"
OUT_RAW, OUT_JPEG = "/cam/enhanced/image", "/cam/enhanced/image/compressed"
INFO_TOPIC, OUT_INFO = "/cam/camera_info", "/cam/enhanced/camera_info"
T0 = 1_700_000_000_000_000_000
DAP_LED = [sys.executable, "-m", "dap_led_ros.cli"]

T = TYPESTORE.types
SENSOR_QOS = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE,
                 QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    """conftest's random-init 'tiny' variant (ModelConfig.from_variant + save_checkpoint)."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def enhancer(checkpoint) -> Enhancer:
    return Enhancer(EnhancerConfig(model=str(checkpoint), backend="torch", threads=1))


def _header(ns: int, frame: str = "cam"):
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9),
                                    frame_id=frame)


def _image(ns: int, rgb: np.ndarray) -> bytes:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    msg = T[IMAGE](header=_header(ns), height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8",
                   is_bigendian=0, step=bgr.shape[1] * 3, data=bgr.reshape(-1))
    return bytes(TYPESTORE.serialize_cdr(msg, IMAGE))


def _jpeg(ns: int, rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1])
    assert ok
    msg = T[COMPRESSED](header=_header(ns), format="bgr8; jpeg compressed bgr8", data=buf.reshape(-1))
    return bytes(TYPESTORE.serialize_cdr(msg, COMPRESSED))


def _imu(ns: int, k: int) -> bytes:
    v, q = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    cov = np.zeros(9)
    msg = T["sensor_msgs/msg/Imu"](header=_header(ns, "imu"), orientation=q(x=0.0, y=0.0, z=0.0, w=1.0),
                                   orientation_covariance=cov, angular_velocity=v(x=0.01 * k, y=0.0, z=0.0),
                                   angular_velocity_covariance=cov,
                                   linear_acceleration=v(x=0.0, y=0.0, z=9.81), linear_acceleration_covariance=cov)
    return bytes(TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/Imu"))


def _tf(ns: int) -> bytes:
    tf = T["geometry_msgs/msg/TransformStamped"](
        header=_header(ns, "map"), child_frame_id="base_link",
        transform=T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](x=1.0, y=2.0, z=0.0),
                                                   rotation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
    return bytes(TYPESTORE.serialize_cdr(T["tf2_msgs/msg/TFMessage"](transforms=[tf]), "tf2_msgs/msg/TFMessage"))


def make_bag(path: Path, storage: str = "sqlite3", frames: int = 3, size: tuple[int, int] = (40, 32),
             corrupt: bool = False) -> None:
    """Image (bgr8) + CompressedImage (JPEG) + camera_info + /imu + /tf; with `corrupt`, one broken
    message of each image type and a truncated CDR message are added."""
    rng = np.random.default_rng(1)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        raw = w.add_connection(RAW_TOPIC, IMAGE, typestore=TYPESTORE, offered_qos_profiles=[SENSOR_QOS])
        jpg = w.add_connection(JPEG_TOPIC, COMPRESSED, typestore=TYPESTORE)
        imu = w.add_connection("/imu", "sensor_msgs/msg/Imu", typestore=TYPESTORE)
        tf = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TYPESTORE)
        info = w.add_connection(INFO_TOPIC, CAMERA_INFO, typestore=TYPESTORE)
        for i in range(frames):
            ns = T0 + i * 50_000_000
            rgb = rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8)
            for k in range(5):
                w.write(imu, ns + k * 10_000_000, _imu(ns, k))
            w.write(raw, ns, _image(ns, rgb))
            w.write(jpg, ns + 1, _jpeg(ns + 1, rgb))
            w.write(tf, ns + 2, _tf(ns + 2))
            w.write(info, ns, bytes(TYPESTORE.serialize_cdr(camera_info_msg(ns, *size), CAMERA_INFO)))
        if corrupt:
            ns = T0 + frames * 50_000_000
            short = T[IMAGE](header=_header(ns), height=size[1], width=size[0], encoding="bgr8", is_bigendian=0,
                             step=size[0] * 3, data=np.zeros(10, np.uint8))  # far fewer bytes than step*height
            w.write(raw, ns, bytes(TYPESTORE.serialize_cdr(short, IMAGE)))
            junk = T[COMPRESSED](header=_header(ns + 1), format="jpeg",
                                 data=np.frombuffer(b"\xff\xd8\xff\xe0 not really a jpeg", np.uint8))
            w.write(jpg, ns + 1, bytes(TYPESTORE.serialize_cdr(junk, COMPRESSED)))
            w.write(raw, ns + 2, _image(ns + 2, rng.integers(0, 60, (size[1], size[0], 3), dtype=np.uint8))[:30])


def read_all(path: Path) -> list[tuple[str, int, bytes]]:
    with Reader(path) as r:
        return [(c.topic, t, bytes(d)) for c, t, d in r.messages()]


def connections(path: Path) -> dict[str, tuple]:
    with Reader(path) as r:
        return {c.topic: (c.msgtype, c.digest, c.msgdef.data, c.ext.offered_qos_profiles) for c in r.connections}


def check_output(src: Path, dst: Path, broken: set[tuple[str, int]] = frozenset()) -> None:
    """Every input message byte-identical and in order, one enhanced message per good frame, and
    camera_info copied beside the enhanced frames."""
    inp, out = read_all(src), read_all(dst)
    enhanced_topics = (OUT_RAW, OUT_JPEG, OUT_INFO)
    assert [m for m in out if m[0] not in enhanced_topics] == inp
    assert [(t, d) for topic, t, d in out if topic == OUT_INFO] == [(t, d) for topic, t, d in inp if topic == INFO_TOPIC]
    in_conns, out_conns = connections(src), connections(dst)
    assert {t: c for t, c in out_conns.items() if t not in enhanced_topics} == in_conns
    assert out_conns[OUT_RAW][:3] == in_conns[RAW_TOPIC][:3]
    assert out_conns[OUT_INFO] == in_conns[INFO_TOPIC]
    assert storage_of(dst) == storage_of(src)
    for src_topic, out_topic, msgtype in ((RAW_TOPIC, OUT_RAW, IMAGE), (JPEG_TOPIC, OUT_JPEG, COMPRESSED)):
        frames = [(t, d) for topic, t, d in inp if topic == src_topic and (topic, t) not in broken]
        results = [(t, d) for topic, t, d in out if topic == out_topic]
        assert [t for t, _ in results] == [t for t, _ in frames]
        for (t, d_in), (_, d_out) in zip(frames, results):
            m_in, m_out = TYPESTORE.deserialize_cdr(d_in, msgtype), TYPESTORE.deserialize_cdr(d_out, msgtype)
            assert m_out.header == m_in.header
            if msgtype == IMAGE:
                assert (m_out.encoding, m_out.width, m_out.height, m_out.step) == \
                       (m_in.encoding, m_in.width, m_in.height, m_in.step)
                assert len(m_out.data) == len(m_in.data)
            else:
                assert m_out.format == m_in.format and bytes(m_out.data[:3]) == b"\xff\xd8\xff"
                assert cv2.imdecode(m_out.data, cv2.IMREAD_COLOR).shape == \
                       cv2.imdecode(m_in.data, cv2.IMREAD_COLOR).shape


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_every_message_kept_and_each_frame_enhanced_once(tmp_path, enhancer, storage):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_bag(src, storage, frames=3)
    summary = enhance_bag(src, dst, enhancer, BagEnhanceOptions(batch=2), progress=False)
    check_output(src, dst)
    assert summary.enhanced == {RAW_TOPIC: 3, JPEG_TOPIC: 3}
    assert summary.topic_map == {RAW_TOPIC: OUT_RAW, JPEG_TOPIC: OUT_JPEG}
    assert summary.camera_info_map == {INFO_TOPIC: OUT_INFO}
    assert not summary.failures
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no work folder left


def test_topic_choice_and_storage_conversion(tmp_path, enhancer):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_bag(src, "sqlite3", frames=2)
    enhance_bag(src, dst, enhancer, BagEnhanceOptions(topics=[JPEG_TOPIC], storage="mcap"), progress=False)
    assert storage_of(dst) == "mcap"
    out = read_all(dst)
    assert [m for m in out if m[0] not in (OUT_JPEG, OUT_INFO)] == read_all(src)
    assert sum(m[0] == OUT_JPEG for m in out) == 2 and not any(m[0] == OUT_RAW for m in out)
    with pytest.raises(BagError, match="not in the bag"):
        enhance_bag(src, tmp_path / "o2", enhancer, BagEnhanceOptions(topics=["/nope"]), progress=False)
    with pytest.raises(BagError, match="hold no colour or mono camera frames"):
        enhance_bag(src, tmp_path / "o3", enhancer, BagEnhanceOptions(topics=["/imu"]), progress=False)
    with pytest.raises(BagError, match="already exists in the input bag"):
        enhance_bag(dst, tmp_path / "o4", enhancer, progress=False)  # enhancing an enhanced bag again


def test_corrupt_frames_reported_and_copied(tmp_path, checkpoint):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_bag(src, "mcap", frames=2, corrupt=True)
    broken_ns = T0 + 2 * 50_000_000
    proc = subprocess.run(DAP_LED + ["bag", str(src), str(dst), "--model", str(checkpoint), "--backend", "torch",
                                     "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # frames failed, OUT still written
    broken = {(RAW_TOPIC, broken_ns), (JPEG_TOPIC, broken_ns + 1), (RAW_TOPIC, broken_ns + 2)}
    check_output(src, dst, broken)
    for topic, ns in broken:
        stamp = f"{ns // 10**9}.{ns % 10**9:09d}"
        assert re.search(rf"{re.escape(topic)} @ {stamp}: .+", proc.stdout + proc.stderr), (topic, stamp)
    assert "fewer than step*height" in proc.stdout
    assert "3 frame(s) not enhanced" in proc.stdout


def test_refuses_to_overwrite_without_force(tmp_path, enhancer, capsys):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_bag(src, "sqlite3", frames=1)
    dst.mkdir()
    (dst / "keep.txt").write_text("mine")
    assert cli_main(["bag", str(src), str(dst)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (dst / "keep.txt").read_text() == "mine"
    with pytest.raises(BagError, match="pass --force"):
        enhance_bag(src, dst, enhancer, progress=False)
    with pytest.raises(BagError, match="not a rosbag2 bag folder"):  # --force replaces only a bag
        enhance_bag(src, dst, enhancer, BagEnhanceOptions(force=True), progress=False)
    assert (dst / "keep.txt").read_text() == "mine"
    (dst / "keep.txt").unlink()
    dst.rmdir()
    enhance_bag(src, dst, enhancer, progress=False)
    enhance_bag(src, dst, enhancer, BagEnhanceOptions(force=True), progress=False)  # an earlier output
    check_output(src, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no work folders left


def test_bad_input_bags_exit_nonzero(tmp_path, capsys):
    assert cli_main(["bag", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "no such bag" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["bag", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "no metadata.yaml" in capsys.readouterr().err
    bad = tmp_path / "bad"
    make_bag(bad, "sqlite3", frames=1)
    (bad / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    assert cli_main(["bag", str(bad), str(tmp_path / "o")]) == 2
    assert "not a readable rosbag2 metadata file" in capsys.readouterr().err
    with pytest.raises(BagError):
        open_reader(tmp_path / "file.txt")
    assert not (tmp_path / "o").exists()


def test_killed_run_leaves_no_output(tmp_path, checkpoint, enhancer):
    src, dst = tmp_path / "in", tmp_path / "out"
    make_bag(src, "sqlite3", frames=150, size=(256, 192))
    proc = subprocess.Popen(DAP_LED + ["bag", str(src), str(dst), "--model", str(checkpoint), "--backend", "torch",
                                       "--threads", "1", "--batch", "1"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    seen = b""
    deadline = time.monotonic() + 90
    try:
        # kill once some of the 300 frames (150 raw + 150 jpeg) are done, but not all
        while not any(0 < int(n) < 300 for n in re.findall(rb"\b(\d+)/300\b", seen)):
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk and time.monotonic() < deadline, seen.decode(errors="replace")
            seen += chunk
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert not dst.exists()
    assert [p.name for p in tmp_path.glob(".out.partial-*")], "the run was killed before writing anything"
    # the next run to the same OUT succeeds and clears the dead run's work folder
    small = tmp_path / "small"
    make_bag(small, "sqlite3", frames=1)
    enhance_bag(small, dst, enhancer, progress=False)
    check_output(small, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "small"]


def test_sample_bag_is_deterministic_and_enhanceable(tmp_path, enhancer):
    cfg = SampleBagConfig(frames=4, width=48, height=32, fps=10.0, storage="mcap")
    make_sample_bag(tmp_path / "a", cfg, progress=False)
    make_sample_bag(tmp_path / "b", cfg, progress=False)
    a = read_all(tmp_path / "a")
    assert a == read_all(tmp_path / "b")
    topics = [t for t, _, _ in a]
    assert topics.count("/camera/image_raw") == 4 and topics.count("/camera/camera_info") == 4
    assert topics.count("/imu") == 40
    assert [ts for _, ts, _ in a] == sorted(ts for _, ts, _ in a)
    frame = TYPESTORE.deserialize_cdr(next(d for t, _, d in a if t == "/camera/image_raw"), IMAGE)
    assert (frame.width, frame.height, frame.encoding) == (48, 32, "bgr8")
    assert 0 < frame.data.mean() < 80  # a night frame
    with pytest.raises(BagError, match="pass --force"):
        make_sample_bag(tmp_path / "a", cfg, progress=False)
    summary = enhance_bag(tmp_path / "a", tmp_path / "e", enhancer, progress=False)
    assert summary.enhanced == {"/camera/image_raw": 4}
    compressed = SampleBagConfig(frames=2, width=48, height=32, compressed=True, seed=3)
    make_sample_bag(tmp_path / "c", compressed, progress=False)
    assert {t for t, _, _ in read_all(tmp_path / "c")} == {"/camera/image_raw/compressed", "/camera/camera_info", "/imu"}
