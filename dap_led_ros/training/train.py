"""The training loop behind `dap-led train --config config/train_tiny.yaml` (synthetic pairs or LOL-Blur).

- AdamW, linear warm-up then cosine decay, gradient clipping; mixed precision on CUDA.
- Multi-process data parallel through `torchrun` (DistributedDataParallel; nccl on GPUs, gloo
  on the CPU); a DistributedSampler gives every rank its share of each epoch.
- The run folder (`--out`) holds `train_config.yaml`, `log.jsonl` (every loss term, learning
  rate and validation figures), `state.pt` (resumable training state), `last.*` and `best.*`
  package checkpoints (safetensors + yaml, loadable with `dap-led enhance --model`).
- `--resume` continues from `state.pt` exactly: model, optimiser, schedule, step, grad scaler and
  RNG states are restored, and the data stream continues where it stopped (every item is a
  pure function of seed, epoch and index).
- Validation every `val_every` steps on the fixed sets of `loaders.ValidationSet` (photos
  training never sees); the best `score` (mean PSNR of the degraded sets) is kept as `best.*`.
- A campaign spans runs: every checkpoint's yaml holds `extra.campaign` with the cumulative
  optimiser steps and training hours of its weights, carried over from `init_from`'s yaml and
  across `--resume` (the hours are wall time of the training loop, validation included).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from dap_led_ros.checkpoint import campaign_record, checkpoint_keys, load_checkpoint, read_checkpoint_config, save_checkpoint
from dap_led_ros.file_output import write_text
from dap_led_ros.model import DAPLED, ModelConfig, build_model
from dap_led_ros.model.growth import load_grown
from dap_led_ros.training.config import OptimConfig, TrainConfig
from dap_led_ros.training.distributed import DistInfo, ResumableSampler, init_distributed, pick_device
from dap_led_ros.training.loaders import ValidationSet, build_train_dataset, collate, worker_init
from dap_led_ros.training.losses import LOSS_TERMS, LossConfig, compute_losses
from dap_led_ros.training.state import STATE_FILE, atomic_save, load_state, rng_state, set_rng_state

LOG_FILE = "log.jsonl"


# ---------------------------------------------------------------------------------------------
# Schedule and state


def lr_factor(step: int, cfg: OptimConfig, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio at `total` steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


class _TrainForward(nn.Module):
    """What DDP wraps: forward returns (restored, heatmaps)."""

    def __init__(self, model: DAPLED) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.model.forward_with_heatmaps(x)


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig, out: Path, resume: Path | None = None, stop_after: int | None = None,
          progress: bool = True) -> dict[str, Any]:
    """Train until `cfg.steps` (or `stop_after` more steps); returns the last logged row."""
    if cfg.threads:
        import cv2

        torch.set_num_threads(cfg.threads)
        cv2.setNumThreads(cfg.threads)  # the synthesis in this process too
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(device)
    try:
        return _train(cfg, out, resume, stop_after, progress, device, info)
    finally:
        if info.world > 1:
            dist.destroy_process_group()


class _Run:
    """One process's training state: network (and its EMA), optimiser, schedule, step, best PSNR."""

    def __init__(self, cfg: TrainConfig, device: torch.device, info: DistInfo) -> None:
        self.cfg, self.device, self.info = cfg, device, info
        self.mcfg = cfg.model_config()
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.mcfg).to(device)
        self.grids = tuple(self.mcfg.prior.grids) if self.mcfg.use_prior else (1,)
        self.dataset, self.data_desc = build_train_dataset(cfg, self.grids)
        self.opt = torch.optim.AdamW(_param_groups(self.model, cfg), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                     weight_decay=cfg.optim.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: lr_factor(s, cfg.optim, cfg.steps))
        self.use_amp = cfg.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.step, self.best = 0, -math.inf
        self.seconds = 0.0  # training wall time of this run, across resumes
        self.cpu_seconds = 0.0  # and the CPU time of this process
        self.campaign_base = {"cumulative_steps": 0, "cumulative_hours": 0.0, "runs": []}
        self.ema: AveragedModel | None = None
        self.detector_loss = _detector_loss(cfg.loss, device)

    def start(self, resume: Path | None) -> None:
        """Initial weights (init_from), the EMA copy, and the resumed state when resuming."""
        cfg, model = self.cfg, self.model
        if cfg.init_from:
            self.campaign_base = _campaign_of(Path(cfg.init_from))
        if cfg.init_from and resume is None:
            _init_weights(model, self.mcfg, Path(cfg.init_from))
        if cfg.ema_decay > 0:
            self.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        if resume is not None:
            state = load_state(resume)
            model.load_state_dict(state["model"])
            if self.ema is not None:
                if "ema" not in state:
                    raise ValueError(f"{resume} holds no EMA weights but the config sets ema_decay")
                self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["optimizer"])
            self.sched.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.step, self.best = int(state["step"]), float(state["best_psnr"])
            self.seconds = float(state.get("seconds", 0.0))
            self.cpu_seconds = float(state.get("cpu_seconds", 0.0))
            set_rng_state(state["rng"])
        # The prior and the restoration network are clipped separately, so the heatmap loss's
        # gradients never scale down the backbone's step (and the ablation is clipped alike).
        prior_params = list(model.prior.parameters()) if model.prior is not None else []
        prior_ids = {id(p) for p in prior_params}
        self.clip_groups = [g for g in ([p for p in model.parameters() if id(p) not in prior_ids], prior_params) if g]
        # The weights that are validated and saved: the EMA copy when one is kept.
        self.shipped: DAPLED = self.ema.module if self.ema is not None else model
        self.net: nn.Module = _TrainForward(model)
        if self.info.world > 1:
            self.net = DistributedDataParallel(self.net, device_ids=[self.device.index]
                                               if self.device.type == "cuda" else None)

    def loader(self, sampler: DistributedSampler, offset: int, end: int) -> DataLoader:
        """This epoch's batches from `offset` (in batches) up to step `end`."""
        cfg = self.cfg
        return DataLoader(self.dataset, batch_size=cfg.batch_size, drop_last=True, collate_fn=collate,
                          sampler=ResumableSampler(sampler, offset * cfg.batch_size, (end - self.step) * cfg.batch_size),
                          num_workers=cfg.data.workers, pin_memory=self.device.type == "cuda",
                          worker_init_fn=worker_init if cfg.data.workers else None,
                          # spawn, not fork: a forked worker can inherit a lock held by one of
                          # the parent's OpenCV/OpenMP threads and hang for ever.
                          multiprocessing_context="spawn" if cfg.data.workers else None)

    def optimise(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on `batch`; the loss terms."""
        cfg, device = self.cfg, self.device
        low, high = batch["low"].to(device), batch["high"].to(device)
        labels = [t.to(device) for t in batch["patch_labels"]] if "patch_labels" in batch else None
        if labels is None and np.random.default_rng((cfg.seed, self.step)).random() < 0.5:
            # Folder pairs come without flips (synthetic items are flipped by the dataset).
            low, high = low.flip(-1), high.flip(-1)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=self.use_amp):
            pred, maps = self.net(low)
            loss, terms = compute_losses(self.model, pred, high, maps, labels, cfg.loss, self.detector_loss)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.optim.grad_clip > 0:
            self.scaler.unscale_(self.opt)
            for group in self.clip_groups:
                torch.nn.utils.clip_grad_norm_(group, cfg.optim.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return terms

    def campaign(self, out: Path) -> dict[str, Any]:
        """The cumulative record of the current weights (init_from's record plus this run)."""
        base = self.campaign_base
        return {"cumulative_steps": int(base["cumulative_steps"]) + self.step,
                "cumulative_hours": round(float(base["cumulative_hours"]) + self.seconds / 3600, 3),
                "runs": [*base["runs"], {"run": out.name, "steps": self.step,
                                         "hours": round(self.seconds / 3600, 3),
                                         "threads": self.cfg.threads or torch.get_num_threads(),
                                         "device": self.device.type}]}

    def validate(self, val: ValidationSet, out: Path, extra: dict[str, Any]) -> None:
        """Validation figures logged; a new best PSNR saved as best.*."""
        if self.info.main:
            scores = val.evaluate(self.shipped, self.device)
            vrow = {"step": self.step, **scores}
            if scores["score"] > self.best:
                self.best = scores["score"]
                save_checkpoint(self.shipped, self.mcfg, out / "best",
                                {**extra, "step": self.step, "campaign": self.campaign(out), **scores})
                vrow["best"] = True
            _append_log(out / LOG_FILE, vrow)
            tqdm.write(json.dumps(vrow))
        if self.info.world > 1:
            dist.barrier()

    def save(self, out: Path, extra: dict[str, Any]) -> None:
        """last.* and the resumable state.pt."""
        if self.info.main:
            save_checkpoint(self.shipped, self.mcfg, out / "last",
                            {**extra, "step": self.step, "campaign": self.campaign(out)})
            state = {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                     "scheduler": self.sched.state_dict(), "scaler": self.scaler.state_dict(),
                     "step": self.step, "best_psnr": self.best, "rng": rng_state(), "seconds": self.seconds,
                     "cpu_seconds": self.cpu_seconds,
                     "config": json.dumps(self.cfg.to_dict())}
            if self.ema is not None:
                state["ema"] = self.ema.state_dict()
            atomic_save(state, out / STATE_FILE)
        if self.info.world > 1:
            dist.barrier()


def _train(cfg: TrainConfig, out: Path, resume: Path | None, stop_after: int | None, progress: bool,
           device: torch.device, info: DistInfo) -> dict[str, Any]:
    run = _Run(cfg, device, info)
    run.start(resume)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "train_config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False), force=True)
        if resume is not None:  # rows after this step in the log come from the resumed run
            _append_log(out / LOG_FILE, {"step": run.step, "event": "resume", "from": str(resume)})
    val = ValidationSet(cfg) if info.main else None
    extra = {"train_config": cfg.to_dict(), "data": run.data_desc}

    sampler = DistributedSampler(run.dataset, num_replicas=info.world, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    per_epoch = len(sampler) // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"an epoch of {len(sampler)} items per process is smaller than one batch")
    end = cfg.steps if stop_after is None else min(cfg.steps, run.step + stop_after)
    bar = tqdm(total=cfg.steps, initial=run.step, desc="train", unit="step",
               disable=not (progress and info.main), dynamic_ncols=True)
    row: dict[str, Any] = {}
    sums: dict[str, float] = {}
    t0, n_avg = time.time(), 0
    run.model.train()
    while run.step < end:
        epoch, offset = divmod(run.step, per_epoch)
        sampler.set_epoch(epoch)
        if hasattr(run.dataset, "set_epoch"):
            run.dataset.set_epoch(epoch)
        tick, cpu_tick = time.time(), time.process_time()
        for batch in run.loader(sampler, offset, end):
            for k, v in run.optimise(batch).items():
                sums[k] = sums.get(k, 0.0) + v
            n_avg += 1
            now, cpu_now = time.time(), time.process_time()
            run.seconds += now - tick
            run.cpu_seconds += cpu_now - cpu_tick
            tick, cpu_tick = now, cpu_now
            bar.update(1)
            step = run.step
            if info.main and (step % cfg.log_every == 0 or step == end):
                row = {"step": step, "epoch": epoch, "lr": run.sched.get_last_lr()[0],
                       **{k: v / n_avg for k, v in sums.items()}, "sec_per_step": (time.time() - t0) / n_avg}
                _append_log(out / LOG_FILE, row)
                bar.set_postfix({k: f"{row[k]:.4f}" for k in ("total", *LOSS_TERMS)})
                sums, n_avg, t0 = {}, 0, time.time()
            spent = run.cpu_seconds if cfg.time_budget_clock == "cpu" else run.seconds
            over = bool(cfg.time_budget_min) and spent >= cfg.time_budget_min * 60
            if cfg.time_budget_min and info.world > 1:  # every rank stops at the same step
                flag = torch.tensor([float(over)], device=device if device.type == "cuda" else "cpu")
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                over = bool(flag.item())
            if step % cfg.val_every == 0 or step == cfg.steps or over:
                run.validate(val, out, extra)
            if step % cfg.save_every == 0 or step == end or over:
                run.save(out, extra)
            if over:
                end = step  # the budget is spent
                break
    bar.close()
    return {"step": run.step, "best_psnr": run.best, **row}


def _param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One group at `lr`; with init_from and `carried_lr_ratio` < 1, the weights the checkpoint holds
    in a second group at that fraction (the parts a grown network adds keep the full rate)."""
    params = list(model.named_parameters())
    ratio = cfg.optim.carried_lr_ratio
    if not cfg.init_from or ratio == 1.0:
        return [{"params": [p for _, p in params]}]
    carried = set(checkpoint_keys(Path(cfg.init_from)))
    return [{"params": [p for n, p in params if n not in carried]},
            {"params": [p for n, p in params if n in carried], "lr": cfg.optim.lr * ratio}]


def _init_weights(model: DAPLED, mcfg: ModelConfig, path: Path) -> None:
    """The checkpoint's weights. The config's network may be the checkpoint's grown (model/growth.py:
    a residual gate, noise conditioning, wide context or blocks added, each starting as the identity;
    another stem factor refolded). The variant name may differ."""
    src, src_cfg, _ = load_checkpoint(path)
    try:
        load_grown(model, mcfg, src.state_dict(), src_cfg)
    except ValueError as exc:
        raise ValueError(f"init_from checkpoint {path} is a different network than the config's model: {exc}") from exc


def _detector_loss(cfg: LossConfig, device: torch.device) -> nn.Module | None:
    """The frozen detector's feature loss when the config weighs it (else None)."""
    if cfg.l_detector <= 0:
        return None
    from dap_led_ros.shipped_models import shipped_detector
    from dap_led_ros.training.detector_loss import DetectorFeatureLoss

    path = Path(cfg.detector) if cfg.detector else shipped_detector()
    return DetectorFeatureLoss(path, cfg.detector_scale, cfg.detector_input, tuple(cfg.detector_features),
                               cfg.detector_range).to(device)


def _campaign_of(path: Path) -> dict[str, Any]:
    """The campaign record of a checkpoint (steps and hours before it)."""
    return campaign_record(read_checkpoint_config(path)[1])


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")

