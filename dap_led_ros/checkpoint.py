"""Checkpoints: safetensors weights plus a YAML config beside them. Nothing is unpickled."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from dap_led_ros.file_output import atomic_output, write_text
from dap_led_ros.model import DAPLED, ModelConfig, build_model
from dap_led_ros.shipped_models import checkpoint_paths, default_checkpoint  # noqa: F401  (re-exported)


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not match its config."""


def save_checkpoint(model: DAPLED, cfg: ModelConfig, path: str | Path,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write `path`.safetensors and `path`.yaml (model config + `extra` metadata), each through a
    temporary file renamed into place: a failed save leaves the earlier files as they were."""
    weights, meta = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_output(weights, force=True) as tmp:
        save_file(state, str(tmp))
    doc = {"model": cfg.to_dict(), "extra": extra or {}}
    write_text(meta, yaml.safe_dump(doc, sort_keys=False), force=True)
    return weights


def checkpoint_keys(path: str | Path) -> list[str]:
    """The parameter names a checkpoint's safetensors file holds (read from its header only)."""
    weights, _ = checkpoint_paths(path)
    with safe_open(str(weights), framework="pt") as f:
        return list(f.keys())


def read_checkpoint_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    weights, meta = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights not found: {weights}")
    if not meta.is_file():
        raise CheckpointError(f"checkpoint config not found: {meta} (expected beside {weights.name})")
    try:
        doc = yaml.safe_load(meta.read_text()) or {}
        cfg = ModelConfig.from_dict(doc["model"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid checkpoint config {meta}: {exc}") from exc
    return cfg, dict(doc.get("extra") or {})


def campaign_record(extra: dict[str, Any]) -> dict[str, Any]:
    """The campaign record of a checkpoint's `extra` (steps and hours before it); one without a
    record counts its own `step` with unknown hours (0)."""
    rec = extra.get("campaign")
    if isinstance(rec, dict) and "cumulative_steps" in rec:
        return {"cumulative_steps": int(rec["cumulative_steps"]),
                "cumulative_hours": float(rec.get("cumulative_hours", 0.0)), "runs": list(rec.get("runs", []))}
    return {"cumulative_steps": int(extra.get("step", 0)), "cumulative_hours": 0.0, "runs": []}


def load_checkpoint(path: str | Path | None = None, device: str | torch.device = "cpu"
                    ) -> tuple[DAPLED, ModelConfig, dict[str, Any]]:
    """Build the network from the YAML and load the safetensors weights (strict)."""
    weights, _ = checkpoint_paths(path or default_checkpoint())
    cfg, extra = read_checkpoint_config(weights)
    model = build_model(cfg, load_clip_weights=False)
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read {weights}: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not match its config: {str(exc)[:500]}") from exc
    return model.to(device).eval(), cfg, extra
