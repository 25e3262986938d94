"""Running the network: backends (torch, ONNX Runtime, TensorRT), ONNX export, tiling, benchmarks."""
