"""The exported graph files' names and metadata, readable without torch (runtime-only installs)."""
from __future__ import annotations

from pathlib import Path

DEFAULT_OPSET = 17
# Bumped whenever the exported graphs change meaning, so cached exports are redone.
EXPORT_FORMAT = 1
INPUT_NAME = "image"
OUTPUT_NAME = "restored"
PRECISIONS = ("fp32", "fp16")
# ONNX node-name fragments kept in float32 in fp16 builds: the backbone's channel LayerNorms (mean,
# x - mean, variance, rsqrt: plain element-wise ops after export) and CLIP's LayerNorms.
DEFAULT_FP32_NAME_PATTERNS: tuple[str, ...] = ("/norm1/", "/norm2/", "/ln_")


def prior_graph_paths(onnx_path: str | Path) -> tuple[Path, Path]:
    """(heatmaps graph, restore-with-prior graph) beside the whole-network graph `X.onnx`."""
    p = Path(onnx_path)
    stem = p.with_suffix("")
    return stem.with_name(stem.name + ".heatmaps.onnx"), stem.with_name(stem.name + ".prior.onnx")


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The `dap_led.*` metadata of an exported graph (empty for foreign ONNX files)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}
