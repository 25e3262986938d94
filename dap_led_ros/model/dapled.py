"""DAP-LED: 4-level transformer encoder-decoder steered by CLIP degradation heatmaps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dap_led_ros.model.blocks import BlockStack, Downsample, Upsample
from dap_led_ros.model.clip_prior import CLIPPrior
from dap_led_ros.model.conditioning import NoiseEmbedding, WideContext, noise_level_maps
from dap_led_ros.model.config import ModelConfig

PAD_MULTIPLE = 8  # three 2x downsamplings (times the stem's unshuffle factor)
GATE_INIT_BIAS = 3.0  # sigmoid(3) = 0.95


class DAPLED(nn.Module):
    """Input and output: B x 3 x H x W in [0, 1], any H and W."""

    def __init__(self, cfg: ModelConfig, load_clip_weights: bool = True) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        c = cfg.width
        dims = [c, c * 2, c * 4, c * 8]
        pc = cfg.prior.feature_channels if cfg.use_prior else 0
        self.prior = CLIPPrior(cfg.prior, dims, load_weights=load_clip_weights) if cfg.use_prior else None
        e = cfg.ffn_expansion
        s = cfg.stem_unshuffle
        self.pad_multiple = PAD_MULTIPLE * s
        self.embed = nn.Sequential(nn.PixelUnshuffle(s), nn.Conv2d(3 * s * s, c, 3, padding=1, bias=False))
        # Encoder: the heatmap features are added to each level's input.
        self.enc_prior = nn.ModuleList(nn.Conv2d(pc, d, 1) for d in dims) if pc else None
        kinds = cfg.block_kinds
        self.noise_embed = nn.ModuleList(NoiseEmbedding(d) for d in dims) if cfg.noise_conditioning else None
        # Wide context after the encoders of levels 1 and 2 and at the latent's input (level 3).
        self.context = (nn.ModuleList(WideContext(d, cfg.context_kernel) for d in dims[1:])
                        if cfg.context_kernel else None)
        self.encoders = nn.ModuleList(BlockStack(n, d, h, e, kind=k)
                                      for n, d, h, k in zip(cfg.blocks[:3], dims, cfg.heads, kinds))
        self.downs = nn.ModuleList(Downsample(d) for d in dims[:3])
        self.latent = BlockStack(cfg.blocks[3], dims[3], cfg.heads[3], e, pc, kind=kinds[3])
        # Decoder: CLIP-enhanced blocks (CeTB) at every level.
        self.ups = nn.ModuleList(Upsample(d) for d in dims[1:][::-1])  # 8c->4c, 4c->2c, 2c->c
        self.reduce = nn.ModuleList(nn.Conv2d(2 * d, d, 1, bias=False) for d in dims[:3][::-1])
        self.decoders = nn.ModuleList(BlockStack(n, d, h, e, pc, kind=k)
                                      for n, d, h, k in zip(cfg.blocks[:3][::-1], dims[:3][::-1], cfg.heads[:3][::-1],
                                                            kinds[:3][::-1]))
        self.refine = BlockStack(cfg.refinement_blocks, c, cfg.heads[0], e, pc, kind=kinds[0])
        self.out = nn.Sequential(nn.Conv2d(c, 3 * s * s, 3, padding=1, bias=False), nn.PixelShuffle(s))
        self.gate = nn.Conv2d(dims[3], 1, 1) if cfg.residual_gate else None
        if self.gate is not None:  # starts almost open: a gated copy of a trained network keeps its output
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_INIT_BIAS)

    def heatmaps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-grid degradation heatmaps (B x K x g x g each); empty without the prior."""
        return self.prior(x) if self.prior is not None else []

    def forward(self, x: torch.Tensor, prior_maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Restore `x`. `prior_maps` overrides the heatmaps (e.g. a crop of whole-frame maps for a tile)."""
        return self.forward_with_heatmaps(x, prior_maps)[0]

    def forward_with_heatmaps(self, x: torch.Tensor, prior_maps: list[torch.Tensor] | None = None
                              ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, w = x.shape[-2:]
        maps = self.heatmaps(x) if prior_maps is None and self.prior is not None else (prior_maps or [])
        xp = self.pad_input(x)
        y = self.restore_residual(xp, self.level_features(maps, xp.shape[-2:]))
        return torch.clamp(x + y[..., :h, :w], 0.0, 1.0), maps

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """`x` padded at the bottom and right to a multiple of `pad_multiple`."""
        h, w = x.shape[-2:]
        m = self.pad_multiple
        pad_h = (m - h % m) % m
        pad_w = (m - w % m) % m
        # Reflection needs the pad smaller than the side; tiny inputs fall back to edge replication.
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        return F.pad(x, (0, pad_w, 0, pad_h), mode=mode) if (pad_h or pad_w) else x

    def level_sizes(self, padded_hw: tuple[int, int]) -> list[tuple[int, int]]:
        """Feature map size of each of the 4 levels for a padded input of `padded_hw`."""
        s = self.cfg.stem_unshuffle
        hp, wp = padded_hw[0] // s, padded_hw[1] // s
        return [(hp >> i, wp >> i) for i in range(4)]

    def level_features(self, maps: list[torch.Tensor], padded_hw: tuple[int, int]) -> list[torch.Tensor | None]:
        """The prior's degradation features per level for a padded input of size `padded_hw`."""
        if self.prior is None or not maps:
            return [None] * 4
        return self.prior.level_features(maps, self.level_sizes(padded_hw))

    def restore_residual(self, x: torch.Tensor, feats: list[torch.Tensor | None]) -> torch.Tensor:
        """The residual for a padded input `x`, given its per-level degradation features."""
        noise = (noise_level_maps(x, [self.cfg.stem_unshuffle * 2**lvl for lvl in range(4)])
                 if self.noise_embed is not None else None)
        f = self.embed(x)
        skips = []
        for lvl in range(3):
            if self.enc_prior is not None and feats[lvl] is not None:
                f = f + self.enc_prior[lvl](feats[lvl])
            if noise is not None:
                f = self.noise_embed[lvl](f, noise[lvl])
            f = self.encoders[lvl](f)
            if self.context is not None and lvl >= 1:
                f = self.context[lvl - 1](f)
            skips.append(f)
            f = self.downs[lvl](f)
        if self.enc_prior is not None and feats[3] is not None:
            f = f + self.enc_prior[3](feats[3])
        if noise is not None:
            f = self.noise_embed[3](f, noise[3])
        if self.context is not None:
            f = self.context[2](f)
        f = self.latent(f, feats[3])
        gate = torch.sigmoid(self.gate(f)) if self.gate is not None else None
        for i, lvl in enumerate((2, 1, 0)):
            f = self.ups[i](f)
            f = self.reduce[i](torch.cat([f, skips[lvl]], dim=1))
            f = self.decoders[i](f, feats[lvl])
        f = self.refine(f, feats[0])
        residual = self.out(f)
        if gate is not None:
            residual = residual * F.interpolate(gate, size=residual.shape[-2:], mode="bilinear", align_corners=False)
        return residual


def build_model(cfg: ModelConfig, load_clip_weights: bool = True) -> DAPLED:
    return DAPLED(cfg, load_clip_weights=load_clip_weights)
