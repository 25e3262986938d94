"""DepthEstimator with a real ONNX Runtime session on a tiny model the test builds."""
from __future__ import annotations

import numpy as np
import pytest

from dap_led_ros.perception.depth import (
    DepthConfig,
    DepthEstimator,
    DepthModelError,
    colorize_depth,
)
from tiny_depth_model import build_tiny_depth_model

# mean 0 / std 1 makes the tiny model's prediction the plain RGB mean in [0, 1].
PLAIN = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}


@pytest.fixture(scope="module")
def dynamic_model(tmp_path_factory):
    return build_tiny_depth_model(tmp_path_factory.mktemp("depth") / "dynamic.onnx")


def test_shape_dtype_and_values_follow_the_frame(dynamic_model):
    est = DepthEstimator(DepthConfig(model=str(dynamic_model), input_width=64,
                                     input_height=48, **PLAIN))
    frame = np.zeros((30, 50, 3), np.uint8)
    frame[:, :25] = (30, 60, 90)     # left half: mean 60
    frame[:, 25:] = (200, 210, 220)  # right half: mean 210
    depth = est.estimate(frame)
    assert depth.shape == (30, 50) and depth.dtype == np.float32
    # Away from the seam (blurred by the resizes) the value is the channel mean / 255.
    np.testing.assert_allclose(depth[:, :8], 60 / 255, atol=2e-3)
    np.testing.assert_allclose(depth[:, -8:], 210 / 255, atol=2e-3)


def test_normalisation_uses_mean_and_std(dynamic_model):
    est = DepthEstimator(DepthConfig(model=str(dynamic_model), input_width=32, input_height=32,
                                     mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))
    depth = est.estimate(np.full((16, 16, 3), 255, np.uint8))
    np.testing.assert_allclose(depth, (1.0 - 0.5) / 0.25, atol=1e-4)  # relu keeps it


def test_default_input_size_and_rank4_output(tmp_path):
    model = build_tiny_depth_model(tmp_path / "r4.onnx", downsample=False, output_rank=4)
    est = DepthEstimator(DepthConfig(model=str(model), **PLAIN))
    assert (est.input_height, est.input_width) == (518, 518)
    x = est.preprocess(np.zeros((10, 20, 3), np.uint8))
    assert x.shape == (1, 3, 518, 518) and x.dtype == np.float32 and x.flags.c_contiguous
    assert est.estimate(np.full((10, 20, 3), 51, np.uint8)).shape == (10, 20)


def test_static_model_size_is_used_and_conflicts_are_reported(tmp_path):
    model = build_tiny_depth_model(tmp_path / "static.onnx", static_size=(28, 42))
    est = DepthEstimator(DepthConfig(model=str(model), **PLAIN))
    assert (est.input_height, est.input_width) == (28, 42)
    assert est.estimate(np.zeros((7, 9, 3), np.uint8)).shape == (7, 9)
    with pytest.raises(DepthModelError, match="fixed at 42"):
        DepthEstimator(DepthConfig(model=str(model), input_width=64, **PLAIN))


def test_bad_config_and_files_give_specific_errors(tmp_path, dynamic_model):
    with pytest.raises(ValueError, match="required"):
        DepthConfig().validate()
    with pytest.raises(ValueError, match="unknown depth settings"):
        DepthConfig.from_dict({"model": "x.onnx", "inputsize": 3})
    with pytest.raises(ValueError, match="colormap"):
        DepthConfig.from_dict({"model": "x.onnx", "colormap": "nope"})
    with pytest.raises(ValueError, match="device"):
        DepthConfig.from_dict({"model": "x.onnx", "device": "gpu"})
    with pytest.raises(DepthModelError, match="not found"):
        DepthEstimator(DepthConfig(model=str(tmp_path / "missing.onnx")))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx file")
    with pytest.raises(DepthModelError, match="cannot load"):
        DepthEstimator(DepthConfig(model=str(garbage)))
    est = DepthEstimator(DepthConfig(model=str(dynamic_model), input_width=16, input_height=16))
    with pytest.raises(ValueError, match="uint8"):
        est.estimate(np.zeros((8, 8), np.uint8))


def test_colorized_preview_puts_near_bright():
    depth = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (8, 1))
    depth[0, 0] = np.nan
    preview = colorize_depth(depth, "bone", near_is_high=True)
    assert preview.shape == (8, 64, 3) and preview.dtype == np.uint8
    assert preview[4, -1].sum() > preview[4, 1].sum()  # big disparity = near = bright
    assert preview[0, 0].tolist() == [0, 0, 0]          # non-finite is black
    flipped = colorize_depth(depth, "bone", near_is_high=False)
    assert flipped[4, 1].sum() > flipped[4, -1].sum()   # small metric depth = near = bright
