"""The exposure rule (runtime/exposure.py): one linear-light gain to a target mean luma, its
strength, white balance, the Enhancer's paths (target 0 leaves them byte-identical), a stream's
steadied gain and its restart, bad settings, and the exposure error `dap-led eval` reports."""
from __future__ import annotations

import math

import numpy as np
import pytest
from test_enhancer_batch import Recorder

from dap_led_ros.enhancer import Enhancer, EnhancerConfig, to_input, to_rgb8
from dap_led_ros.imaging.luma import mean_luma
from dap_led_ros.imaging.srgb import linear_to_srgb, srgb_to_linear
from dap_led_ros.runtime.exposure import MAX_GAIN, ExposureRule, ExposureSettings, ExposureState

H, W = 48, 64


def scene(level: float = 0.25, seed: int = 0) -> np.ndarray:
    """A float sRGB frame: a coloured gradient with noise around `level`, and a tenth of it near white."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / np.array([H, W])[:, None, None]
    tint = np.array([1.0, 0.8, 0.6], np.float32)
    frame = level * (0.4 + 1.2 * xx[..., None]) * tint + rng.normal(0, 0.01, (H, W, 3))
    frame[: H // 4, : W // 2] = 0.97  # highlights: a gain clips them
    return np.clip(frame, 0.0, 1.0).astype(np.float32)


def luma8(rgb: np.ndarray) -> float:
    return 255.0 * mean_luma(rgb, stride=1)


# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("target", [0.12, 0.45, 0.6])
def test_the_gain_reaches_the_target_level_despite_clipping(target):
    frame = scene()
    rule = ExposureRule(ExposureSettings(target_level=target))
    out = rule.expose(frame)
    assert abs(luma8(out) - 255 * target) < 1.0
    assert abs(luma8(rule.expose_rgb8(frame)) - 255 * target) < 1.0
    assert abs(luma8(rule.expose_rgb8(to_rgb8(frame.transpose(2, 0, 1)))) - 255 * target) < 1.0  # uint8 in
    if target > 0.4:  # brighter: the highlights clip; a solve that ignored it would stop short
        gain = rule.gain(frame)
        assert out.max() == 1.0 and gain > 1.0
        unclipped = linear_to_srgb(srgb_to_linear(frame.astype(np.float64)) * gain)  # above 1 where clipped
        assert 255 * mean_luma(unclipped, stride=1) > 255 * target + 1.0


def test_an_unreachable_target_stops_at_the_gain_limit():
    dark = np.full((H, W, 3), 0.01, np.float32)
    rule = ExposureRule(ExposureSettings(target_level=0.8))
    assert rule.gain(dark) == pytest.approx(MAX_GAIN)


def test_strength_zero_is_the_networks_level_and_half_is_the_geometric_middle():
    frame = scene()
    full = ExposureRule(ExposureSettings(target_level=0.5)).gain(frame)
    half = ExposureRule(ExposureSettings(target_level=0.5, strength=0.5)).gain(frame)
    assert full > 1.5 and half == pytest.approx(math.sqrt(full), rel=1e-5)
    off = ExposureRule(ExposureSettings(target_level=0.5, strength=0.0))
    assert not off.active and off.gain(frame) == 1.0
    rgb8 = to_rgb8(frame.transpose(2, 0, 1))
    assert np.array_equal(off.expose_rgb8(rgb8), rgb8)
    assert not ExposureRule().active  # target 0: the network's level


def test_one_gain_on_all_channels_keeps_white_balance():
    frame = scene(0.15)
    rule = ExposureRule(ExposureSettings(target_level=0.35))
    gain = rule.gain(frame)
    out = rule.expose(frame)
    lin_in, lin_out = srgb_to_linear(frame.astype(np.float64)), srgb_to_linear(out.astype(np.float64))
    unclipped = (out < 0.99).all(axis=2) & (frame > 0.05).all(axis=2)
    assert unclipped.sum() > 0.5 * H * W
    ratio = lin_out[unclipped] / lin_in[unclipped]  # per channel: the same gain
    assert np.allclose(ratio, gain, rtol=0.01)
    rg_in = lin_in[unclipped][:, 0] / lin_in[unclipped][:, 1]
    rg_out = lin_out[unclipped][:, 0] / lin_out[unclipped][:, 1]
    assert np.allclose(rg_out, rg_in, rtol=0.01)


def test_a_stream_state_smooths_the_log_gain_and_resets():
    state = ExposureState()
    assert state.follow(4.0, 0.5) == pytest.approx(4.0)  # the first frame: its own gain
    assert state.follow(1.0, 0.5) == pytest.approx(2.0)  # half the way in log gain
    assert state.follow(1.0, 1.0) == pytest.approx(1.0)  # share 1: no smoothing
    state.reset()
    assert state.gain == 1.0 and state.follow(0.5, 0.5) == pytest.approx(0.5)


@pytest.mark.parametrize("settings, message", [
    (dict(target_level=0.01), r"target_level must be 0 \(the network's own level\) or in \(0.02, 0.9\], got 0.01"),
    (dict(target_level=0.95), r"target_level must be 0 .* got 0.95"),
    (dict(target_level=-0.2), r"target_level must be 0 .* got -0.2"),
    (dict(target_level=math.nan), r"target_level must be 0 .* got nan"),
    (dict(target_level=0.4, target_strength=1.5), r"target_strength must be in \[0, 1\], got 1.5"),
    (dict(target_strength=-0.1), r"target_strength must be in \[0, 1\], got -0.1"),
])
def test_bad_settings_name_the_problem(settings, message):
    with pytest.raises(ValueError, match=message):
        EnhancerConfig(**settings).validate()
    with pytest.raises(ValueError, match=message):
        Enhancer(EnhancerConfig(**settings), backend=Recorder())


def test_the_settings_reach_the_cli_and_the_node():
    import argparse

    from dap_led_ros.cli.args import add_backend_args, enhancer_config_from_args
    from dap_led_ros.ros.enhance_node import EnhanceNodeConfig

    parser = argparse.ArgumentParser()
    add_backend_args(parser)
    cfg = enhancer_config_from_args(parser.parse_args(["--target-level", "0.4", "--target-strength", "0.5",
                                                       "--exposure-smoothing", "0.25"]))
    assert (cfg.target_level, cfg.target_strength, cfg.exposure_smoothing) == (0.4, 0.5, 0.25)
    node = EnhanceNodeConfig(target_level=0.3, target_strength=0.7).enhancer_config()
    assert (node.target_level, node.target_strength) == (0.3, 0.7)


# ----------------------------------------------------------------------------- through the Enhancer


def dark_frames(n: int, level: int = 30, seed: int = 1) -> list[np.ndarray]:
    """uint8 camera frames; the Recorder backend doubles them (its 'restoration')."""
    rng = np.random.default_rng(seed)
    return [np.clip(level + rng.normal(0, 6, (H, W, 3)), 0, 255).astype(np.uint8) for _ in range(n)]


@pytest.mark.parametrize("temporal", [False, True])
def test_target_zero_leaves_every_path_byte_identical(temporal):
    frames = dark_frames(4)
    plain = Enhancer(EnhancerConfig(temporal=temporal), backend=Recorder())
    off = Enhancer(EnhancerConfig(temporal=temporal, target_strength=0.3), backend=Recorder())
    for f in frames:
        expected = to_rgb8(np.clip(to_input(f)[0] * 2.0, 0, 1))
        assert np.array_equal(plain.enhance(f), expected) and np.array_equal(off.enhance(f), expected)
    for e in (plain, off):
        outs = e.enhance_batch(frames, [e.stream("cam")] * len(frames))
        outs += [e.stream("cam2").enhance(f) for f in frames]
        if not temporal:
            assert all(np.array_equal(o, to_rgb8(np.clip(to_input(f)[0] * 2.0, 0, 1)))
                       for o, f in zip(outs, frames + frames))
        assert "exposure" not in e.stages.summary()  # no cost
    for a, b in zip(plain.enhance_batch(frames, [plain.stream("x")] * 4), off.enhance_batch(frames, [off.stream("x")] * 4)):
        assert np.array_equal(a, b)


def test_stills_tiles_and_fused_streams_reach_the_target():
    target = 0.4
    frame = dark_frames(1)[0]
    still = Enhancer(EnhancerConfig(target_level=target), backend=Recorder())
    assert abs(luma8(still.enhance(frame)) - 255 * target) < 1.0
    assert "exposure" in still.stages.summary()
    tiled = Enhancer(EnhancerConfig(target_level=target, tile_max_pixels=H * W // 2, tile_size=64,
                                    tile_overlap=8, tile_mode="blend"), backend=Recorder())
    assert abs(luma8(tiled.enhance(frame)) - 255 * target) < 1.0  # the tiled ("rgb8") path
    fused = Enhancer(EnhancerConfig(target_level=target, temporal=True), backend=Recorder())
    stream = fused.stream("cam")
    outs = [stream.enhance(f) for f in dark_frames(6)]
    assert all(abs(luma8(o) - 255 * target) < 1.5 for o in outs)
    assert stream.history is not None


def test_a_level_step_on_a_stream_is_followed_smoothly_and_a_restart_takes_the_new_gain_at_once():
    target = 0.35
    enhancer = Enhancer(EnhancerConfig(target_level=target, exposure_smoothing=0.5), backend=Recorder())
    stream = enhancer.stream("cam")
    dark, bright = dark_frames(12, 20), dark_frames(12, 45, seed=2)
    for k, f in enumerate(dark[:6]):
        stream.enhance(f, stamp_ns=k * 50_000_000, frame_id="cam")
    errors = [luma8(stream.enhance(f, stamp_ns=(6 + k) * 50_000_000, frame_id="cam")) - 255 * target
              for k, f in enumerate(bright)]
    assert errors[0] > 10.0  # the step: the steadied gain lags, the output is too bright for a while
    assert all(0 < b < a for a, b in zip(errors[:4], errors[1:5]))  # and converges, frame by frame
    assert abs(errors[-1]) < 1.0
    g = stream.exposure.gain
    stream.restart()
    assert stream.exposure.gain == 1.0
    out = stream.enhance(dark[0], stamp_ns=0, frame_id="cam")  # a new history: its own gain
    assert abs(luma8(out) - 255 * target) < 1.0 and stream.exposure.gain > g
    stream.enhance(bright[0], stamp_ns=50_000_000, frame_id="cam")
    out = stream.enhance(dark[1], stamp_ns=10 * 1_000_000_000, frame_id="cam")  # a gap restarts it too
    assert stream.restarts == 1 and abs(luma8(out) - 255 * target) < 1.0


# ----------------------------------------------------------------------------- measured on its own


def test_eval_reports_the_exposure_error_and_its_sign():
    from dap_led_ros.training.evaluate import markdown_report, score_pairs
    from dap_led_ros.training.metrics import level_error

    gt = np.full((H, W, 3), 100, np.uint8)
    gt[:, : W // 2] = (120, 90, 60)
    assert level_error(gt + 10, gt) == pytest.approx(10.0, abs=1e-3)
    pairs = [("a", gt, gt), ("b", gt, gt)]
    lighter = {"a": 12, "b": -8}
    seen = iter(["a", "b"])

    def off(x: np.ndarray) -> np.ndarray:  # 12 grey levels too bright on a, 8 too dark on b
        return (x.astype(np.int16) + lighter[next(seen)]).astype(np.uint8)

    rows = score_pairs(pairs, {"identity": lambda x: x, "off": off})
    assert rows["identity"]["exposure_error"] == 0.0 and rows["identity"]["exposure_bias"] == 0.0
    assert rows["off"]["exposure_error"] == pytest.approx(10.0, abs=1e-3)
    assert rows["off"]["exposure_bias"] == pytest.approx(2.0, abs=1e-3)
    text = markdown_report({"machine": "m", "paired": {"Set A": rows}, "real": None}, "dap-led eval")
    assert "## Exposure (the output's mean level against the ground truth's)" in text
    assert "| method | Set A |" in text and "| off | 10.0 (+2.0) |" in text
    assert "| identity | 0.0 (+0.0) |" in text
