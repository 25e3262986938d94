"""`dap-led model-info`: parameters and GFLOPs of each named configuration."""
from __future__ import annotations

from dap_led_ros.model.config import ModelConfig


def complexity(cfg: ModelConfig, height: int = 480, width: int = 640) -> dict[str, float]:
    """Parameter counts (millions) and forward GFLOPs (multiply-add = 2 FLOPs) at H x W."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dap_led_ros.model import build_model

    model = build_model(cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    clip = sum(p.numel() for p in model.prior.visual.parameters()) if model.prior is not None else 0
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.rand(1, 3, height, width))
    return {"params_m": params / 1e6, "clip_params_m": clip / 1e6, "gflops": counter.get_total_flops() / 1e9}
