"""The DAP-LED network, its CLIP prior and its configurations.

The configuration classes import without torch; the network loads torch on first use.
"""
from __future__ import annotations

from typing import Any

from dap_led_ros.model.config import DEFAULT_PROMPTS, VARIANTS, ModelConfig, PriorConfig

_LAZY = {"DAPLED", "PAD_MULTIPLE", "build_model"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from dap_led_ros.model import dapled

        return getattr(dapled, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DAPLED", "DEFAULT_PROMPTS", "ModelConfig", "PAD_MULTIPLE", "PriorConfig", "VARIANTS", "build_model"]
