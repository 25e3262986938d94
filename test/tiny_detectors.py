"""Small ONNX detectors in the layouts people export, built with onnx.helper for the tests.

Each graph really runs in ONNX Runtime: its output is a fixed raw tensor plus 0 x the mean of the
input image, so the decoder sees exactly the raw numbers the test chose, through a real session.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _fixed_outputs(path: Path, image_shape: list, image_type: int, outputs: dict[str, np.ndarray],
                   metadata: dict[str, str] | None = None) -> Path:
    nodes = [helper.make_node("Cast", ["images"], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["as_float"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    graph_outputs = []
    for name, value in outputs.items():
        value = np.asarray(value, np.float32)
        inits.append(numpy_helper.from_array(value, f"{name}_raw"))
        nodes.append(helper.make_node("Add", [f"{name}_raw", "nothing"], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, "tiny_detector",
                              [helper.make_tensor_value_info("images", image_type, image_shape)],
                              graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def yolo_model(path: Path, raw: np.ndarray, size: tuple[int, int] = (64, 64),
               names: dict[int, str] | None = None, end2end: bool = False) -> Path:
    """A raw Ultralytics-style output (v8 [1, 4+C, A], v5 [1, A, 5+C] or end-to-end [1, N, 6])."""
    w, h = size
    meta = {"names": repr(names)} if names is not None else {}  # Ultralytics writes str(dict)
    if end2end:
        meta["end2end"] = "True"
    return _fixed_outputs(path, [1, 3, h, w], TensorProto.FLOAT, {"output0": raw}, meta)


def boxes_scores_labels_model(path: Path, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                              size: tuple[int, int] = (64, 64)) -> Path:
    w, h = size
    return _fixed_outputs(path, [1, 3, h, w], TensorProto.FLOAT,
                          {"boxes": boxes, "scores": scores, "labels": labels})
