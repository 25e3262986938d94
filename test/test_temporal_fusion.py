"""Temporal fusion (runtime/temporal_fusion.py), the Enhancer's streams, the video sequences and
`dap-led eval --video`."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dap_led_ros.runtime.temporal_fusion import FusionSettings, TemporalFusion


def _texture(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth random scene (float32 H x W x 3 in [0.2, 0.8]): flow has something to follow."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.2, 0.8, (h // 8, w // 8, 3)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2.0)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), borderMode=cv2.BORDER_REFLECT)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b) ** 2)))


def test_static_scene_noise_averages_out():
    scene = _texture()
    rng = np.random.default_rng(1)
    f = TemporalFusion(FusionSettings(frames=8, tolerance=0.08, exposure_smoothing=1.0))
    single, fused = [], []
    for _ in range(10):
        noisy = np.clip(scene + rng.normal(0, 0.02, scene.shape).astype(np.float32), 0, 1)
        out = f.fuse(noisy)
        single.append(_rmse(noisy, scene))
        fused.append(_rmse(out, scene))
    # A running mean over up to 8 frames: the noise falls by well over half by the end.
    assert fused[-1] < 0.5 * single[-1], (single[-1], fused[-1])
    assert f.last_weight > 0.7
    assert f.resets == 0


def test_tolerance_grows_with_the_noise():
    """Noise far above the tolerance: without the noise floor every history would be rejected."""
    scene = _texture(200, 320, seed=12)
    rng = np.random.default_rng(13)
    f = TemporalFusion(FusionSettings(frames=8, tolerance=0.02, exposure_smoothing=1.0))
    for _ in range(8):
        noisy = np.clip(scene + rng.normal(0, 0.08, scene.shape).astype(np.float32), 0, 1)
        out = f.fuse(noisy)
    assert f.noise_floor > 0.02
    assert _rmse(out, scene) < 0.6 * _rmse(noisy, scene)


def test_camera_pan_is_aligned_before_averaging():
    scene = _texture(160, 220, seed=2)
    rng = np.random.default_rng(3)
    f = TemporalFusion(FusionSettings(frames=8, tolerance=0.08, exposure_smoothing=1.0))
    for t in range(8):
        clean = _shift(scene, 2.5 * t, -1.5 * t)[20:-20, 20:-20]
        noisy = np.clip(clean + rng.normal(0, 0.02, clean.shape).astype(np.float32), 0, 1)
        out = f.fuse(np.ascontiguousarray(noisy))
    inner = (slice(20, -20), slice(20, -20))  # away from pixels that entered the frame lately
    assert _rmse(out[inner], clean[inner]) < 0.6 * _rmse(noisy[inner], clean[inner])


def test_moving_object_leaves_no_ghost():
    background = _texture(120, 200, seed=4) * 0.5
    f = TemporalFusion(FusionSettings(frames=8, tolerance=0.06, exposure_smoothing=1.0))
    for t in range(8):
        frame = background.copy()
        x = 20 + 14 * t
        frame[40:80, x:x + 30] = (0.95, 0.9, 0.2)  # a bright box crossing the frame
        out = f.fuse(frame)
    # Noise-free frames: the output must be the current frame itself, above all where the box was
    # a frame ago (a ghost) and where it is now (a smear).
    trail = (slice(40, 80), slice(x - 14, x + 30))
    err = np.abs(out[trail] - frame[trail])
    # the box stands ~0.6 above the background: a ghost would leave a good share of that
    assert err.mean() < 0.01 and err.max() < 0.1, (err.mean(), err.max())
    assert _rmse(out, frame) < 0.02  # near the box the smoothed flow blurs the background a little


def test_scene_cut_and_size_change_restart_the_history():
    a, b = _texture(seed=5), _texture(seed=6)[::-1].copy() * 0.3
    f = TemporalFusion(FusionSettings(frames=8))
    for _ in range(3):
        f.fuse(a)
    out = f.fuse(b)
    np.testing.assert_array_equal(out, b)  # a cut: the new frame stands alone
    assert f.resets == 1
    small = np.ascontiguousarray(a[:60, :80])
    np.testing.assert_array_equal(f.fuse(small), small)
    assert f.resets == 2
    f.reset()
    assert not f.active


def test_exposure_smoothing_steadies_noise_and_follows_a_step():
    scene = _texture(seed=7)
    rng = np.random.default_rng(8)
    f = TemporalFusion(FusionSettings(frames=1, exposure_smoothing=0.5))
    ins, outs = [], []
    for _ in range(12):  # the level wobbles +-4 %: the noise, not the scene
        frame = np.clip(scene * (1 + rng.uniform(-0.04, 0.04)), 0, 1).astype(np.float32)
        ins.append(frame.mean())
        outs.append(f.fuse(frame).mean())
    assert np.abs(np.diff(outs)).mean() < 0.7 * np.abs(np.diff(ins)).mean()
    bright = np.clip(scene * 1.6, 0, 1).astype(np.float32)  # a light switched on: followed at once
    assert abs(f.fuse(bright).mean() - bright.mean()) < 1e-6
    assert f.last_gain == 1.0


@pytest.mark.parametrize("field, value", [("frames", 0), ("flow_side", 8), ("cut", 0.0), ("tolerance", 2.0),
                                          ("exposure_smoothing", 0.0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match="must be in"):
        TemporalFusion(FusionSettings(**{field: value}))


def test_fusion_refuses_frames_of_the_wrong_kind():
    with pytest.raises(ValueError, match="float32"):
        TemporalFusion().fuse(np.zeros((8, 8, 3), np.uint8))


@pytest.fixture(scope="module")
def realtime_backend():
    from dap_led_ros.runtime.backends import create_backend
    from dap_led_ros.shipped_models import realtime_checkpoint

    backend = create_backend("onnxruntime", str(realtime_checkpoint()), "cpu")
    yield backend
    backend.close()


def test_enhancer_keeps_one_history_per_stream(realtime_backend):
    from dap_led_ros.enhancer import Enhancer, EnhancerConfig

    rng = np.random.default_rng(9)
    base_a = rng.integers(10, 60, (64, 96, 3), dtype=np.uint8)
    base_b = rng.integers(20, 80, (64, 96, 3), dtype=np.uint8)
    a = [np.clip(base_a + rng.integers(-6, 7, base_a.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    b = [np.clip(base_b + rng.integers(-6, 7, base_b.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    cfg = EnhancerConfig(model="realtime", backend="onnxruntime", temporal=True)
    alone = Enhancer(cfg, backend=realtime_backend)
    only_b = [alone.stream("b").enhance(f) for f in b]
    mixed = Enhancer(cfg, backend=realtime_backend)
    interleaved = []
    for fa, fb in zip(a, b):
        mixed.stream("a").enhance(fa)
        interleaved.append(mixed.stream("b").enhance(fb))
    for x, y in zip(only_b, interleaved):
        np.testing.assert_array_equal(x, y)
    assert mixed.stream("a").history is not None and mixed.stream("b").history is not None
    assert mixed.stream("b").weight > 0
    assert "temporal" in mixed.stages.summary()
    other = Enhancer(cfg, backend=realtime_backend)
    batch = other.enhance_batch([*b[:2]], [other.stream("b")] * 2)
    # batched inference may round one grey level differently; the history is the same
    np.testing.assert_allclose(batch[1].astype(int), only_b[1].astype(int), atol=1)
    mixed.close_stream("a")
    assert mixed.stream("a").history is None and mixed.stream("b").history is not None
    with pytest.raises(ValueError, match="2 frames but 1 streams"):
        mixed.enhance_batch(a[:2], [mixed.stream("a")])


def test_temporal_off_is_the_per_frame_path(realtime_backend):
    from dap_led_ros.enhancer import Enhancer, EnhancerConfig, to_input, to_rgb8

    img = np.random.default_rng(10).integers(0, 80, (64, 96, 3), dtype=np.uint8)
    e = Enhancer(EnhancerConfig(model="realtime", backend="onnxruntime"), backend=realtime_backend)
    for _ in range(2):
        np.testing.assert_array_equal(e.stream("x").enhance(img), to_rgb8(realtime_backend.infer(to_input(img))[0]))
    assert e.stream("x").history is None


def test_sequences_are_seeded_and_move():
    from dap_led_ros.training.video_sequences import SequenceConfig, synthetic_sequences

    cfg = SequenceConfig(size=(64, 96), frames=3)
    one = next(synthetic_sequences(cfg, n=1, seed=5))
    two = next(synthetic_sequences(cfg, n=1, seed=5))
    for x, y in zip(one.degraded + one.clean, two.degraded + two.clean):
        np.testing.assert_array_equal(x, y)
    assert len(one.clean) == len(one.degraded) == len(one.object_masks) == 3
    assert all(m.any() for m in one.object_masks)
    assert not np.array_equal(one.object_masks[0], one.object_masks[2])  # the object moves
    assert np.abs(one.clean[0].astype(int) - one.clean[2]).mean() > 1  # so does the camera
    assert one.degraded[0].mean() < one.clean[0].mean()  # night
    again = one.redraw(1, 0)  # the same frame with other noise
    assert not np.array_equal(again, one.degraded[1])
    assert abs(float(again.mean()) - float(one.degraded[1].mean())) < 2
    # without sensor noise: the same level, and the mean of many draws comes closer to it than one draw
    free = one.noise_free(1).astype(float)
    draws = [one.redraw(1, k).astype(float) for k in range(8)]
    assert abs(free.mean() - np.mean(draws)) < 2
    assert np.abs(np.mean(draws, axis=0) - free).mean() < 0.7 * np.abs(draws[0] - free).mean()
    with pytest.raises(ValueError, match="at least 2 frames"):
        SequenceConfig(frames=1).validate()


def test_flicker_figures():
    from dap_led_ros.training.video_eval import clean_flows, flicker

    scene = (_texture(seed=11) * 255).astype(np.uint8)
    frames = [scene] * 3
    flows = clean_flows(frames)
    assert flicker(frames, flows) == (0.0, 0.0)
    brighter = [scene, np.clip(scene.astype(int) + 10, 0, 255).astype(np.uint8), scene]
    level, warped = flicker(brighter, flows)
    assert level == pytest.approx(10, abs=0.5)
    assert warped == pytest.approx(10, abs=0.5)


def test_eval_video_command(tmp_path):
    out = tmp_path / "video"
    r = subprocess.run([sys.executable, "-m", "dap_led_ros.cli", "eval", "--video", "--video-count", "1",
                        "--video-frames", "3", "--video-bound", "2", "--val-size", "64", "96", "--model", "realtime",
                        "--backend", "onnxruntime", "--out-dir", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| DAP-LED + temporal fusion |" in r.stdout and "ground truth (clean frames)" in r.stdout
    results = json.loads((out / "video.json").read_text())
    assert set(results["rows"]) == {"auto-exposure", "DAP-LED frame by frame", "DAP-LED + temporal fusion",
                                    "DAP-LED burst", "DAP-LED burst + temporal fusion"}
    assert set(results["gains"]) == {"DAP-LED burst", "DAP-LED burst + temporal fusion"}
    assert results["rows"]["DAP-LED burst"]["frames"] == 3
    assert results["rows"]["DAP-LED frame by frame"]["frames"] == 3
    assert 0 < results["fusion"]["cost_share"] < 10
    assert (out / "contact_sheet_video.png").stat().st_size > 0 and (out / "video_plot.png").stat().st_size > 0
    assert len(results["level_traces"]["ground truth"]) == 3
    assert results["averaging_bound"]["draws"] == 2 and "Averaging bound" in r.stdout
    assert np.isfinite(results["averaging_bound"]["input_gain_db"]) and "averaged *before* the network" in r.stdout
    assert np.isfinite(results["averaging_bound"]["noise_free_gain_db"]) and "without any sensor noise" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "dap_led_ros.cli", "eval", "--video", "--video-frames", "1",
                          "--out-dir", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--video-frames >= 2" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "dap_led_ros.cli", "eval", "--video", "--video-noise-gain", "0.5",
                          "--out-dir", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "noise_gain must be in [1, 1024]" in bad.stderr
    assert not (tmp_path / "bad").exists()  # refused before anything was made
    both = subprocess.run([sys.executable, "-m", "dap_led_ros.cli", "eval", "--video", "--downstream",
                           "--out-dir", str(tmp_path / "bad")], capture_output=True, text=True, timeout=120)
    assert both.returncode == 2 and "give one of them" in both.stderr


def test_time_jump_rule():
    from dap_led_ros.runtime.video_stream import time_jump

    s = 1_000_000_000
    assert time_jump(10 * s, 10 * s, s) == "" and time_jump(10 * s, 11 * s, s) == ""
    assert time_jump(10 * s, 11 * s + 1, s, "log time") == "gap of 1.000 s"
    assert time_jump(10 * s, 9 * s, s, "log time") == "log time went back by 1.000 s"
