"""On-disk cache of derived inference artefacts: ONNX exports and TensorRT engines.

ONNX exports are keyed by the checkpoint's content hash and the network's source code. A
TensorRT engine is keyed by the hash of its ONNX file, the TensorRT version, the GPU (name and
compute capability), the shape profiles, the precision and the DLA core; the key and its inputs
are stored beside the engine as JSON, so a stale or foreign engine is refused with the reason
instead of failing inside TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dap_led_ros.runtime.backends.base import BackendError

log = logging.getLogger(__name__)

CACHE_ENV = "DAP_LED_CACHE"
ENGINE_META_SUFFIX = ".json"


class StaleEngineError(BackendError):
    """An engine does not match this checkpoint, TensorRT version, GPU or build settings."""


def cache_root(override: str | Path | None = None) -> Path:
    """`override`, else $DAP_LED_CACHE, else ~/.cache/dap_led_ros."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "dap_led_ros"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def checkpoint_digest(model_path: str | Path | None) -> str:
    """sha256 over a checkpoint's weights and its YAML config (the default checkpoint for None)."""
    from dap_led_ros.shipped_models import checkpoint_paths, default_checkpoint

    weights, meta = checkpoint_paths(model_path or default_checkpoint())
    for p in (weights, meta):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {p}")
    h = hashlib.sha256()
    for p in (weights, meta):
        h.update(file_sha256(p).encode())
    return h.hexdigest()


def model_code_digest() -> str:
    """sha256 of the network's source files: an export is redone when the model code changes."""
    h = hashlib.sha256()
    files = sorted((Path(__file__).resolve().parents[2] / "model").glob("*.py"))  # dap_led_ros/model
    if not files:
        raise RuntimeError("the network's source files (dap_led_ros/model/*.py) are missing")
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _publish_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp folder into place; a concurrent writer that won keeps its copy."""
    try:
        os.replace(tmp, final)
    except OSError:
        if not (final / "export.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def cached_onnx(model_path: str | Path | None, root: str | Path | None = None, opset: int | None = None,
                precision: str = "fp32") -> Path:
    """The ONNX export of a checkpoint (with its tiling graphs), exported into the cache on first use;
    `precision` fp16: the mixed float16 graphs (runtime/float16_graph.py)."""
    from dap_led_ros.runtime.export import DEFAULT_OPSET, EXPORT_FORMAT, export_model

    opset = opset or DEFAULT_OPSET
    digest = checkpoint_digest(model_path)
    code = model_code_digest()
    suffix = "" if precision == "fp32" else f"-{precision}"
    folder = cache_root(root) / "onnx" / f"{digest[:24]}-{code[:8]}-f{EXPORT_FORMAT}-op{opset}{suffix}"
    onnx_path = folder / "dapled.onnx"
    if (folder / "export.json").is_file() and onnx_path.is_file():
        return onnx_path
    from dap_led_ros.checkpoint import load_checkpoint

    log.info("exporting %s to ONNX (first use; cached in %s)", model_path or "the default model", folder)
    model, _, _ = load_checkpoint(model_path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        exported = export_model(model, tmp / "dapled.onnx", opset=opset,
                                metadata={"dap_led.checkpoint_sha256": digest}, precision=precision)
        (tmp / "export.json").write_text(json.dumps({
            "checkpoint": str(model_path or "default"), "checkpoint_sha256": digest, "model_code_sha256": code,
            "onnx_sha256": file_sha256(exported.restore), "opset": opset, "export_format": EXPORT_FORMAT,
            "precision": precision,
            "prior_graphs": exported.heatmaps is not None}, indent=2))
        _publish_dir(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return onnx_path


def onnx_graph(model_path: str | Path | None, engine: str | None, cache_dir: str | None, backend: str) -> Path:
    """The .onnx file a graph runtime (ONNX Runtime, OpenVINO) runs: `engine` when given, else the
    checkpoint's cached export."""
    if engine is not None:
        if Path(engine).suffix != ".onnx":
            raise BackendError(f"the {backend} backend needs an .onnx file, got engine={engine}")
        if not Path(engine).is_file():
            raise BackendError(f"ONNX file not found: {engine}")
        return Path(engine)
    try:
        return cached_onnx(model_path, root=cache_dir)
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendError(f"cannot export {model_path or 'the default model'} to ONNX: {exc}") from exc


