"""A tiny ONNX "depth" model for tests (no depth weights are available offline).

Two 1x1 convolutions with fixed weights, so the prediction is known exactly: the mean of the
three normalised input channels, optionally average-pooled 2x2 (half resolution, so callers
must resize it back to the frame).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_tiny_depth_model(path: Path, static_size: tuple[int, int] | None = None,
                           downsample: bool = True, output_rank: int = 3) -> Path:
    """Write the model to path and return it.

    static_size: (height, width) of a fixed input, else symbolic H and W.
    output_rank: 3 (1 x H x W, like Depth Anything V2) or 4 (1 x 1 x H x W).
    """
    h, w = static_size if static_size else ("H", "W")
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, h, w])
    out_h, out_w = (h // 2, w // 2) if static_size and downsample else ("h", "w")
    out_shape = [1, out_h, out_w] if output_rank == 3 else [1, 1, out_h, out_w]
    depth = helper.make_tensor_value_info("depth", TensorProto.FLOAT, out_shape)

    # conv1: 3 -> 2 channels, channel 0 = mean of RGB, channel 1 = 0; relu; conv2 keeps channel 0.
    w1 = np.zeros((2, 3, 1, 1), np.float32)
    w1[0, :, 0, 0] = 1.0 / 3.0
    w2 = np.array([1.0, 0.0], np.float32).reshape(1, 2, 1, 1)
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"]),
    ]
    last = "c2"
    if downsample:
        nodes.append(helper.make_node("AveragePool", [last], ["pooled"], kernel_shape=[2, 2],
                                      strides=[2, 2]))
        last = "pooled"
    if output_rank == 3:
        nodes.append(helper.make_node("Squeeze", [last, "axis1"], ["depth"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["depth"]))
    graph = helper.make_graph(
        nodes, "tiny_depth", [image], [depth],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
                     numpy_helper.from_array(np.array([1], np.int64), "axis1")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="dap_led_ros tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
