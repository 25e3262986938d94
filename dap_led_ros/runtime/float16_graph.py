"""An exported float32 ONNX graph rewritten as a mixed-precision float16 graph (onnx only, no torch).

Every float32 tensor becomes float16 except in float32 islands: nodes whose op type is in
`keep_ops` (normalisations, reductions, softmax, powers, square roots, exponentials) or whose
name contains one of `keep_name_patterns` (the backbone's channel LayerNorms and CLIP's
LayerNorms, which the exporter writes as plain element-wise ops under those names). Casts are
inserted where a tensor crosses an island's border. The graph's inputs and outputs stay float32,
so every backend feeds and reads it as it does the float32 graph; TensorRT builds it as a strongly
typed network, whose layer precisions are the graph's own.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dap_led_ros.runtime.onnx_files import DEFAULT_FP32_NAME_PATTERNS

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = float(np.finfo(np.float16).max)

# ONNX op types kept in float32: sums over many values, and functions whose range or slope
# float16 cannot hold (x^2 of activations, exp).
DEFAULT_FP32_OPS: tuple[str, ...] = (
    "ReduceMean", "ReduceSum", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp", "Softmax", "LogSoftmax",
    "LayerNormalization", "InstanceNormalization", "GroupNormalization", "Pow", "Sqrt", "Exp")
# Inputs whose type the op fixes to float32 whatever the data's type (Resize's roi and scales).
_FLOAT32_INPUTS = {"Resize": (1, 2), "Upsample": (1,)}
# Ops that take any input type: no cast is inserted in front of them.
_ANY_INPUT_OPS = {"Shape", "Size", "Cast", "CastLike"}
# Ops whose float output is a constant in an attribute.
_CONSTANT_OPS = {"Constant", "ConstantOfShape"}


class Float16Error(ValueError):
    """The graph cannot be converted (control flow, missing type information)."""


@dataclass(frozen=True)
class Float16Report:
    """What the conversion did."""

    nodes_fp16: int
    nodes_fp32: int
    casts_inserted: int


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*g.value_info, *g.input, *g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    return types


FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)


def _half(t: TensorProto) -> TensorProto:
    """A float32 tensor as float16, clipped to float16's range (no inf from large constants); a
    non-zero value below float16's range keeps its sign at the smallest subnormal instead of
    becoming 0, so an epsilon (a Clip's floor before a division) still keeps the result finite."""
    src = numpy_helper.to_array(t)
    arr = np.asarray(np.clip(src, -FP16_MAX, FP16_MAX), dtype=np.float16)
    flushed = (arr == 0) & (src != 0)
    arr[flushed] = (np.sign(src[flushed]) * FP16_TINY).astype(np.float16)
    return numpy_helper.from_array(arr, t.name)


def convert_to_float16(model: onnx.ModelProto, keep_ops: Iterable[str] = DEFAULT_FP32_OPS,
                       keep_name_patterns: Iterable[str] = DEFAULT_FP32_NAME_PATTERNS
                       ) -> tuple[onnx.ModelProto, Float16Report]:
    """A float16 copy of `model` with float32 islands; float32 graph inputs and outputs."""
    keep_ops, patterns = set(keep_ops), tuple(keep_name_patterns)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    for node in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise Float16Error(f"node {node.name!r} ({node.op_type}) has a subgraph; control flow is not supported")
    types = _tensor_types(model)
    is_float = lambda name: bool(name) and types.get(name) == FLOAT  # noqa: E731

    def region(node: onnx.NodeProto) -> int:
        return FLOAT if node.op_type in keep_ops or any(p in node.name for p in patterns) else HALF

    # What each node needs of each float input.
    wanted: dict[str, list[int]] = {}
    for node in g.node:
        if node.op_type in _ANY_INPUT_OPS:
            continue
        fixed = _FLOAT32_INPUTS.get(node.op_type, ())
        for i, name in enumerate(node.input):
            if is_float(name):
                wanted.setdefault(name, []).append(FLOAT if i in fixed else region(node))

    # Where each float tensor is produced, and in which type after the conversion.
    home: dict[str, int] = {i.name: FLOAT for i in g.input}
    for init in g.initializer:
        if init.data_type != FLOAT:
            continue
        home[init.name] = FLOAT  # shared by both kinds of node: kept, and cast for the float16 ones
        if wanted.get(init.name) and all(w == HALF for w in wanted[init.name]):
            init.CopyFrom(_half(init))
            home[init.name] = HALF
    for node in g.node:
        outs = [o for o in node.output if is_float(o)]
        if not outs:
            continue
        if node.op_type in _CONSTANT_OPS:
            want = wanted.get(outs[0], [])
            dtype = HALF if want and all(w == HALF for w in want) else FLOAT
            if dtype == HALF:
                for a in node.attribute:
                    if a.name == "value" and a.t.data_type == FLOAT:
                        a.t.CopyFrom(_half(a.t))
        else:
            dtype = region(node)
            if node.op_type == "Cast" and dtype == HALF:
                for a in node.attribute:
                    if a.name == "to":
                        a.i = HALF
        for o in outs:
            home[o] = dtype

    # Graph outputs stay float32: a float16 result is renamed and cast back under its own name.
    renamed = {o.name: o.name + "__fp16" for o in g.output if home.get(o.name) == HALF}
    for node in g.node:
        for seq in (node.input, node.output):
            for i, name in enumerate(seq):
                if name in renamed:
                    seq[i] = renamed[name]
    for old, new in renamed.items():
        home[new] = HALF

    casts: dict[tuple[str, int], str] = {}
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        if node.op_type not in _ANY_INPUT_OPS:
            fixed = _FLOAT32_INPUTS.get(node.op_type, ())
            for i, name in enumerate(node.input):
                if name not in home:
                    continue
                need = FLOAT if i in fixed else region(node)
                if home[name] == need:
                    continue
                key = (name, need)
                if key not in casts:
                    casts[key] = f"{name}__to_{'fp16' if need == HALF else 'fp32'}"
                    nodes.append(helper.make_node("Cast", [name], [casts[key]], to=need, name=casts[key]))
                node.input[i] = casts[key]
        nodes.append(node)
    for old, new in renamed.items():
        nodes.append(helper.make_node("Cast", [new], [old], to=FLOAT, name=old + "__to_fp32"))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]  # stale types; tools re-infer them
    onnx.checker.check_model(model)
    counted = [region(n) for n in nodes if not n.name.endswith(("__to_fp16", "__to_fp32"))]
    return model, Float16Report(nodes_fp16=counted.count(HALF), nodes_fp32=counted.count(FLOAT),
                                casts_inserted=len(casts) + len(renamed))


def graph_precision(model: onnx.ModelProto) -> str:
    """'fp16' when the graph computes in float16 anywhere (float16 weights or casts), else 'fp32'."""
    if any(t.data_type == HALF for t in model.graph.initializer):
        return "fp16"
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == HALF for a in node.attribute):
            return "fp16"
    return "fp32"
