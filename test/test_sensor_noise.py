"""The calibrated sensor noise: statistics match the parameters, sampling follows the config, seeds repeat."""
import math

import numpy as np
import pytest

from dap_led_ros.training.sensor_noise import (
    LEGACY_MAX_READ_SIGMA,
    LEGACY_MAX_SHOT_GAIN,
    PROFILES,
    NoiseModelConfig,
    SensorNoise,
    apply_sensor_noise,
    sample_sensor_noise,
    tukey_quantile,
    tukey_variance,
)


def _flat_patches(levels, h=200, w=200):
    return [np.full((h, w), lv, np.float32) for lv in levels]


def test_variance_against_signal_has_slope_gain_and_intercept_read_variance():
    noise = SensorNoise(shot_gain=0.004, read_sigma=0.006, quant_step=0.0)
    rng = np.random.default_rng(0)
    levels = np.linspace(0.0, 0.06, 7)  # low levels: the intercept is well measured
    var = [float(apply_sensor_noise(p, noise, rng).var()) for p in _flat_patches(levels, 400, 400)]
    slope, intercept = np.polyfit(levels, var, 1)
    assert slope == pytest.approx(noise.shot_gain, rel=0.05)
    assert intercept == pytest.approx(noise.read_sigma**2, rel=0.1)
    assert np.allclose(var, [noise.variance(lv) for lv in levels], rtol=0.05)


def test_row_noise_banding_and_quantisation_add_their_variance():
    noise = SensorNoise(shot_gain=0.001, read_sigma=0.002, row_sigma=0.003, banding=0.002,
                        banding_period=16.0, quant_step=0.004)
    rng = np.random.default_rng(1)
    level = 0.1
    out = apply_sensor_noise(np.full((2000, 400), level, np.float32), noise, rng)
    assert float(out.var()) == pytest.approx(noise.variance(level), rel=0.08)
    # Rows share their offset: the variance of row means is the row terms plus the pixel noise / width.
    pixel_var = noise.shot_gain * level + noise.read_sigma**2 + noise.quant_step**2 / 12
    assert float(out.mean(axis=1).var()) == pytest.approx(noise.row_sigma**2 + noise.banding**2 / 2 + pixel_var / 400,
                                                          rel=0.15)
    assert np.allclose(np.round(out / noise.quant_step), out / noise.quant_step, atol=1e-3)


def test_shared_rows_across_channels():
    noise = SensorNoise(row_sigma=0.01)
    out = apply_sensor_noise(np.zeros((50, 60, 3), np.float32), noise, np.random.default_rng(2))
    assert np.allclose(out[:, :, 0], out[:, :, 2]) and float(out[:, 0, 0].std()) > 0.005


@pytest.mark.parametrize("lam", [0.14, 0.0, -0.2])
def test_tukey_lambda_variance(lam):
    u = np.random.default_rng(3).uniform(size=400_000)
    assert float(tukey_quantile(u, lam).var()) == pytest.approx(tukey_variance(lam), rel=0.03)
    noise = SensorNoise(read_sigma=0.01, tukey_lambda=lam)
    out = apply_sensor_noise(np.full((500, 500), 0.2, np.float32), noise, np.random.default_rng(4))
    assert float(out.var()) == pytest.approx(noise.variance(0.2), rel=0.05)


def test_sampled_noise_follows_the_calibrated_relations():
    # One profile, no extensions: shot gain = K / white, read std = exp(slope ln K + bias + N(0, spread)) / white.
    cfg = NoiseModelConfig(profiles=("sony_a7s2",), profile_weights=(1.0,), p_small_pixel=0.0, p_digital_gain=0.0,
                           p_tukey=0.0, p_banding=0.0)
    prof = PROFILES["sony_a7s2"]
    rng = np.random.default_rng(5)
    draws = [sample_sensor_noise(rng, cfg) for _ in range(3000)]
    for n in draws[:50]:
        assert n.shot_gain == pytest.approx(n.k / prof.white_dn)
        assert prof.k_range[0] <= n.k <= prof.k_range[1] and n.quant_step == pytest.approx(1 / prof.white_dn)
    lk = np.log([n.k for n in draws])
    lr = np.log([n.read_sigma * prof.white_dn for n in draws])
    slope, bias = np.polyfit(lk, lr, 1)
    assert slope == pytest.approx(prof.read.slope, abs=0.03) and bias == pytest.approx(prof.read.bias, abs=0.05)
    assert float(np.std(lr - (slope * lk + bias))) == pytest.approx(prof.read.spread, rel=0.1)
    # The night prior: gains sit high in the log range (Beta(3, 1): mean 0.75).
    u = (lk - math.log(prof.k_range[0])) / (math.log(prof.k_range[1]) - math.log(prof.k_range[0]))
    assert float(u.mean()) == pytest.approx(0.75, abs=0.02)


def test_small_pixels_and_digital_gain_scale_every_term():
    base = NoiseModelConfig(profiles=("nikon_d850",), profile_weights=(1.0,), p_small_pixel=0.0, p_digital_gain=0.0,
                            p_tukey=0.0, p_banding=0.0)
    pushed = NoiseModelConfig(profiles=("nikon_d850",), profile_weights=(1.0,), p_small_pixel=1.0,
                              small_pixel_area_range=(4.0, 4.0), small_pixel_adc_bits=(12, 12), p_digital_gain=1.0,
                              digital_gain_range=(2.0, 2.0), p_tukey=0.0, p_banding=0.0)
    a, b = sample_sensor_noise(np.random.default_rng(6), base), sample_sensor_noise(np.random.default_rng(6), pushed)
    assert b.k == a.k and b.shot_gain == pytest.approx(8 * a.shot_gain)
    assert b.quant_step == pytest.approx(2 * 4 * a.quant_step)  # 12-bit ADC: 4x the 14-bit step, then x2


def test_defaults_reach_several_times_the_legacy_maximum_and_mostly_stay_below():
    rng = np.random.default_rng(7)
    draws = [sample_sensor_noise(rng) for _ in range(4000)]
    shot = np.array([n.shot_gain for n in draws])
    read = np.array([math.sqrt(n.read_variance()) for n in draws])
    assert np.percentile(shot, 99) > 3 * LEGACY_MAX_SHOT_GAIN and np.percentile(read, 99) > 3 * LEGACY_MAX_READ_SIGMA
    assert np.median(shot) < LEGACY_MAX_SHOT_GAIN and np.median(read) < LEGACY_MAX_READ_SIGMA


def test_sampling_and_noise_repeat_by_seed():
    a = sample_sensor_noise(np.random.default_rng(8))
    assert a == sample_sensor_noise(np.random.default_rng(8)) and a != sample_sensor_noise(np.random.default_rng(9))
    sig = np.full((20, 30), 0.1, np.float32)
    assert np.array_equal(apply_sensor_noise(sig, a, np.random.default_rng(1)), apply_sensor_noise(sig, a, np.random.default_rng(1)))


def test_config_errors():
    with pytest.raises(ValueError, match="profiles"):
        NoiseModelConfig.from_dict({"profiles": ["canon_unknown"], "profile_weights": [1.0]})
    with pytest.raises(ValueError, match="profile_weights"):
        NoiseModelConfig.from_dict({"profile_weights": [1.0]})
    with pytest.raises(ValueError, match="unknown"):
        NoiseModelConfig.from_dict({"gain": 3})
