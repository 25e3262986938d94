"""A loss on a frozen object detector's features: restore what detection needs, not only pixels.

The detector is an ONNX graph (the shipped SSD-MobileNet-v2, or the user's): the part from its
network input to a few backbone feature maps is cut out of the graph (`onnx.utils.Extractor`), so
pre- and post-processing (resize loops, NMS) stay out, and converted to torch with `onnx2torch`;
its parameters are frozen. Both the restored and the clean crop go through it at the scale the
detector sees a frame (`detector_scale`: SSD resizes a 640-wide frame to 300 px, ~0.5), and the
term is the mean over the feature maps of mean |F(restored) - F(clean)| / mean |F(clean)|, so each
map counts alike whatever its magnitude. The clean crop's features carry no gradient; the restored
crop's carry it back to the restoration network only.

Detector layouts (`LAYOUTS`): where the backbone starts and how its input is scaled. For another
graph give `detector_input` (a tensor name), `detector_features` (tensor names) and
`detector_range` (the input range the graph expects for a [0, 1] image).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RANGES = ("0-1", "-1-1", "0-255")


@dataclass(frozen=True)
class BackboneLayout:
    input: str                  # the tensor the backbone starts from (NCHW float RGB)
    features: tuple[str, ...]   # feature maps the loss compares (NCHW)
    input_range: str            # what a [0, 1] image becomes at `input` (RANGES)


# tf-ssd (the shipped detector): MobileNet-v2 after the graph's own resize and x * 2/255 - 1;
# feature maps at strides 8, 16 (the first SSD head's input) and 32.
LAYOUTS: dict[str, BackboneLayout] = {
    "tf-ssd": BackboneLayout(
        input="Preprocessor/sub:0",
        features=("FeatureExtractor/MobilenetV2/expanded_conv_5/expand/Relu6:0",
                  "FeatureExtractor/MobilenetV2/expanded_conv_13/expand/Relu6:0",
                  "FeatureExtractor/MobilenetV2/Conv_1/Relu6:0"),
        input_range="-1-1"),
}


class DetectorLossError(ValueError):
    """The detector graph cannot give the asked backbone (file, tensor names, layout)."""


def _layout_of(model: object) -> str:
    for prop in getattr(model, "metadata_props", []):
        if prop.key == "dap_led_layout":
            return prop.value
    return ""


def backbone_layout(model: object, input_name: str = "", features: tuple[str, ...] = (),
                    input_range: str = "") -> BackboneLayout:
    """The layout asked for, filled in from the graph's `dap_led_layout` metadata where not given."""
    known = LAYOUTS.get(_layout_of(model))
    if not features and known is None:
        raise DetectorLossError("the detector's layout is not one of "
                                f"{sorted(LAYOUTS)} (metadata dap_led_layout): set detector_features "
                                "(and detector_input, detector_range)")
    graph_inputs = [i.name for i in model.graph.input]  # type: ignore[attr-defined]
    layout = BackboneLayout(
        input=input_name or (known.input if known and not features else graph_inputs[0]),
        features=tuple(features) or known.features,  # type: ignore[union-attr]
        input_range=input_range or (known.input_range if known else "0-1"))
    if layout.input_range not in RANGES:
        raise DetectorLossError(f"detector_range must be one of {RANGES}, got {layout.input_range!r}")
    return layout


def load_detector(path: Path) -> object:
    """The detector graph (onnx.ModelProto) with its tensors' shapes inferred, read once."""
    import onnx

    if not path.is_file():
        raise DetectorLossError(f"detector {path} not found")
    try:
        return onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    except OSError as exc:
        raise DetectorLossError(f"cannot read the detector {path}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise DetectorLossError(f"{path} is not an ONNX model: {type(exc).__name__}: {exc}") from exc


def extract_backbone(model: object, layout: BackboneLayout, path: Path) -> nn.Module:
    """The graph (`load_detector(path)`) from `layout.input` to `layout.features` as a frozen torch
    module (eval mode)."""
    import onnx
    from onnx2torch import convert

    known = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    missing = [name for name in (layout.input, *layout.features) if name not in known]
    if missing:
        raise DetectorLossError(f"{path} has no tensor {', '.join(repr(m) for m in missing)}")
    try:
        sub = onnx.utils.Extractor(model).extract_model([layout.input], list(layout.features))
        module = convert(sub)
    except Exception as exc:  # noqa: BLE001 - an op onnx2torch cannot convert, a cut it cannot make
        raise DetectorLossError(f"cannot convert the backbone of {path} from {layout.input!r} to "
                                f"{list(layout.features)}: {type(exc).__name__}: {exc}") from exc
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class DetectorFeatureLoss(nn.Module):
    """mean over feature maps of mean |F(pred) - F(target)| / mean |F(target)| (see the module doc)."""

    def __init__(self, path: Path, scale: float = 0.5, input_name: str = "",
                 features: tuple[str, ...] = (), input_range: str = "") -> None:
        super().__init__()
        if not 0.05 <= scale <= 4.0:
            raise DetectorLossError(f"detector_scale must be in [0.05, 4], got {scale}")
        model = load_detector(path)
        self.layout = backbone_layout(model, input_name, tuple(features), input_range)
        self.backbone = extract_backbone(model, self.layout, path)
        self.scale = scale

    def train(self, mode: bool = True) -> "DetectorFeatureLoss":
        super().train(mode)
        self.backbone.eval()  # frozen: its batch statistics, dropout (if any) never change
        return self

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.scale != 1.0:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False,
                              antialias=self.scale < 1.0)
        r = self.layout.input_range
        x = x * 2.0 - 1.0 if r == "-1-1" else x * 255.0 if r == "0-255" else x
        out = self.backbone(x)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = self._features(target.float())
        got = self._features(pred.float())
        terms = [(g - r).abs().mean() / r.abs().mean().clamp_min(1e-6) for g, r in zip(got, ref)]
        return torch.stack(terms).mean()
