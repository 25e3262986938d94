"""Tiled inference that reproduces whole-frame inference.

Transposed attention normalises q and k over every pixel of its input, so a tile restored on its
own sees different attention than the whole frame. Everything else in DAP-LED is local. The
attention of each block is a function of three sums over pixels (q.k^T, |q|^2, |k|^2), so it can
be gathered tile by tile: for block n, every tile runs up to block n (blocks before it use the
whole-frame attention already gathered) and adds its core's sums; then the final pass restores
each tile with every block's whole-frame attention and keeps its core. A halo of context around
each core covers the convolutions. Cost: about (blocks + 2) / 2 passes over the frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dap_led_ros.model import DAPLED
from dap_led_ros.model.blocks import TransposedAttention


@dataclass(frozen=True)
class ExactTile:
    """A tile (y0:y1, x0:x1) of the padded frame and the core (cy0:cy1, cx0:cx1) it owns."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def _spans(length: int, core: int, halo: int) -> list[tuple[int, int, int, int]]:
    out = []
    for c0 in range(0, length, core):
        c1 = min(c0 + core, length)
        out.append((max(0, c0 - halo), min(length, c1 + halo), c0, c1))
    return out


def plan_exact_tiles(height: int, width: int, tile: int, halo: int, multiple: int) -> list[ExactTile]:
    """Cores partitioning a padded `height` x `width` frame, each inside a tile of <= `tile` px.

    Every boundary is a multiple of `multiple` (the network's downsampling factor), so a core maps
    onto whole feature-map pixels at every level.
    """
    if height % multiple or width % multiple:
        raise ValueError(f"padded frame {height}x{width} is not a multiple of {multiple}")
    halo = -(-halo // multiple) * multiple
    core = (tile - 2 * halo) // multiple * multiple
    if core < multiple:
        raise ValueError(f"tile {tile} px leaves no core inside a {halo} px halo")
    return [ExactTile(y0, y1, x0, x1, cy0, cy1, cx0, cx1)
            for y0, y1, cy0, cy1 in _spans(height, core, halo)
            for x0, x1, cx0, cx1 in _spans(width, core, halo)]


class _StopForward(Exception):
    """Raised once the block being gathered has seen the tile: the rest of the pass is not needed."""


class _AttentionStatistics:
    """Sums over a tile core's pixels that define one block's attention, and the attention."""

    def __init__(self) -> None:
        self.qk: torch.Tensor | None = None
        self.qq: torch.Tensor | None = None
        self.kk: torch.Tensor | None = None
        self.attention: torch.Tensor | None = None

    def add(self, q: torch.Tensor, k: torch.Tensor) -> None:
        q = q.flatten(-2).double()
        k = k.flatten(-2).double()
        qk, qq, kk = q @ k.transpose(-2, -1), q.pow(2).sum(-1), k.pow(2).sum(-1)
        if self.qk is None:
            self.qk, self.qq, self.kk = qk, qq, kk
        else:
            self.qk += qk
            self.qq += qq
            self.kk += kk

    def finish(self, temperature: torch.Tensor) -> None:
        """softmax(normalize(q) . normalize(k)^T * temperature), as the block computes it."""
        eps = 1e-12  # F.normalize's
        nq = self.qq.sqrt().clamp_min(eps)
        nk = self.kk.sqrt().clamp_min(eps)
        gram = self.qk / (nq.unsqueeze(-1) * nk.unsqueeze(-2))
        self.attention = torch.softmax(gram * temperature.double(), dim=-1).float()


class _AttentionSource:
    """Installed on every attention block during a pass: gathers one block, feeds the others."""

    def __init__(self, stats: dict[nn.Module, _AttentionStatistics]) -> None:
        self.stats = stats
        self.gather: nn.Module | None = None
        self.core: tuple[int, int, int, int] = (0, 0, 0, 0)  # in tile pixels
        self.tile_hw: tuple[int, int] = (0, 0)

    def __call__(self, module: nn.Module, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        st = self.stats[module]
        if module is self.gather:
            sy, sx = self.tile_hw[0] // q.shape[-2], self.tile_hw[1] // q.shape[-1]
            y0, y1, x0, x1 = self.core
            window = (..., slice(y0 // sy, y1 // sy), slice(x0 // sx, x1 // sx))
            st.add(q[window], k[window])
            raise _StopForward
        if st.attention is None:
            raise RuntimeError("exact tiling: a block ran before its attention was gathered")
        return st.attention.to(q.device)


class ExactTiler:
    """Restores frames of any size in tiles of at most `tile` px, matching whole-frame output.

    While `restore` runs, the model's attention blocks are hooked: do not run the same model
    from another thread meanwhile (an `Enhancer` restores one frame at a time).
    """

    def __init__(self, model: DAPLED, tile: int = 768, halo: int = 96) -> None:
        self.model = model
        self.tile = tile
        self.halo = halo
        self.blocks = [m for m in model.modules() if isinstance(m, TransposedAttention)]

    def _tile_features(self, t: ExactTile, maps: list[torch.Tensor], padded_hw: tuple[int, int]
                       ) -> list[torch.Tensor | None]:
        if self.model.prior is None or not maps:
            return [None] * 4
        sizes = self.model.level_sizes(padded_hw)
        scales = [padded_hw[0] // lh for lh, _ in sizes]
        regions = [(t.y0 // s, t.y1 // s, t.x0 // s, t.x1 // s) for s in scales]
        return self.model.prior.level_features(maps, sizes, regions=regions)

    @torch.inference_mode()
    def restore(self, x: torch.Tensor, maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """`x`: B x 3 x H x W in [0, 1]; `maps`: whole-frame heatmaps (computed from `x` if None)."""
        model = self.model
        h, w = x.shape[-2:]
        if maps is None:
            maps = model.heatmaps(x)
        xp = model.pad_input(x)
        padded_hw = (xp.shape[-2], xp.shape[-1])
        tiles = plan_exact_tiles(*padded_hw, self.tile, self.halo, model.pad_multiple)
        stats = {blk: _AttentionStatistics() for blk in self.blocks}
        source = _AttentionSource(stats)
        for blk in self.blocks:
            blk.attention_source = source
        try:
            for blk in self.blocks:  # in execution order (the order the network registers them)
                source.gather = blk
                for t in tiles:
                    self._run_tile(source, xp, t, maps, padded_hw)
                stats[blk].finish(blk.temperature)
            source.gather = None
            y = torch.empty_like(xp)
            for t in tiles:
                out = self._run_tile(source, xp, t, maps, padded_hw)
                y[..., t.cy0:t.cy1, t.cx0:t.cx1] = out[..., t.cy0 - t.y0:t.cy1 - t.y0, t.cx0 - t.x0:t.cx1 - t.x0]
        finally:
            for blk in self.blocks:
                blk.attention_source = None
        return torch.clamp(x + y[..., :h, :w], 0.0, 1.0)

    def _run_tile(self, source: _AttentionSource, xp: torch.Tensor, t: ExactTile,
                  maps: list[torch.Tensor], padded_hw: tuple[int, int]) -> torch.Tensor | None:
        source.core = (t.cy0 - t.y0, t.cy1 - t.y0, t.cx0 - t.x0, t.cx1 - t.x0)
        source.tile_hw = (t.y1 - t.y0, t.x1 - t.x0)
        try:
            return self.model.restore_residual(xp[..., t.y0:t.y1, t.x0:t.x1],
                                               self._tile_features(t, maps, padded_hw))
        except _StopForward:
            return None
