"""Degradation synthesis: determinism, ranges, physics (streaks, noise) and label consistency."""
from __future__ import annotations

import numpy as np
import pytest

from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode
from dap_led_ros.prompts import BLURRY, CLEAR, DARK_BLURRY, DEGRADATION_PROMPTS, LOW_LIGHT
from dap_led_ros.training.labels import DegradationLabels, LabelRule
from dap_led_ros.training.synthesis import (
    DegradationParams,
    SynthesisConfig,
    motion_blur_kernel,
    sample_params,
    synthesize,
)


def _photo(h: int = 64, w: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth colourful test image with a few bright spots."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx), 0.5 + 0.4 * np.cos(5 * yy), 0.5 + 0.3 * np.sin(4 * (xx + yy))], -1)
    img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
    img[h // 4, w // 4] = img[h // 2, 3 * w // 4] = 1.0
    return (img * 255).round().astype(np.uint8)


def _line_kernel(length: int) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0 / length
    return k


def test_prompts_order() -> None:
    assert DEGRADATION_PROMPTS == (
        "a photo taken in low light",
        "a blurry photo",
        "a dark and blurry night photo",
        "a clear, well-exposed, sharp photo",
    )
    assert (LOW_LIGHT, BLURRY, DARK_BLURRY, CLEAR) == (0, 1, 2, 3)


def test_srgb_roundtrip_is_exact_for_8bit() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(srgb_encode(srgb_decode(codes)), codes)
    assert srgb_decode(codes).dtype == np.float32
    assert srgb_decode(codes)[0] == 0 and srgb_decode(codes)[-1] == pytest.approx(1.0)


def test_deterministic_by_seed() -> None:
    img = _photo()
    cfg = SynthesisConfig(p_blur=1.0, p_jpeg=1.0, p_exposure_varies=1.0, p_blur_varies=1.0, lights_range=(1, 2))

    def run(seed: int):
        rng = np.random.default_rng(seed)
        return synthesize(img, sample_params(rng, cfg), rng)

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a.low, b.low) and np.array_equal(a.high, b.high)
    assert np.array_equal(a.labels.exposure, b.labels.exposure)
    assert np.array_equal(a.params.blur_kernel, b.params.blur_kernel)
    assert not np.array_equal(a.low, c.low)


def test_output_ranges_dtypes_sizes() -> None:
    img = _photo(50, 70)
    rng = np.random.default_rng(0)
    cfg = SynthesisConfig()
    for _ in range(8):
        p = sample_params(rng, cfg)
        lo, hi = cfg.exposure_range
        assert lo <= p.exposure <= hi
        pair = synthesize(img, p, rng, cfg.label_rule)
        assert pair.low.dtype == np.uint8 and pair.high.dtype == np.uint8
        assert pair.low.shape == pair.high.shape == img.shape
        for m in (pair.labels.exposure, pair.labels.blur_length, pair.labels.noise_sigma):
            assert m.shape == img.shape[:2] and m.dtype == np.float32 and np.isfinite(m).all()
        assert pair.labels.exposure.min() >= lo * 0.999 and pair.labels.exposure.max() <= hi * 1.001
        for g in (1, 2, 4):
            pl = pair.labels.patch_labels(g)
            assert pl.shape == (g, g, 4) and pl.dtype == np.float32
            assert (pl >= 0).all() and np.allclose(pl.sum(-1), 1.0, atol=1e-6)
        if not p.lights:
            assert np.array_equal(pair.high, img)


def test_no_degradation_gives_identity_and_clear_label() -> None:
    img = _photo()
    pair = synthesize(img, DegradationParams(), np.random.default_rng(0))
    assert np.array_equal(pair.low, img)
    assert np.array_equal(pair.high, img)
    assert (pair.labels.blur_length == 0).all() and (pair.labels.exposure == 1).all()
    for g in (1, 2, 4):
        pl = pair.labels.patch_labels(g)
        assert (pl.argmax(-1) == CLEAR).all() and pl[..., CLEAR].min() == pytest.approx(1.0)
    clean = DegradationLabels.clean(8, 8).patch_labels(2)
    assert (clean[..., CLEAR] == 1).all()


def test_exposure_map_equals_sampled_exposure_when_uniform() -> None:
    cfg = SynthesisConfig(p_exposure_varies=0.0, p_blur=0.0)
    rng = np.random.default_rng(3)
    p = sample_params(rng, cfg)
    pair = synthesize(_photo(), p, rng)
    assert np.allclose(pair.labels.exposure, p.exposure)
    assert p.blur_kernel is None and (pair.labels.blur_length == 0).all()


def test_spatially_varying_exposure_is_labelled() -> None:
    # Dark at the top, bright at the bottom.
    field = np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], np.float32)
    p = DegradationParams(exposure=0.1, exposure_spread=4.0, exposure_field=field)
    img = np.full((60, 60, 3), 160, np.uint8)
    pair = synthesize(img, p, np.random.default_rng(0))
    e = pair.labels.exposure
    assert e[0].mean() == pytest.approx(0.05, rel=1e-3) and e[-1].mean() == pytest.approx(0.2, rel=1e-3)
    assert pair.low[:10].mean() < pair.low[-10:].mean()
    pl = pair.labels.patch_labels(2)
    darkness = pl[..., LOW_LIGHT] + pl[..., DARK_BLURRY]
    assert (darkness[0] > darkness[1]).all()


