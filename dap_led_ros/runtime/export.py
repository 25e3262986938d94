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

from dap_led_ros.runtime.backends.verify import psnr, smooth_test_image
from dap_led_ros.runtime.onnx_files import (  # noqa: F401  (re-exported: the export's file names)
    DEFAULT_OPSET,
    EXPORT_FORMAT,
    INPUT_NAME,
    OUTPUT_NAME,
    PRECISIONS,
    prior_graph_paths,
    read_metadata,
)

log = logging.getLogger(__name__)

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


def _finish_graph(path: Path, metadata: dict[str, str], precision: str) -> None:
    """Store the metadata in an exported graph, made mixed float16 first when asked, and check it."""
    import onnx

    proto = onnx.load(str(path))
    if precision == "fp16":
        from dap_led_ros.runtime.float16_graph import convert_to_float16

        proto, report = convert_to_float16(proto)
        log.info("%s: %d nodes in float16, %d kept in float32, %d casts", path.name, report.nodes_fp16,
                 report.nodes_fp32, report.casts_inserted)
    del proto.metadata_props[:]
    for k, v in {**metadata, "dap_led.precision": precision}.items():
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
                 metadata: dict[str, str] | None = None, precision: str = "fp32") -> ExportedModel:
    """Export `model` (a DAPLED) to `output` (X.onnx) and, with the prior, the two tiling graphs.

    `precision` fp16 writes mixed-precision graphs (runtime/float16_graph.py): float16 with
    float32 normalisations, reductions and softmax; inputs and outputs stay float32.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
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
    _finish_graph(output, meta, precision)
    result = ExportedModel(restore=output, metadata=meta)
    if not prior_graphs or getattr(model, "prior", None) is None:
        return result
    heat_path, prior_path = prior_graph_paths(output)
    grids = list(model.prior.grids)
    map_names = [f"heatmap_g{g}" for g in grids]
    _export_graph(_Heatmaps(model), (x,), heat_path, [INPUT_NAME], map_names,
                  {INPUT_NAME: image_axes, **{n: {0: "batch"} for n in map_names}}, opset)
    _finish_graph(heat_path, meta, precision)
    with torch.no_grad():
        maps = model.heatmaps(x)
    # Dense per-pixel maps (as the tiler passes them), any size per input.
    dense = tuple(torch.nn.functional.interpolate(m, size=x.shape[-2:], mode="bilinear", align_corners=False)
                  for m in maps)
    prior_names = [f"prior_g{g}" for g in grids]
    _export_graph(_RestoreWithPrior(model), (x, *dense), prior_path, [INPUT_NAME, *prior_names], [OUTPUT_NAME],
                  {INPUT_NAME: image_axes, OUTPUT_NAME: image_axes,
                   **{n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in prior_names}}, opset)
    _finish_graph(prior_path, meta, precision)
    result.heatmaps, result.restore_with_prior = heat_path, prior_path
    return result


def parity(model: nn.Module, exported: ExportedModel, sizes: tuple[tuple[int, int], ...] = DEFAULT_PARITY_SIZES,
           threads: int = 0) -> list[dict[str, object]]:
    """Max abs difference and PSNR between ONNX Runtime (CPU) and PyTorch (float32) for each graph
    and size; ONNX Runtime runs float16 graphs on the CPU too."""
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
        rows.append({"graph": "restore", "size": f"{w}x{h}", "max_abs": float(np.abs(out - ref.numpy()).max()),
                     "psnr_db": psnr(out, ref.numpy())})
        if "heatmaps" in sessions:
            maps = sessions["heatmaps"].run(None, {INPUT_NAME: x})
            err = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(maps, ref_maps))
            rows.append({"graph": "heatmaps", "size": f"{w}x{h}", "max_abs": err,
                         "psnr_db": min(psnr(a, b.numpy()) for a, b in zip(maps, ref_maps))})
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
                         "max_abs": float(np.abs(out_t - ref_t).max()), "psnr_db": psnr(out_t, ref_t)})
    return rows
