"""The DAP-LED network: shapes, the prior switch, CCM heatmaps, CLIP weights from a local file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dap_led_ros.model import DAPLED, ModelConfig, PriorConfig, build_model
from dap_led_ros.model.clip_prior import build_clip

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny() -> DAPLED:
    torch.manual_seed(0)
    return build_model(ModelConfig.from_variant("tiny")).eval()


@pytest.mark.parametrize("hw", [(33, 51), (64, 64), (97, 130), (1, 1)])
def test_output_shape_and_range_at_odd_sizes(tiny: DAPLED, hw: tuple[int, int]) -> None:
    x = torch.rand(2, 3, *hw)
    with torch.no_grad():
        y = tiny(x)
    assert y.shape == x.shape
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert torch.isfinite(y).all()


def test_use_prior_switch_builds_the_plain_backbone() -> None:
    with_prior = build_model(ModelConfig.from_variant("tiny"))
    plain = build_model(ModelConfig.from_variant("tiny", use_prior=False))
    assert plain.prior is None and with_prior.prior is not None
    assert not any("mod1" in n or "enc_prior" in n for n, _ in plain.named_parameters())
    assert any("mod1" in n for n, _ in with_prior.named_parameters())
    with torch.no_grad():
        y, maps = plain.forward_with_heatmaps(torch.rand(1, 3, 40, 56))
    assert maps == [] and y.shape == (1, 3, 40, 56)


def test_prior_changes_the_output(tiny: DAPLED) -> None:
    """The CeTB modulation is zero-initialised; once non-zero, heatmaps steer the output."""
    torch.manual_seed(1)
    model = build_model(ModelConfig.from_variant("tiny")).eval()
    for name, p in model.named_parameters():
        if "to_scale_shift" in name:
            torch.nn.init.normal_(p, std=0.5)
    x = torch.rand(1, 3, 48, 64) * 0.2
    with torch.no_grad():
        maps = model.heatmaps(x)
        flat = [torch.full_like(m, 1.0 / m.shape[1]) for m in maps]
        assert not torch.allclose(model(x), model(x, prior_maps=flat))


def test_heatmaps_have_k_channels_per_grid_and_sum_to_one(tiny: DAPLED) -> None:
    k = len(tiny.prior.prompts)
    with torch.no_grad():
        maps = tiny.heatmaps(torch.rand(2, 3, 120, 160))
    assert [tuple(m.shape) for m in maps] == [(2, k, g, g) for g in tiny.cfg.prior.grids]
    for m in maps:
        torch.testing.assert_close(m.sum(dim=1), torch.ones_like(m[:, 0]))


def test_heatmaps_follow_the_input_degradation(tiny: DAPLED) -> None:
    rng = np.random.default_rng(0)
    clean = torch.from_numpy(rng.random((1, 3, 128, 128), dtype=np.float32))
    dark = clean * 0.05
    blurred = torch.nn.functional.avg_pool2d(clean, 9, stride=1, padding=4)
    with torch.no_grad():
        ref = tiny.heatmaps(clean)
        for degraded in (dark, blurred):
            other = tiny.heatmaps(degraded)
            assert all(not torch.allclose(a, b, atol=1e-4) for a, b in zip(ref, other))
    # Spatially local: darkening one quadrant changes that quadrant's 4x4 cells most.
    half = clean.clone()
    half[..., :64, :64] *= 0.05
    with torch.no_grad():
        diff = (tiny.heatmaps(half)[-1] - ref[-1]).abs().sum(dim=1)[0]
    assert diff[:2, :2].mean() > diff[2:, 2:].mean()


def _save_clip(tmp_path, fmt: str) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(3)
    clip = build_clip("dapled-tiny").eval()
    state = clip.state_dict()
    if fmt == "safetensors":
        from safetensors.torch import save_file
        path = tmp_path / "clip.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "clip.pt"
        torch.save(state, str(path))
    return clip, str(path)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_clip_pretrained_weights_round_trip_through_a_local_file(tmp_path, fmt: str) -> None:
    import open_clip

    from dap_led_ros.checkpoint import load_checkpoint, save_checkpoint

    clip, path = _save_clip(tmp_path, fmt)
    cfg = ModelConfig.from_variant("tiny", prior=PriorConfig(mode="clip-pretrained", clip_weights=path))
    model = build_model(cfg).eval()
    for name, tensor in clip.visual.state_dict().items():
        torch.testing.assert_close(model.prior.visual.state_dict()[name], tensor)
    assert not any(p.requires_grad for p in model.prior.visual.parameters())
    # Prompt embeddings are the text tower's, computed once with the offline tokenizer.
    with torch.no_grad():
        text = clip.encode_text(open_clip.get_tokenizer("ViT-B-32")(list(cfg.prior.prompts)))
    torch.testing.assert_close(model.prior.text_embeddings, torch.nn.functional.normalize(text, dim=-1))
    # A DAP-LED checkpoint carries the prior: it reloads without the CLIP file.
    save_checkpoint(model, cfg, tmp_path / "dapled")
    (tmp_path / path.rsplit("/", 1)[1]).unlink()
    reloaded, _, _ = load_checkpoint(tmp_path / "dapled.safetensors")
    x = torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x))


def test_clip_weights_missing_or_wrong(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="CLIP weights file not found"):
        build_model(ModelConfig.from_variant(
            "tiny", prior=PriorConfig(mode="clip-pretrained", clip_weights=str(tmp_path / "none.pt"))))
    with pytest.raises(ValueError, match="needs prior.clip_weights"):
        build_model(ModelConfig.from_variant("tiny", prior=PriorConfig(mode="clip-pretrained")))


def test_config_round_trip_and_errors() -> None:
    cfg = ModelConfig.from_variant("small", use_prior=False)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown model keys"):
        ModelConfig.from_dict({"variant": "tiny", "widht": 3})
    with pytest.raises(ValueError, match="unknown model variant"):
        ModelConfig.from_variant("huge")
    with pytest.raises(ValueError, match="not divisible"):
        ModelConfig.from_dict({"variant": "tiny", "width": 10, "heads": [3, 1, 1, 1]})


def test_base_variant_is_restormer_sized() -> None:
    cfg = ModelConfig.from_variant("base")
    assert (cfg.width, cfg.blocks, cfg.heads) == (48, (4, 6, 6, 8), (1, 2, 4, 8))


def test_shipped_prior_sees_darkness() -> None:
    """The trained clip-learned prior: darkening a photo moves mass from 'clear' to 'low light'."""
    from dap_led_ros.checkpoint import load_checkpoint
    from dap_led_ros.prompts import CLEAR, LOW_LIGHT
    from dap_led_ros.training.clean_photos import list_clean_photos, load_clean_photo

    model, _, _ = load_checkpoint()
    img = load_clean_photo(list_clean_photos()[0], max_side=320)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        clean = model.heatmaps(x)[0][0, :, 0, 0]
        dark = model.heatmaps(x * 0.08)[0][0, :, 0, 0]
    assert dark[LOW_LIGHT] > clean[LOW_LIGHT] and dark[CLEAR] < clean[CLEAR]


def test_model_config_defaults_are_the_tiny_variant():
    from dap_led_ros.model.config import VARIANTS, ModelConfig

    assert ModelConfig() == VARIANTS["tiny"]
    assert ModelConfig.from_dict({}) == ModelConfig.from_variant("tiny")


def test_gated_conv_levels_build_a_local_network_with_prior_modulation() -> None:
    from dap_led_ros.model.blocks import GatedConvBlock, TransformerBlock

    kinds = ("conv", "conv", "attention", "attention")
    cfg = ModelConfig.from_dict({"variant": "tiny", "block_kinds": list(kinds), "width": 8})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg and cfg.block_kinds == kinds
    model = build_model(cfg).eval()
    enc = [type(s.blocks[0]) for s in model.encoders]
    dec = [type(s.blocks[0]) for s in model.decoders]  # levels 2, 1, 0
    assert enc == [GatedConvBlock, GatedConvBlock, TransformerBlock] and dec == enc[::-1]
    assert model.decoders[2].blocks[0].mod1 is not None  # CeTB-style modulation kept in the decoder
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    with pytest.raises(ValueError, match="block_kinds"):
        ModelConfig.from_dict({"variant": "tiny", "block_kinds": ["conv", "mlp", "attention", "attention"]})
    with pytest.raises(ValueError, match="4 entries"):
        ModelConfig.from_dict({"variant": "tiny", "block_kinds": ["conv"]})


def test_residual_gate_starts_almost_open_and_scales_the_correction() -> None:
    from dap_led_ros.model.dapled import GATE_INIT_BIAS

    torch.manual_seed(0)
    plain = build_model(ModelConfig.from_variant("tiny", width=8)).eval()
    gated = build_model(ModelConfig.from_variant("tiny", width=8, residual_gate=True)).eval()
    missing, unexpected = gated.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["gate.bias", "gate.weight"] and not unexpected
    x = torch.rand(1, 3, 48, 64) * 0.2
    with torch.no_grad():
        xp = plain.pad_input(x)
        feats = plain.level_features(plain.heatmaps(xp), xp.shape[-2:])
        r_plain = plain.restore_residual(xp, feats)
        r_gated = gated.restore_residual(xp, feats)
        assert torch.allclose(r_gated, r_plain * torch.sigmoid(torch.tensor(GATE_INIT_BIAS)), atol=1e-6)
        gated.gate.bias.fill_(-30.0)  # closed: the frame comes back as it went in
        assert torch.allclose(gated(x), x, atol=1e-6)


def test_the_committed_campaign_checkpoint_loads_with_its_record() -> None:
    from pathlib import Path

    from dap_led_ros.checkpoint import load_checkpoint

    path = Path(__file__).resolve().parents[1] / "checkpoints" / "campaign" / "dapled_tiny_c5b.safetensors"
    model, cfg, extra = load_checkpoint(path)
    assert cfg.residual_gate and model.gate is not None
    rec = extra["campaign"]
    assert rec["cumulative_steps"] == sum(r["steps"] for r in rec["runs"]) == 7400
    assert rec["cumulative_hours"] > 4


def test_stem_transfer_round_trips_and_keeps_a_flat_frame_s_features() -> None:
    from dap_led_ros.model.stem_transfer import EMBED_KEY, OUT_KEY, transfer_stem

    torch.manual_seed(0)
    src = build_model(ModelConfig(), load_clip_weights=False)
    state = src.state_dict()
    up = transfer_stem(state, 2, 4)
    assert up[EMBED_KEY].shape[1] == 48 and up[OUT_KEY].shape[0] == 48
    back = transfer_stem(up, 4, 2)
    torch.testing.assert_close(back[EMBED_KEY], state[EMBED_KEY])
    torch.testing.assert_close(back[OUT_KEY], state[OUT_KEY])
    # On a flat frame the refolded stem gives the same features (at a quarter resolution instead
    # of a half), and the output conv the same residual pattern.
    dst = build_model(ModelConfig(stem_unshuffle=4), load_clip_weights=False)
    dst.load_state_dict(up)
    x = torch.full((1, 3, 32, 32), 0.3)
    x[:, 1] = 0.6
    a, b = src.embed(x), dst.embed(x)
    torch.testing.assert_close(b[..., 1:-1, 1:-1], a[..., 1:7, 1:7], rtol=1e-5, atol=1e-6)
    f = torch.randn(1, 16, 1, 1).expand(1, 16, 4, 4)
    ra, rb = src.out(f.repeat(1, 1, 2, 2)), dst.out(f)
    torch.testing.assert_close(rb[..., 4:12, 4:12], ra[..., 4:12, 4:12], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not a multiple"):
        transfer_stem(state, 2, 3)