def test_spatially_varying_blur_is_labelled() -> None:
    field = np.array([[0, 0, 1], [0, 0, 1], [0, 0, 1]], np.float32)  # less blur on the right
    p = DegradationParams(blur_kernel=_line_kernel(15), blur_length=15.0, blur_spread=1.0, blur_field=field)
    pair = synthesize(_photo(), p, np.random.default_rng(0))
    bl = pair.labels.blur_length
    assert bl[:, 0].max() == pytest.approx(15.0) and bl[:, -1].max() == pytest.approx(0.0, abs=1e-5)
    pl = pair.labels.patch_labels(2)
    assert (pl[:, 0, BLURRY] > pl[:, 1, BLURRY]).all()


def test_zero_blur_gives_zero_blur_label() -> None:
    p = DegradationParams(exposure=0.1, read_noise=0.002, shot_gain=0.001)
    pair = synthesize(_photo(), p, np.random.default_rng(0))
    assert (pair.labels.blur_length == 0).all()
    pl = pair.labels.patch_labels(1)[0, 0]
    assert pl[BLURRY] == 0 and pl[DARK_BLURRY] == 0 and pl.argmax() == LOW_LIGHT


def test_label_rule_dominant_prompt() -> None:
    img = _photo()
    rng = np.random.default_rng(0)
    dark_blurry = synthesize(img, DegradationParams(exposure=0.04, blur_kernel=_line_kernel(21), blur_length=21.0), rng)
    blurry = synthesize(img, DegradationParams(exposure=1.0, blur_kernel=_line_kernel(21), blur_length=21.0), rng)
    assert (dark_blurry.labels.patch_labels(4).argmax(-1) == DARK_BLURRY).all()
    assert (blurry.labels.patch_labels(4).argmax(-1) == BLURRY).all()
    rule = LabelRule()
    assert rule.distribution(np.array(rule.dark_exposure), np.array(rule.blurry_px))[DARK_BLURRY] == pytest.approx(1.0)


def test_darker_exposure_gives_darker_image() -> None:
    img = _photo()
    means = [
        synthesize(img, DegradationParams(exposure=e, highlight_gain=1.0), np.random.default_rng(0)).low.mean()
        for e in (1.0, 0.3, 0.1, 0.03)
    ]
    assert means == sorted(means, reverse=True) and means[0] > means[-1] + 50


def test_blurred_highlight_makes_saturated_streak() -> None:
    img = np.full((41, 61, 3), 20, np.uint8)
    img[19:22, 29:32] = 255  # a 3x3 lamp on a dark scene
    kernel = _line_kernel(15)  # horizontal shake
    shake = dict(exposure=0.05, blur_kernel=kernel, blur_length=15.0)
    boosted = synthesize(img, DegradationParams(**shake, highlight_gain=10.0), np.random.default_rng(0))
    saturated = boosted.low.min(axis=2) == 255
    ys, xs = np.nonzero(saturated)
    assert set(ys) == {19, 20, 21} and xs.max() - xs.min() + 1 >= 13  # a horizontal saturated streak
    assert boosted.low.max(axis=2)[:15].max() < 60  # the rest of the frame stays dark
    # Without boosting, the lamp is exactly saturated before the blur spreads it out: no streak.
    plain = synthesize(img, DegradationParams(**shake, highlight_gain=1.0), np.random.default_rng(0))
    assert (plain.low == 255).sum() == 0 and plain.low.max() > 60
    # Unblurred, the boosted lamp stays a 3x3 saturated patch and the target is unchanged.
    sharp = synthesize(img, DegradationParams(exposure=0.05, highlight_gain=10.0), np.random.default_rng(0))
    assert (sharp.low.min(axis=2) == 255).sum() == 9 and np.array_equal(sharp.high, img)


