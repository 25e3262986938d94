"""ONNX export of the whole network (CLIP prior included): graphs, checker, dynamic shapes, parity."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from dap_led_ros import cli
from dap_led_ros.checkpoint import load_checkpoint, save_checkpoint
from dap_led_ros.runtime.export import ExportError, export_model, parity, prior_graph_paths, read_metadata
from dap_led_ros.model import ModelConfig, build_model

torch.set_num_threads(1)
ORT_OPTIONS = ort.SessionOptions()
ORT_OPTIONS.intra_op_num_threads = 1

SMALL = {"width": 8, "blocks": (1, 1, 1, 1), "stem_unshuffle": 2}


def _perturbed(cfg: ModelConfig) -> torch.nn.Module:
    """Random init plus noise on every parameter, so zero-initialised modulations matter too."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = ModelConfig.from_variant("tiny", **SMALL)
    return save_checkpoint(_perturbed(cfg), cfg, tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="module")
def exported(ckpt: Path, tmp_path_factory: pytest.TempPathFactory):
    model, _, _ = load_checkpoint(ckpt)
    return model, export_model(model, tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_three_graphs_pass_checker_with_dynamic_axes(exported) -> None:
    model, ex = exported
    assert (ex.heatmaps, ex.restore_with_prior) == prior_graph_paths(ex.restore)
    for path in (ex.restore, ex.heatmaps, ex.restore_with_prior):
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
        assert proto.opset_import[0].version >= 17
        image = next(i for i in proto.graph.input if i.name == "image")
        dims = image.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
        assert dims[1].dim_value == 3
    meta = read_metadata(ex.restore)
    assert int(meta["dap_led.pad_multiple"]) == model.pad_multiple == 16
    assert meta["dap_led.grids"] == "[1, 2, 4]"
    # The prompt embeddings are constants: the graph has no text input.
    assert [i.name for i in onnx.load(str(ex.restore)).graph.input] == ["image"]


@pytest.mark.parametrize("batch,h,w", [(1, 37, 53), (2, 32, 48), (1, 50, 17)])
def test_whole_network_matches_torch_at_padded_sizes(exported, batch: int, h: int, w: int) -> None:
    model, ex = exported
    sess = ort.InferenceSession(str(ex.restore), ORT_OPTIONS, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(h).random((batch, 3, h, w), dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    out = sess.run(None, {"image": x})[0]
    assert out.shape == x.shape
    assert np.abs(out - ref).max() < 1e-4


def test_parity_report_covers_tiling_graphs(exported) -> None:
    model, ex = exported
    rows = parity(model, ex, sizes=((37, 53), (32, 32)), threads=1)
    assert {r["graph"] for r in rows} == {"restore", "heatmaps", "restore_with_prior"}
    assert {r["size"] for r in rows if r["graph"] == "restore"} == {"53x37", "32x32"}
    assert max(float(r["max_abs"]) for r in rows) < 1e-4


def test_export_command_prints_parity(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli.onnx"
    rc = cli.main(["export", "--model", str(ckpt), "-o", str(out), "--no-prior-graphs",
                   "--check-sizes", "53x37", "32x32"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert out.is_file() and not prior_graph_paths(out)[0].exists()
    assert "parity vs PyTorch" in text and "53x37" in text and "ok: max abs difference" in text


def test_export_command_fp16_checks_psnr(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "f16.onnx"
    rc = cli.main(["export", "--model", str(ckpt), "-o", str(out), "--no-prior-graphs", "--precision", "fp16",
                   "--check-sizes", "53x37"])
    text = capsys.readouterr().out
    assert rc == 0 and "fp16 graphs" in text and "ok: PSNR >=" in text, text
    assert read_metadata(out)["dap_led.precision"] == "fp16"
    rc = cli.main(["export", "--model", str(ckpt), "-o", str(out), "--no-prior-graphs", "--precision", "fp16",
                   "--check-sizes", "53x37", "--min-psnr", "500", "--force"])
    assert rc == 1 and "below 500.0 dB" in capsys.readouterr().err


def test_export_errors(exported, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model, _ = exported
    with pytest.raises(ExportError, match="opset"):
        export_model(model, tmp_path / "a.onnx", opset=16)
    with pytest.raises(ExportError, match=".onnx"):
        export_model(model, tmp_path / "a.pt")
    assert cli.main(["export", "--model", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "b.onnx")]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_model_without_prior_exports_one_graph(tmp_path: Path) -> None:
    cfg = ModelConfig.from_variant("tiny", use_prior=False, **SMALL)
    model = _perturbed(cfg)
    ex = export_model(model, tmp_path / "plain.onnx")
    assert ex.heatmaps is None and ex.restore_with_prior is None
    x = np.random.default_rng(1).random((1, 3, 21, 40), dtype=np.float32)
    sess = ort.InferenceSession(str(ex.restore), ORT_OPTIONS, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": x})[0]
    with torch.no_grad():
        assert np.abs(out - model(torch.from_numpy(x)).numpy()).max() < 1e-4


def test_gated_conv_variant_with_residual_gate_exports_and_matches_torch(tmp_path: Path) -> None:
    cfg = ModelConfig.from_variant("tiny", block_kinds=("conv", "conv", "attention", "attention"),
                                   residual_gate=True, **SMALL)
    model = _perturbed(cfg)
    ex = export_model(model, tmp_path / "conv.onnx")
    x = np.random.default_rng(2).random((1, 3, 48, 64), dtype=np.float32)
    sess = ort.InferenceSession(str(ex.restore), ORT_OPTIONS, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"image": x})[0]
    with torch.no_grad():
        assert np.abs(out - model(torch.from_numpy(x)).numpy()).max() < 1e-4


# --- float16 export ----------------------------------------------------------------------------

def _run(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), ORT_OPTIONS, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def test_fp16_export_keeps_islands_in_float32_and_io_in_float32(ckpt: Path, tmp_path: Path) -> None:
    from dap_led_ros.runtime.float16_graph import graph_precision

    model, _, _ = load_checkpoint(ckpt)
    out = export_model(model, tmp_path / "m16.onnx", precision="fp16")
    for path in (out.restore, out.heatmaps, out.restore_with_prior):
        proto = onnx.load(str(path))
        assert graph_precision(proto) == "fp16" and read_metadata(path)["dap_led.precision"] == "fp16"
        assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in (*proto.graph.input,
                                                                                  *proto.graph.output))
    typed = onnx.shape_inference.infer_shapes(onnx.load(str(out.restore))).graph
    types = {v.name: v.type.tensor_type.elem_type for v in typed.value_info}
    types.update({t.name: t.data_type for t in typed.initializer})
    by_name = {n.name: n for n in typed.node}
    # The channel LayerNorm, the attention's L2 normalisation and softmax compute in float32 ...
    for name, node in by_name.items():
        if node.op_type in ("ReduceMean", "ReduceL2", "Softmax") or "/norm1/" in name:
            assert all(types.get(i) == onnx.TensorProto.FLOAT for i in node.input if types.get(i) in
                       (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)), name
    # ... the convolutions and matrix products in float16, with float16 weights.
    convs = [n for n in typed.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[1]] == onnx.TensorProto.FLOAT16 for n in convs)
    x = np.random.default_rng(3).random((1, 3, 37, 53), dtype=np.float32) * 0.3
    ref = _run(export_model(model, tmp_path / "m32.onnx", prior_graphs=False).restore, x)
    from dap_led_ros.runtime.backends.verify import psnr

    assert psnr(_run(out.restore, x), ref) >= 40.0
    assert export_model(model, tmp_path / "n.onnx", prior_graphs=False).metadata["dap_led.export_format"]
    with pytest.raises(ExportError, match="precision"):
        export_model(model, tmp_path / "bad.onnx", precision="fp8")


def test_fp16_export_of_the_shipped_model_within_40_db_of_fp32_on_validation_frames(tmp_path: Path) -> None:
    """Acceptance (issue 27): the float16 graph's output >= 40 dB PSNR against the float32 graph's
    on the synthetic validation frames, both run by ONNX Runtime on the CPU."""
    from dap_led_ros.runtime.backends.verify import psnr
    from dap_led_ros.shipped_models import resolve_model
    from dap_led_ros.training.datasets import synthetic_validation_set

    model, _, _ = load_checkpoint(resolve_model("realtime", "cpu"))
    f32 = export_model(model, tmp_path / "f32.onnx", prior_graphs=False).restore
    f16 = export_model(model, tmp_path / "f16.onnx", prior_graphs=False, precision="fp16").restore
    frames = synthetic_validation_set(size=(400, 640), n=3, seed=1234)
    for i in range(len(frames)):
        x = np.ascontiguousarray(np.asarray(frames[i]["low"], dtype=np.float32)[None])
        assert psnr(_run(f16, x), _run(f32, x)) >= 40.0, frames[i]["name"]


def test_fp16_conversion_keeps_epsilons_and_shared_weights_consistent() -> None:
    """A Clip floor of 1e-12 (F.normalize's) stays above 0 in float16; a weight used by a float16
    node and by a float32 island is kept in float32 and cast for the float16 one."""
    from onnx import TensorProto, helper, numpy_helper

    from dap_led_ros.runtime.float16_graph import convert_to_float16

    w = numpy_helper.from_array(np.full((1, 4), 3.0, np.float32), "w")
    eps = numpy_helper.from_array(np.array(1e-12, np.float32), "eps")
    nodes = [helper.make_node("Mul", ["x", "w"], ["m"], name="/body/Mul"),
             helper.make_node("ReduceMean", ["w"], ["r"], name="/norm1/ReduceMean", keepdims=1),
             helper.make_node("Add", ["m", "r"], ["a"], name="/body/Add"),
             helper.make_node("Clip", ["a", "eps"], ["y"], name="/body/Clip")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w, eps])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    half, report = convert_to_float16(model)
    inits = {t.name: t for t in half.graph.initializer}
    assert inits["w"].data_type == TensorProto.FLOAT  # shared with the float32 island
    assert inits["eps"].data_type == TensorProto.FLOAT16 and numpy_helper.to_array(inits["eps"]) > 0
    assert report.nodes_fp32 == 1 and report.nodes_fp16 == 3
    x = np.array([[-1.0, 0.0, 1.0, 2.0]], np.float32)
    out = ort.InferenceSession(half.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert out.dtype == np.float32 and np.allclose(out, np.maximum(3 * x + 3, 6e-8), atol=1e-3)
