"""Exact tiling: tiles restored with whole-frame attention statistics reproduce a whole-frame pass."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dap_led_ros.runtime.backends import create_backend
from dap_led_ros.checkpoint import default_checkpoint, save_checkpoint
from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.runtime.exact_tiling import ExactTiler, plan_exact_tiles
from dap_led_ros.model import ModelConfig, build_model

from conftest import load_module_from_file

torch.set_num_threads(1)


def _dark_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                      interpolation=cv2.INTER_CUBIC)
    noisy = base * 0.25 + rng.normal(0, 3, base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _random_model(use_prior: bool, seed: int = 0, block_kinds: tuple[str, ...] = ("attention",) * 4,
                  residual_gate: bool = False, stem_unshuffle: int = 2):
    torch.manual_seed(seed)
    cfg = ModelConfig.from_variant("tiny", width=8, blocks=(1, 1, 1, 2), use_prior=use_prior,
                                   block_kinds=block_kinds, residual_gate=residual_gate,
                                   stem_unshuffle=stem_unshuffle)
    model = build_model(cfg).eval()
    with torch.no_grad():  # make the zero-initialised prior modulations matter too
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model, cfg


def test_exact_tile_plan_partitions_the_frame_on_the_network_grid() -> None:
    tiles = plan_exact_tiles(320, 480, tile=192, halo=40, multiple=16)
    owned = np.zeros((320, 480), int)
    for t in tiles:
        assert t.y1 - t.y0 <= 192 and t.x1 - t.x0 <= 192
        assert t.y0 <= t.cy0 < t.cy1 <= t.y1 and t.x0 <= t.cx0 < t.cx1 <= t.x1
        assert all(v % 16 == 0 for v in (t.y0, t.y1, t.x0, t.x1, t.cy0, t.cy1, t.cx0, t.cx1))
        assert t.cy0 - t.y0 in (0, 48) and t.cx0 - t.x0 in (0, 48)  # halo rounded up to the grid
        owned[t.cy0:t.cy1, t.cx0:t.cx1] += 1
    assert (owned == 1).all() and len(tiles) > 4
    with pytest.raises(ValueError, match="not a multiple"):
        plan_exact_tiles(100, 96, 64, 0, 16)
    with pytest.raises(ValueError, match="no core"):
        plan_exact_tiles(96, 96, 64, 32, 16)


@pytest.mark.parametrize("use_prior, kinds, gate, stem", [(False, ("attention",) * 4, False, 2),
                                                          (True, ("attention",) * 4, False, 2),
                                                          (True, ("conv", "conv", "attention", "attention"), True, 2),
                                                          (True, ("attention",) * 4, True, 4)])  # tiny-rt
def test_exact_tiler_reproduces_a_whole_frame_pass(use_prior: bool, kinds: tuple[str, ...], gate: bool,
                                                   stem: int) -> None:
    """Odd-sized frame, many tiles, every block's attention gathered over tiles (conv levels and the
    residual gate are local)."""
    model, _ = _random_model(use_prior, block_kinds=kinds, residual_gate=gate, stem_unshuffle=stem)
    x = torch.from_numpy(_dark_image(150, 230, 3).astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        whole = model(x)
    # Random weights spread a tile border's zero padding far: a wide halo (1 px at level 4 is 16).
    tiler = ExactTiler(model, tile=320, halo=128)
    assert len(tiler.blocks) == (8 if kinds[0] == "attention" else 4)
    assert len(plan_exact_tiles(160, 240, 320, 128, 16)) == 12 or stem != 2
    tiled = tiler.restore(x)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().max().item() < 0.2 / 255
    assert all(b.attention_source is None for b in tiler.blocks)  # hooks removed afterwards
    with torch.inference_mode():
        assert torch.equal(model(x), whole)


def test_tiling_gives_the_whole_frame_result_within_1_255_on_a_small_image() -> None:
    """Shipped model through the Enhancer: exact tiles vs one pass, and what blending would give."""
    assert default_checkpoint().is_file()
    img = _dark_image(192, 256, 1)
    whole = Enhancer(EnhancerConfig(backend="torch", threads=1)).enhance(img).astype(int)
    small_tiles = dict(backend="torch", threads=1, tile_max_pixels=64 * 64, tile_size=256, tile_overlap=96)
    assert len(plan_exact_tiles(192, 256, 256, 96, 16)) == 12
    exact = Enhancer(EnhancerConfig(**small_tiles)).enhance(img).astype(int)
    assert exact.shape == img.shape
    assert np.abs(whole - exact).max() <= 1, np.abs(whole - exact).max()
    blend = {**small_tiles, "tile_size": 128, "tile_overlap": 48, "tile_mode": "blend"}
    blended = Enhancer(EnhancerConfig(**blend)).enhance(img).astype(int)
    assert np.abs(whole - blended).max() > 1  # independent tiles see other attention


def _save_random(path: Path) -> Path:
    model, cfg = _random_model(True, seed=4)
    return save_checkpoint(model, cfg, path)


def test_onnxruntime_enhancer_restores_exact_tiles_through_a_torch_twin(tmp_path: Path, monkeypatch,
                                                                         caplog) -> None:
    monkeypatch.setenv("DAP_LED_CACHE", str(tmp_path / "cache"))
    ckpt = _save_random(tmp_path / "m")
    img = _dark_image(96, 160, 5)
    cfg = dict(model=str(ckpt), threads=1, tile_max_pixels=32 * 32, tile_size=96, tile_overlap=32)
    ref = Enhancer(EnhancerConfig(backend="torch", **cfg))
    assert ref.backend.supports_exact_tiling
    expected = ref.enhance(img)
    with caplog.at_level(logging.INFO, logger="dap_led_ros.enhancer"):
        ort = Enhancer(EnhancerConfig(backend="onnxruntime", **cfg))
        assert not ort.backend.supports_exact_tiling
        np.testing.assert_array_equal(ort.enhance(img), expected)
    assert "large frames go through torch" in caplog.text
    ort.close()
    # A handed-in backend's checkpoint is unknown: tiles are blended, with a warning.
    handed = create_backend("onnxruntime", str(ckpt), "cpu", threads=1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dap_led_ros.enhancer"):
        out = Enhancer(EnhancerConfig(**cfg), backend=handed).enhance(img)
    assert out.shape == img.shape and "blended tiles" in caplog.text


def test_tile_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="tile_mode must be one of exact, blend"):
        EnhancerConfig(tile_mode="seamless").validate()


def test_tiling_accuracy_script_prints_both_modes(tmp_path: Path, capsys) -> None:
    mod = load_module_from_file(Path(__file__).resolve().parents[1] / "scripts" / "tiling_accuracy.py", "tiling_accuracy")
    image = tmp_path / "dark.png"
    cv2.imwrite(str(image), _dark_image(64, 96, 7))
    assert mod.main([str(image), "--size", "128x96", "--tile-size", "96", "--tile-overlap", "16"]) == 0
    out = capsys.readouterr().out
    assert "exact vs whole (128x96): max" in out and "blend vs whole (128x96)" in out
    assert mod.main([str(tmp_path / "missing.png")]) == 2
