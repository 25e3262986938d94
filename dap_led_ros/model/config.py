"""Model configuration: the named variants table and the CLIP prior settings.

The dataclass fields are the single source of defaults; YAML/JSON files override them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dap_led_ros.prompts import DEGRADATION_PROMPTS as DEFAULT_PROMPTS
from dap_led_ros.settings import dataclass_from_mapping

# A CLIP architecture small enough for the CPU (open_clip CLIP config dict).
# ~2M vision parameters; the text tower is only built when prompts must be embedded.
TINY_CLIP_ARCH: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"layers": 4, "width": 192, "patch_size": 16, "image_size": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}


@dataclass
class PriorConfig:
    """The CLIP-guided cross-fusion module (CCM)."""

    # "clip-learned": small CLIP image encoder + learned prompt embeddings, trained here.
    # "clip-pretrained": open_clip weights from a local file, frozen; prompts embedded once.
    mode: str = "clip-learned"
    # open_clip model name (e.g. "ViT-B-32") or "dapled-tiny" for TINY_CLIP_ARCH.
    clip_model: str = "dapled-tiny"
    # Local weights file (safetensors or a torch state dict) for clip-pretrained mode.
    clip_weights: str | None = None
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    # Crop grids: 1 = whole frame, 2 = 2x2 crops, 4 = 4x4 crops.
    grids: tuple[int, ...] = (1, 2, 4)
    # Channels of the per-level degradation feature map fused from the heatmaps.
    feature_channels: int = 16
    # CLIP's logit scale (100 for pretrained CLIP); learned mode starts here and learns it.
    logit_scale: float = 100.0

    def validate(self) -> None:
        if self.mode not in ("clip-learned", "clip-pretrained"):
            raise ValueError(f"prior.mode must be 'clip-learned' or 'clip-pretrained', got {self.mode!r}")
        if self.mode == "clip-pretrained" and not self.clip_weights:
            raise ValueError("prior.mode 'clip-pretrained' needs prior.clip_weights (a local file path)")
        if len(self.prompts) < 2:
            raise ValueError("prior.prompts needs at least two prompts")
        if not self.grids or any(g < 1 for g in self.grids):
            raise ValueError(f"prior.grids must be positive integers, got {self.grids}")


@dataclass
class ModelConfig:
    """DAP-LED network hyper-parameters."""

    variant: str = "tiny"
    width: int = 16
    blocks: tuple[int, int, int, int] = (1, 1, 1, 2)
    heads: tuple[int, int, int, int] = (1, 1, 2, 4)
    refinement_blocks: int = 0
    ffn_expansion: float = 2.0
    # Block type per level (encoder and decoder of levels 0-2, the latent at 3; refinement as level
    # 0): "attention" (Restormer transformer block / CeTB) or "conv" (gated depth-wise convolutions).
    block_kinds: tuple[str, str, str, str] = ("attention", "attention", "attention", "attention")
    # Pixel-unshuffle factor before the first level (1 = Restormer; 2 halves the working resolution).
    stem_unshuffle: int = 2
    use_prior: bool = True
    # A learned gate on the residual: sigmoid(1x1 conv of the latent), upsampled to the output.
    # Frames (or regions) that need no help can switch the correction off as a whole.
    residual_gate: bool = False
    # Noise-level conditioning: the frame's own noise level and brightness per level
    # (model/conditioning.py), added to each encoder level's input through a zero-initialised conv.
    noise_conditioning: bool = False
    # Wide context: a k x k depth-wise block (0 = off) after the encoders of levels 1 and 2 and before
    # the latent, so the low-resolution levels span a long blur (k=7: 56 px at level 2 with stem 2).
    context_kernel: int = 0
    prior: PriorConfig = field(default_factory=PriorConfig)

    @staticmethod
    def from_variant(name: str, **overrides: Any) -> "ModelConfig":
        if name not in VARIANTS:
            raise ValueError(f"unknown model variant {name!r}; known: {sorted(VARIANTS)}")
        cfg = replace(VARIANTS[name], prior=replace(VARIANTS[name].prior))
        return replace(cfg, **overrides) if overrides else cfg

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blocks"] = list(self.blocks)
        d["heads"] = list(self.heads)
        d["block_kinds"] = list(self.block_kinds)
        d["prior"]["prompts"] = list(self.prior.prompts)
        d["prior"]["grids"] = list(self.prior.grids)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ModelConfig":
        """A variant's settings (`variant`, default tiny) with the other keys of `d` replaced."""
        d = dict(d)
        base = ModelConfig.from_variant(d.pop("variant")) if "variant" in d else ModelConfig()
        cfg = dataclass_from_mapping(ModelConfig, d, "model", base=base)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.stem_unshuffle not in (1, 2, 4):
            raise ValueError(f"model.stem_unshuffle must be 1, 2 or 4, got {self.stem_unshuffle}")
        if len(self.blocks) != 4 or len(self.heads) != 4 or len(self.block_kinds) != 4:
            raise ValueError("model.blocks, model.heads and model.block_kinds need 4 entries (one per level)")
        if self.context_kernel and (self.context_kernel < 3 or self.context_kernel % 2 == 0):
            raise ValueError(f"model.context_kernel must be 0 or an odd size >= 3, got {self.context_kernel}")
        if any(n < 0 for n in self.blocks):
            raise ValueError(f"model.blocks entries must be >= 0, got {list(self.blocks)}")
        bad = [k for k in self.block_kinds if k not in ("attention", "conv")]
        if bad:
            raise ValueError(f"model.block_kinds entries must be 'attention' or 'conv', got {bad}")
        for level, h in enumerate(self.heads):
            if (self.width * 2**level) % h:
                raise ValueError(f"level {level} width {self.width * 2**level} not divisible by {h} heads")
        if self.use_prior:
            self.prior.validate()


# Named configurations. `tiny` is the dataclass defaults (ModelConfig() == VARIANTS["tiny"], tested);
# `base` is Restormer size.
VARIANTS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    # Real time on 2 CPU cores: tiny's body at a quarter of the resolution (stem unshuffle 4),
    # gated; fine-tuned from a tiny checkpoint (the stem is refolded, model/stem_transfer.py).
    "tiny-rt": ModelConfig(variant="tiny-rt", stem_unshuffle=4, residual_gate=True),
    "small": ModelConfig(variant="small", width=24, blocks=(2, 3, 3, 4), heads=(1, 2, 4, 8),
                         refinement_blocks=2, ffn_expansion=2.66, stem_unshuffle=1,
                         prior=PriorConfig(grids=(1, 2, 4), feature_channels=24)),
    "base": ModelConfig(variant="base", width=48, blocks=(4, 6, 6, 8), heads=(1, 2, 4, 8),
                        refinement_blocks=4, ffn_expansion=2.66, stem_unshuffle=1,
                        prior=PriorConfig(grids=(1, 2, 4), feature_channels=32)),
}
