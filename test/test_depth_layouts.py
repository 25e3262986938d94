"""Depth model layouts (presets, NHWC input, float16) and scale-and-shift depth agreement, with real
ONNX Runtime sessions on tiny graphs built here."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dap_led_ros.perception.depth import (
    DEPTH_PRESETS,
    DepthEstimator,
    DepthModelError,
    depth_config_for_preset,
)
from dap_led_ros.perception.downstream import depth_agreement
from tiny_depth_model import build_tiny_depth_model


def _nhwc_model(path, size=(24, 32), elem=TensorProto.FLOAT):
    """1 x H x W x 3 input -> 1 x H x W output: the mean of the three (normalised) channels."""
    h, w = size
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["m"], keepdims=0)]
    inits = [numpy_helper.from_array(np.array([3], np.int64), "axes")]
    if elem == TensorProto.FLOAT16:
        nodes.append(helper.make_node("Cast", ["m"], ["depth"], to=TensorProto.FLOAT))
    else:
        nodes.append(helper.make_node("Identity", ["m"], ["depth"]))
    graph = helper.make_graph(nodes, "nhwc_depth", [helper.make_tensor_value_info("image", elem, [1, h, w, 3])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("preset", sorted(DEPTH_PRESETS))
def test_presets_set_normalisation_and_the_size_of_a_dynamic_model(tmp_path, preset):
    model = build_tiny_depth_model(tmp_path / "dyn.onnx", downsample=False, output_rank=4)
    est = DepthEstimator(depth_config_for_preset(preset, str(model)))
    p = DEPTH_PRESETS[preset]
    assert (est.input_width, est.input_height) == (p["size"], p["size"])
    frame = np.full((20, 30, 3), 255, np.uint8)
    # the tiny model outputs the mean of the normalised channels: (1 - mean) / std averaged over RGB
    expected = np.mean((1.0 - np.asarray(p["mean"])) / np.asarray(p["std"]))
    np.testing.assert_allclose(est.estimate(frame), expected, rtol=1e-4)


def test_a_preset_keeps_a_fixed_model_size_and_rejects_unknown_names(tmp_path):
    model = build_tiny_depth_model(tmp_path / "fixed.onnx", static_size=(64, 96))
    est = DepthEstimator(depth_config_for_preset("depth-anything", str(model)))
    assert (est.input_width, est.input_height) == (96, 64)
    with pytest.raises(ValueError, match="unknown depth preset 'zoe'"):
        depth_config_for_preset("zoe", str(model))


@pytest.mark.parametrize("elem", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_nhwc_inputs_as_tflite_converted_midas(tmp_path, elem):
    model = _nhwc_model(tmp_path / "nhwc.onnx", elem=elem)
    est = DepthEstimator(depth_config_for_preset("midas-small", str(model), mean=[0, 0, 0], std=[1, 1, 1]))
    assert (est.input_width, est.input_height) == (32, 24)
    frame = np.zeros((24, 32, 3), np.uint8)
    frame[:, 16:] = (30, 60, 90)
    out = est.estimate(frame)
    assert out.shape == (24, 32)
    np.testing.assert_allclose(out[:, :12], 0.0, atol=1e-3)
    np.testing.assert_allclose(out[:, 20:], 60 / 255, atol=2e-3)


def test_integer_input_is_refused_with_its_type(tmp_path):
    graph = helper.make_graph([helper.make_node("Cast", ["image"], ["depth"], to=TensorProto.FLOAT)], "g",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("depth", TensorProto.FLOAT, [1, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "u8.onnx"))
    with pytest.raises(DepthModelError, match=r"tensor\(uint8\) is not supported"):
        DepthEstimator(depth_config_for_preset("dpt", str(tmp_path / "u8.onnx")))


def test_scale_shift_alignment_forgives_an_affine_disparity_but_median_does_not():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.5, 4.0, size=(40, 50))
    pred = 3.0 * ref + 2.0  # relative disparity: unknown scale and shift
    absrel, delta = depth_agreement(pred, ref, "disparity", align="scale-shift")
    assert absrel < 1e-9 and delta == 1.0
    absrel_m, delta_m = depth_agreement(pred, ref, "disparity", align="median")
    assert absrel_m > 0.05 and delta_m < 1.0
    noisy = pred + rng.normal(0, 1.0, size=pred.shape)
    assert depth_agreement(noisy, ref, "disparity", align="scale-shift")[0] > 0.01
    with pytest.raises(ValueError, match="align must be one of"):
        depth_agreement(pred, ref, align="affine")


def test_depth_node_preset_parameter(tmp_path):
    pytest.importorskip("rclpy")
    from dap_led_ros.ros.depth_node import DepthNodeConfig
    from dap_led_ros.ros.params import ConfigError

    model = build_tiny_depth_model(tmp_path / "dyn.onnx")
    cfg = DepthNodeConfig(model=str(model), preset="dpt", std="0.1, 0.1, 0.1").depth_config()
    assert (cfg.mean, cfg.std, cfg.default_size) == ([0.5] * 3, [0.5] * 3, 384)  # the preset wins
    assert DepthEstimator(cfg).input_width == 384
    with pytest.raises(ConfigError, match="unknown depth preset 'midas'"):
        DepthNodeConfig(model=str(model), preset="midas").validate()
