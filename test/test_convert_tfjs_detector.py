"""scripts/convert_tfjs_detector.py's TensorFlow-free parts: reading TF.js weight shards and
splitting TF.js's fused convolutions (the conversion itself needs TensorFlow, not installed here;
scripts/setup_second_detector.sh runs it in its own venv)."""
import base64
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "convert_tfjs_detector", Path(__file__).resolve().parents[1] / "scripts" / "convert_tfjs_detector.py")
conv = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(conv)


def _b64(s):
    return base64.b64encode(s.encode()).decode()


def test_weights_are_read_from_the_shards_in_manifest_order(tmp_path):
    w16 = np.array([[0.5, -1.25], [3.0, 1e-3]], np.float16)
    ints = np.array([1, -2, 3], np.int32)
    blob = w16.tobytes() + ints.tobytes()
    (tmp_path / "g1.bin").write_bytes(blob[:5])
    (tmp_path / "g2.bin").write_bytes(blob[5:])  # a weight may straddle two shards
    model = {"weightsManifest": [{"paths": ["g1.bin", "g2.bin"], "weights": [
        {"name": "w", "shape": [2, 2], "dtype": "float32",
         "quantization": {"dtype": "float16", "original_dtype": "float32"}},
        {"name": "k", "shape": [3], "dtype": "int32"}]}]}
    out = conv.read_weights(model, tmp_path)
    assert out["w"].dtype == np.float32 and np.array_equal(out["w"], w16.astype(np.float32))
    assert np.array_equal(out["k"], ints)
    model["weightsManifest"][0]["weights"].append({"name": "extra", "shape": [1], "dtype": "int32"})
    with pytest.raises(ValueError):  # the shards end before the manifest does
        conv.read_weights(model, tmp_path)


def test_fused_convolutions_become_conv_bias_and_activation_under_the_same_name():
    attr = {"T": {"type": "DT_FLOAT"}, "data_format": {"s": _b64("NHWC")}, "padding": {"s": _b64("SAME")},
            "strides": {"list": {"i": ["1", "1", "1", "1"]}}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
            "num_args": {"i": "1"}, "epsilon": {"f": 0}}
    nodes = [{"name": "x", "op": "Placeholder"},
             {"name": "a", "op": "_FusedConv2D", "input": ["x", "w", "b"],
              "attr": {**attr, "fused_ops": {"list": {"s": [_b64("BiasAdd"), _b64("Relu")]}}}},
             {"name": "d", "op": "FusedDepthwiseConv2dNative", "input": ["a", "w2", "b2"],
              "attr": {**attr, "fused_ops": {"list": {"s": [_b64("BiasAdd")]}}}},
             {"name": "y", "op": "Identity", "input": ["d"]}]
    out = conv.unfuse(json.loads(json.dumps(nodes)))
    by = {n["name"]: n for n in out}
    assert [n["op"] for n in out] == ["Placeholder", "Conv2D", "BiasAdd", "Relu",
                                      "DepthwiseConv2dNative", "BiasAdd", "Identity"]
    assert by["a"]["op"] == "Relu" and by["d"]["op"] == "BiasAdd"  # consumers keep their inputs
    assert by["a/conv"]["input"] == ["x", "w"] and by["a/bias"]["input"] == ["a/conv", "b"]
    assert "fused_ops" not in by["a/conv"]["attr"] and "num_args" not in by["a/conv"]["attr"]
    nodes[1]["attr"]["fused_ops"] = {"list": {"s": [_b64("BiasAdd"), _b64("LeakyRelu")]}}
    with pytest.raises(ValueError, match="LeakyRelu"):
        conv.unfuse(nodes)