def test_synthetic_lights_appear_in_both_images() -> None:
    from dap_led_ros.training.synthesis import LightSource

    img = np.full((40, 40, 3), 30, np.uint8)
    light = LightSource(y=0.5, x=0.5, radius=2.0, colour=(1.0, 1.0, 1.0), intensity=2.0)
    params = DegradationParams(exposure=0.05, highlight_gain=4.0, lights=(light,))
    pair = synthesize(img, params, np.random.default_rng(0))
    assert (pair.high[20, 20] == 255).all() and (pair.low[20, 20] == 255).all()
    assert (pair.high[0, 0] == 30).all()


@pytest.mark.parametrize("exact", [False, True])
def test_noise_matches_poisson_gaussian_model(exact: bool) -> None:
    img = np.full((128, 128, 3), 200, np.uint8)
    p = DegradationParams(exposure=0.2, read_noise=0.003, shot_gain=0.002, exact_poisson=exact, highlight_gain=1.0)
    pair = synthesize(img, p, np.random.default_rng(0))
    signal = float(srgb_decode(np.array([200], np.uint8))[0]) * 0.2
    expected_sd = np.sqrt(0.002 * signal + 0.003**2)
    assert pair.labels.noise_sigma.mean() == pytest.approx(expected_sd, rel=1e-4)
    measured = srgb_decode(pair.low).std()
    assert measured == pytest.approx(expected_sd, rel=0.1)
    assert srgb_decode(pair.low).mean() == pytest.approx(signal, rel=0.05)


def test_jpeg_changes_low_only() -> None:
    img = _photo()
    plain = synthesize(img, DegradationParams(exposure=0.2), np.random.default_rng(0))
    jpeg = synthesize(img, DegradationParams(exposure=0.2, jpeg_quality=30), np.random.default_rng(0))
    assert jpeg.low.shape == img.shape and not np.array_equal(jpeg.low, plain.low)
    assert np.abs(jpeg.low.astype(int) - plain.low.astype(int)).mean() < 10
    assert np.array_equal(jpeg.high, plain.high)


def test_motion_blur_kernel_properties() -> None:
    rng = np.random.default_rng(0)
    for length in (2.0, 9.5, 25.0):
        k = motion_blur_kernel(length, rng)
        assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert k.sum() == pytest.approx(1.0, abs=1e-5) and (k >= 0).all()
        c = k.shape[0] // 2
        yy, xx = np.mgrid[: k.shape[0], : k.shape[1]]
        assert (k * yy).sum() == pytest.approx(c, abs=1e-3) and (k * xx).sum() == pytest.approx(c, abs=1e-3)
        assert k.shape[0] <= 2 * np.ceil(length) + 5  # the path cannot reach further than its length
    with pytest.raises(ValueError):
        motion_blur_kernel(0.0, rng)


def test_config_from_dict() -> None:
    cfg = SynthesisConfig.from_dict({"exposure_range": [0.05, 0.2], "label_rule": {"blurry_px": 20.0}})
    assert cfg.exposure_range == (0.05, 0.2) and cfg.label_rule.blurry_px == 20.0
    assert SynthesisConfig.from_dict(cfg.to_dict()) == cfg
    assert SynthesisConfig.from_dict(None) == SynthesisConfig()
    with pytest.raises(ValueError, match="unknown"):
        SynthesisConfig.from_dict({"exposure": 0.1})
    with pytest.raises(ValueError, match="exposure_range"):
        SynthesisConfig.from_dict({"exposure_range": [0.3, 0.1]})
    with pytest.raises(ValueError, match="p_blur"):
        SynthesisConfig.from_dict({"p_blur": 2})
    with pytest.raises(ValueError, match="label_rule"):
        SynthesisConfig.from_dict({"label_rule": {"dark": 1}})


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="uint8"):
        synthesize(np.zeros((8, 8, 3), np.float32), DegradationParams(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="exposure"):
        DegradationParams(exposure=0.0)
    with pytest.raises(ValueError, match="odd square"):
        DegradationParams(blur_kernel=np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="grid"):
        DegradationLabels.clean(4, 4).patch_labels(8)


def test_identity_share_gives_pairs_whose_target_is_the_input():
    photo = _photo()
    rng = np.random.default_rng(3)
    cfg = SynthesisConfig(p_identity=1.0)
    pair = synthesize(photo, sample_params(rng, cfg), rng)
    assert np.array_equal(pair.low, pair.high)
    targets = pair.labels.patch_labels(2)
    assert np.allclose(targets[..., CLEAR], 1.0) and np.allclose(targets.sum(-1), 1.0)
    # p_identity = 0 (the default) draws exactly what earlier configs drew
    a = sample_params(np.random.default_rng(5), SynthesisConfig())
    b = sample_params(np.random.default_rng(5), SynthesisConfig(p_identity=0.0))
    assert a.scalars() == b.scalars()
    with pytest.raises(ValueError, match="p_identity"):
        SynthesisConfig(p_identity=1.5).validate()
