"""Carry a trained network's weights to one with another stem pixel-unshuffle factor.

The body (levels, prior, gate) works on feature maps whatever their resolution, so only the
first conv (`embed.1`, 3*s*s input channels) and the last (`out.0`, 3*s*s output channels) change
shape. PixelUnshuffle puts pixel (i, j) of each s x s block of colour c in channel c*s*s + i*s + j.
Going from factor a to a larger factor b (b a multiple of a):
- embed: each b-channel (c, i, j) takes the a-weight of (c, i mod a, j mod a), divided by the
  (b/a)^2 positions that share it: the new stem sees the a-block pattern averaged over the b-block.
- out: each b-channel (c, i, j) copies the a-weight of (c, i mod a, j mod a): the residual's
  a-block pattern repeated over the b-block.
A smaller factor sums / averages the other way. The result is a starting point for fine-tuning,
not an equivalent network.
"""
from __future__ import annotations

import torch

EMBED_KEY = "embed.1.weight"
OUT_KEY = "out.0.weight"


def _index_map(src: int, dst: int) -> torch.Tensor:
    """For each of the 3*dst*dst channels, the src channel at the same colour and sub-pixel phase."""
    idx = []
    for c in range(3):
        for i in range(dst):
            for j in range(dst):
                idx.append(c * src * src + (i % src) * src + (j % src))
    return torch.tensor(idx)


def _refold(w: torch.Tensor, src: int, dst: int, dim: int, input_side: bool) -> torch.Tensor:
    """Input side (embed): spread and average going up, sum going down; output side: copy up, average down."""
    if dst >= src:
        if dst % src:
            raise ValueError(f"stem factor {dst} is not a multiple of {src}")
        out = w.index_select(dim, _index_map(src, dst))
        return out / (dst // src) ** 2 if input_side else out
    # Fewer channels: each dst channel gathers the src channels that map onto it.
    if src % dst:
        raise ValueError(f"stem factor {src} is not a multiple of {dst}")
    back = _index_map(dst, src)  # for each src channel, its dst channel
    shape = list(w.shape)
    shape[dim] = 3 * dst * dst
    out = torch.zeros(shape, dtype=w.dtype)
    out.index_add_(dim, back, w)
    return out if input_side else out / (src // dst) ** 2


def transfer_stem(state: dict[str, torch.Tensor], src: int, dst: int) -> dict[str, torch.Tensor]:
    """`state` of a network with stem factor `src`, with the stem and output convs refolded for `dst`."""
    if src == dst:
        return dict(state)
    for key in (EMBED_KEY, OUT_KEY):
        if key not in state:
            raise ValueError(f"state has no {key}: not a DAP-LED network")
    out = dict(state)
    out[EMBED_KEY] = _refold(state[EMBED_KEY], src, dst, dim=1, input_side=True)
    out[OUT_KEY] = _refold(state[OUT_KEY], src, dst, dim=0, input_side=False)
    return out
