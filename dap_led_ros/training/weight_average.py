"""Weight averaging of checkpoints of one network (a "model soup" / WiSE-FT interpolation).

Fine-tuned checkpoints that share their starting weights lie in one basin: a weighted mean of their
parameters often keeps most of what each fine-tune gained while giving back less of what it lost.
The average's campaign record joins the ingredients' records (a run shared by several counts once).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from dap_led_ros.checkpoint import CheckpointError, campaign_record, checkpoint_paths, load_checkpoint, save_checkpoint


def joint_campaign(extras: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The union of the ingredients' training runs, each counted once, summed."""
    runs: list[dict[str, Any]] = []
    for extra in extras:
        for run in campaign_record(extra)["runs"]:
            if run not in runs:
                runs.append(dict(run))
    if not runs:  # no run lists: the largest single record
        best = max((campaign_record(e) for e in extras), key=lambda r: r["cumulative_steps"])
        return {**best, "runs": []}
    return {"cumulative_steps": sum(int(r.get("steps", 0)) for r in runs),
            "cumulative_hours": round(sum(float(r.get("hours", 0.0)) for r in runs), 3),
            "runs": runs}


def average_checkpoints(paths: Sequence[str | Path], weights: Sequence[float] | None = None
                        ) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The weighted mean of the checkpoints' parameters (weights normalised to sum 1; equal by
    default). Every checkpoint must hold the same network (config and parameter shapes)."""
    if len(paths) < 2:
        raise CheckpointError("averaging needs at least two checkpoints")
    w = [1.0] * len(paths) if weights is None else [float(x) for x in weights]
    if len(w) != len(paths):
        raise CheckpointError(f"{len(paths)} checkpoints but {len(w)} weights")
    if any(x < 0 for x in w) or sum(w) <= 0:
        raise CheckpointError(f"weights must be >= 0 with a positive sum, got {w}")
    w = [x / sum(w) for x in w]
    model, cfg = None, None
    total: dict[str, torch.Tensor] = {}
    extras: list[dict[str, Any]] = []
    for p, wi in zip(paths, w):
        m, c, extra = load_checkpoint(p)
        if model is None:
            model, cfg = m, c
        elif c.to_dict() != cfg.to_dict():
            raise CheckpointError(f"{p} holds another network than {paths[0]}: only checkpoints of one "
                                  "configuration can be averaged")
        extras.append(extra)
        for k, v in m.state_dict().items():
            if not v.is_floating_point():  # counters and the like: the first checkpoint's
                total.setdefault(k, v.clone())
                continue
            total[k] = total.get(k, torch.zeros_like(v, dtype=torch.float64)) + wi * v.double()
    ref = model.state_dict()
    model.load_state_dict({k: total[k].to(ref[k].dtype) for k in ref})
    extra = {"average": {"checkpoints": [str(p) for p in paths], "weights": [round(x, 6) for x in w]},
             "campaign": joint_campaign(extras)}
    return model, cfg, extra


def write_average(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None
                  ) -> Path:
    """Average and save as `out`.safetensors + `out`.yaml; returns the weights file. An
    ingredient is never overwritten."""
    target = checkpoint_paths(out)[0].resolve()
    for p in paths:
        if checkpoint_paths(p)[0].resolve() == target:
            raise CheckpointError(f"the output {target} is one of the checkpoints averaged; choose another")
    model, cfg, extra = average_checkpoints(paths, weights)
    return save_checkpoint(model, cfg, out, extra)
