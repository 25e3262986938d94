"""The detector feature loss: the cut-out backbone equals the ONNX graph's, gradients reach the
restored image only, and a training step runs with it."""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from dap_led_ros.model import ModelConfig, build_model
from dap_led_ros.shipped_models import shipped_detector
from dap_led_ros.training.detector_loss import (LAYOUTS, DetectorFeatureLoss, DetectorLossError,
                                                extract_backbone, load_detector)
from dap_led_ros.training.losses import LossConfig, compute_losses

torch.set_num_threads(1)
SHIPPED_MODEL = shipped_detector()
shipped = pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason=f"{SHIPPED_MODEL} not installed")


def _tiny_detector(path, layout: str = ""):
    """uint8 NHWC image -> Cast -> scale -> NCHW -> conv -> Clip (feature "f1") -> conv -> "f2" -> score."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 4, 3, 3)).astype(np.float32), "w2")
    consts = [numpy_helper.from_array(np.array(1 / 255, np.float32), "k"),
              numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
              numpy_helper.from_array(np.array(6.0, np.float32), "hi"), w1, w2]
    nodes = [helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["as_float", "k"], ["scaled"]),
             helper.make_node("Transpose", ["scaled"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["nchw", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["f1"]),
             helper.make_node("Conv", ["f1", "w2"], ["f2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["f2"], ["score"], keepdims=0)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.UINT8, [1, None, None, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, None)], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if layout:
        helper.set_model_props(model, {"dap_led_layout": layout})
    onnx.save(model, path)
    return path


@shipped
def test_the_shipped_detectors_backbone_equals_onnx_runtime_on_the_same_cut():
    import onnxruntime as ort

    layout = LAYOUTS["tf-ssd"]
    model = load_detector(SHIPPED_MODEL)
    backbone = extract_backbone(model, layout, SHIPPED_MODEL)
    sub = onnx.utils.Extractor(model).extract_model([layout.input], list(layout.features))
    x = torch.rand(1, 3, 160, 160) * 2 - 1
    with torch.no_grad():
        ours = backbone(x)
    theirs = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {layout.input: x.numpy()})
    assert [tuple(t.shape) for t in ours] == [(1, 192, 20, 20), (1, 576, 10, 10), (1, 1280, 5, 5)]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b, atol=1e-4)
    assert not any(p.requires_grad for p in backbone.parameters())


@shipped
def test_the_loss_is_zero_on_the_clean_image_grows_with_noise_and_trains_the_image_only():
    loss = DetectorFeatureLoss(SHIPPED_MODEL)
    torch.manual_seed(0)
    clean = torch.rand(2, 3, 96, 96)
    assert float(loss(clean, clean)) == pytest.approx(0.0, abs=1e-6)
    light = float(loss((clean + 0.02 * torch.randn_like(clean)).clamp(0, 1), clean))
    heavy = float(loss((clean + 0.2 * torch.randn_like(clean)).clamp(0, 1), clean))
    assert 0 < light < heavy
    pred = (clean + 0.1 * torch.randn_like(clean)).clamp(0, 1).requires_grad_(True)
    loss(pred, clean).backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    loss.train()
    assert not loss.backbone.training  # frozen in eval mode inside a training model


def test_a_user_graph_by_tensor_names_and_specific_errors(tmp_path):
    path = _tiny_detector(tmp_path / "tiny.onnx")
    loss = DetectorFeatureLoss(path, scale=1.0, input_name="nchw", features=("f1", "f2"), input_range="0-1")
    x = torch.rand(1, 3, 32, 32)
    assert float(loss(x, x)) == pytest.approx(0.0, abs=1e-7)
    assert float(loss(x.flip(-1), x)) > 0
    with pytest.raises(DetectorLossError, match="no tensor 'nope'"):
        DetectorFeatureLoss(path, input_name="nchw", features=("nope",))
    with pytest.raises(DetectorLossError, match="detector_features"):
        DetectorFeatureLoss(path)  # no layout metadata and no tensor names
    with pytest.raises(DetectorLossError, match="detector_range"):
        DetectorFeatureLoss(path, input_name="nchw", features=("f1",), input_range="0-2")
    with pytest.raises(DetectorLossError, match="not found"):
        DetectorFeatureLoss(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(DetectorLossError, match="not an ONNX model"):
        DetectorFeatureLoss(tmp_path / "junk.onnx", input_name="x", features=("y",))


def test_compute_losses_adds_the_weighted_detector_term(tmp_path):
    path = _tiny_detector(tmp_path / "tiny.onnx")
    detector = DetectorFeatureLoss(path, scale=1.0, input_name="nchw", features=("f1", "f2"))
    torch.manual_seed(0)
    net = build_model(ModelConfig.from_variant("tiny", use_prior=False))
    x, y = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    pred, maps = net.forward_with_heatmaps(x)
    cfg = LossConfig(l_detector=0.5)
    total, terms = compute_losses(net, pred, y, maps, None, cfg, detector)
    assert terms["detector"] > 0
    assert terms["total"] == pytest.approx(terms["charbonnier"] + 0.5 * terms["detector"], rel=1e-5)
    total.backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="needs the detector"):
        compute_losses(net, pred, y, maps, None, cfg)


def test_a_training_run_logs_the_detector_term(tmp_path):
    from dap_led_ros.training.config import TrainConfig
    from dap_led_ros.training.train import train
    from test_train import TINY  # the test folder is on sys.path (rootdir-less test modules)

    path = _tiny_detector(tmp_path / "tiny.onnx")
    loss = {**TINY.get("loss", {}), "l_detector": 0.1, "detector": str(path), "detector_scale": 1.0,
            "detector_input": "nchw", "detector_features": ["f1", "f2"]}
    cfg = TrainConfig.from_dict({**TINY, "steps": 2, "loss": loss})
    train(cfg, tmp_path / "run", progress=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logged = [r["detector"] for r in rows if "total" in r]
    assert logged and all(v > 0 for v in logged)


def test_cycle_8_is_cycle_7_plus_the_detector_loss():
    import yaml

    root = Path(__file__).resolve().parents[1] / "config"
    c7 = yaml.safe_load((root / "train_tiny_campaign_c7_night.yaml").read_text())
    c8 = yaml.safe_load((root / "train_tiny_campaign_c8_detector.yaml").read_text())
    assert {k: v for k, v in c8["loss"].items() if not k.startswith("detector") and k != "l_detector"} == c7["loss"]
    assert c8["loss"]["l_detector"] > 0
    assert {k: v for k, v in c8.items() if k != "loss"} == {k: v for k, v in c7.items() if k != "loss"}
