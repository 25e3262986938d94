"""INT8 post-training quantisation of an exported DAP-LED graph with NNCF (ONNX in, QDQ ONNX out).

Runs in the throw-away venv that scripts/quantize_int8.sh makes (nncf is not a dependency of the
package): `python scripts/quantize_int8.py MODEL.onnx CALIB.npy OUT.onnx [--preset mixed]`.
The output is an ordinary ONNX file that the openvino and onnxruntime backends take as `engine`.
"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("calibration")
    parser.add_argument("out")
    parser.add_argument("--preset", choices=("performance", "mixed"), default="mixed")
    parser.add_argument("--fast-bias-correction", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    import nncf
    import numpy as np
    import onnx

    model = onnx.load(args.model)
    frames = np.load(args.calibration)
    name = model.graph.input[0].name
    dataset = nncf.Dataset(list(frames), lambda x: {name: x[None]})
    preset = nncf.QuantizationPreset.MIXED if args.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    quantized = nncf.quantize(model, dataset, preset=preset, subset_size=len(frames),
                              fast_bias_correction=args.fast_bias_correction)
    for prop in model.metadata_props:  # the dap_led.* metadata (padding multiple, grids) travels along
        quantized.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(quantized, args.out)
    print(f"quantize_int8: {args.model} -> {args.out} ({len(frames)} calibration frames, preset {args.preset})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
