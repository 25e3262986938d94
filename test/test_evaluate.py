"""Metrics sanity, the auto-exposure baseline, and `dap-led eval` on a tiny paired folder."""
import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dap_led_ros.checkpoint import save_checkpoint
from dap_led_ros.training.evaluate import auto_exposure
from dap_led_ros.imaging.image_io import write_image
from dap_led_ros.training.metrics import no_reference, noise_sigma, psnr, sharpness, ssim
from dap_led_ros.model import ModelConfig, build_model

from conftest import load_module_from_file

torch.set_num_threads(1)
VENV_BIN = Path(sys.executable).parent


def _photo(h=64, w=96, seed=0) -> np.ndarray:
    """A smooth colour scene with edges (no noise)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2, h // 2), (250, 240, 230), -1)
    return img


def test_identical_images_give_infinite_psnr_and_ssim_one():
    img = _photo()
    assert math.isinf(psnr(img, img))
    assert ssim(img, img) == pytest.approx(1.0)


def test_set_means_count_an_exactly_restored_frame_at_the_cap():
    from dap_led_ros.training.evaluate import score_pairs
    from dap_led_ros.training.metrics import PSNR_CAP_DB, mean_psnr

    a, b = _photo(seed=0), _photo(seed=1)
    off = np.clip(b.astype(int) + 26, 0, 255).astype(np.uint8)  # one frame restored exactly, one not
    rows = score_pairs([("a", a, a), ("b", b, b)], {"identity": lambda x: x, "off": lambda x: off if x is b else x})
    assert rows["identity"]["psnr"] == PSNR_CAP_DB
    assert rows["off"]["psnr"] == pytest.approx((PSNR_CAP_DB + psnr(off, b)) / 2)
    assert mean_psnr([math.inf, 20.0]) == pytest.approx(40.0) and math.isnan(mean_psnr([]))


def test_psnr_of_a_known_error_and_ssim_drops_with_noise():
    a = np.full((16, 16, 3), 0.5)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    img = _photo()
    noisy = np.clip(img + np.random.default_rng(1).normal(0, 25, img.shape), 0, 255).astype(np.uint8)
    assert ssim(img, noisy) < 0.9
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(img, img[:10])


def test_auto_exposure_brightens_a_dark_image_and_keeps_a_bright_one():
    img = _photo()
    dark = (img * 0.15).astype(np.uint8)
    out = auto_exposure(dark)
    assert out.dtype == np.uint8 and out.shape == dark.shape
    assert out.mean() > 2 * dark.mean()
    bright = np.full((8, 8, 3), 240, np.uint8)
    assert np.array_equal(auto_exposure(bright), bright)  # never darkens


def test_no_reference_figures_move_the_right_way():
    img = _photo(256, 320)
    noisy = np.clip(img + np.random.default_rng(2).normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(img, (0, 0), 6)
    assert noise_sigma(noisy) > 3 * noise_sigma(img)
    assert sharpness(blurred) < 0.8 * sharpness(img)
    # pixel noise is fine detail, not edge sharpness
    assert no_reference(noisy).fine_detail > 1.3 * no_reference(img).fine_detail
    assert sharpness(noisy) == pytest.approx(sharpness(img), rel=0.25)
    # invariant to gain and tone curve
    dim = (img.astype(np.float64) * 0.5).astype(np.uint8)
    gamma = (255 * (img / 255.0) ** 0.5).astype(np.uint8)
    assert sharpness(dim) == pytest.approx(sharpness(img), rel=0.1)
    assert sharpness(gamma) == pytest.approx(sharpness(img), rel=0.1)
    f = no_reference(img)
    assert f.brightness == pytest.approx(img.mean() / 255, abs=0.05)
    assert f.relative_noise == pytest.approx(f.noise_sigma / f.brightness)


def test_eval_command_on_a_paired_folder_writes_the_table(tmp_path):
    low_dir, gt_dir = tmp_path / "low", tmp_path / "gt"
    for i in range(2):
        gt = _photo(48, 64, seed=i)
        write_image(gt_dir / f"f{i}.png", gt)
        write_image(low_dir / f"f{i}.png", (gt * 0.2).astype(np.uint8))
    torch.manual_seed(0)
    cfg = ModelConfig.from_variant("tiny")
    cfg.prior.grids = (1, 2)
    save_checkpoint(build_model(cfg), cfg, tmp_path / "model")
    abl_cfg = ModelConfig.from_variant("tiny", use_prior=False)
    save_checkpoint(build_model(abl_cfg), abl_cfg, tmp_path / "ablation")
    out = tmp_path / "eval"
    proc = subprocess.run(
        [str(VENV_BIN / "dap-led"), "eval", "--out-dir", str(out), "--model", str(tmp_path / "model.safetensors"),
         "--ablation", str(tmp_path / "ablation.safetensors"), "--pairs", str(low_dir), str(gt_dir),
         "--no-synthetic", "--real", str(low_dir), "--val-size", "48", "64", "--backend", "torch", "--threads", "1"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "evaluation.md").read_text()
    for row in ("| identity |", "| auto-exposure |", "| ablation (use_prior=false) |", "| DAP-LED |"):
        assert row in table
    results = json.loads((out / "eval.json").read_text())
    rows = next(iter(results["paired"].values()))
    assert rows["identity"]["n"] == 2
    assert rows["auto-exposure"]["psnr"] > rows["identity"]["psnr"]
    assert results["real"]["n"] == 2 and set(results["real"]["figures"]) >= {"input", "DAP-LED"}
    # frames that need no help: identity hands them back exactly; the others are measured against the input
    well = results["well_exposed"]["rows"]
    assert well["identity"]["psnr"] == float("inf") and well["identity"]["level_shift_max"] == 0.0
    assert well["DAP-LED"]["n"] == well["identity"]["n"] >= 2 and np.isfinite(well["DAP-LED"]["psnr"])
    assert "## Well-exposed frames: held-out clean photos (64x48)" in table
    for name in ("eval_plot.png", "contact_sheet_pairs.png", "contact_sheet_real.png", "contact_sheet_real_detail.png"):
        assert cv2.imread(str(out / name)) is not None


def test_eval_command_rejects_a_missing_folder(tmp_path):
    proc = subprocess.run([str(VENV_BIN / "dap-led"), "eval", "--out-dir", str(tmp_path / "o"),
                           "--pairs", str(tmp_path / "nope"), str(tmp_path), "--no-real"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_capacity_probe_scores_the_nlm_diagnostic_and_times_both_variants(tiny_checkpoint, capsys):
    mod = load_module_from_file(Path(__file__).resolve().parents[1] / "scripts" / "capacity_probe.py", "capacity_probe")
    assert mod.main(["--model", str(tiny_checkpoint), "--threads", "1", "--val-size", "64", "96",
                     "--count", "2", "--crop", "32", "--batch", "1", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "mean over 2 pairs (96x64, seed 1234): model" in out and "model + NLM (h=5)" in out
    assert "ms per frame (1 threads)" in out
    assert "tiny: 2." in out and "small: 5." in out and "s per training step (batch 1 of 32 px" in out
    with pytest.raises(SystemExit):
        mod.main(["--steps", "1"])


def test_default_real_frames_are_the_shared_folder_beside_the_checkout():
    from dap_led_ros.training.validation_sets import DEFAULT_REAL_DIR

    root = Path(__file__).resolve().parents[1]
    assert DEFAULT_REAL_DIR == root.parent / "shared" / "data" / "real-night"


def test_the_validation_set_defaults_are_the_training_configs():
    from dap_led_ros.training.config import DataConfig
    from dap_led_ros.training.validation_sets import SetOptions

    assert SetOptions() == SetOptions.for_training(DataConfig())
