"""The RAW-domain camera path: what each stage does to the image and that the labels say so."""
from __future__ import annotations

import numpy as np
import pytest

from dap_led_ros.imaging.srgb import srgb_decode
from dap_led_ros.prompts import CLEAR
from dap_led_ros.training.camera_synthesis import (
    CameraConfig,
    CameraParams,
    _mosaic,
    sample_camera_params,
    synthesize_camera,
)
from dap_led_ros.training.datasets import SyntheticPairs


def _photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(40, 200, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    base[..., 0] *= 0.9
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def _flat(level: int, h: int = 64, w: int = 64) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def _quiet(**kw) -> CameraParams:
    """A sensor without noise, blur, lights or JPEG (tests switch one stage on at a time)."""
    base = dict(exposure=1.0, wb=(2.0, 1.0, 1.8), adc_bits=14, highlight_gain=1.0)
    base.update(kw)
    return CameraParams(**base)


def test_identity_pairs_are_the_photo_with_clear_labels():
    img = _photo()
    pair = synthesize_camera(img, CameraParams(identity=True), np.random.default_rng(0))
    assert np.array_equal(pair.low, img) and np.array_equal(pair.high, img)
    assert np.allclose(pair.labels.patch_labels(2)[..., CLEAR], 1.0)


def test_noise_free_round_trip_keeps_the_photo():
    """Inverse colour matrix / white balance, mosaic, demosaic and forward ISP cancel out on smooth content."""
    img = _flat(128)
    ccm = np.array([[1.4, -0.3, -0.1], [-0.2, 1.3, -0.1], [0.0, -0.4, 1.4]], np.float32)
    pair = synthesize_camera(img, _quiet(ccm=ccm), np.random.default_rng(0))
    assert np.abs(pair.low.astype(int) - 128).max() <= 2


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_mosaic_keeps_one_colour_per_pixel_in_the_pattern(pattern):
    rgb = np.zeros((4, 4, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.1, 0.5, 0.9
    tile = _mosaic(rgb, pattern)[:2, :2]
    colour = {0.1: "R", 0.5: "G", 0.9: "B"}
    assert "".join(colour[round(float(v), 1)] for v in tile.ravel()) == pattern


def test_exposure_darkens_in_linear_light_and_is_the_label():
    img = _flat(180)
    pair = synthesize_camera(img, _quiet(exposure=0.1), np.random.default_rng(0))
    ratio = srgb_decode(pair.low).mean() / srgb_decode(img).mean()
    assert ratio == pytest.approx(0.1, rel=0.05)
    assert np.allclose(pair.labels.exposure, 0.1)


def test_noise_grows_with_iso_gain_and_the_label_follows():
    img = _flat(120)
    cfg = CameraConfig()
    sds, labels = [], []
    for gain in (1.0, 8.0):
        p = _quiet(exposure=0.2, iso_gain=gain, shot_gain=cfg.shot_gain_base * gain,
                   read_noise=cfg.read_noise_base * np.sqrt(1 + gain**2 / 16))
        pair = synthesize_camera(img, p, np.random.default_rng(1))
        sds.append(float(srgb_decode(pair.low).std()))
        labels.append(float(pair.labels.noise_sigma.mean()))
    assert sds[1] > 2 * sds[0] and labels[1] > 2 * labels[0]


def test_lit_pools_make_mixed_lighting():
    img = _flat(150, 96, 96)
    pair = synthesize_camera(img, _quiet(exposure=0.05, pools=((0.5, 0.5, 0.15, 8.0),)), np.random.default_rng(0))
    centre, corner = pair.labels.exposure[48, 48], pair.labels.exposure[0, 0]
    assert centre > 5 * corner
    assert pair.low[40:56, 40:56].mean() > 2 * pair.low[:10, :10].mean()


def test_rotation_blur_grows_with_distance_from_its_centre():
    rng = np.random.default_rng(0)
    img = (rng.random((96, 96, 3)) * 255).astype(np.uint8)
    pair = synthesize_camera(img, _quiet(rotation_deg=3.0, rotation_centre=(0.5, 0.5)), np.random.default_rng(0))
    b = pair.labels.blur_length
    assert b[48, 48] < 0.5 < b[0, 0]
    # Far from the centre the detail is smeared more than near it.
    err = np.abs(pair.low.astype(float) - img.astype(float)).mean(axis=2)
    assert err[:16, :16].mean() > err[40:56, 40:56].mean()


def test_saturated_lights_stay_white_not_magenta():
    img = _flat(40)
    img[28:36, 28:36] = 255
    pair = synthesize_camera(img, _quiet(exposure=0.05, highlight_gain=8.0), np.random.default_rng(0))
    light = pair.low[30:34, 30:34].astype(int)
    assert light.min() >= 250  # all three channels clipped at white


def test_odd_sizes_and_every_sampled_camera_work():
    img = _photo(63, 81)
    for seed in range(12):
        rng = np.random.default_rng(seed)
        pair = synthesize_camera(img, sample_camera_params(rng), rng)
        assert pair.low.shape == img.shape and pair.low.dtype == np.uint8
        assert pair.labels.exposure.shape == img.shape[:2]
        assert np.isfinite(pair.labels.noise_sigma).all()


def test_sampling_is_deterministic_and_shares_follow_the_config():
    a = synthesize_camera(_photo(), sample_camera_params(np.random.default_rng(3)), np.random.default_rng(4))
    b = synthesize_camera(_photo(), sample_camera_params(np.random.default_rng(3)), np.random.default_rng(4))
    assert np.array_equal(a.low, b.low)
    cfg = CameraConfig(p_identity=0.3, p_mild=0.3)
    draws = [sample_camera_params(np.random.default_rng(i), cfg) for i in range(400)]
    identity = sum(p.identity for p in draws) / len(draws)
    mild = sum((not p.identity) and p.exposure >= cfg.mild_exposure_range[0] and p.iso_gain == 1.0
               for p in draws) / len(draws)
    assert 0.22 < identity < 0.38 and 0.22 < mild < 0.4


@pytest.mark.parametrize("bad", [{"p_identity": 1.5}, {"p_identity": 0.7, "p_mild": 0.5},
                                 {"exposure_range": [0.0, 0.3]}, {"adc_bits_range": [6, 12]},
                                 {"iso_gain_range": [0.5, 4]}, {"black_level": 0.6}, {"no_such_key": 1}])
def test_bad_camera_config_is_refused(bad):
    with pytest.raises(ValueError):
        CameraConfig.from_dict(bad)


def test_dataset_mixes_the_two_paths_and_leaves_single_path_streams_alone():
    photos = [_photo(80, 100, s) for s in range(3)]
    plain = SyntheticPairs(photos, crop=(64, 64), length=4, seed=2)
    same = SyntheticPairs(photos, crop=(64, 64), length=4, seed=2, camera_share=0.0)
    for i in range(4):
        assert np.array_equal(plain[i]["low"].numpy(), same[i]["low"].numpy())
    camera = SyntheticPairs(photos, crop=(64, 64), length=4, seed=2, camera_share=1.0)
    assert any(not np.array_equal(plain[i]["low"].numpy(), camera[i]["low"].numpy()) for i in range(4))
    item = camera[0]
    assert item["low"].shape == (3, 64, 64) and [t.shape[-1] for t in item["patch_labels"]] == [1, 2, 4]
    with pytest.raises(ValueError, match="camera_share"):
        SyntheticPairs(photos, crop=(64, 64), camera_share=1.5)


def test_mild_frames_can_be_their_own_target():
    img = _photo()
    keep = CameraConfig(p_identity=0.0, p_mild=1.0, mild_target="input")
    fix = CameraConfig(p_identity=0.0, p_mild=1.0)
    for seed in range(4):
        p = sample_camera_params(np.random.default_rng(seed), keep)
        pair = synthesize_camera(img, p, np.random.default_rng(seed))
        assert p.keep_input and np.array_equal(pair.high, pair.low) and not np.array_equal(pair.low, img)
        assert pair.labels.exposure.min() >= keep.mild_exposure_range[0]  # labels say what was applied
        q = sample_camera_params(np.random.default_rng(seed), fix)
        assert not q.keep_input and np.array_equal(synthesize_camera(img, q, np.random.default_rng(seed)).high, img)
    with pytest.raises(ValueError, match="mild_target"):
        CameraConfig.from_dict({"mild_target": "target"})
