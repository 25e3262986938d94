"""Losses: values, and which parameters each term may update."""
import pytest
import torch

from dap_led_ros.training.losses import (LossConfig, charbonnier, clip_loss, compute_losses, identity_loss,
                                prior_loss)
from dap_led_ros.model import ModelConfig, build_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = ModelConfig.from_variant("tiny")
    cfg.prior.grids = (1, 2)
    return build_model(cfg)


def test_charbonnier_is_eps_for_equal_images_and_grows_with_error():
    x = torch.rand(2, 3, 8, 8)
    assert charbonnier(x, x, 1e-3).item() == pytest.approx(1e-3, rel=1e-4)
    assert charbonnier(x + 0.1, x, 1e-3).item() == pytest.approx((0.1**2 + 1e-6) ** 0.5, rel=1e-4)


def test_identity_and_clip_terms_update_the_image_not_the_prior(model):
    pred = torch.rand(2, 3, 48, 48, requires_grad=True)
    target = torch.rand(2, 3, 48, 48)
    model.zero_grad(set_to_none=True)
    loss = identity_loss(model, pred, target) + clip_loss(model, pred)
    loss.backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_identity_loss_is_zero_for_the_ground_truth(model):
    y = torch.rand(2, 3, 48, 48)
    assert identity_loss(model, y, y).item() == pytest.approx(0.0, abs=1e-5)


def test_clip_loss_is_low_when_the_clear_prompt_wins(model):
    prior = model.prior
    x = torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        saved = prior.text_embeddings.clone()
        prior.text_embeddings[prior.clear_index] = prior.encode_image(x)[0]
        low = clip_loss(model, x).item()
        prior.text_embeddings.copy_(-saved.abs())
        prior.text_embeddings[prior.clear_index] = -prior.encode_image(x)[0]
        high = clip_loss(model, x).item()
        prior.text_embeddings.copy_(saved)
    assert low < 0.1 < high


def test_prior_loss_is_kl_zero_when_heatmaps_match_labels():
    labels = [torch.softmax(torch.randn(2, 4, g, g), 1) for g in (1, 2)]
    assert prior_loss(labels, labels).item() == pytest.approx(0.0, abs=1e-6)
    other = [torch.softmax(torch.randn(2, 4, g, g), 1) for g in (1, 2)]
    assert prior_loss(other, labels).item() > 0
    with pytest.raises(ValueError, match="shapes differ"):
        prior_loss([labels[0]], [labels[1]])


def test_compute_losses_logs_every_term_and_backpropagates(model):
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    pred, maps = model.forward_with_heatmaps(x)
    labels = [torch.softmax(torch.randn_like(m), 1) for m in maps]
    cfg = LossConfig(l_id=0.5, l_clip=0.1, l_prior=0.2)
    total, terms = compute_losses(model, pred, y, maps, labels, cfg)
    assert set(terms) == {"charbonnier", "identity", "clip", "prior", "ssim", "detector", "total"}
    expected = terms["charbonnier"] + 0.5 * terms["identity"] + 0.1 * terms["clip"] + 0.2 * terms["prior"]
    assert terms["total"] == pytest.approx(expected, rel=1e-5)
    model.zero_grad(set_to_none=True)
    total.backward()
    assert model.prior.text_embeddings.grad is not None  # trained by L_prior through the heatmaps


def test_model_without_prior_trains_on_charbonnier_only():
    torch.manual_seed(0)
    net = build_model(ModelConfig.from_variant("tiny", use_prior=False))
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    pred, maps = net.forward_with_heatmaps(x)
    total, terms = compute_losses(net, pred, y, maps, None, LossConfig())
    assert maps == []
    assert terms["identity"] == terms["clip"] == terms["prior"] == 0.0
    assert terms["total"] == pytest.approx(terms["charbonnier"])


def test_ssim_loss_matches_the_ssim_metric():
    import numpy as np

    from dap_led_ros.training.losses import ssim_loss
    from dap_led_ros.training.metrics import ssim

    rng = np.random.default_rng(0)
    a = rng.random((40, 56, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() for x in (a, b))
    expected = ssim((a * 255).round().astype(np.uint8), (b * 255).round().astype(np.uint8))
    ta, tb = (torch.round(t * 255) / 255 for t in (ta, tb))
    assert float(1 - ssim_loss(ta, tb)) == pytest.approx(expected, abs=2e-3)
    assert float(ssim_loss(ta, ta)) == pytest.approx(0.0, abs=1e-5)
    x = ta.clone().requires_grad_(True)
    ssim_loss(x, tb).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
