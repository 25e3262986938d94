"""ONNX export of the whole DAP-LED network, CLIP prior included, and the `export`/`build-engine` commands.

Three graphs are written (the second and third only for models with the CLIP prior):
  X.onnx            image -> restored                      (the whole network)
  X.heatmaps.onnx   image -> heatmap_g1, heatmap_g2, ...   (the CCM alone, for tiling)
  X.prior.onnx      image, prior_g1, ... -> restored       (restoration from given heatmaps)
Batch, height and width are dynamic. The prompt embeddings are constants in the graphs.
"""
from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# Bumped whenever the exported graphs change meaning, so cached exports are redone.
EXPORT_FORMAT = 1
INPUT_NAME = "image"
OUTPUT_NAME = "restored"
DEFAULT_PARITY_SIZES = ((333, 517), (480, 640), (96, 128))  # (H, W); the first is odd and non-square


class ExportError(RuntimeError):
    """The network could not be exported or the export does not match PyTorch."""


@dataclass
class ExportedModel:
    """Paths of one export: the whole network and, with the prior, the two tiling graphs."""

    restore: Path
    heatmaps: Path | None = None
    restore_with_prior: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def prior_graph_paths(onnx_path: str | Path) -> tuple[Path, Path]:
    """(heatmaps graph, restore-with-prior graph) beside the whole-network graph `X.onnx`."""
    p = Path(onnx_path)
    stem = p.with_suffix("")
    return stem.with_name(stem.name + ".heatmaps.onnx"), stem.with_name(stem.name + ".prior.onnx")


class _Heatmaps(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.heatmaps(x))


class _RestoreWithPrior(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *maps: torch.Tensor) -> torch.Tensor:
        return self.model(x, prior_maps=list(maps))


def trace_example(model: nn.Module, batch: int = 1) -> torch.Tensor:
    """An input whose sides are not multiples of the pad multiple, so the traced graph pads.

    The padding amounts are computed from the runtime shape in the graph; tracing with an
    unpadded size would drop the pad step for every size.
    """
    m = int(getattr(model, "pad_multiple", 8))
    return torch.rand(batch, 3, 3 * m + 5, 4 * m + 3)


