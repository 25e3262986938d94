"""Frames of any size, however small: sides under the network's pad multiple (16 px for the test
model, 32 for the shipped real-time one) are restored at their own shape by every backend and by
the node, instead of ending as backend errors.

The exported graphs pad by reflection, which needs the pad smaller than the side; such frames are
edge-padded first (as the PyTorch model does for them) and cropped back, so ONNX Runtime gives
the PyTorch result.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.runtime.backends import create_backend
from dap_led_ros.runtime.backends.base import pad_for_graph

torch.set_num_threads(1)

# (H, W): 1x1, a single row and column, just under and around the pad multiple, odd and thin.
SMALL_SIZES = [(1, 1), (1, 37), (29, 1), (15, 15), (17, 3), (16, 16), (3, 40), (2, 2), (31, 33)]


@pytest.fixture(scope="module")
def backends(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("onnx_cache")
    ref = create_backend("torch", str(tiny_checkpoint), "cpu", threads=1)
    ort_backend = create_backend("onnxruntime", str(tiny_checkpoint), "cpu", threads=1, cache_dir=str(cache))
    yield ref, ort_backend
    ort_backend.close()


def test_pad_for_graph_pads_only_what_reflection_cannot_take() -> None:
    x = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)
    padded = pad_for_graph(x, 16)
    assert padded.shape == (2, 3, 16, 16)
    assert np.array_equal(padded[..., :5, :7], x)
    assert np.array_equal(padded[..., 15, 6], x[..., 4, 6]) and np.array_equal(padded[..., 0, 15], x[..., 0, 6])
    assert pad_for_graph(np.zeros((1, 3, 20, 40), np.float32), 16) is None  # pads 12 and 8 < sides
    assert pad_for_graph(np.zeros((1, 3, 16, 40), np.float32), 16) is None
    assert pad_for_graph(np.zeros((1, 3, 8, 40), np.float32), 16).shape == (1, 3, 16, 48)
    # A minimum side (a TensorRT profile's) that is not a multiple: rounded up to one.
    assert pad_for_graph(np.zeros((1, 3, 20, 40), np.float32), 16, min_side=24).shape == (1, 3, 32, 48)
    assert pad_for_graph(np.zeros((1, 3, 3, 5), np.float32), 1, min_side=8).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("hw", SMALL_SIZES)
def test_onnxruntime_restores_small_frames_as_pytorch_does(backends, hw: tuple[int, int]) -> None:
    ref, ort_backend = backends
    x = np.random.default_rng(hw[0] * 100 + hw[1]).random((1, 3, *hw), dtype=np.float32)
    out = ort_backend.infer(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.abs(out - ref.infer(x)).max() <= 1e-3
    maps = ort_backend.heatmaps(x)
    assert np.abs(ort_backend.infer_with_prior(x, maps) - ref.infer_with_prior(x, maps)).max() <= 1e-3


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("prior_every", [1, 3])
def test_enhancer_restores_every_small_size_to_its_shape(backends, backend: str, prior_every: int) -> None:
    ref, ort_backend = backends
    enhancer = Enhancer(EnhancerConfig(prior_every=prior_every), backend=ref if backend == "torch" else ort_backend)
    for h, w in SMALL_SIZES:
        rgb = np.random.default_rng(h + w).integers(0, 120, (h, w, 3), dtype=np.uint8)
        out = enhancer.enhance(rgb)
        assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert [o.shape for o in enhancer.enhance_batch([np.zeros((1, 5, 3), np.uint8)] * 2)] == [(1, 5, 3)] * 2


@pytest.mark.parametrize("hw", [(1, 1), (1, 40), (40, 1), (15, 15), (17, 3), (32, 20)])
def test_the_shipped_realtime_model_restores_frames_under_its_32_px_multiple(hw: tuple[int, int]) -> None:
    enhancer = _realtime_onnxruntime()
    rgb = np.full((*hw, 3), 30, np.uint8)
    assert enhancer.enhance(rgb).shape == (*hw, 3)


_RT: list[Enhancer] = []


def _realtime_onnxruntime() -> Enhancer:
    if not _RT:
        _RT.append(Enhancer(EnhancerConfig(model="realtime", backend="onnxruntime", device="cpu", threads=1)))
    return _RT[0]


def test_tensorrt_pads_frames_below_its_profiles_like_the_others(tiny_checkpoint: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The TensorRT backend (against the stand-in TensorRT of test_tensorrt.py: the engine's ONNX
    graph run by ONNX Runtime) pads what its profiles or the graph's reflection cannot take."""
    import sys

    from test_tensorrt import _fake_tensorrt, _FakeMemory

    import dap_led_ros.runtime.backends.tensorrt_backend as tb
    from dap_led_ros.runtime.backends.tensorrt_config import EngineConfig

    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt([]))
    monkeypatch.setattr(tb, "open_cuda_memory", lambda device, provider: _FakeMemory())
    # fp32: what is checked is the padding, against the float32 model
    engine_cfg = EngineConfig(cameras=[[64, 48]], min_side=24, workspace_mib=512, precision="fp32")
    backend = create_backend("tensorrt", str(tiny_checkpoint), "cuda", engine_config=engine_cfg,
                             cache_dir=str(tmp_path))
    assert (backend.min_side, backend.pad_multiple) == (24, 16)
    ref = create_backend("torch", str(tiny_checkpoint), "cpu", threads=1)
    for hw in [(1, 1), (15, 15), (17, 3), (24, 40), (48, 64)]:
        x = np.random.default_rng(hw[0]).random((1, 3, *hw), dtype=np.float32)
        out = backend.infer(x)
        assert out.shape == x.shape
        # What the engine ran: the edge-padded frame (its own heatmaps included), cropped back.
        padded = pad_for_graph(x, 16, 24)
        want = ref.infer(x if padded is None else padded)[..., :hw[0], :hw[1]]
        assert np.abs(out - want).max() <= 1e-4


