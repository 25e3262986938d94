"""Training losses (docs/training.md, "Losses").

L = Charbonnier(y_hat, y) + l_id * L_identity + l_clip * L_clip + l_prior * L_prior
    [+ l_ssim * (1 - SSIM(y_hat, y))] [+ l_detector * L_detector]

The bracketed terms are ours, not the paper's (default weight 0): a structural-similarity loss
tried in a fine-tuning experiment that was not shipped (docs/evaluation.md), and a frozen object
detector's feature distance (`detector_loss.py`: restoration trained for perception).

- Charbonnier: mean sqrt((y_hat - y)^2 + eps^2), eps = 1e-3.
- L_identity = 1 - cos(E(y_hat), E(y)), E = the model's CLIP image encoder (whole frame).
- L_clip = cross-entropy of the output's whole-frame prompt logits, target the "clear" prompt.
  These two terms train the restoration only: they are computed with a detached copy of the
  encoder's (and prompts') parameters, so no gradient reaches the CLIP prior through them, and
  E(y) is computed without gradients at all.
- L_prior (clip-learned prior only): the heatmaps against the synthetic per-patch degradation
  labels, as KL(labels || heatmaps) averaged over cells and grids (0 when they agree).

A model without the prior (use_prior=false, the ablation) has no encoder: its identity, clip and
prior terms are 0 and it trains on the Charbonnier term alone. The ablation therefore measures
the CLIP prior *including* its auxiliary losses, which is the paper's comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dap_led_ros.model import DAPLED

LOSS_TERMS: tuple[str, ...] = ("charbonnier", "identity", "clip", "prior", "ssim", "detector")


@dataclass
class LossConfig:
    """Loss weights; the dataclass defaults are the single source of defaults."""

    charbonnier_eps: float = 1e-3
    l_id: float = 0.05
    l_clip: float = 0.005
    l_prior: float = 0.05
    l_ssim: float = 0.0               # not in the paper: 1 - SSIM (Gaussian window, sigma 1.5)
    # Not in the paper: a frozen detector's feature distance (detector_loss.py), 0 = off.
    l_detector: float = 0.0
    detector: str = ""                # ONNX detector ("" = the shipped SSD-MobileNet-v2)
    detector_scale: float = 0.5       # crops resized by this before the detector (SSD: 640 px -> 300)
    detector_input: str = ""          # backbone input tensor ("" = the layout's)
    detector_features: list[str] = field(default_factory=list)  # feature tensors ([] = the layout's)
    detector_range: str = ""          # input range of a [0, 1] image: 0-1 | -1-1 | 0-255 ("" = the layout's)

    def validate(self) -> None:
        if self.charbonnier_eps <= 0:
            raise ValueError(f"loss.charbonnier_eps must be > 0, got {self.charbonnier_eps}")
        if not 0.05 <= self.detector_scale <= 4.0:
            raise ValueError(f"loss.detector_scale must be in [0.05, 4], got {self.detector_scale}")
        for name in ("l_id", "l_clip", "l_prior", "l_ssim", "l_detector"):
            if getattr(self, name) < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {getattr(self, name)}")


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """1 - mean SSIM over pixels and channels, data range 1, Gaussian window (as metrics.ssim)."""
    radius = int(3.5 * sigma + 0.5)
    g = torch.exp(-(torch.arange(-radius, radius + 1, dtype=torch.float32, device=pred.device) ** 2)
                  / (2 * sigma * sigma))
    g = g / g.sum()
    c = pred.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(c, 1, -1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p ** 2
    var_t = blur(target * target) - mu_t ** 2
    cov = blur(pred * target) - mu_p * mu_t
    ssim_map = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return 1.0 - ssim_map.mean()


def _frozen_call(module: nn.Module, method: str, x: torch.Tensor) -> torch.Tensor:
    """`module.method(x)` with detached parameters and buffers: gradients reach x only."""
    state = {f"m.{k}": v.detach() for k, v in module.named_parameters()}
    state.update({f"m.{k}": v.detach() for k, v in module.named_buffers()})
    return functional_call(_MethodAdapter(module, method), state, (x,))


class _MethodAdapter(nn.Module):
    """Exposes `module.method` as forward, which is what functional_call calls."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.m = module
        self.method = method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.m, self.method)(x)


