"""Backends behind one interface: ONNX Runtime vs PyTorch parity, the ONNX cache, `auto` selection."""
from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from dap_led_ros.checkpoint import save_checkpoint
from dap_led_ros.enhancer import Enhancer, EnhancerConfig
from dap_led_ros.model import ModelConfig, build_model
from dap_led_ros.runtime.backends import BackendError, create_backend, resolve_device
from dap_led_ros.runtime.backends.verify import compare_backends, psnr

torch.set_num_threads(1)

SMALL = {"width": 8, "blocks": (1, 1, 1, 1), "stem_unshuffle": 2}


def _save(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig.from_variant("tiny", **SMALL)
    model = build_model(cfg).eval()
    with torch.no_grad():  # make the zero-initialised prior modulations matter too
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return save_checkpoint(model, cfg, path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def pair(ckpt: Path, cache: Path):
    ref = create_backend("torch", str(ckpt), "cpu", threads=1)
    ort_backend = create_backend("onnxruntime", str(ckpt), "cpu", threads=1, cache_dir=str(cache))
    yield ref, ort_backend
    ort_backend.close()


# Three sizes; the first is odd and non-square (padded internally to 48 x 64), the last batched.
@pytest.mark.parametrize("shape", [(1, 37, 53), (1, 64, 48), (2, 33, 96)])
def test_onnxruntime_matches_torch_fp32(pair, shape: tuple[int, int, int]) -> None:
    ref, ort_backend = pair
    b, h, w = shape
    x = np.random.default_rng(h * w).random((b, 3, h, w), dtype=np.float32)
    out, expected = ort_backend.infer(x), ref.infer(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert np.abs(out - expected).max() <= 1e-3


def test_onnxruntime_prior_graphs_match_torch(pair) -> None:
    ref, ort_backend = pair
    assert ort_backend.supports_prior_input
    x = np.random.default_rng(5).random((1, 3, 40, 56), dtype=np.float32)
    maps, ref_maps = ort_backend.heatmaps(x), ref.heatmaps(x)
    assert [m.shape for m in maps] == [(1, 4, 1, 1), (1, 4, 2, 2), (1, 4, 4, 4)]
    for a, b in zip(maps, ref_maps):
        assert np.abs(a - b).max() <= 1e-4
    dense = [np.ascontiguousarray(np.broadcast_to(m.mean(axis=(2, 3), keepdims=True), (1, 4, 40, 56)))
             for m in ref_maps]
    assert np.abs(ort_backend.infer_with_prior(x, dense) - ref.infer_with_prior(x, dense)).max() <= 1e-3
    with pytest.raises(BackendError, match="expected 3 heatmaps"):
        ort_backend.infer_with_prior(x, dense[:2])


def test_tiled_enhancer_onnxruntime_matches_torch(pair) -> None:
    ref, ort_backend = pair
    rgb = np.random.default_rng(2).integers(0, 80, (90, 150, 3), dtype=np.uint8)
    cfg = EnhancerConfig(tile_max_pixels=64 * 64, tile_size=64, tile_overlap=8, tile_mode="blend")
    a = Enhancer(cfg, backend=ort_backend).enhance(rgb)
    b = Enhancer(cfg, backend=ref).enhance(rgb)
    assert a.shape == rgb.shape
    assert np.abs(a.astype(int) - b).max() <= 1


def test_compare_backends_reports_psnr(pair) -> None:
    ref, ort_backend = pair
    rows = compare_backends(ort_backend, ref, [(37, 53)])
    assert rows[0]["size"] == "53x37" and rows[0]["psnr_db"] > 60
    assert psnr(np.zeros(4), np.zeros(4)) == float("inf")
    assert psnr(np.zeros(4), np.full(4, 0.1)) == pytest.approx(20.0)


def test_onnx_cache_reused_and_keyed_by_checkpoint(pair, ckpt: Path, cache: Path, tmp_path: Path) -> None:
    _, ort_backend = pair
    first = ort_backend.onnx_path
    mtime = first.stat().st_mtime_ns
    again = create_backend("onnxruntime", str(ckpt), "cpu", threads=1, cache_dir=str(cache))
    assert again.onnx_path == first and first.stat().st_mtime_ns == mtime
    other = create_backend("onnxruntime", str(_save(tmp_path / "other", seed=1)), "cpu", threads=1,
                           cache_dir=str(cache))
    assert other.onnx_path != first and other.onnx_path.is_file()
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    assert np.abs(other.infer(x) - again.infer(x)).max() > 1e-4  # really another network


def test_explicit_onnx_file_and_input_errors(pair, ckpt: Path, tmp_path: Path) -> None:
    _, ort_backend = pair
    explicit = create_backend("onnxruntime", str(ckpt), "cpu", engine=str(ort_backend.onnx_path), threads=1)
    assert explicit.onnx_path == ort_backend.onnx_path
    with pytest.raises(BackendError, match="not found"):
        create_backend("onnxruntime", str(ckpt), "cpu", engine=str(tmp_path / "none.onnx"))
    with pytest.raises(BackendError, match="needs an .onnx"):
        create_backend("onnxruntime", str(ckpt), "cpu", engine=str(tmp_path / "x.engine"))
    assert explicit.infer(np.zeros((1, 3, 8, 40), np.float32)).shape == (1, 3, 8, 40)  # test_small_frames.py
    with pytest.raises(BackendError, match="B x 3 x H x W"):
        explicit.infer(np.zeros((3, 8, 40), np.float32))
    with pytest.raises(BackendError, match="does not take option"):
        create_backend("torch", str(ckpt), "cpu", engine="m.onnx")
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend("tvm", str(ckpt), "cpu")


X86 = platform.machine().lower() in ("x86_64", "amd64")


def test_auto_on_cpu_picks_openvino_on_x86_else_onnxruntime_and_says_why(ckpt: Path, cache: Path, caplog) -> None:
    assert resolve_device("cpu") == "cpu"
    with caplog.at_level(logging.INFO, logger="dap_led_ros.runtime.backends"):
        backend = create_backend("auto", str(ckpt), "cpu", threads=1, cache_dir=str(cache))
    expected = "openvino" if X86 else "onnxruntime"
    assert backend.name == expected
    text = caplog.text
    assert f"auto backend: chose {expected}" in text and "rejected tensorrt: device is 'cpu'" in text


def test_auto_on_cpu_falls_back_to_onnxruntime_without_openvino(ckpt: Path, cache: Path, monkeypatch,
                                                               caplog) -> None:
    import builtins

    real_import = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError("No module named 'openvino'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    with caplog.at_level(logging.INFO, logger="dap_led_ros.runtime.backends"):
        backend = create_backend("auto", str(ckpt), "cpu", threads=1, cache_dir=str(cache))
    assert backend.name == "onnxruntime"
    if X86:
        assert "openvino: openvino is not installed" in caplog.text


def test_auto_falls_back_to_torch_with_reasons(ckpt: Path, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="dap_led_ros.runtime.backends"):
        backend = create_backend("auto", str(ckpt), "cpu", engine=str(tmp_path / "missing.onnx"), threads=1)
    assert backend.name == "torch"
    assert "onnxruntime: ONNX file not found" in caplog.text
    assert ("openvino: ONNX file not found" in caplog.text) == X86


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error path")
def test_gpu_backends_fail_clearly_without_gpu(ckpt: Path, cache: Path) -> None:
    with pytest.raises(BackendError):
        create_backend("onnxruntime", str(ckpt), "cuda", cache_dir=str(cache))
    with pytest.raises(BackendError):
        create_backend("torch", str(ckpt), "cuda")
    with pytest.raises(BackendError):
        create_backend("tensorrt", str(ckpt), "cuda", cache_dir=str(cache))


def test_bench_command_writes_json_table_and_plot(ckpt: Path, cache: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    import json

    from dap_led_ros import cli

    out = tmp_path / "bench"
    rc = cli.main(["bench", "--model", str(ckpt), "--backends", "torch", "onnxruntime", "--sizes", "64x48",
                   "--iters", "2", "--warmup", "1", "--threads", "1", "--cache-dir", str(cache),
                   "--out-dir", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    doc = json.loads((out / "bench.json").read_text())
    rows = {r["variant"]: r for r in doc["results"]}
    assert set(rows) == {"torch", "onnxruntime"} and all(r["error"] is None for r in rows.values())
    assert rows["torch"]["speedup_vs_reference"] == pytest.approx(1.0)
    assert rows["onnxruntime"]["fps"] > 0 and rows["onnxruntime"]["peak_rss_mib"] > 0
    assert rows["onnxruntime"]["p50_ms"] <= rows["onnxruntime"]["p95_ms"]
    assert "| onnxruntime | 64x48 |" in (out / "bench.md").read_text()
    assert (out / "bench.png").stat().st_size > 1000
    assert "fastest CPU backend at 64x48" in text
    assert cli.main(["bench", "--backends", "nonsense", "--out-dir", str(out)]) == 2


def test_shipped_model_names_resolve_by_device() -> None:
    from dap_led_ros.shipped_models import default_checkpoint, realtime_checkpoint, resolve_model

    assert resolve_model(None, "cpu") is None and resolve_model("", "cuda") is None
    assert resolve_model("quality", "cpu") is None and resolve_model("auto", "cuda") is None
    assert resolve_model("auto", "cpu") == resolve_model("realtime", "cuda") == str(realtime_checkpoint())
    assert resolve_model("/x/y.safetensors", "cpu") == "/x/y.safetensors"
    assert default_checkpoint().is_file() and realtime_checkpoint().is_file()


def test_the_realtime_model_is_the_quality_body_at_a_quarter_resolution(tmp_path: Path) -> None:
    from dap_led_ros.checkpoint import load_checkpoint
    from dap_led_ros.shipped_models import realtime_checkpoint

    _, rt, extra = load_checkpoint(realtime_checkpoint())
    _, quality, _ = load_checkpoint(None)
    assert rt.variant == "tiny-rt" and rt.stem_unshuffle == 4 and quality.stem_unshuffle == 2
    assert (rt.width, rt.blocks, rt.heads) == (quality.width, quality.blocks, quality.heads)
    assert extra["campaign"]["cumulative_steps"] > 0
    # "auto" on the CPU runs it; "quality" the other one.
    auto = Enhancer(EnhancerConfig(model="auto", backend="torch", device="cpu", threads=1))
    assert auto.cfg.model == str(realtime_checkpoint()) and auto.backend.name == "torch"
    assert Enhancer(EnhancerConfig(model="quality", backend="torch", device="cpu", threads=1)).cfg.model is None
    frame = np.full((48, 64, 3), 40, np.uint8)
    assert auto.enhance(frame).shape == frame.shape


def test_gpu_bench_script_runs_its_whole_path_on_the_cpu(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GPU_BENCH_SMOKE": "1", "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "",
           "DAP_LED_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([str(root / "scripts" / "gpu_bench.sh"), str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for model in ("quality", "realtime"):
        table = (tmp_path / "out" / model / "bench.md").read_text()
        assert "| onnxruntime | 64x48 |" in table and "| torch | 64x48 |" in table


# ----------------------------------------------------------------------------- model file errors

def _broken_checkpoints(ckpt: Path, tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoint paths that cannot be used, with the cause their error must start with."""
    import shutil

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"this is not a safetensors file")
    shutil.copyfile(ckpt.with_suffix(".yaml"), corrupt.with_suffix(".yaml"))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(ckpt.read_bytes()[:5000])
    shutil.copyfile(ckpt.with_suffix(".yaml"), truncated.with_suffix(".yaml"))
    no_yaml = tmp_path / "no_yaml.safetensors"
    shutil.copyfile(ckpt, no_yaml)
    bad_yaml = tmp_path / "bad_yaml.safetensors"
    shutil.copyfile(ckpt, bad_yaml)
    bad_yaml.with_suffix(".yaml").write_text("model: [unclosed\n")
    return {
        "missing": (tmp_path / "missing.safetensors", f"checkpoint weights not found: {tmp_path / 'missing'}"),
        "corrupt": (corrupt, f"cannot read checkpoint {corrupt}: "),
        "truncated": (truncated, f"cannot read checkpoint {truncated}: "),
        "no yaml": (no_yaml, f"checkpoint config not found: {no_yaml.with_suffix('.yaml')}"),
        "bad yaml": (bad_yaml, f"invalid checkpoint config {bad_yaml.with_suffix('.yaml')}"),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "no yaml", "bad yaml"])
@pytest.mark.parametrize("name", ["auto", "openvino", "onnxruntime", "torch", "tensorrt"])
def test_an_unusable_model_file_is_reported_first_before_any_backend_is_tried(ckpt: Path, tmp_path: Path,
                                                                              name: str, case: str) -> None:
    path, cause = _broken_checkpoints(ckpt, tmp_path)[case]
    with pytest.raises(BackendError) as info:
        create_backend(name, str(path), "cuda" if name == "tensorrt" else "cpu", cache_dir=str(tmp_path))
    message = str(info.value)
    assert message.startswith(cause), message
    assert "tensorrt" not in message and "no backend could be created" not in message
    assert len(message) < 400


def test_the_enhancer_reports_a_missing_model_file_by_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "model.safetensors"
    with pytest.raises(BackendError, match=f"^checkpoint weights not found: {missing}$"):
        Enhancer(EnhancerConfig(model=str(missing), backend="auto", device="cpu"))


def test_when_every_backend_fails_the_preferred_ones_reason_comes_first(ckpt: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import dap_led_ros.runtime.backends as backends

    real = backends._backend_class

    def failing(name: str):
        cls = real(name)

        class Failing(cls):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kwargs) -> None:
                raise BackendError(f"{name} broke here")
        return Failing

    monkeypatch.setattr(backends, "_backend_class", failing)
    with pytest.raises(BackendError) as info:
        create_backend("auto", str(ckpt), "cpu")
    first = "openvino: openvino broke here | " if X86 else ""
    assert str(info.value) == ("no backend could be created: " + first + "onnxruntime: onnxruntime broke here | "
                               "torch: torch broke here (tensorrt not tried: device is 'cpu')")


# ----------------------------------------------------------------------------- ONNX Runtime memory

def test_onnxruntime_returns_arena_memory_only_when_the_input_shape_changes(pair, monkeypatch) -> None:
    """The CPU arena is shrunk at the end of a run whose shapes differ from the session's last
    run (so one large frame does not keep its peak), never on a steady stream of one size."""
    _, ort_backend = pair
    session = ort_backend.session
    seen: list[bool] = []
    real_run = session.run

    class Recording:
        def run(self, outputs, feeds, run_options=None):
            seen.append(run_options is not None)
            return real_run(outputs, feeds, run_options)

    monkeypatch.setattr(ort_backend, "session", Recording())
    ort_backend._last_shapes.clear()
    small, large = (np.zeros((1, 3, h, w), np.float32) for h, w in [(32, 48), (64, 96)])
    for x in (small, small, small, large, small, small):
        ort_backend.infer(x)
    assert seen == [True, False, False, True, True, False]


# ----------------------------------------------------------------------------- OpenVINO

@pytest.fixture(scope="module")
def openvino_backend(ckpt: Path, cache: Path):
    pytest.importorskip("openvino", reason="openvino is not installed")
    backend = create_backend("openvino", str(ckpt), "cpu", threads=1, cache_dir=str(cache), precision="f32")
    yield backend
    backend.close()


@pytest.mark.parametrize("shape", [(1, 37, 53), (1, 64, 48), (2, 33, 96), (1, 5, 7)])
def test_openvino_matches_onnxruntime_on_the_same_onnx_file(pair, openvino_backend, shape) -> None:
    _, ort_backend = pair
    assert openvino_backend.onnx_path == ort_backend.onnx_path  # one export, two runtimes
    x = np.random.default_rng(sum(shape)).random((shape[0], 3, *shape[1:]), dtype=np.float32)
    got, want = openvino_backend.infer(x), ort_backend.infer(x)
    assert got.shape == x.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 1e-4


def test_openvino_prior_graphs_match_onnxruntime(pair, openvino_backend) -> None:
    _, ort_backend = pair
    assert openvino_backend.supports_prior_input and ort_backend.supports_prior_input
    x = np.random.default_rng(3).random((1, 3, 40, 56), dtype=np.float32)
    maps = ort_backend.heatmaps(x)
    for got, want in zip(openvino_backend.heatmaps(x), maps):
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5
    # Shifted heatmaps change the result the same way in both runtimes.
    shifted = [np.roll(m, 1, axis=1) for m in maps]
    np.testing.assert_allclose(openvino_backend.infer_with_prior(x, shifted),
                               ort_backend.infer_with_prior(x, shifted), atol=1e-4)


def test_openvino_runs_frames_from_several_threads(openvino_backend) -> None:
    from concurrent.futures import ThreadPoolExecutor

    frames = [np.full((1, 3, 24, 32), v, np.float32) for v in (0.1, 0.5, 0.9)]
    alone = [openvino_backend.infer(f) for f in frames]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(openvino_backend.infer, frames * 4))
    for i, out in enumerate(together):
        np.testing.assert_array_equal(out, alone[i % 3])


def test_openvino_options_and_errors(ckpt: Path, cache: Path, tmp_path: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed")
    backend = create_backend("openvino", str(ckpt), "cpu", threads=1, cache_dir=str(cache), precision="bf16")
    assert "bf16" in backend.describe() and "threads 1" in backend.describe()
    with pytest.raises(BackendError, match="precision 'int4'"):
        create_backend("openvino", str(ckpt), "cpu", cache_dir=str(cache), precision="int4")
    with pytest.raises(BackendError, match="runs on the CPU"):
        create_backend("openvino", str(ckpt), "cuda", cache_dir=str(cache))
    with pytest.raises(BackendError, match="ONNX file not found"):
        create_backend("openvino", str(ckpt), "cpu", engine=str(tmp_path / "none.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(BackendError, match="openvino cannot read"):
        create_backend("openvino", None, "cpu", engine=str(broken))
    with pytest.raises(BackendError, match="does not take option"):
        create_backend("openvino", str(ckpt), "cpu", cache_dir=str(cache), fp16=True)


def test_openvino_compiles_once_per_frame_size_and_repeats_its_output_exactly(ckpt: Path, cache: Path) -> None:
    pytest.importorskip("openvino", reason="openvino is not installed")
    backend = create_backend("openvino", str(ckpt), "cpu", threads=1, cache_dir=str(cache))  # bf16 where native
    graph = backend._graphs["restore"]
    x = np.random.default_rng(5).random((1, 3, 48, 64), dtype=np.float32)
    outputs = [backend.infer(x) for _ in range(3)]
    assert graph.static_compiled == 1
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])  # one compilation: the same bytes every time
    for size in range(6):               # at most MAX_STATIC compiled graphs are kept
        backend.infer(np.zeros((1, 3, 16, 16 + 8 * size), np.float32))
    assert len(graph._static) == graph.MAX_STATIC and graph.static_compiled == 7
