"""TensorRT: engine config and profile selection, precision constraints (no TensorRT needed),
and, where TensorRT and a GPU exist, a real FP16 engine build and run."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dap_led_ros.runtime.backends import BackendError, create_backend
from dap_led_ros.runtime.backends.cuda_support import device_index, open_cuda_memory
from dap_led_ros.runtime.backends.tensorrt_build import mark_fp32_layers, stays_fp32
from dap_led_ros.runtime.backends.tensorrt_config import EngineConfig, ProfileError, ShapeProfile, select_profile

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

try:
    import tensorrt  # noqa: F401

    TRT_ERROR = None if torch.cuda.is_available() else "TensorRT is installed but torch sees no CUDA GPU"
except ImportError as exc:
    TRT_ERROR = f"TensorRT is not installed (`import tensorrt` failed: {exc}); these tests need an NVIDIA GPU"
requires_tensorrt = pytest.mark.skipif(TRT_ERROR is not None, reason=TRT_ERROR or "")


# --- without TensorRT ---------------------------------------------------------------------------

def test_default_profiles_follow_camera_resolutions() -> None:
    profiles = EngineConfig().shape_profiles()
    assert [p.opt for p in profiles] == [(1, 480, 640), (1, 720, 1280), (1, 1080, 1920)]
    assert all(p.min == (1, 16, 16) and p.max == p.opt for p in profiles)
    assert profiles[0].nchw() == ((1, 3, 16, 16), (1, 3, 480, 640), (1, 3, 480, 640))


@pytest.mark.parametrize("hw,expected", [
    ((480, 640), 0),     # exactly a camera
    ((333, 517), 0),     # smaller frames use the closest covering profile
    ((600, 1000), 1),    # too big for 640x480
    ((720, 1280), 1),
    ((800, 800), 2),     # taller than 720
    ((1080, 1920), 2),
    ((768, 768), 2),     # an Enhancer tile
])
def test_profile_selection(hw: tuple[int, int], expected: int) -> None:
    assert select_profile(EngineConfig().shape_profiles(), 1, *hw) == expected


def test_profile_selection_prefers_closest_opt_and_rejects_uncovered() -> None:
    wide = ShapeProfile((1, 16, 16), (1, 1080, 1920), (2, 1080, 1920))
    small = ShapeProfile((1, 16, 16), (1, 240, 320), (1, 480, 640))
    assert select_profile([wide, small], 1, 240, 320) == 1
    assert select_profile([wide, small], 1, 1000, 1000) == 0
    assert select_profile([wide, small], 2, 240, 320) == 0  # only `wide` takes batch 2
    with pytest.raises(ProfileError, match="no engine profile covers batch 1, 2160x3840"):
        select_profile([wide, small], 1, 2160, 3840)
    with pytest.raises(ProfileError):
        select_profile([wide, small], 1, 8, 64)  # below min_side
    with pytest.raises(ValueError, match="min <= opt <= max"):
        ShapeProfile((1, 16, 16), (1, 480, 640), (1, 240, 640))


def test_engine_yaml_matches_dataclass_defaults_and_overrides(tmp_path: Path) -> None:
    shipped = EngineConfig.from_yaml(ROOT / "config" / "engine.yaml")
    assert shipped == EngineConfig()
    custom = tmp_path / "engine.yaml"
    custom.write_text("engine:\n  cameras: [[848, 480]]\n  slack: 16\n  max_batch: 2\n  precision: fp32\n")
    cfg = EngineConfig.from_yaml(custom)
    assert cfg.shape_profiles() == [ShapeProfile((1, 16, 16), (1, 480, 848), (2, 496, 864))]
    assert cfg.fp32_layers() == ()  # no constraints in an FP32 build
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("engine:\n  profiles:\n    - {min: [1, 32, 32], opt: [1, 64, 64], max: [1, 128, 128]}\n")
    assert EngineConfig.from_yaml(explicit).shape_profiles() == [ShapeProfile((1, 32, 32), (1, 64, 64), (1, 128, 128))]
    for bad, match in [("engine: {precision: int8}", "fp16 or fp32"), ("engine: {cameras: [[8, 8]]}", "min_side"),
                       ("engine: {workspace: 1}", "unknown engine settings"),
                       ("engine: {opt_batch: 2}", "opt_batch")]:
        custom.write_text(bad)
        with pytest.raises(ValueError, match=match):
            EngineConfig.from_yaml(custom)


class _Tensor(SimpleNamespace):
    pass


class _Layer:
    def __init__(self, name: str, type_name: str, out_dtype: str) -> None:
        self.name, self.type = name, SimpleNamespace(name=type_name)
        self.num_outputs = 1
        self._out = _Tensor(dtype=out_dtype)
        self.precision = None
        self.output_types: dict[int, str] = {}

    def get_output(self, i: int) -> _Tensor:
        return self._out

    def set_output_type(self, i: int, dtype: str) -> None:
        self.output_types[i] = dtype


class _Layer11(_Layer):
    """A TensorRT 11 layer: per-layer precision and output types were removed with weak typing."""

    def __setattr__(self, name: str, value) -> None:
        if name == "precision" and "precision" in self.__dict__:
            raise AttributeError("TensorRT 11: ILayer.precision was removed (strong typing)")
        super().__setattr__(name, value)

    def set_output_type(self, i: int, dtype: str) -> None:
        raise AttributeError("TensorRT 11: ILayer.set_output_type was removed (strong typing)")


def test_precision_constraints_pin_norm_softmax_reduce_layers() -> None:
    layers = [
        _Layer("/encoders.0/blocks.0/norm1/ReduceMean", "REDUCE", "half"),
        _Layer("/encoders.0/blocks.0/norm1/Sub", "ELEMENTWISE", "half"),
        _Layer("/encoders.0/blocks.0/attn/Softmax", "SOFTMAX", "half"),
        _Layer("/prior/visual/ln_pre/LayerNormalization", "NORMALIZATION", "half"),
        _Layer("/encoders.0/blocks.0/attn/qkv/Conv", "CONVOLUTION", "half"),
        _Layer("/encoders.0/blocks.0/norm1/Shape", "SHAPE", "int64"),  # shape math stays as is
    ]
    network = SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    marked = mark_fp32_layers(network, EngineConfig(), fp32="float", float_types=("float", "half"))
    assert marked == [layer.name for layer in layers[:4]]
    assert all(layer.precision == "float" and layer.output_types == {0: "float"} for layer in layers[:4])
    assert layers[4].precision is None and layers[5].precision is None
    assert not stays_fp32("CONVOLUTION", "/out/Conv", EngineConfig())


def test_cuda_device_parsing_and_missing_gpu() -> None:
    assert device_index("cuda") == 0 and device_index("cuda:2") == 2
    with pytest.raises(BackendError, match="expected a CUDA device"):
        device_index("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no usable CUDA buffer provider"):
            open_cuda_memory("cuda")


@pytest.mark.skipif(TRT_ERROR is None, reason="checks the message shown when TensorRT is missing")
def test_tensorrt_backend_without_tensorrt_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        create_backend("tensorrt", None, "cuda", cache_dir=str(tmp_path))


# --- with TensorRT and a GPU --------------------------------------------------------------------

SMALL = {"width": 8, "blocks": (1, 1, 1, 1), "stem_unshuffle": 2}


@pytest.fixture(scope="module")
def trt_setup(tmp_path_factory: pytest.TempPathFactory):
    from dap_led_ros.checkpoint import save_checkpoint
    from dap_led_ros.model import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig.from_variant("tiny", **SMALL)
    ckpt = save_checkpoint(build_model(cfg).eval(), cfg, tmp_path_factory.mktemp("ckpt") / "tiny")
    engine_cfg = EngineConfig(cameras=[[64, 48], [128, 96]], workspace_mib=512)
    return ckpt, engine_cfg, tmp_path_factory.mktemp("cache")


@requires_tensorrt
def test_fp16_engine_builds_caches_and_matches_fp32(trt_setup) -> None:
    from dap_led_ros.runtime.backends.verify import compare_backends

    ckpt, engine_cfg, cache = trt_setup
    engine = create_backend("tensorrt", str(ckpt), "cuda", engine_config=engine_cfg, cache_dir=str(cache))
    assert len(engine.profiles) == 2
    meta = json.loads(Path(str(engine.engine_path) + ".json").read_text())
    assert meta["inputs"]["precision"] == "fp16" and meta["typing"] == "strong"
    reference = create_backend("torch", str(ckpt), "cpu")
    for row in compare_backends(engine, reference, [(48, 64), (37, 53), (96, 128)]):
        assert row["psnr_db"] > 35, row
    mtime = engine.engine_path.stat().st_mtime_ns
    again = create_backend("tensorrt", str(ckpt), "cuda", engine_config=engine_cfg, cache_dir=str(cache),
                           build=False)
    assert again.engine_path == engine.engine_path and engine.engine_path.stat().st_mtime_ns == mtime
    with pytest.raises(BackendError, match="no engine profile covers"):
        again.infer(np.zeros((1, 3, 200, 200), np.float32))


@requires_tensorrt
def test_foreign_engine_is_refused(trt_setup, tmp_path: Path) -> None:
    from dap_led_ros.runtime.backends.engine_cache import StaleEngineError

    ckpt, engine_cfg, cache = trt_setup
    engine = create_backend("tensorrt", str(ckpt), "cuda", engine_config=engine_cfg, cache_dir=str(cache))
    copy = tmp_path / "copy.engine"
    copy.write_bytes(engine.engine_path.read_bytes())
    meta = json.loads(Path(str(engine.engine_path) + ".json").read_text())
    meta["inputs"]["gpu_name"] = "some other GPU"
    Path(str(copy) + ".json").write_text(json.dumps(meta))
    with pytest.raises(StaleEngineError, match="foreign"):
        create_backend("tensorrt", str(ckpt), "cuda", engine=str(copy))


# --- the backend's control flow against a stand-in TensorRT module --------------------------------
# The stand-in follows the documented TensorRT 10 Python API names that the builder and runtime
# use and executes the engine's ONNX graph with ONNX Runtime, so the key/caching logic, profile
# switching, per-call input shapes and buffer copies run here without a GPU.

class _FakeMemory:
    """'Device' memory that is host memory; copies are plain numpy copies."""

    name = "fake"
    stream_handle = 1234

    def host(self, nbytes: int):
        from dap_led_ros.runtime.backends.cuda_support import HostBuffer

        return HostBuffer(np.zeros(nbytes, np.uint8))

    def device(self, nbytes: int):
        from dap_led_ros.runtime.backends.cuda_support import DeviceBuffer

        arr = np.zeros(nbytes, np.uint8)
        return DeviceBuffer(arr.ctypes.data, nbytes, arr)

    def copy_to_device(self, dst, src, nbytes: int) -> None:
        dst.owner[:nbytes] = src.data[:nbytes]

    def copy_to_host(self, dst, src, nbytes: int) -> None:
        dst.data[:nbytes] = src.owner[:nbytes]

    def synchronize(self) -> None:
        pass

    def identity(self) -> tuple[str, str]:
        return "Fake GPU", "8.7"

    def activate(self):
        import contextlib

        return contextlib.nullcontext()

    def close(self) -> None:
        pass


STRONGLY_TYPED = 5  # the stand-in's NetworkDefinitionCreationFlag.STRONGLY_TYPED


def _fake_tensorrt(calls: list[str], version: str = "10.99.0"):
    """TensorRT `version` (10.x: weak typing still there; 11.x: BuilderFlag.FP16, OBEY/PREFER_
    PRECISION_CONSTRAINTS, layer precision and platform_has_fast_fp16 absent, as documented)."""
    import ctypes
    import types

    import onnx
    import onnxruntime as ort

    v11 = int(version.split(".")[0]) >= 11
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.float32, trt.float16, trt.int64 = "float32", "float16", "int64"
    trt.nptype = lambda t: {"float32": np.float32, "float16": np.float16}[t]
    trt.BuilderFlag = (SimpleNamespace(GPU_FALLBACK="GPU_FALLBACK") if v11 else
                       SimpleNamespace(FP16="FP16", OBEY_PRECISION_CONSTRAINTS="OBEY",
                                       PREFER_PRECISION_CONSTRAINTS="PREFER", GPU_FALLBACK="GPU_FALLBACK"))
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=STRONGLY_TYPED)
    layer_class = _Layer11 if v11 else _Layer
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DeviceType = SimpleNamespace(DLA="DLA", GPU="GPU")
    types_by_op = {"ReduceMean": "REDUCE", "ReduceL2": "REDUCE", "Softmax": "SOFTMAX",
                   "LayerNormalization": "NORMALIZATION", "Shape": "SHAPE", "Conv": "CONVOLUTION"}

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            pass

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.layers: list[_Layer] = []
            self.inputs: list[SimpleNamespace] = []
            self.onnx_path = ""

        num_layers = property(lambda self: len(self.layers))
        num_inputs = property(lambda self: len(self.inputs))

        def get_layer(self, i: int):
            return self.layers[i]

        def get_input(self, i: int):
            return self.inputs[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network: Network, logger: Logger) -> None:
            self.network = network

        def parse_from_file(self, path: str) -> bool:
            proto = onnx.load(path)
            self.network.onnx_path = path
            self.network.inputs = [SimpleNamespace(name=i.name) for i in proto.graph.input]
            self.network.layers = [
                layer_class(n.name, types_by_op.get(n.op_type, "ELEMENTWISE"),
                       "int64" if n.op_type == "Shape" else "float32")
                for n in proto.graph.node]
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, name: str, lo, opt, hi) -> None:
            self.shapes[name] = (lo, opt, hi)

    class TimingCache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return b"timing-cache"

    class Config:
        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.profiles: list[Profile] = []
            self.pools: dict[str, int] = {}

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: str) -> None:
            assert flag in vars(trt.BuilderFlag).values(), flag
            self.flags.add(flag)

        def add_optimization_profile(self, p: Profile) -> int:
            self.profiles.append(p)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob: bytes) -> TimingCache:
            self.cache = TimingCache(blob)
            return self.cache

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            assert ignore_mismatch is False  # a cache of another GPU/version is refused, not mixed in
            return True

        def get_timing_cache(self) -> TimingCache:
            return self.cache

    class Builder:
        num_DLA_cores = 0

        def __init__(self, logger: Logger) -> None:
            if not v11:
                self.platform_has_fast_fp16 = True

        def create_network(self, flags: int) -> Network:
            return Network(flags)

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: Config) -> bytes:
            assert config.pools["WORKSPACE"] == 512 << 20
            if network.flags & (1 << STRONGLY_TYPED):
                calls.append("build strong")
                assert not {"FP16", "OBEY", "PREFER"} & config.flags  # strong typing takes no precision hints
                assert all(layer.precision is None for layer in network.layers)
            else:
                calls.append("build weak")
                assert {"FP16", "OBEY"} <= config.flags
                assert any(layer.precision == "float32" for layer in network.layers)
            profiles = [[list(s) for s in p.shapes["image"]] for p in config.profiles]
            return json.dumps({"onnx": network.onnx_path, "profiles": profiles}).encode()

    class Context:
        def __init__(self, engine: "Engine") -> None:
            self.engine, self.profile, self.shape, self.addr = engine, 0, None, {}

        def set_optimization_profile_async(self, index: int, stream: int) -> bool:
            calls.append(f"profile {index}")
            self.profile = index
            return True

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            lo, _, hi = self.engine.profiles[self.profile]
            self.shape = tuple(shape)
            return all(a <= s <= b for a, s, b in zip(lo, shape, hi))

        def get_tensor_shape(self, name: str) -> tuple:
            return self.shape

        def set_tensor_address(self, name: str, ptr: int) -> bool:
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream: int) -> bool:
            n = int(np.prod(self.shape))
            view = lambda ptr: np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).reshape(self.shape)
            x = view(self.addr["image"]).copy()
            view(self.addr["restored"])[...] = self.engine.session.run(None, {"image": x})[0]
            return True

    class Engine:
        num_io_tensors = 2

        def __init__(self, doc: dict) -> None:
            self.profiles = [[tuple(s) for s in p] for p in doc["profiles"]]
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self.session = ort.InferenceSession(doc["onnx"], opts, providers=["CPUExecutionProvider"])

        num_optimization_profiles = property(lambda self: len(self.profiles))

        def get_tensor_name(self, i: int) -> str:
            return ("image", "restored")[i]

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def get_tensor_profile_shape(self, name: str, index: int) -> list:
            return self.profiles[index]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            pass

        def deserialize_cuda_engine(self, blob: bytes) -> Engine:
            return Engine(json.loads(blob))

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt


def _use_fake_trt(monkeypatch: pytest.MonkeyPatch, version: str) -> list[str]:
    import sys

    import dap_led_ros.runtime.backends.tensorrt_backend as tb

    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt(calls, version))
    monkeypatch.setattr(tb, "open_cuda_memory", lambda device, provider: _FakeMemory())
    return calls


@pytest.fixture
def fake_trt(monkeypatch: pytest.MonkeyPatch):
    return _use_fake_trt(monkeypatch, "10.99.0")


@pytest.mark.parametrize("version", ["10.3.0", "11.4.1"])
def test_strongly_typed_fp16_build_on_tensorrt_10_and_11(version: str, monkeypatch: pytest.MonkeyPatch,
                                                          trt_setup, tmp_path: Path) -> None:
    """The default build (typing: strong) exports the float16 graph and builds it strongly typed on
    both versions, with no weak-typing API touched; the timing cache is per version and GPU."""
    from dap_led_ros.runtime.backends.tensorrt_build import timing_cache_name
    from dap_led_ros.runtime.onnx_files import read_metadata

    calls = _use_fake_trt(monkeypatch, version)
    ckpt, engine_cfg, _ = trt_setup
    cache = tmp_path / "cache"
    backend = create_backend("tensorrt", str(ckpt), "cuda", engine_config=engine_cfg, cache_dir=str(cache))
    assert calls == ["build strong"]
    assert read_metadata(backend.onnx_path)["dap_led.precision"] == "fp16"
    meta = json.loads(Path(str(backend.engine_path) + ".json").read_text())
    assert meta["typing"] == "strong" and meta["inputs"]["typing"] == "strong" and meta["fp32_layer_count"] == 0
    assert meta["pad_multiple"] == backend.pad_multiple > 1
    timing = Path(meta["timing_cache"])
    assert timing.parent == cache / "engines" and timing.read_bytes() == b"timing-cache"
    assert timing.name == timing_cache_name(SimpleNamespace(tensorrt_version=version, gpu_name="Fake GPU",
                                                            compute_capability="8.7"))
    assert timing.name != timing_cache_name(SimpleNamespace(tensorrt_version=version, gpu_name="Other GPU",
                                                            compute_capability="8.7"))
    from dap_led_ros.runtime.backends.verify import psnr

    reference = create_backend("onnxruntime", None, "cpu", engine=str(backend.onnx_path))
    x = np.random.default_rng(1).random((1, 3, 48, 64), dtype=np.float32) * 0.3
    assert psnr(backend.infer(x), reference.infer(x)) > 60  # the stand-in runs the fp16 graph itself
    # Run by its file alone (no checkpoint): the pad multiple comes from the engine's JSON.
    alone = create_backend("tensorrt", None, "cuda", engine=str(backend.engine_path))
    assert alone.onnx_path is None and alone.pad_multiple == backend.pad_multiple
    assert alone.infer(x[..., :5, :7]).shape == (1, 3, 5, 7)


def test_weak_fp16_only_where_tensorrt_has_it(monkeypatch: pytest.MonkeyPatch, trt_setup, tmp_path: Path) -> None:
    """typing: weak uses BuilderFlag.FP16 + precision constraints on 10.x and is refused on 11.x
    with the way out; a float32 ONNX given for a strongly typed FP16 build is refused too."""
    ckpt, engine_cfg, _ = trt_setup
    weak = EngineConfig(cameras=engine_cfg.cameras, workspace_mib=512, typing="weak")
    calls = _use_fake_trt(monkeypatch, "10.3.0")
    backend = create_backend("tensorrt", str(ckpt), "cuda", engine_config=weak, cache_dir=str(tmp_path / "a"))
    assert calls == ["build weak"]
    meta = json.loads(Path(str(backend.engine_path) + ".json").read_text())
    assert meta["typing"] == "weak" and meta["fp32_layer_count"] > 0
    fp32_onnx = backend.onnx_path
    calls = _use_fake_trt(monkeypatch, "11.4.1")
    with pytest.raises(BackendError, match="removed weakly typed FP16.*typing: strong"):
        create_backend("tensorrt", str(ckpt), "cuda", engine_config=weak, cache_dir=str(tmp_path / "b"))
    with pytest.raises(BackendError, match="needs a fp16 graph.*--precision fp16"):
        create_backend("tensorrt", None, "cuda", engine=str(fp32_onnx), engine_config=engine_cfg,
                       cache_dir=str(tmp_path / "b"))
    fp32 = EngineConfig(cameras=engine_cfg.cameras, workspace_mib=512, precision="fp32")
    create_backend("tensorrt", None, "cuda", engine=str(fp32_onnx), engine_config=fp32, cache_dir=str(tmp_path / "b"))
    assert calls == ["build strong"]


def test_dla_refuses_dynamic_shapes_and_portrait_profiles() -> None:
    with pytest.raises(ValueError, match="DLA does not run dynamic shapes"):
        EngineConfig(dla_core=0).validate()
    EngineConfig(dla_core=0, profiles=[{"min": [1, 480, 640], "opt": [1, 480, 640], "max": [1, 480, 640]}]).validate()
    upright = EngineConfig(cameras=[[640, 480], [512, 512]], portrait=True).shape_profiles()
    assert [p.opt for p in upright] == [(1, 512, 512), (1, 640, 480), (1, 480, 640)]
    assert select_profile(upright, 1, 600, 450) == 1
    with pytest.raises(ProfileError, match="portrait: true"):
        select_profile(EngineConfig(cameras=[[640, 480]]).shape_profiles(), 1, 600, 450)


def test_backend_flow_with_stand_in_tensorrt(fake_trt: list[str], trt_setup, tmp_path: Path) -> None:
    from dap_led_ros.runtime.backends.engine_cache import StaleEngineError

    ckpt, engine_cfg, cache = trt_setup
    backend = create_backend("tensorrt", str(ckpt), "cuda", engine_config=engine_cfg, cache_dir=str(cache))
    assert fake_trt == ["build strong"]
    meta = json.loads(Path(str(backend.engine_path) + ".json").read_text())
    assert meta["inputs"]["gpu_name"] == "Fake GPU" and meta["inputs"]["tensorrt_version"] == "10.99.0"
    assert Path(meta["timing_cache"]).read_bytes() == b"timing-cache"
    assert [p.opt for p in backend.profiles] == [(1, 48, 64), (1, 96, 128)]

    reference = create_backend("onnxruntime", str(ckpt), "cpu", engine=str(backend.onnx_path))
    for shape, profile in [((1, 3, 48, 64), 0), ((1, 3, 37, 53), 0), ((1, 3, 90, 100), 1), ((1, 3, 40, 60), 0)]:
        x = np.random.default_rng(shape[2]).random(shape, dtype=np.float32)
        assert np.abs(backend.infer(x) - reference.infer(x)).max() < 1e-4
        assert backend._active_profile == profile
    assert fake_trt == ["build strong", "profile 0", "profile 1", "profile 0"]
    with pytest.raises(BackendError, match="no engine profile covers"):
        backend.infer(np.zeros((1, 3, 200, 200), np.float32))

    # Cached: the same key loads without a rebuild, also with build=False (what `auto` does).
    again = create_backend("tensorrt", str(ckpt), "cuda", engine_config=engine_cfg, cache_dir=str(cache),
                           build=False)
    assert again.engine_path == backend.engine_path and fake_trt.count("build strong") == 1
    # Other profiles are another key: `auto` does not build it, an explicit request does.
    other_cfg = EngineConfig(cameras=[[64, 48]], workspace_mib=512)
    with pytest.raises(BackendError, match="no TensorRT engine"):
        create_backend("tensorrt", str(ckpt), "cuda", engine_config=other_cfg, cache_dir=str(cache), build=False)
    assert create_backend("tensorrt", str(ckpt), "cuda", engine_config=other_cfg,
                          cache_dir=str(cache)).engine_path != backend.engine_path
    assert fake_trt.count("build strong") == 2
    # A given engine whose JSON says it was built for another GPU is refused.
    meta["inputs"]["gpu_name"] = "Other GPU"
    Path(str(backend.engine_path) + ".json").write_text(json.dumps(meta))
    with pytest.raises(StaleEngineError, match="foreign"):
        create_backend("tensorrt", str(ckpt), "cuda", engine=str(backend.engine_path))


def test_build_engine_command_from_an_fp16_export_on_tensorrt_11(monkeypatch: pytest.MonkeyPatch, trt_setup,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    """The documented offline step: `dap-led export --precision fp16`, then `dap-led build-engine
    --onnx ... --output X.engine --verify --reference fp32.onnx`; the engine file then runs alone."""
    from dap_led_ros import cli
    from dap_led_ros.checkpoint import load_checkpoint
    from dap_led_ros.runtime.export import export_model

    ckpt, _, _ = trt_setup
    model, _, _ = load_checkpoint(ckpt)
    f16 = export_model(model, tmp_path / "m16.onnx", precision="fp16", prior_graphs=False).restore
    f32 = export_model(model, tmp_path / "m32.onnx", prior_graphs=False).restore
    config = tmp_path / "engine.yaml"
    config.write_text("engine:\n  cameras: [[64, 48]]\n  portrait: true\n  workspace_mib: 512\n")
    calls = _use_fake_trt(monkeypatch, "11.4.1")
    engine = tmp_path / "out" / "dapled.engine"
    rc = cli.main(["build-engine", "--onnx", str(f16), "--config", str(config), "--output", str(engine),
                   "--cache-dir", str(tmp_path / "cache"), "--verify", "--reference", str(f32)])
    out = capsys.readouterr().out
    builds = lambda: [c for c in calls if c.startswith("build")]  # noqa: E731
    assert rc == 0 and builds() == ["build strong"] and engine.is_file(), out
    assert out.count("PSNR vs FP32") == 2  # the camera and its portrait profile
    assert all(float(line.split("PSNR vs FP32 ")[1].split(" dB")[0]) > 40 for line in out.splitlines()
               if "PSNR vs FP32" in line)
    backend = create_backend("tensorrt", str(engine), "cuda")
    assert backend.infer(np.zeros((1, 3, 64, 48), np.float32)).shape == (1, 3, 64, 48)
    # Weak typing asked of TensorRT 11 stops before any build, naming the way out.
    rc = cli.main(["build-engine", "--onnx", str(f32), "--config", str(config), "--typing", "weak",
                   "--output", str(tmp_path / "weak.engine")])
    assert rc == 2 and "typing: strong" in capsys.readouterr().err and builds() == ["build strong"]
