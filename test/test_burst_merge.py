"""Burst restoration: the aligned input frames of a stream merged before the network
(`runtime/burst_merge.py`, `Enhancer(burst=True)`), on frames with known noise and motion."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode
from dap_led_ros.runtime.backends.base import Backend
from dap_led_ros.runtime.burst_merge import BurstMerge, BurstSettings, noise_variance

H, W = 120, 160
SHOT, READ = 2e-4, 1e-5  # linear-light noise: variance = SHOT * x + READ


def scene(seed: int = 0, h: int = H + 40, w: int = W + 40) -> np.ndarray:
    """A dark, textured linear-light scene (larger than a frame, so frames can pan over it)."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 4)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return (0.01 + 0.12 * tex).astype(np.float32)


def shoot(lin: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian sensor noise (as a Gaussian of that variance), sRGB-encoded to 8 bits."""
    noisy = lin + rng.normal(size=lin.shape).astype(np.float32) * np.sqrt(SHOT * lin + READ)
    return srgb_encode(noisy)


def crop(lin: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
    return lin[20 + dy:20 + dy + H, 20 + dx:20 + dx + W]


def rmse(merged_srgb: np.ndarray, truth_lin: np.ndarray, border: int = 8) -> float:
    """RMSE in linear light, away from the borders (where panning brings in unseen pixels)."""
    lin = srgb_decode(np.clip(merged_srgb * 255 + 0.5, 0, 255).astype(np.uint8)) \
        if merged_srgb.dtype != np.uint8 else srgb_decode(merged_srgb)
    d = (lin - truth_lin)[border:-border, border:-border]
    return float(np.sqrt((d * d).mean()))


def test_noise_level_function_is_read_from_the_frame_itself():
    rng = np.random.default_rng(1)
    # a smooth ramp 0.01..0.5 (no texture): the estimate must follow variance = SHOT * x + READ
    ramp = np.repeat(np.linspace(0.01, 0.5, 400, dtype=np.float32)[None, :, None], 300, 0).repeat(3, 2)
    noisy = ramp + rng.normal(size=ramp.shape).astype(np.float32) * np.sqrt(SHOT * ramp + READ)
    var = noise_variance(noisy)
    for x in (60, 200, 350):
        expected = SHOT * ramp[0, x, 0] + READ
        assert 0.7 * expected < float(var[:, x].mean()) < 1.3 * expected, (x, float(var[:, x].mean()), expected)


def test_a_static_burst_averages_the_noise_away():
    rng = np.random.default_rng(2)
    truth = crop(scene())
    merge = BurstMerge(BurstSettings(frames=8))
    first = merge.merge(shoot(truth, rng))
    for _ in range(7):
        out = merge.merge(shoot(truth, rng))
    assert out.dtype == np.float32 and out.shape == (H, W, 3)
    # 8 frames: sqrt(8) = 2.8x less noise in the ideal case; demand at least 2x
    assert rmse(out, truth) < 0.5 * rmse(first, truth), (rmse(out, truth), rmse(first, truth))
    assert merge.last_weight > 0.8


def test_a_panning_camera_is_aligned_before_merging():
    rng = np.random.default_rng(3)
    big = scene(3)
    merge, single = BurstMerge(), []
    for t in range(6):  # 3 px per frame to the right
        truth = crop(big, dx=3 * t - 8)
        low = shoot(truth, rng)
        out = merge.merge(low)
        single.append(rmse(low, truth))
    # aligned: the noise falls and the texture does not smear
    assert rmse(out, truth) < 0.65 * np.mean(single), (rmse(out, truth), np.mean(single))


def test_a_moving_object_leaves_no_ghost():
    rng = np.random.default_rng(4)
    background = np.full((H, W, 3), 0.02, np.float32)
    merge = BurstMerge()
    for t in range(6):  # a bright square moving 12 px per frame over a flat dark background
        truth = background.copy()
        x0 = 20 + 12 * t
        truth[50:70, x0:x0 + 20] = 0.3
        out = merge.merge(shoot(truth, rng))
    lin = srgb_decode(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8))
    now = lin[52:68, x0 + 2:x0 + 18].mean()
    before = lin[52:68, x0 - 34:x0 - 26].mean()  # where the square was two frames ago
    assert abs(now - 0.3) < 0.03, now                # the square where it is now, at its level
    assert abs(before - 0.02) < 0.01, before         # and none of it where it was


def test_a_scene_cut_or_a_new_size_restarts_the_burst():
    rng = np.random.default_rng(5)
    merge = BurstMerge()
    a = crop(scene(5))
    b = np.full_like(a, 0.01)
    b[:, : W // 2] = 0.4  # another scene: half the frame lit
    merge.merge(shoot(a, rng))
    merge.merge(shoot(a, rng))
    assert merge.last_weight > 0.45 and merge.resets == 0  # two frames: at most 1/2
    low = shoot(b, rng)
    out = merge.merge(low)  # another scene: the frame stands alone
    assert merge.resets == 1 and merge.last_weight == 0.0
    np.testing.assert_array_equal(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), low)
    merge.merge(shoot(crop(scene(5))[:60, :80], rng))
    assert merge.resets == 2


def test_a_changed_scene_below_the_cut_is_refused_pixel_by_pixel():
    rng = np.random.default_rng(10)
    merge = BurstMerge()
    merge.merge(shoot(crop(scene(11)), rng))
    merge.merge(shoot(crop(scene(11)), rng))
    merge.merge(shoot(crop(scene(12)), rng))  # other texture, same brightness: not a cut
    assert merge.resets == 0 and merge.last_weight < 0.1


@pytest.mark.parametrize("settings, message", [
    (BurstSettings(frames=0), r"burst_frames must be in \[1, 64\], got 0"),
    (BurstSettings(reject=0.1), r"burst_reject must be in \[0.5, 20\], got 0.1"),
])
def test_bad_settings_name_the_problem(settings, message):
    with pytest.raises(ValueError, match=message):
        BurstMerge(settings)
    with pytest.raises(ValueError, match=message):
        EnhancerConfig(burst=True, burst_frames=settings.frames, burst_reject=settings.reject).validate()


def test_merge_refuses_what_is_not_an_8_bit_rgb_frame():
    with pytest.raises(ValueError, match="expected an H x W x 3 uint8 frame"):
        BurstMerge().merge(np.zeros((4, 4), np.uint8))


class Identity(Backend):
    """Hands the network's input back (so the test sees what the network was given)."""

    name = "identity"

    def __init__(self) -> None:
        self.fail = False
        self.inputs: list[np.ndarray] = []

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self.fail:
            raise RuntimeError("backend failed")
        self.inputs.append(x.copy())
        return x


def test_the_enhancer_gives_the_network_the_merged_input_of_a_stream_and_stills_untouched():
    rng = np.random.default_rng(6)
    truth = crop(scene(7))
    backend = Identity()
    enhancer = Enhancer(EnhancerConfig(burst=True), backend=backend)
    lows = [shoot(truth, rng) for _ in range(6)]
    np.testing.assert_array_equal(enhancer.enhance(lows[0]), lows[0])  # a still: as it came
    stream = enhancer.stream("cam")
    assert stream.merges
    outs = [stream.enhance(low, stamp_ns=i * 33_000_000, frame_id="cam") for i, low in enumerate(lows)]
    assert backend.inputs[-1].dtype == np.float32  # the merge, not an 8-bit rounding of it
    assert rmse(outs[-1], truth) < 0.6 * rmse(outs[0], truth)
    assert stream.burst_weight > 0.7


def test_a_failed_network_call_leaves_the_burst_as_it_was():
    rng = np.random.default_rng(8)
    truth = crop(scene(8))
    backend = Identity()
    stream = Enhancer(EnhancerConfig(burst=True), backend=backend).stream("cam")
    lows = [shoot(truth, rng) for _ in range(3)]
    stream.enhance(lows[0], 0, "cam")
    stream.enhance(lows[1], 1, "cam")
    before = stream.input_state()
    backend.fail = True
    with pytest.raises(RuntimeError):
        stream.enhance(lows[2], 2, "cam")
    after = stream.input_state()
    assert after[0] == before[0] and all(x is y for x, y in zip(after[1], before[1]))


def test_the_restart_policy_restarts_the_burst_before_the_network():
    rng = np.random.default_rng(9)
    truth = crop(scene(9))
    backend = Identity()
    stream = Enhancer(EnhancerConfig(burst=True), backend=backend).stream("cam")
    for i in range(3):
        stream.enhance(shoot(truth, rng), i * 33_000_000, "cam")
    assert stream.burst_weight > 0.5
    low = shoot(truth, rng)
    out = stream.enhance(low, 3 * 33_000_000, "other_frame")  # a new frame_id: a new history
    assert stream.burst_weight == 0.0
    np.testing.assert_array_equal(out, low)
    stream.enhance(shoot(truth, rng), 4 * 33_000_000, "other_frame")
    assert stream.burst_weight > 0.3
    stream.restart()  # a new activation
    stream.enhance(shoot(truth, rng), 5 * 33_000_000, "other_frame")
    assert stream.burst_weight == 0.0
