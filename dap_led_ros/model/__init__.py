"""The DAP-LED network, its CLIP prior and its configurations."""
from .config import DEFAULT_PROMPTS, VARIANTS, ModelConfig, PriorConfig
from .dapled import DAPLED, PAD_MULTIPLE, build_model

__all__ = ["DAPLED", "DEFAULT_PROMPTS", "ModelConfig", "PAD_MULTIPLE", "PriorConfig", "VARIANTS", "build_model"]
