"""The cross-model split (each half made by one path, with the night degradations), the night
preset, the level-fitted PSNR and where both show up (training validation, `dap-led eval`'s report)."""
import numpy as np
import pytest
import torch

from dap_led_ros.imaging.srgb import srgb_decode, srgb_encode
from dap_led_ros.training import datasets
from dap_led_ros.training.degradation_presets import camera_config, synthesis_config
from dap_led_ros.training.metrics import psnr, psnr_level_fitted

SIZE = (48, 64)


def _spy(monkeypatch):
    calls = {"synthesize": [], "synthesize_camera": []}
    for name in calls:
        real = getattr(datasets, name)

        def wrapped(clean, params, rng, rule=None, _real=real, _name=name):
            calls[_name].append(params)
            return _real(clean, params, rng, rule)

        monkeypatch.setattr(datasets, name, wrapped)
    return calls


def test_each_half_is_made_by_its_own_generator_with_the_night_degradations(monkeypatch):
    calls = _spy(monkeypatch)
    syn = datasets.cross_model_set("synthetic", size=SIZE, n=4, seed=5)
    [syn[i] for i in range(4)]
    assert len(calls["synthesize"]) == 4 and calls["synthesize_camera"] == []
    cam = datasets.cross_model_set("camera", size=SIZE, n=4, seed=5)
    [cam[i] for i in range(4)]
    assert len(calls["synthesize_camera"]) == 4 and len(calls["synthesize"]) == 4
    # Calibrated noise on every degraded pair; trajectory blur wherever there is blur.
    assert all(p.sensor is not None for p in calls["synthesize"] if p.exposure < 1)
    assert all(p.blur_kind in ("", "shake", "vehicle") for p in calls["synthesize"] + calls["synthesize_camera"])
    assert any(p.sensor is not None for p in calls["synthesize_camera"])
    # Same photos and framing in both halves (path 1 may draw small lights into its target).
    for i in range(4):
        a, b = syn[i], cam[i]
        assert a["name"] == b["name"]
        assert float((a["high"] - b["high"]).abs().median()) == 0.0


def test_the_split_repeats_by_seed_and_changes_with_it():
    a = datasets.cross_model_set("camera", size=SIZE, n=2, seed=7)
    b = datasets.cross_model_set("camera", size=SIZE, n=2, seed=7)
    c = datasets.cross_model_set("camera", size=SIZE, n=2, seed=8)
    assert all(torch.equal(a[i]["low"], b[i]["low"]) for i in range(2))
    assert not all(torch.equal(a[i]["low"], c[i]["low"]) for i in range(2))
    with pytest.raises(ValueError, match="path"):
        datasets.cross_model_set("lolblur")


def test_night_preset_and_overrides():
    s, c = synthesis_config("night"), camera_config("night", {"p_blur": 0.5})
    assert (s.noise_model, s.blur_model, s.blur_length_range) == ("calibrated", "trajectories", (2.0, 40.0))
    assert (c.noise_model, c.shake_length_range, c.p_blur) == ("calibrated", (2.0, 40.0), 0.5)
    assert synthesis_config().noise_model == "legacy" and camera_config().blur_model == "legacy"
    with pytest.raises(ValueError, match="degradations"):
        synthesis_config("dusk")


def test_the_legacy_stream_is_unchanged_by_the_new_fields():
    # Default settings draw the same pairs as before the calibrated model existed (same seeds, same values).
    ds = datasets.SyntheticPairs([np.full((64, 64, 3), 128, np.uint8)], crop=(32, 32), length=1, seed=3)
    item = ds[0]
    assert item["noise_sigma"] > 0 and "sensor" not in item


def test_level_fitted_psnr_ignores_a_per_channel_gain_only():
    rng = np.random.default_rng(0)
    gt = (rng.random((40, 60, 3)) * 200 + 20).astype(np.uint8)
    off = srgb_encode(srgb_decode(gt) * np.array([0.6, 0.8, 0.5], np.float32))  # darker, tinted
    assert psnr(off, gt) < 20 and psnr_level_fitted(off, gt) > 40
    noisy = np.clip(gt.astype(int) + rng.integers(-12, 13, gt.shape), 0, 255).astype(np.uint8)
    assert psnr_level_fitted(noisy, gt) == pytest.approx(psnr(noisy, gt), abs=0.3)  # noise is still counted


