"""The runtime without torch (issue 27): with torch, torchvision and open_clip made unimportable
in a subprocess, `dap-led enhance --model F.onnx` restores a frame and enhance_node configures
from an ONNX file. The graphs are exported here, in the test process, which has torch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from dap_led_ros.runtime.backends import BackendError, create_backend

# A meta-path finder that refuses the training stack, installed before anything else imports.
BLOCKER = textwrap.dedent('''
    import sys
    BLOCKED = {"torch", "torchvision", "open_clip"}

    class _Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: the runtime must work without it")
            return None

    sys.meta_path.insert(0, _Blocker())
''')


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory, ) -> dict[str, Path]:
    from conftest import save_tiny_checkpoint

    from dap_led_ros.checkpoint import load_checkpoint
    from dap_led_ros.runtime.export import export_model

    folder = tmp_path_factory.mktemp("torch_free")
    model, _, _ = load_checkpoint(save_tiny_checkpoint(folder / "tiny"))
    return {p: export_model(model, folder / f"m_{p}.onnx", precision=p).restore for p in ("fp32", "fp16")}


def _run_blocked(code: str, tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKER + textwrap.dedent(code) + '\nprint("torch imported:", "torch" in sys.modules)\n')
    env = {**os.environ, "DAP_LED_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=tmp_path)


def test_blocker_really_blocks_torch(tmp_path: Path) -> None:
    done = _run_blocked("""
        try:
            import torch
        except ImportError as exc:
            print("refused:", exc)
    """, tmp_path)
    assert "refused: torch is blocked" in done.stdout and "torch imported: False" in done.stdout


@pytest.mark.parametrize("precision,backend", [("fp32", "onnxruntime"), ("fp16", "onnxruntime"), ("fp16", "auto")])
def test_cli_restores_a_frame_from_an_onnx_file_without_torch(onnx_files: dict[str, Path], precision: str,
                                                              backend: str, tmp_path: Path) -> None:
    frame = (np.random.default_rng(0).random((45, 70, 3)) * 50).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "night.png"), frame)
    done = _run_blocked(f"""
        from dap_led_ros.cli import main
        rc = main(["enhance", "night.png", "restored.png", "--model", {str(onnx_files[precision])!r},
                   "--backend", {backend!r}, "--device", "auto", "--threads", "1"])
        print("exit", rc)
    """, tmp_path)
    assert "exit 0" in done.stdout and "torch imported: False" in done.stdout, done.stdout + done.stderr
    restored = cv2.imread(str(tmp_path / "restored.png"))
    assert restored is not None and restored.shape == frame.shape
    # The same graph in this process gives the same frame.
    from dap_led_ros.enhancer import Enhancer, EnhancerConfig

    here = Enhancer(EnhancerConfig(model=str(onnx_files[precision]), backend="onnxruntime", device="cpu",
                                   threads=1))
    if backend == "onnxruntime":
        assert np.array_equal(cv2.cvtColor(here.enhance(frame[..., ::-1].copy()), cv2.COLOR_RGB2BGR), restored)


def test_graph_file_alone_is_never_run_by_torch(onnx_files: dict[str, Path], tmp_path: Path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(BackendError, match="needs a checkpoint"):
        create_backend("torch", str(onnx_files["fp32"]), "cpu")
    with pytest.raises(BackendError, match="TensorRT engine needs a CUDA device"):
        create_backend("auto", str(engine), "cpu")
    with pytest.raises(BackendError, match="give one of them"):
        create_backend("onnxruntime", str(onnx_files["fp32"]), "cpu", engine=str(onnx_files["fp16"]))


@pytest.mark.ros
def test_enhance_node_configures_from_an_onnx_file_without_torch(onnx_files: dict[str, Path], tmp_path: Path,
                                                                 ros_domain_id: int) -> None:
    done = _run_blocked(f"""
        import rclpy
        from lifecycle_msgs.msg import State
        from rclpy.parameter import Parameter

        from dap_led_ros.ros.enhance_node import EnhanceNode

        rclpy.init()
        node = EnhanceNode(parameter_overrides=[
            Parameter("autostart", value=False), Parameter("model", value={str(onnx_files["fp16"])!r}),
            Parameter("backend", value="onnxruntime"), Parameter("threads", value=1)])
        node.trigger_configure()
        print("state", node._state_machine.current_state[1])
        frame = __import__("numpy").full((40, 60, 3), 20, "uint8")
        print("restored", node._enhancer.enhance(frame).shape)
        node.destroy_node()
        rclpy.shutdown()
    """, tmp_path)
    out = done.stdout + done.stderr
    assert "state inactive" in done.stdout and "restored (40, 60, 3)" in done.stdout, out
    assert "torch imported: False" in done.stdout, out


def test_runtime_requirements_agree_with_requirements_txt() -> None:
    """requirements-runtime.txt (the torch-free install) names no training package and pins what it
    shares with requirements.txt the same way."""
    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[1]

    def read(name: str) -> dict[str, Requirement]:
        lines = (line.split("#")[0].strip() for line in (root / name).read_text().splitlines())
        return {r.name.lower(): r for r in map(Requirement, filter(None, lines))}

    runtime, full = read("requirements-runtime.txt"), read("requirements.txt")
    assert not {"torch", "torchvision", "open-clip-torch", "safetensors"} & set(runtime)
    shared = set(runtime) & set(full)
    assert shared >= {"numpy", "onnxruntime", "onnx", "pyyaml"}
    assert all(runtime[n].specifier == full[n].specifier for n in shared), shared
