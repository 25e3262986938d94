"""The K degradation prompts: CLIP text for the CCM heatmaps and the order of the synthetic labels."""
from __future__ import annotations

DEGRADATION_PROMPTS: tuple[str, ...] = (
    "a photo taken in low light",
    "a blurry photo",
    "a dark and blurry night photo",
    "a clear, well-exposed, sharp photo",
)
LOW_LIGHT, BLURRY, DARK_BLURRY, CLEAR = range(4)