def test_eval_report_shows_the_level_fitted_column_and_the_cross_split():
    from dap_led_ros.training.evaluate import markdown_report

    row = {"psnr": 20.0, "psnr_level_fitted": 22.5, "ssim": 0.6, "n": 3, "ms_per_frame": 1.0}
    results = {"machine": "m", "paired": {
        "Cross-model split, path 1, sRGB synthesis, calibrated noise (64x48, seed 1)": {"DAP-LED": row},
        "Cross-model split, path 2, RAW camera model, calibrated noise (64x48, seed 1)": {"DAP-LED": row}},
        "real": None}
    text = markdown_report(results, "dap-led eval")
    assert "| method | PSNR (dB) | PSNR level-fitted (dB) | SSIM | frames | ms/frame |" in text
    assert "| DAP-LED | 20.00 | 22.50 | 0.6000 | 3 | 1 |" in text
    assert "## Cross-model split (development metric)" in text
    assert "| DAP-LED | 20.00 / 22.50 / 0.6000 | 20.00 / 22.50 / 0.6000 |" in text


def test_validation_sources_name_both_halves():
    from dap_led_ros.training.validation_sets import SetOptions, validation_sources

    tags = [s.tag for s in validation_sources(SetOptions(size=SIZE))]
    assert tags == ["synthetic", "camera", "well_exposed", "cross_synthetic", "cross_camera"]
    assert "cross_synthetic" not in [s.tag for s in validation_sources(SetOptions(cross=False))]


def test_training_validation_reports_the_held_out_path_and_level_fitted_psnr():
    from dap_led_ros.model import ModelConfig, build_model
    from dap_led_ros.training.config import TrainConfig
    from dap_led_ros.training.loaders import ValidationSet

    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict({"variant": "tiny", "prior": {"grids": [1, 2]}}))
    data = {"val_size": [32, 48], "val_count": 1, "cross_count": 1, "val2_count": 1}
    val = ValidationSet(TrainConfig.from_dict({"data": {**data, "camera_share": 0.0},
                                               "score_sets": ["val", "xsyn", "xcam"]}))
    assert len(val.sets["xsyn"]) == len(val.sets["xcam"]) == 1 and val.held_out == "xcam"
    out = val.evaluate(model, torch.device("cpu"))
    for key in ("val", "xsyn", "xcam", "well"):
        assert f"{key}_psnr_fit" in out and out[f"{key}_psnr_fit"] > out[f"{key}_psnr"] - 1.0  # fitted in linear light, scored in sRGB
    assert out["score"] == pytest.approx(np.mean([out["val_psnr"], out["xsyn_psnr"], out["xcam_psnr"]]))
    assert out["cross_psnr"] == out["xcam_psnr"] and out["cross_psnr_fit"] == out["xcam_psnr_fit"]
    val.held_out = None  # a run on both paths holds neither out
    assert "cross_psnr" not in val.evaluate(model, torch.device("cpu"))


def test_held_out_path_follows_the_camera_share():
    from dap_led_ros.training.loaders import ValidationSet

    assert [ValidationSet.held_out_key(s) for s in (0.0, 1.0, 0.5)] == ["xcam", "xsyn", None]


def test_default_share_mixes_the_default_degradations_into_a_night_campaign(monkeypatch):
    from dap_led_ros.training.config import DataConfig

    calls = _spy(monkeypatch)
    photos = [np.full((80, 96, 3), 110 + 20 * k, np.uint8) for k in range(3)]
    night, default = synthesis_config("night"), synthesis_config("default")
    mixed = datasets.SyntheticPairs(photos, night, crop=(32, 32), length=40, seed=5,
                                    alternate=(default, camera_config("default")), alternate_share=0.5)
    for i in range(len(mixed)):
        mixed[i]
    noise = ["calibrated" if p.sensor is not None else "legacy" for p in calls["synthesize"]]
    assert 10 < noise.count("legacy") < 30 and 10 < noise.count("calibrated") < 30
    # share 0 draws nothing more: the night stream is the one a plain night dataset gives
    plain = datasets.SyntheticPairs(photos, night, crop=(32, 32), length=3, seed=5)
    zero = datasets.SyntheticPairs(photos, night, crop=(32, 32), length=3, seed=5,
                                   alternate=(default, camera_config("default")), alternate_share=0.0)
    for i in range(3):
        assert torch.equal(plain[i]["low"], zero[i]["low"])
    with pytest.raises(ValueError, match="alternate_share"):
        datasets.SyntheticPairs(photos, night, crop=(32, 32), alternate_share=0.3)
    with pytest.raises(ValueError, match="default_share"):
        DataConfig(default_share=0.5).validate()
    with pytest.raises(ValueError, match="default_share"):
        DataConfig(degradations="night", default_share=1.5).validate()
    DataConfig(degradations="night", default_share=0.5).validate()