# --- TensorRT engine keys --------------------------------------------------------------------

@dataclass(frozen=True)
class EngineKeyInputs:
    """Everything an engine depends on. Any change means a rebuild."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    # One (min, opt, max) triple of (batch, height, width) per optimisation profile.
    profiles: tuple[tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]], ...]
    precision: str
    dla_core: int = -1
    # Layers kept in FP32 (type names and name patterns) change the engine too.
    fp32_layers: tuple[str, ...] = ()
    # strong: the graph's precisions; weak: BuilderFlag.FP16 with constraints (engine.yaml `typing`).
    typing: str = "strong"

    def key(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["profiles"] = [[list(s) for s in p] for p in self.profiles]
        d["fp32_layers"] = list(self.fp32_layers)
        return d

    @staticmethod
    def from_json(d: dict[str, Any]) -> "EngineKeyInputs":
        return EngineKeyInputs(
            onnx_sha256=str(d["onnx_sha256"]), tensorrt_version=str(d["tensorrt_version"]),
            gpu_name=str(d["gpu_name"]), compute_capability=str(d["compute_capability"]),
            profiles=tuple(tuple(tuple(int(v) for v in s) for s in p) for p in d["profiles"]),  # type: ignore[misc]
            precision=str(d["precision"]), dla_core=int(d.get("dla_core", -1)),
            fp32_layers=tuple(d.get("fp32_layers", ())),
            typing=str(d.get("typing", "weak")))  # engines from before typing was recorded were weak


# Fields that describe where an engine can run: a mismatch means a foreign engine.
_PLATFORM_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability", "dla_core")


def engine_path_for(inputs: EngineKeyInputs, root: str | Path | None = None) -> Path:
    """Where the cache keeps the engine for these key inputs."""
    return cache_root(root) / "engines" / f"dapled-{inputs.precision}-{inputs.key()[:24]}.engine"


def meta_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + ENGINE_META_SUFFIX)


def write_engine_meta(engine_path: str | Path, inputs: EngineKeyInputs, extra: dict[str, Any] | None = None) -> Path:
    path = meta_path(engine_path)
    doc = {"key": inputs.key(), "inputs": inputs.to_json(), **(extra or {})}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)
    return path


def read_engine_meta(engine_path: str | Path) -> dict[str, Any]:
    path = meta_path(engine_path)
    if not path.is_file():
        raise StaleEngineError(f"engine {engine_path} has no {path.name} beside it, so its build settings are "
                               "unknown; rebuild it with `dap-led build-engine`")
    try:
        doc = json.loads(path.read_text())
        EngineKeyInputs.from_json(doc["inputs"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise StaleEngineError(f"unreadable engine metadata {path}: {exc}") from exc
    return doc


def check_engine(engine_path: str | Path, expected: EngineKeyInputs,
                 checkpoint_sha256: str | None = None) -> dict[str, Any]:
    """Refuse an engine that is not the one `expected` describes; returns its metadata.

    Platform fields (TensorRT version, GPU, DLA core) differing means the engine was built
    elsewhere (foreign); ONNX / checkpoint / profile / precision differences mean it is stale.
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise StaleEngineError(f"engine file not found: {engine_path}")
    doc = read_engine_meta(engine_path)
    have = EngineKeyInputs.from_json(doc["inputs"]).to_json()
    want = expected.to_json()
    differing = [k for k in want if have.get(k) != want[k]]
    diffs = [f"{k}: engine has {have[k]!r}, needed {want[k]!r}" for k in differing]
    if not differing and doc.get("key") != expected.key():
        diffs.append("the recorded key does not match its inputs (edited metadata?)")
    recorded_ckpt = doc.get("checkpoint_sha256")
    if checkpoint_sha256 and recorded_ckpt and recorded_ckpt != checkpoint_sha256:
        diffs.append(f"checkpoint: engine built from {recorded_ckpt[:12]}, this checkpoint is {checkpoint_sha256[:12]}")
    if not diffs:
        return doc
    kind = "foreign (built for another TensorRT version or GPU)" if set(differing) & set(_PLATFORM_FIELDS) \
        else "stale"
    raise StaleEngineError(f"engine {engine_path} is {kind}: " + "; ".join(diffs)
                           + ". Rebuild it with `dap-led build-engine`.")
