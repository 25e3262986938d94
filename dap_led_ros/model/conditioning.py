"""Noise-level conditioning and wide context for the low-resolution levels (issue 29 item 4).

Both start as the identity (their output projections are zero), so a trained network grown with
them (model/growth.py) restores exactly what it did before fine-tuning.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dap_led_ros.model.blocks import ChannelLayerNorm

# r = y - mean3x3(y) of white noise of std s has std s * sqrt(8/9); E|r| = std * sqrt(2/pi).
_ABS_TO_SIGMA = math.sqrt(math.pi / 2) / math.sqrt(8 / 9)
NOISE_FEATURES = 2  # log noise level, sqrt local brightness
_LOG_FLOOR = 1e-3


def noise_level_maps(x: torch.Tensor, factors: list[int]) -> list[torch.Tensor]:
    """Per-level (B x 2 x H/f x W/f) maps of the frame's own noise: the local noise standard
    deviation estimated from the high-pass residual of the channel mean (log, scaled to about [-1, 1]) and
    the local brightness (square root). `x` is the padded input, its sides multiples of every factor.
    Fixed arithmetic, no weights: local, so tiles with a halo see what the whole frame sees."""
    y = x.mean(dim=1, keepdim=True)
    residual = (y - F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=False)).abs()
    both = torch.cat([residual, y], dim=1)
    out, done = [], 1
    for f in factors:  # each level pooled from the one before (the same means, less full-size work)
        if f % done:
            raise ValueError(f"level factors must each divide the next, got {factors}")
        both = F.avg_pool2d(both, f // done, stride=f // done) if f > done else both
        done = f
        sigma, level = both[:, :1] * _ABS_TO_SIGMA, both[:, 1:].clamp_min(0.0)
        out.append(torch.cat([(torch.log(sigma + _LOG_FLOOR) + 4.0) / 3.0, torch.sqrt(level)], dim=1))
    return out


class NoiseEmbedding(nn.Module):
    """Noise maps to a level's channels (1x1 conv, zero-initialised), added to its features."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(NOISE_FEATURES, dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, f: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return f + self.proj(noise)


class WideContext(nn.Module):
    """x + proj(GELU(dwconv_kxk(LN(x)))): a large depth-wise kernel that lets a low-resolution level
    see a long blur at once (k=7 at 1/8 resolution spans 56 input pixels). `proj` starts at zero."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(dim)
        self.dw = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj(F.gelu(self.dw(self.norm(x))))
