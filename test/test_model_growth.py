"""Issue 29 item 4: noise-level conditioning, wide context, grown blocks, and carrying a trained
network into the grown one (every added part starts as the identity)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from dap_led_ros.checkpoint import load_checkpoint, save_checkpoint
from dap_led_ros.model import ModelConfig, build_model
from dap_led_ros.model.conditioning import noise_level_maps
from dap_led_ros.model.growth import growth_error, load_grown
from dap_led_ros.runtime.exact_tiling import ExactTiler
from dap_led_ros.runtime.export import export_model
from dap_led_ros.shipped_models import default_checkpoint

torch.set_num_threads(1)
GROWN = dict(noise_conditioning=True, context_kernel=7, blocks=(1, 1, 2, 3))


def _frame(h: int, w: int, seed: int, noise: float = 0.02) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 8, w // 8, generator=g), size=(h, w),
                                           mode="bicubic", align_corners=False)
    return (0.2 * base + noise * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1)


def test_shipped_model_grown_restores_exactly_what_it_did() -> None:
    src, src_cfg, _ = load_checkpoint(default_checkpoint())
    cfg = replace(src_cfg, **GROWN)
    grown = build_model(cfg, load_clip_weights=False).eval()
    added = load_grown(grown, cfg, src.state_dict(), src_cfg)
    assert any(k.startswith("noise_embed.") for k in added) and any(k.startswith("context.") for k in added)
    assert "latent.blocks.2.attn.qkv.weight" in added and "encoders.2.blocks.1.ffn.dw.weight" in added
    assert "decoders.0.blocks.1.attn.proj.weight" in added
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in src.parameters())
    x = _frame(120, 168, 0)
    with torch.inference_mode():
        assert torch.equal(src.eval()(x), grown(x))
    # The added parts are trainable: one gradient step moves the output.
    out = grown.train()(x)
    out.mean().backward()
    assert grown.noise_embed[0].proj.weight.grad.abs().sum() > 0
    assert grown.context[1].proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("change, why", [({"width": 24}, "differ in"),
                                         ({"blocks": (1, 1, 1, 1)}, "fewer blocks"),
                                         ({"use_prior": False}, "differ in")])
def test_growth_refuses_another_network(change: dict, why: str) -> None:
    src = ModelConfig()
    dst = replace(src, **change)
    assert why in growth_error(src, dst)
    with pytest.raises(ValueError, match=why):
        load_grown(build_model(dst, load_clip_weights=False), dst, build_model(src).state_dict(), src)
    # Taking a part away is not growth either.
    assert "noise conditioning" in growth_error(replace(src, noise_conditioning=True), src)
    assert "context_kernel" in growth_error(replace(src, context_kernel=5), replace(src, context_kernel=7))


def test_context_kernel_is_validated() -> None:
    for bad in (2, 4, 1, -3):
        with pytest.raises(ValueError, match="context_kernel"):
            ModelConfig(context_kernel=bad).validate()
    with pytest.raises(ValueError, match="blocks"):
        ModelConfig(blocks=(1, 1, -1, 2)).validate()


def test_noise_level_maps_measure_the_noise_the_frame_carries() -> None:
    g = torch.Generator().manual_seed(3)
    flat = torch.full((1, 3, 64, 96), 0.3)
    estimates = []
    for sigma in (0.01, 0.03, 0.09):
        y_noise = sigma * torch.randn(1, 1, 64, 96, generator=g)  # the same noise in every channel: luma sigma
        maps = noise_level_maps(flat + y_noise, [2, 4, 8, 16])
        assert [m.shape[-2:] for m in maps] == [(32, 48), (16, 24), (8, 12), (4, 6)]
        est = float(torch.exp(maps[3][:, 0] * 3.0 - 4.0).mean()) - 1e-3
        estimates.append(est)
        assert est == pytest.approx(sigma, rel=0.15)
        assert float(maps[3][:, 1].mean()) == pytest.approx(0.3 ** 0.5, abs=0.01)
    assert estimates == sorted(estimates)


def _grown_random(use_prior: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig.from_variant("tiny", width=8, use_prior=use_prior, residual_gate=True,
                                   prior=replace(ModelConfig().prior, grids=(1, 2)), **GROWN)
    model = build_model(cfg).eval()
    with torch.no_grad():  # the zero-initialised parts must matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("use_prior", [False, True])
def test_grown_network_tiles_exactly(use_prior: bool) -> None:
    model = _grown_random(use_prior)
    x = _frame(150, 230, 5)
    with torch.inference_mode():
        whole = model(x)
    # The wide context reaches further than the shipped network: random weights need a 192 px halo
    # (at 128 px this frame is off by 0.47/255).
    tiled = ExactTiler(model, tile=448, halo=192).restore(x)
    assert (tiled - whole).abs().max().item() < 0.2 / 255


def test_grown_network_exports_to_onnx_with_parity(tmp_path: Path) -> None:
    model = _grown_random(True)
    exported = export_model(model, tmp_path / "grown.onnx")
    session = ort.InferenceSession(str(exported.restore), providers=["CPUExecutionProvider"])
    for h, w in ((96, 128), (150, 230)):
        x = _frame(h, w, h)
        with torch.inference_mode():
            want = model(x).numpy()
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-4


def test_grown_checkpoint_round_trips(tmp_path: Path) -> None:
    model = _grown_random(True)
    save_checkpoint(model, model.cfg, tmp_path / "grown")
    loaded, cfg, _ = load_checkpoint(tmp_path / "grown")
    assert cfg.noise_conditioning and cfg.context_kernel == 7 and cfg.blocks == (1, 1, 2, 3)
    x = _frame(64, 64, 1)
    with torch.inference_mode():
        assert torch.equal(loaded.eval()(x), model(x))