# ----------------------------------------------------------------------------- the node

@pytest.mark.timeout(300)
def test_the_node_restores_small_frames_at_their_shape(ros, start_node, tiny_checkpoint: Path) -> None:
    from builtin_interfaces.msg import Time
    from conftest import console_command
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from dap_led_ros.ros.msg_conversion import make_image_msg

    ns = f"/small_{os.getpid()}"
    node = start_node(console_command("enhance_node", "dap_led_ros.ros.enhance_node") + [
        "--ros-args", "-r", f"__ns:={ns}", "-p", f"model:={tiny_checkpoint}", "-p", "backend:=onnxruntime",
        "-p", "threads:=1"], name="enhance_small")
    got: dict[int, Image] = {}
    pub = ros.node.create_publisher(Image, f"{ns}/image_raw", QoSProfile(depth=10,
                                                                         reliability=ReliabilityPolicy.RELIABLE))
    sub = ros.node.create_subscription(Image, f"{ns}/enhanced/image",
                                       lambda m: got.__setitem__(m.header.stamp.sec, m), QoSProfile(depth=50))
    ros.wait_for_subscribers(pub, timeout=120)
    ros.wait_for_publishers(sub, timeout=120)
    stamp = 0
    for i, (h, w) in enumerate(SMALL_SIZES + [(1, 2)], start=1):
        rgb = np.random.default_rng(i).integers(0, 200, (h, w, 3), dtype=np.uint8)
        # One at a time (the node keeps only the newest waiting frame); the input is best effort, and
        # the first frames may arrive before the node is active: resend until one comes back.
        for _attempt in range(12):
            stamp += 1
            pub.publish(make_image_msg(rgb, Header(stamp=Time(sec=stamp), frame_id="small"), "bgr8"))
            if ros.spin_while(lambda: stamp not in got, 10.0):
                break
            assert node.alive(), node.output()
        else:
            raise AssertionError(f"the {w}x{h} frame never came back:\n{node.output()}")
        out = got[stamp]
        assert (out.height, out.width, out.encoding, out.step, len(out.data)) == (h, w, "bgr8", 3 * w, 3 * w * h)
    assert "smaller than" not in node.output()
    node.assert_clean_exit()
