"""CCM: CLIP-guided cross-fusion module.

Embeds the frame as 1x1, 2x2, 4x4 grids of crops with a CLIP image encoder, compares every crop
embedding with K degradation prompt embeddings and turns the similarities into K softmax heatmaps
per grid. The heatmaps are fused into one degradation feature map per network level.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dap_led_ros.imaging.resampling import interp_matrix
from dap_led_ros.model.config import TINY_CLIP_ARCH, PriorConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_clip(arch: str) -> nn.Module:
    """An open_clip CLIP model with random weights (no download)."""
    import open_clip

    if arch == "dapled-tiny":
        from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

        return CLIP(embed_dim=TINY_CLIP_ARCH["embed_dim"],
                    vision_cfg=CLIPVisionCfg(**TINY_CLIP_ARCH["vision_cfg"]),
                    text_cfg=CLIPTextCfg(**TINY_CLIP_ARCH["text_cfg"]))
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown CLIP architecture {arch!r}: use 'dapled-tiny' or an open_clip model name")
    return open_clip.create_model(arch, pretrained=None)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file or a torch state dict, never unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _visual_image_size(visual: nn.Module) -> int:
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


class CLIPPrior(nn.Module):
    """The CCM. `forward(x)` returns one B x K x g x g heatmap per grid in `cfg.grids`."""

    def __init__(self, cfg: PriorConfig, level_channels: list[int], load_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.prompts = list(cfg.prompts)
        self.clear_index = len(self.prompts) - 1
        self.grids = tuple(cfg.grids)
        clip = build_clip(cfg.clip_model)
        embed_dim = int(clip.text_projection.shape[1]) if getattr(clip, "text_projection", None) is not None \
            else int(clip.visual.output_dim)
        k = len(self.prompts)
        if cfg.mode == "clip-pretrained":
            if load_weights:
                missing, _ = clip.load_state_dict(load_state_dict_file(cfg.clip_weights), strict=False)
                visual_missing = [m for m in missing if m.startswith("visual.")]
                if visual_missing:
                    raise ValueError(f"CLIP weights {cfg.clip_weights} lack {len(visual_missing)} "
                                     f"vision tensors, e.g. {visual_missing[:3]}")
                text = self._embed_prompts(clip, cfg.clip_model, self.prompts)
            else:  # filled from a DAP-LED checkpoint
                text = torch.zeros(k, embed_dim)
            self.register_buffer("text_embeddings", text)
            self.register_buffer("log_logit_scale", torch.tensor(float(cfg.logit_scale)).log())
        else:
            self.text_embeddings = nn.Parameter(F.normalize(torch.randn(k, embed_dim), dim=-1))
            self.log_logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale)).log())
        self.visual = clip.visual
        if cfg.mode == "clip-pretrained":
            self.visual.requires_grad_(False)
        self.image_size = _visual_image_size(self.visual)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        in_ch = k * len(self.grids)
        self.fusion = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_ch, cfg.feature_channels, 3, padding=1), nn.GELU(),
                          nn.Conv2d(cfg.feature_channels, cfg.feature_channels, 1))
            for _ in level_channels)

    @staticmethod
    @torch.no_grad()
    def _embed_prompts(clip: nn.Module, arch: str, prompts: list[str]) -> torch.Tensor:
        import open_clip

        tokenizer = open_clip.get_tokenizer("ViT-B-32" if arch == "dapled-tiny" else arch)
        clip.eval()
        return F.normalize(clip.encode_text(tokenizer(prompts)).float(), dim=-1)

    def _embed(self, crops: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual((crops - self.mean) / self.std), dim=-1)

    def _prompt_matrix(self) -> torch.Tensor:
        return F.normalize(self.text_embeddings, dim=-1)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised CLIP embedding of each whole frame (B x D)."""
        s = self.image_size
        return self._embed(F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False))

    def prompt_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-frame logits against the K prompts (B x K)."""
        return self.log_logit_scale.exp() * self.encode_image(x) @ self._prompt_matrix().t()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b = x.shape[0]
        s = self.image_size
        crops = []
        for g in self.grids:
            r = F.interpolate(x, size=(g * s, g * s), mode="bilinear", align_corners=False)
            crops.append(r.reshape(b, 3, g, s, g, s).permute(0, 2, 4, 1, 3, 5).reshape(b * g * g, 3, s, s))
        emb = self._embed(torch.cat(crops, dim=0))
        logits = self.log_logit_scale.exp() * emb @ self._prompt_matrix().t()
        heatmaps = []
        start = 0
        k = logits.shape[1]
        for g in self.grids:
            n = b * g * g
            part = logits[start:start + n].reshape(b, g, g, k).permute(0, 3, 1, 2)
            heatmaps.append(torch.softmax(part, dim=1))
            start += n
        return heatmaps

    def level_features(self, maps: list[torch.Tensor], sizes: list[tuple[int, int]],
                       regions: list[tuple[int, int, int, int]] | None = None) -> list[torch.Tensor]:
        """Fuse heatmaps (or a dense crop of them) into one feature map per level size.

        With `regions` ((y0, y1, x0, x1) per level), each level gets only that window of the
        maps resampled to the level's `size`: a tile's exact share of whole-frame features.
        """
        out = []
        for i, (fuse, size) in enumerate(zip(self.fusion, sizes)):
            if regions is None:
                resampled = [F.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps]
            else:
                resampled = [_resample_window(m, size, regions[i]) for m in maps]
            out.append(fuse(torch.cat(resampled, dim=1)))
        return out


def _resample_window(maps: torch.Tensor, size: tuple[int, int], region: tuple[int, int, int, int]) -> torch.Tensor:
    """Window `region` of `maps` bilinearly resized to `size` (as F.interpolate, align_corners=False)."""
    y0, y1, x0, x1 = region
    ry = torch.from_numpy(interp_matrix(y0, y1 - y0, size[0], maps.shape[-2])).to(maps)
    rx = torch.from_numpy(interp_matrix(x0, x1 - x0, size[1], maps.shape[-1])).to(maps)
    return torch.einsum("yi,bkij,xj->bkyx", ry, maps, rx)
