"""`dap-led bag` with temporal fusion: one fusion history per image topic, `--no-temporal`, restarts
on a time jump; the input bag is never modified. Real bags (rosbags writer), the shipped real-time
model on ONNX Runtime, one thread."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from test_bag import IMAGE, SENSOR_QOS, T0, _image, _tf, read_all

from dap_led_ros.bag.bag_enhance import LOG_TIME, BagEnhanceOptions, BagSummary, enhance_bag
from dap_led_ros.bag.bag_io import TYPESTORE
from dap_led_ros.cli import main as cli_main
from dap_led_ros.enhancer import Enhancer, EnhancerConfig

FRONT, REAR = "/front/image_raw", "/rear/image_raw"
OUT = {FRONT: "/front/enhanced/image", REAR: "/rear/enhanced/image"}
H, W = 96, 128
MS = 1_000_000
MODEL = dict(model="realtime", backend="onnxruntime", device="cpu", threads=1)
CLI_MODEL = ["--model", "realtime", "--backend", "onnxruntime", "--device", "cpu", "--threads", "1"]


def scene(seed: int) -> np.ndarray:
    """A smooth dark static scene (0-1 floats)."""
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    phase = np.random.default_rng(seed).uniform(0, 6, 3)
    return (0.04 + 0.12 * (0.5 + 0.5 * np.sin(7 * xx[..., None] + 5 * yy[..., None] + phase))).astype(np.float32)


def noisy(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The scene with fresh sensor noise: one frame of a static camera."""
    return np.clip((base + rng.normal(0, 0.03, base.shape)) * 255, 0, 255).astype(np.uint8)


def drive(times_ms: dict[str, list[int]]) -> dict[str, list[tuple[int, np.ndarray]]]:
    """Per topic: (log time ns, frame) of a static scene of its own with independent noise."""
    rng = np.random.default_rng(7)
    return {topic: [(T0 + t * MS, noisy(scene(k), rng)) for t in ts] for k, (topic, ts) in enumerate(times_ms.items())}


