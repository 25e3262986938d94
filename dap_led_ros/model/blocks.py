"""Building blocks: channel LayerNorm, transposed attention, gated-Dconv FFN, CeTB, gated conv block."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a B x C x H x W tensor."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=1, keepdim=True)
        var = (x - mean).pow(2).mean(dim=1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


class TransposedAttention(nn.Module):
    """Multi-Dconv head transposed attention: attention across channels, linear in pixels."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=False)
        self.qkv_dw = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)
        # Set by exact tiling (dap_led_ros/runtime/exact_tiling.py): a callable (module, q, k) -> the
        # B x heads x C' x C' attention, from statistics gathered over the whole frame.
        self.attention_source: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        q = q.reshape(b, self.heads, c // self.heads, h * w)
        k = k.reshape(b, self.heads, c // self.heads, h * w)
        v = v.reshape(b, self.heads, c // self.heads, h * w)
        if self.attention_source is not None:
            attn = self.attention_source(self, q.reshape(b, self.heads, -1, h, w), k.reshape(b, self.heads, -1, h, w))
        else:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return self.proj((attn.to(v.dtype) @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """Gated-Dconv feed-forward network."""

    def __init__(self, dim: int, expansion: float) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=False)
        self.dw = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, g = self.dw(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * g)


class DegradationModulation(nn.Module):
    """Spatial feature transform from degradation features: LN(x) * (1 + gamma(D)) + beta(D)."""

    def __init__(self, dim: int, prior_channels: int) -> None:
        super().__init__()
        self.to_scale_shift = nn.Conv2d(prior_channels, dim * 2, 1)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_scale_shift(prior).chunk(2, dim=1)
        return x * (1 + gamma) + beta


class _ModulatedBlock(nn.Module):
    """x + mix(mod1(LN(x))), then x + FFN(mod2(LN(x))); the modulations only with prior channels."""

    def __init__(self, dim: int, expansion: float, prior_channels: int) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GatedFeedForward(dim, expansion)
        self.mod1 = DegradationModulation(dim, prior_channels) if prior_channels else None
        self.mod2 = DegradationModulation(dim, prior_channels) if prior_channels else None

    def mix(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(x)
        if self.mod1 is not None and prior is not None:
            h = self.mod1(h, prior)
        x = x + self.mix(h)
        h = self.norm2(x)
        if self.mod2 is not None and prior is not None:
            h = self.mod2(h, prior)
        return x + self.ffn(h)


class TransformerBlock(_ModulatedBlock):
    """Restormer-style block; with `prior_channels` it is a CLIP-enhanced block (CeTB)."""

    def __init__(self, dim: int, heads: int, expansion: float, prior_channels: int = 0) -> None:
        super().__init__(dim, expansion, prior_channels)
        self.attn = TransposedAttention(dim, heads)

    def mix(self, h: torch.Tensor) -> torch.Tensor:
        return self.attn(h)


class GatedConvBlock(_ModulatedBlock):
    """A local block for the high-resolution levels: after LN, a 1x1 expansion into two depth-wise
    3x3 branches (dilation 1 and 3), one gating the other, and a 1x1 projection; then the gated FFN.
    With `prior_channels` its normalised inputs are modulated like a CeTB's. No global operation,
    so tiles with a halo restore exactly what the whole frame would."""

    def __init__(self, dim: int, expansion: float, prior_channels: int = 0) -> None:
        super().__init__(dim, expansion, prior_channels)
        self.expand = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.dw_near = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.dw_far = nn.Conv2d(dim, dim, 3, padding=3, dilation=3, groups=dim, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def mix(self, h: torch.Tensor) -> torch.Tensor:
        a, g = self.expand(h).chunk(2, dim=1)
        return self.proj(self.dw_near(a) * torch.sigmoid(self.dw_far(g)))


BLOCK_KINDS = ("attention", "conv")


class BlockStack(nn.Module):
    """A sequence of blocks sharing one degradation feature map; `kind` picks the block type."""

    def __init__(self, n: int, dim: int, heads: int, expansion: float, prior_channels: int = 0,
                 kind: str = "attention") -> None:
        super().__init__()
        if kind not in BLOCK_KINDS:
            raise ValueError(f"block kind must be one of {BLOCK_KINDS}, got {kind!r}")
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, expansion, prior_channels) if kind == "attention"
            else GatedConvBlock(dim, expansion, prior_channels) for _ in range(n))

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x, prior)
        return x


class Downsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
