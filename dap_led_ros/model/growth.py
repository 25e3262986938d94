"""Carry a trained network's weights into a grown one (issue 29 item 4: capacity moved, new modules).

A grown network may add, to the checkpoint's: the residual gate, noise-level conditioning, wide
context, and blocks at any level (encoder, latent, decoder, refinement); its stem factor may differ
(refolded, model/stem_transfer.py). Every added part starts as the identity (zero output
projections, the gate almost open), so the grown network restores what the checkpoint did and
fine-tuning starts from its quality rather than from scratch.
"""
from __future__ import annotations

import torch
from torch import nn

from dap_led_ros.model.blocks import BlockStack, GatedConvBlock, TransformerBlock
from dap_led_ros.model.config import ModelConfig
from dap_led_ros.model.stem_transfer import transfer_stem

# The parameter prefixes of the modules a grown network adds, and the settings it may change.
_ADDED_PREFIXES = ("gate.", "noise_embed.", "context.")
_GROWABLE = ("variant", "residual_gate", "stem_unshuffle", "noise_conditioning", "context_kernel",
             "blocks", "refinement_blocks")


def growth_error(src: ModelConfig, dst: ModelConfig) -> str | None:
    """Why `dst` is not `src` grown (None when it is)."""
    a, b = src.to_dict(), dst.to_dict()
    other = sorted(k for k in a if k not in _GROWABLE and a[k] != b[k])
    if other:
        return f"they differ in {other}"
    if src.residual_gate and not dst.residual_gate:
        return "the checkpoint has a residual gate the model lacks"
    if src.noise_conditioning and not dst.noise_conditioning:
        return "the checkpoint has noise conditioning the model lacks"
    if src.context_kernel and src.context_kernel != dst.context_kernel:
        return f"context_kernel {src.context_kernel} -> {dst.context_kernel}"
    if any(d < s for s, d in zip(src.blocks, dst.blocks)) or dst.refinement_blocks < src.refinement_blocks:
        return f"fewer blocks: {list(src.blocks)}+{src.refinement_blocks} -> {list(dst.blocks)}+{dst.refinement_blocks}"
    return None


def _make_identity(block: nn.Module) -> None:
    with torch.no_grad():
        block.ffn.project_out.weight.zero_()
        if isinstance(block, TransformerBlock):
            block.attn.proj.weight.zero_()
        elif isinstance(block, GatedConvBlock):
            block.proj.weight.zero_()


def load_grown(model: nn.Module, dst: ModelConfig, state: dict[str, torch.Tensor], src: ModelConfig) -> list[str]:
    """Load `state` (a network of `src`) into `model` (built from `dst`); the added parts start as
    the identity. Returns the added parameter names. ValueError when `dst` is not `src` grown."""
    why = growth_error(src, dst)
    if why:
        raise ValueError(f"the model is not the checkpoint's network grown: {why}")
    state = transfer_stem(state, src.stem_unshuffle, dst.stem_unshuffle)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"checkpoint weights the model has no place for: {unexpected[:8]}")
    grown_blocks = set()
    stacks = ((name, m) for name, m in model.named_modules() if isinstance(m, BlockStack))
    for name, stack in stacks:
        for i, block in enumerate(stack.blocks):
            prefix = f"{name}.blocks.{i}."
            if any(k.startswith(prefix) for k in missing):
                _make_identity(block)
                grown_blocks.add(prefix)
    stray = [k for k in missing if not k.startswith(_ADDED_PREFIXES) and not k.startswith(tuple(grown_blocks))]
    if stray:
        raise ValueError(f"the model's weights missing from the checkpoint: {stray[:8]}")
    return list(missing)