def _export_graph(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict[str, dict[int, str]], opset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Tracer warnings name Python-side branches (pad mode, interpolate checks); the dynamic
        # parts (pad amounts, level sizes, crops) are traced from tensor shapes and checked below.
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, do_constant_folding=True)


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for k, v in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def model_metadata(model: nn.Module, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Key facts about the network stored in every exported graph (`dap_led.*` keys)."""
    m = int(getattr(model, "pad_multiple", 8))
    meta = {
        "dap_led.export_format": str(EXPORT_FORMAT),
        "dap_led.pad_multiple": str(m),
        # Reflection padding needs the pad smaller than the side: sides >= pad_multiple are safe.
        "dap_led.min_side": str(m),
        "dap_led.config": json.dumps(model.cfg.to_dict()) if hasattr(model, "cfg") else "{}",
    }
    if getattr(model, "prior", None) is not None:
        meta["dap_led.prompts"] = json.dumps(list(model.prior.prompts))
        meta["dap_led.grids"] = json.dumps(list(model.prior.grids))
    meta.update(extra or {})
    return meta


def export_model(model: nn.Module, output: str | Path, opset: int = DEFAULT_OPSET, prior_graphs: bool = True,
                 metadata: dict[str, str] | None = None) -> ExportedModel:
    """Export `model` (a DAPLED) to `output` (X.onnx) and, with the prior, the two tiling graphs."""
    if opset < 17:
        raise ExportError(f"opset {opset} is too old: LayerNormalization in the CLIP encoder needs opset >= 17")
    output = Path(output)
    if output.suffix != ".onnx":
        raise ExportError(f"the output must be a .onnx file, got {output}")
    model = model.float().eval().cpu()
    meta = model_metadata(model, metadata)
    x = trace_example(model)
    image_axes = {0: "batch", 2: "height", 3: "width"}
    _export_graph(model, (x,), output, [INPUT_NAME], [OUTPUT_NAME],
                  {INPUT_NAME: image_axes, OUTPUT_NAME: image_axes}, opset)
    _add_metadata(output, meta)
    result = ExportedModel(restore=output, metadata=meta)
    if not prior_graphs or getattr(model, "prior", None) is None:
        return result
    heat_path, prior_path = prior_graph_paths(output)
    grids = list(model.prior.grids)
    map_names = [f"heatmap_g{g}" for g in grids]
    _export_graph(_Heatmaps(model), (x,), heat_path, [INPUT_NAME], map_names,
                  {INPUT_NAME: image_axes, **{n: {0: "batch"} for n in map_names}}, opset)
    _add_metadata(heat_path, meta)
    with torch.no_grad():
        maps = model.heatmaps(x)
    # Dense per-pixel maps (as the tiler passes them), any size per input.
    dense = tuple(torch.nn.functional.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
                  for m in maps)
    prior_names = [f"prior_g{g}" for g in grids]
    _export_graph(_RestoreWithPrior(model), (x, *dense), prior_path, [INPUT_NAME, *prior_names], [OUTPUT_NAME],
                  {INPUT_NAME: image_axes, OUTPUT_NAME: image_axes,
                   **{n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in prior_names}}, opset)
    _add_metadata(prior_path, meta)
    result.heatmaps, result.restore_with_prior = heat_path, prior_path
    return result


def read_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The `dap_led.*` metadata of an exported graph (empty for foreign ONNX files)."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def smooth_test_image(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A night-like test input: smooth random structure plus noise, float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((batch, 3, max(2, height // 16), max(2, width // 16))).astype(np.float32)
    x = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(height, width), mode="bilinear",
                                        align_corners=False).numpy()
    x = 0.3 * x + 0.03 * rng.random(x.shape, dtype=np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def parity(model: nn.Module, exported: ExportedModel, sizes: tuple[tuple[int, int], ...] = DEFAULT_PARITY_SIZES,
           threads: int = 0) -> list[dict[str, object]]:
    """Max abs difference between ONNX Runtime (CPU, FP32) and PyTorch for each graph and size."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sessions = {"restore": ort.InferenceSession(str(exported.restore), opts, providers=["CPUExecutionProvider"])}
    if exported.heatmaps is not None and exported.restore_with_prior is not None:
        sessions["heatmaps"] = ort.InferenceSession(str(exported.heatmaps), opts,
                                                    providers=["CPUExecutionProvider"])
        sessions["restore_with_prior"] = ort.InferenceSession(str(exported.restore_with_prior), opts,
                                                              providers=["CPUExecutionProvider"])
    rows: list[dict[str, object]] = []
    model = model.float().eval().cpu()
    for i, (h, w) in enumerate(sizes):
        x = smooth_test_image(1, h, w, seed=i)
        xt = torch.from_numpy(x)
        with torch.no_grad():
            ref, ref_maps = model.forward_with_heatmaps(xt)
        out = sessions["restore"].run(None, {INPUT_NAME: x})[0]
        rows.append({"graph": "restore", "size": f"{w}x{h}", "max_abs": float(np.abs(out - ref.numpy()).max())})
        if "heatmaps" in sessions:
            maps = sessions["heatmaps"].run(None, {INPUT_NAME: x})
            err = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(maps, ref_maps))
            rows.append({"graph": "heatmaps", "size": f"{w}x{h}", "max_abs": err})
            # A tile-like crop with given dense heatmaps, as the tiler runs it.
            th, tw = max(model.pad_multiple, h // 2 + 3), max(model.pad_multiple, w // 2 + 5)
            tile = xt[..., :th, :tw]
            dense = [torch.nn.functional.interpolate(m, size=(th, tw), mode="bilinear", align_corners=False)
                     for m in ref_maps]
            with torch.no_grad():
                ref_t = model(tile, prior_maps=dense).numpy()
            feeds = {INPUT_NAME: tile.numpy(), **{f"prior_g{g}": d.numpy() for g, d in zip(model.prior.grids, dense)}}
            out_t = sessions["restore_with_prior"].run(None, feeds)[0]
            rows.append({"graph": "restore_with_prior", "size": f"{tw}x{th}",
                         "max_abs": float(np.abs(out_t - ref_t).max())})
    return rows