def identity_loss(model: DAPLED, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - cos(E(pred), E(target)), mean over the batch; E frozen for this term."""
    prior = model.prior
    if prior is None:
        return pred.new_zeros(())
    e_pred = _frozen_call(prior, "encode_image", pred)
    with torch.no_grad():
        e_tgt = prior.encode_image(target)
    return (1.0 - F.cosine_similarity(e_pred.float(), e_tgt.float(), dim=-1)).mean()


def clip_loss(model: DAPLED, pred: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of pred's prompt logits with the "clear" prompt as target; prior frozen."""
    prior = model.prior
    if prior is None:
        return pred.new_zeros(())
    logits = _frozen_call(prior, "prompt_logits", pred).float()
    target = torch.full((pred.shape[0],), prior.clear_index, dtype=torch.long, device=pred.device)
    return F.cross_entropy(logits, target)


def prior_loss(heatmaps: list[torch.Tensor], labels: list[torch.Tensor]) -> torch.Tensor:
    """KL(labels || heatmaps) per cell, averaged over cells, batch and grids."""
    if not heatmaps:
        raise ValueError("prior_loss needs heatmaps (the model has no CLIP prior)")
    if len(heatmaps) != len(labels):
        raise ValueError(f"{len(heatmaps)} heatmap grids but {len(labels)} label grids")
    total = heatmaps[0].new_zeros((), dtype=torch.float32)
    for h, t in zip(heatmaps, labels):
        if h.shape != t.shape:
            raise ValueError(f"heatmap {tuple(h.shape)} and label {tuple(t.shape)} shapes differ")
        h, t = h.float(), t.float()
        kl = t * (torch.log(t.clamp_min(1e-8)) - torch.log(h.clamp_min(1e-8)))
        total = total + kl.sum(dim=1).mean()
    return total / len(heatmaps)


def compute_losses(model: DAPLED, pred: torch.Tensor, target: torch.Tensor,
                   heatmaps: list[torch.Tensor], labels: list[torch.Tensor] | None,
                   cfg: LossConfig, detector: nn.Module | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted total and every term's value (unweighted) for logging.

    `model` is the bare network (not a DDP wrapper). `labels` None (e.g. LOL-Blur data without
    patch labels) or a model without the prior skips L_prior. `detector` (a DetectorFeatureLoss,
    needed when cfg.l_detector > 0) gives L_detector.
    """
    if cfg.l_detector > 0 and detector is None:
        raise ValueError("loss.l_detector > 0 needs the detector feature loss (DetectorFeatureLoss)")
    zero = pred.new_zeros((), dtype=torch.float32)
    terms = {"charbonnier": charbonnier(pred.float(), target.float(), cfg.charbonnier_eps)}
    has_prior = model.prior is not None
    terms["identity"] = identity_loss(model, pred, target) if has_prior and cfg.l_id > 0 else zero
    terms["clip"] = clip_loss(model, pred) if has_prior and cfg.l_clip > 0 else zero
    use_prior_term = has_prior and labels is not None and cfg.l_prior > 0 and model.cfg.prior.mode == "clip-learned"
    terms["prior"] = prior_loss(heatmaps, labels) if use_prior_term else zero
    terms["ssim"] = ssim_loss(pred.float(), target.float()) if cfg.l_ssim > 0 else zero
    terms["detector"] = detector(pred, target) if detector is not None and cfg.l_detector > 0 else zero
    total = terms["charbonnier"] + cfg.l_id * terms["identity"] + cfg.l_clip * terms["clip"] \
        + cfg.l_prior * terms["prior"] + cfg.l_ssim * terms["ssim"] + cfg.l_detector * terms["detector"]
    logged = {k: float(v.detach()) for k, v in terms.items()}
    logged["total"] = float(total.detach())
    return total, logged