def write_bag(path: Path, frames: dict[str, list[tuple[int, np.ndarray]]]) -> None:
    """The topics' Image (bgr8) messages plus a /tf message beside each frame, in log-time order."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {topic: w.add_connection(topic, IMAGE, typestore=TYPESTORE, offered_qos_profiles=[SENSOR_QOS])
                 for topic in frames}
        tf = w.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=TYPESTORE)
        for t, topic, rgb in sorted((t, topic, rgb) for topic, fs in frames.items() for t, rgb in fs):
            w.write(conns[topic], t, _image(t, rgb))
            w.write(tf, t + 1, _tf(t + 1))


def outputs(bag: Path, topic: str) -> list[np.ndarray]:
    """The enhanced frames (RGB) of `topic` in `bag`."""
    out = []
    for name, _, data in read_all(bag):
        if name == OUT[topic]:
            msg = TYPESTORE.deserialize_cdr(data, IMAGE)
            out.append(np.asarray(msg.data).reshape(msg.height, msg.width, 3)[:, :, ::-1])
    return out


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def steadiness(frames: list[np.ndarray]) -> float:
    """Mean absolute difference between consecutive frames (levels): smaller is steadier."""
    return float(np.mean([np.abs(a.astype(np.float32) - b).mean() for a, b in zip(frames, frames[1:])]))


@pytest.fixture(scope="module")
def fused() -> Enhancer:
    return Enhancer(EnhancerConfig(temporal=True, **MODEL))


@pytest.fixture(scope="module")
def stills() -> Enhancer:
    return Enhancer(EnhancerConfig(**MODEL))


def run(src: Path, dst: Path, enhancer: Enhancer, batch: int = 1) -> BagSummary:
    return enhance_bag(src, dst, enhancer, BagEnhanceOptions(batch=batch), progress=False)


def test_each_topic_has_its_own_history(tmp_path, fused, stills):
    frames = drive({FRONT: list(range(0, 600, 100)), REAR: list(range(50, 650, 100))})
    both, rear_only = tmp_path / "both", tmp_path / "rear_only"
    write_bag(both, frames)
    write_bag(rear_only, {REAR: frames[REAR]})
    before = tree_hash(both)

    summary = run(both, tmp_path / "out", fused)
    assert summary.temporal and summary.enhanced == {FRONT: 6, REAR: 6} and not summary.history_restarts
    assert "temporal fusion: on, one history per topic" in summary.report()
    weights = summary.fusion_weight  # every frame went to its topic's history
    assert set(weights) == {FRONT, REAR} and all(w > 0.2 for w in weights.values()), weights
    assert not fused.streams  # a bag's streams end with it
    # The rear camera's frames are the same bytes with or without the front camera in the bag.
    run(rear_only, tmp_path / "out_rear", fused)
    with_front, alone = outputs(tmp_path / "out", REAR), outputs(tmp_path / "out_rear", REAR)
    assert len(with_front) == 6 and all(np.array_equal(a, b) for a, b in zip(with_front, alone))
    # Fused, a static scene is steadier than frame by frame.
    single = [stills.enhance(rgb) for _, rgb in frames[REAR]]
    assert steadiness(with_front) < 0.75 * steadiness(single), (steadiness(with_front), steadiness(single))
    assert np.array_equal(with_front[0], single[0])  # the first frame has no history
    # Batched, each frame still joins its own topic's history in bag order (a batch's rounding
    # differs from single frames' by a level at most, which the fusion carries on).
    batched = run(both, tmp_path / "out_batched", fused, batch=4)
    assert batched.enhanced == {FRONT: 6, REAR: 6}
    for topic in (FRONT, REAR):
        diff = [np.abs(a.astype(int) - b).max() for a, b in zip(outputs(tmp_path / "out_batched", topic),
                                                                outputs(tmp_path / "out", topic))]
        assert len(diff) == 6 and max(diff) <= 3, (topic, diff)
    assert tree_hash(both) == before


def test_a_time_jump_restarts_only_that_topics_history(tmp_path, fused):
    # The front camera pauses 1.5 s after its third frame; the rear one never waits 1 s.
    frames = drive({FRONT: [0, 100, 200, 1700, 1800], REAR: [50, 950, 1850]})
    src = tmp_path / "in"
    write_bag(src, frames)
    summary = run(src, tmp_path / "out", fused, batch=4)
    assert summary.history_restarts == {FRONT: 1}
    assert f"{OUT[FRONT]}: 5 frames (temporal history restarted 1x on a time jump)" in summary.report()
    # The frame after the pause comes out as the first frame of a new history would (up to the
    # batch's rounding, one level; fused with the old history it would move by several).
    fresh = fused.stream("fresh")
    first = fused.enhance_batch([frames[FRONT][3][1]], [fresh])[0]
    assert np.abs(outputs(tmp_path / "out", FRONT)[3].astype(int) - first).max() <= 1
    second = fused.enhance_batch([frames[FRONT][4][1]], [fresh])[0]
    fused.close_stream("fresh")
    assert np.abs(outputs(tmp_path / "out", FRONT)[4].astype(int) - second).max() <= 3


def test_history_restarts_when_log_time_goes_back_or_jumps(fused):
    """The rule itself (a bag read in log-time order never goes back, a merged or damaged one may)."""
    gap = round(fused.cfg.temporal_max_gap_s * 1e9)
    rgb = noisy(scene(0), np.random.default_rng(0))
    steps = [(FRONT, 0), (FRONT, 100 * MS), (REAR, 0), (FRONT, 100 * MS + gap),
             (FRONT, 50 * MS + gap), (FRONT, 1 + 50 * MS + 2 * gap), (REAR, 900 * MS)]
    kept = []
    for topic, t in steps:
        stream = fused.stream(topic, clock=LOG_TIME)
        restarts = stream.restarts
        stream.enhance(rgb, t)
        kept.append(stream.restarts == restarts)
    # steady, steady, a new topic, exactly the gap (kept), back 50 ms, over the gap, rear steady
    assert kept == [True, True, True, True, False, False, True]
    assert (fused.stream(FRONT).restarts, fused.stream(REAR).restarts) == (2, 0)
    assert fused.stream(FRONT).last_restart == "gap of 1.000 s"
    fused.close_stream(FRONT)
    fused.close_stream(REAR)


def test_cli_fuses_by_default_and_no_temporal_restores_frame_by_frame(tmp_path, fused, stills, capsys):
    frames = drive({FRONT: list(range(0, 500, 100)), REAR: list(range(50, 550, 100))})
    src = tmp_path / "in"
    write_bag(src, frames)
    before = tree_hash(src)
    assert cli_main(["bag", str(src), str(tmp_path / "plain"), "--no-temporal", "--batch", "1", *CLI_MODEL]) == 0
    assert "temporal fusion: on" not in capsys.readouterr().out
    assert cli_main(["bag", str(src), str(tmp_path / "fused"), "--batch", "1", *CLI_MODEL]) == 0
    assert "temporal fusion: on, one history per topic" in capsys.readouterr().out
    run(src, tmp_path / "api", fused)
    for topic in (FRONT, REAR):
        single = [stills.enhance(rgb) for _, rgb in frames[topic]]
        plain, cli_fused = outputs(tmp_path / "plain", topic), outputs(tmp_path / "fused", topic)
        assert len(plain) == len(cli_fused) == 5
        assert all(np.array_equal(a, b) for a, b in zip(plain, single))
        assert all(np.array_equal(a, b) for a, b in zip(cli_fused, outputs(tmp_path / "api", topic)))
        assert not np.array_equal(cli_fused[-1], plain[-1])
    # Every input message is kept, and the input is untouched.
    for out in ("plain", "fused"):
        assert [m for m in read_all(tmp_path / out) if m[0] not in OUT.values()] == read_all(src)
    assert tree_hash(src) == before


def test_cli_burst_merges_each_topics_input_and_reports_it(tmp_path, stills, capsys):
    frames = drive({FRONT: list(range(0, 600, 100)), REAR: list(range(50, 650, 100))})
    src = tmp_path / "in"
    write_bag(src, frames)
    before = tree_hash(src)
    assert cli_main(["bag", str(src), str(tmp_path / "burst"), "--no-temporal", "--burst", "--batch", "2",
                     *CLI_MODEL]) == 0
    report = capsys.readouterr().out
    assert "burst: on" in report and "temporal fusion: on" not in report
    for topic in (FRONT, REAR):
        single = [stills.enhance(rgb) for _, rgb in frames[topic]]
        merged = outputs(tmp_path / "burst", topic)
        assert len(merged) == 6
        np.testing.assert_array_equal(merged[0], single[0])  # the first frame of a topic stands alone
        # the topic's own earlier frames (not the other topic's) steady its later ones
        assert steadiness(merged[2:]) < 0.8 * steadiness(single[2:]), (steadiness(merged[2:]), steadiness(single[2:]))
    assert [m for m in read_all(tmp_path / "burst") if m[0] not in OUT.values()] == read_all(src)
    assert tree_hash(src) == before
