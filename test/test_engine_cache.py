"""Engine cache: cache folder, checkpoint digests, TensorRT engine keys and stale/foreign detection."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dap_led_ros.runtime.backends import BackendError
from dap_led_ros.runtime.backends.engine_cache import (CACHE_ENV, EngineKeyInputs, StaleEngineError, cache_root, check_engine,
                                      checkpoint_digest, engine_path_for, meta_path, model_code_digest,
                                      read_engine_meta, write_engine_meta)

PROFILES = (((1, 16, 16), (1, 480, 640), (1, 480, 640)), ((1, 16, 16), (1, 720, 1280), (1, 720, 1280)))


def _inputs(**changes) -> EngineKeyInputs:
    base = EngineKeyInputs(onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="Orin",
                           compute_capability="8.7", profiles=PROFILES, precision="fp16", dla_core=-1,
                           fp32_layers=("type:SOFTMAX", "name:/norm1/"))
    return dataclasses.replace(base, **changes)


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_root() == Path.home() / ".cache" / "dap_led_ros"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_checkpoint_digest_covers_weights_and_config(tmp_path: Path) -> None:
    weights, meta = tmp_path / "m.safetensors", tmp_path / "m.yaml"
    weights.write_bytes(b"weights")
    meta.write_text("model: {}\n")
    d1 = checkpoint_digest(weights)
    assert checkpoint_digest(tmp_path / "m") == d1 == checkpoint_digest(meta)
    meta.write_text("model: {width: 8}\n")
    d2 = checkpoint_digest(weights)
    weights.write_bytes(b"weights2")
    assert len({d1, d2, checkpoint_digest(weights)}) == 3
    with pytest.raises(FileNotFoundError):
        checkpoint_digest(tmp_path / "missing.safetensors")
    # The network's source code is part of the ONNX cache key as well.
    assert model_code_digest() == model_code_digest() and len(model_code_digest()) == 64
    import hashlib

    import dap_led_ros.model as model_pkg

    h = hashlib.sha256()
    for f in sorted(Path(model_pkg.__file__).parent.glob("*.py")):  # the digest covers these files
        h.update(f.name.encode())
        h.update(f.read_bytes())
    assert model_code_digest() == h.hexdigest() != hashlib.sha256().hexdigest()


def test_key_is_stable_and_changes_with_every_input() -> None:
    base = _inputs()
    assert base.key() == _inputs().key()
    assert EngineKeyInputs.from_json(json.loads(json.dumps(base.to_json()))) == base
    variants = [
        _inputs(onnx_sha256="b" * 64), _inputs(tensorrt_version="10.4.0"), _inputs(gpu_name="RTX 4090"),
        _inputs(compute_capability="8.9"), _inputs(profiles=PROFILES[:1]), _inputs(precision="fp32"),
        _inputs(dla_core=0), _inputs(fp32_layers=()),
    ]
    keys = {v.key() for v in variants}
    assert len(keys) == len(variants) and base.key() not in keys
    assert engine_path_for(base, "/c") == Path("/c/engines") / f"dapled-fp16-{base.key()[:24]}.engine"


def _engine(tmp_path: Path, inputs: EngineKeyInputs, **extra) -> Path:
    engine = tmp_path / "dapled.engine"
    engine.write_bytes(b"serialized engine")
    write_engine_meta(engine, inputs, extra)
    return engine


def test_matching_engine_is_accepted(tmp_path: Path) -> None:
    engine = _engine(tmp_path, _inputs(), checkpoint_sha256="c" * 64)
    doc = check_engine(engine, _inputs(), checkpoint_sha256="c" * 64)
    assert doc["key"] == _inputs().key() and meta_path(engine).name == "dapled.engine.json"
    assert read_engine_meta(engine)["inputs"]["gpu_name"] == "Orin"


@pytest.mark.parametrize("change,kind,field", [
    ({"gpu_name": "RTX 4090", "compute_capability": "8.9"}, "foreign", "gpu_name"),
    ({"tensorrt_version": "10.5.0"}, "foreign", "tensorrt_version"),
    ({"onnx_sha256": "b" * 64}, "stale", "onnx_sha256"),
    ({"profiles": PROFILES[:1]}, "stale", "profiles"),
    ({"precision": "fp32", "fp32_layers": ()}, "stale", "precision"),
])
def test_mismatching_engine_is_refused_with_reason(tmp_path: Path, change: dict, kind: str, field: str) -> None:
    engine = _engine(tmp_path, _inputs())
    with pytest.raises(StaleEngineError, match=rf"is {kind}.*{field}.*dap-led build-engine") as info:
        check_engine(engine, _inputs(**change))
    assert isinstance(info.value, BackendError)


def test_engine_from_another_checkpoint_is_stale(tmp_path: Path) -> None:
    engine = _engine(tmp_path, _inputs(), checkpoint_sha256="c" * 64)
    with pytest.raises(StaleEngineError, match="stale: checkpoint"):
        check_engine(engine, _inputs(), checkpoint_sha256="d" * 64)


def test_missing_or_broken_metadata_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "bare.engine"
    with pytest.raises(StaleEngineError, match="not found"):
        check_engine(engine, _inputs())
    engine.write_bytes(b"x")
    with pytest.raises(StaleEngineError, match="no bare.engine.json"):
        check_engine(engine, _inputs())
    meta_path(engine).write_text("{not json")
    with pytest.raises(StaleEngineError, match="unreadable"):
        check_engine(engine, _inputs())
    doc = {"key": "0" * 64, "inputs": _inputs().to_json()}
    meta_path(engine).write_text(json.dumps(doc))
    with pytest.raises(StaleEngineError, match="recorded key does not match"):
        check_engine(engine, _inputs())
