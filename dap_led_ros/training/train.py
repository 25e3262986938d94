"""`dap-led train --config config/train_tiny.yaml`: train DAP-LED on synthetic pairs (or LOL-Blur).

- AdamW, linear warm-up then cosine decay, gradient clipping; mixed precision on CUDA.
- Multi-process data parallel through `torchrun` (DistributedDataParallel; nccl on GPUs, gloo
  on the CPU); a DistributedSampler gives every rank its share of each epoch.
- The run folder (`--out`) holds `train_config.yaml`, `log.jsonl` (every loss term, learning
  rate and validation figures), `state.pt` (resumable training state), `last.*` and `best.*`
  package checkpoints (safetensors + yaml, loadable with `dap-led enhance --model`).
- `--resume` continues from `state.pt` exactly: model, optimiser, schedule, step, grad scaler and
  RNG states are restored, and the data stream continues where it stopped (every item is a
  pure function of seed, epoch and index).
- Validation on the fixed, seeded synthetic validation set (photos training never sees) every
  `val_every` steps; the best PSNR is kept as `best.*`.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm import tqdm

from dap_led_ros.checkpoint import load_checkpoint, save_checkpoint
from dap_led_ros.settings import load_yaml_mapping, reject_unknown_keys
from dap_led_ros.model import DAPLED, ModelConfig, build_model
from dap_led_ros.training.losses import LOSS_TERMS, LossConfig, compute_losses
from dap_led_ros.training.metrics import psnr, ssim

STATE_FILE = "state.pt"
LOG_FILE = "log.jsonl"


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class DataConfig:
    """Training data. Synthetic pairs from the offline clean photos unless `lolblur_root` is set."""

    crop: int = 160                      # square training crop, pixels
    epoch_length: int = 2000             # synthetic items per epoch (each epoch draws new ones)
    workers: int = 1                     # DataLoader worker processes (0 = in the main process)
    synthesis: dict[str, Any] = field(default_factory=dict)  # SynthesisConfig overrides
    val_fraction: float = 0.15           # share of clean photos held out for validation
    split_seed: int = 0                  # seed of the photo train/val split
    val_size: tuple[int, int] = (400, 640)  # validation frame height, width
    val_count: int | None = None         # validation pairs (None: two per validation photo)
    val_seed: int = 1234
    lolblur_root: str | None = None      # LOL-Blur folder (low_blur_noise/, high_sharp_scaled/)
    lolblur_split: str | None = None     # "train" when the root holds train/ and test/

    def validate(self) -> None:
        if self.crop < 16 or self.crop % 16:
            raise ValueError(f"data.crop must be a multiple of 16 and >= 16, got {self.crop}")
        if self.epoch_length < 1 or self.workers < 0:
            raise ValueError("data.epoch_length must be >= 1 and data.workers >= 0")
        if len(self.val_size) != 2 or min(self.val_size) < 16:
            raise ValueError(f"data.val_size must be [height, width] >= 16, got {self.val_size}")


@dataclass
class OptimConfig:
    lr: float = 1.5e-3
    min_lr_ratio: float = 0.02           # final lr = lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 0.5               # max gradient norm of the backbone and of the prior (0 = off)

    def validate(self) -> None:
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1 or self.warmup_steps < 0:
            raise ValueError("optim: need lr > 0, 0 <= min_lr_ratio <= 1, warmup_steps >= 0")


@dataclass
class TrainConfig:
    """Everything a run needs. Field defaults are the single source of defaults; YAML overrides."""

    model: dict[str, Any] = field(default_factory=lambda: {"variant": "tiny"})  # ModelConfig dict
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    steps: int = 4000                    # total optimiser steps (defines the schedule)
    batch_size: int = 8                  # per process
    seed: int = 0
    val_every: int = 250
    log_every: int = 10
    save_every: int = 100                # training state for --resume
    threads: int = 0                     # torch CPU threads per process (0 = library default)
    amp: bool = True                     # mixed precision (CUDA only)
    # Exponential moving average of the weights (0 = off). When on, validation, best/last
    # checkpoints and the shipped weights are the averaged ones; the optimiser trains the raw ones.
    ema_decay: float = 0.0
    device: str = "auto"                 # auto | cpu | cuda
    # Package checkpoint (.safetensors + .yaml) whose weights start the run (fine-tuning or a
    # second schedule cycle); optimiser, schedule and step start fresh. Ignored by --resume.
    init_from: str | None = None

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def validate(self) -> None:
        self.model_config()
        self.data.validate()
        self.optim.validate()
        self.loss.validate()
        if self.steps < 1 or self.batch_size < 1 or self.val_every < 1 or self.log_every < 1 or self.save_every < 1:
            raise ValueError("steps, batch_size, val_every, log_every and save_every must be >= 1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TrainConfig":
        cfg = _from_dict(TrainConfig, d, "train config")
        cfg.validate()
        return cfg

    @staticmethod
    def load(path: str | Path) -> "TrainConfig":
        return TrainConfig.from_dict(load_yaml_mapping(path, "training config"))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _from_dict(cls: type, d: dict[str, Any], where: str) -> Any:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(d).__name__}")
    reject_unknown_keys(d, cls, f"{where} keys")
    defaults = cls()
    kwargs = {}
    for key, value in d.items():
        default = getattr(defaults, key)
        if is_dataclass(default):
            kwargs[key] = _from_dict(type(default), value or {}, f"{where}.{key}")
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Distributed helpers


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun process group when launched by torchrun; else a single process."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{local_rank}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)


# ---------------------------------------------------------------------------------------------
# Data


class ResumableSampler(Sampler[int]):
    """A DistributedSampler epoch from item `skip` on (to resume mid-epoch), at most `limit` items
    (so a run that stops mid-epoch ends its loader cleanly instead of abandoning its workers)."""

    def __init__(self, base: DistributedSampler, skip: int = 0, limit: int | None = None) -> None:
        self.base = base
        self.skip = skip
        self.limit = limit

    def _indices(self) -> list[int]:
        rest = list(self.base)[self.skip:]
        return rest if self.limit is None else rest[:self.limit]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        n = max(0, len(self.base) - self.skip)
        return n if self.limit is None else min(n, self.limit)


def _worker_init(_: int) -> None:
    """One thread per data worker: the machine's cores belong to the training step."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"low": torch.stack([i["low"] for i in items]),
                           "high": torch.stack([i["high"] for i in items])}
    if "patch_labels" in items[0]:
        out["patch_labels"] = [torch.stack([i["patch_labels"][g] for i in items])
                               for g in range(len(items[0]["patch_labels"]))]
    return out


def build_train_dataset(cfg: TrainConfig, grids: tuple[int, ...]) -> tuple[Dataset, str]:
    """The training dataset and a one-line description of it (stored with checkpoints)."""
    from dap_led_ros.training.clean_photos import list_clean_photos, split_photos
    from dap_led_ros.training.datasets import LolBlurFolder, SyntheticPairs
    from dap_led_ros.training.synthesis import SynthesisConfig

    d = cfg.data
    if d.lolblur_root:
        ds = LolBlurFolder(d.lolblur_root, split=d.lolblur_split, crop=(d.crop, d.crop), seed=cfg.seed)
        return ds, f"LOL-Blur pairs from {d.lolblur_root} (split {d.lolblur_split}), {len(ds)} pairs"
    train, val = split_photos(list_clean_photos(), val_fraction=d.val_fraction, seed=d.split_seed)
    if not train:
        raise ValueError("no clean training photos found (install scikit-image and mvtb-data)")
    ds = SyntheticPairs(train, SynthesisConfig.from_dict(d.synthesis), crop=(d.crop, d.crop),
                        length=d.epoch_length, seed=cfg.seed, augment=True, grids=grids)
    desc = (f"synthetic LOL-Blur-like pairs (dap_led_ros.training.synthesis) from {len(train)} offline clean photos "
            f"(scikit-image, scikit-learn, mvtb-data; {len(val)} held out for validation with split seed "
            f"{d.split_seed}), {d.crop}px crops")
    return ds, desc


class ValidationSet:
    """The fixed synthetic validation pairs, made once and kept as uint8 arrays."""

    def __init__(self, cfg: TrainConfig) -> None:
        from dap_led_ros.training.datasets import synthetic_validation_set
        from dap_led_ros.training.synthesis import SynthesisConfig

        d = cfg.data
        ds = synthetic_validation_set(size=tuple(d.val_size), n=d.val_count, seed=d.val_seed,
                                      cfg=SynthesisConfig.from_dict(d.synthesis),
                                      val_fraction=d.val_fraction, split_seed=d.split_seed)
        self.pairs = []
        for i in range(len(ds)):
            item = ds[i]
            self.pairs.append((item["low"], item["high"]))

    @torch.no_grad()
    def evaluate(self, model: DAPLED, device: torch.device) -> dict[str, float]:
        model.eval()
        ps, ss = [], []
        for low, high in self.pairs:
            out = model(low[None].to(device)).float().cpu()[0]
            out8 = (out.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
            gt8 = (high * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
            ps.append(psnr(out8, gt8))
            ss.append(ssim(out8, gt8))
        model.train()
        return {"val_psnr": float(np.mean(ps)), "val_ssim": float(np.mean(ss))}


# ---------------------------------------------------------------------------------------------
# Schedule and state


def lr_factor(step: int, cfg: OptimConfig, total: int) -> float:
    """Linear warm-up to 1, then cosine decay to min_lr_ratio at `total` steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, total - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _rng_state() -> dict[str, Any]:
    """Global RNG states as tensors (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": torch.tensor([np_state[2], np_state[3]], dtype=torch.int64),
        "numpy_gauss": torch.tensor(np_state[4], dtype=torch.float64),
        "python": torch.tensor(py_state[1], dtype=torch.int64),
        "python_version": torch.tensor(py_state[0]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos, has_gauss = (int(v) for v in state["numpy_pos"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss,
                         float(state["numpy_gauss"])))
    random.setstate((int(state["python_version"]), tuple(int(v) for v in state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"no training state to resume from: {path}")
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.part")
    torch.save(obj, str(tmp))
    tmp.replace(path)


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
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    info = init_distributed(device)
    try:
        return _train(cfg, out, resume, stop_after, progress, device, info)
    finally:
        if info.world > 1:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, out: Path, resume: Path | None, stop_after: int | None, progress: bool,
           device: torch.device, info: DistInfo) -> dict[str, Any]:
    mcfg = cfg.model_config()
    torch.manual_seed(cfg.seed)
    model = build_model(mcfg).to(device)
    grids = tuple(mcfg.prior.grids) if mcfg.use_prior else (1,)
    dataset, data_desc = build_train_dataset(cfg, grids)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                            weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.optim, cfg.steps))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step, best = 0, -math.inf
    if cfg.init_from and resume is None:
        _init_weights(model, mcfg, Path(cfg.init_from))
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.ema_decay > 0 else None)
    if resume is not None:
        state = load_state(resume)
        model.load_state_dict(state["model"])
        if ema is not None:
            if "ema" not in state:
                raise ValueError(f"{resume} holds no EMA weights but the config sets ema_decay")
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, best = int(state["step"]), float(state["best_psnr"])
        _set_rng_state(state["rng"])
    # The prior and the restoration network are clipped separately, so the heatmap loss's
    # gradients never scale down the backbone's step (and the ablation is clipped alike).
    prior_params = list(model.prior.parameters()) if model.prior is not None else []
    prior_ids = {id(p) for p in prior_params}
    clip_groups = [g for g in ([p for p in model.parameters() if id(p) not in prior_ids], prior_params) if g]
    # The weights that are validated and saved: the EMA copy when one is kept.
    shipped: DAPLED = ema.module if ema is not None else model
    net: nn.Module = _TrainForward(model)
    if info.world > 1:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        if resume is not None:  # rows after this step in the log come from the resumed run
            _append_log(out / LOG_FILE, {"step": step, "event": "resume", "from": str(resume)})
    val = ValidationSet(cfg) if info.main else None
    extra = {"train_config": cfg.to_dict(), "data": data_desc}

    base_sampler = DistributedSampler(dataset, num_replicas=info.world, rank=info.rank, shuffle=True,
                                      seed=cfg.seed, drop_last=True)
    per_epoch = len(base_sampler) // cfg.batch_size
    if per_epoch < 1:
        raise ValueError(f"an epoch of {len(base_sampler)} items per process is smaller than one batch")
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    log_path = out / LOG_FILE
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not (progress and info.main),
               dynamic_ncols=True)
    row: dict[str, Any] = {}
    sums: dict[str, float] = {}
    t0, n_avg = time.time(), 0
    model.train()
    while step < end:
        epoch, offset = divmod(step, per_epoch)
        base_sampler.set_epoch(epoch)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, drop_last=True, collate_fn=_collate,
                            sampler=ResumableSampler(base_sampler, offset * cfg.batch_size,
                                                     (end - step) * cfg.batch_size),
                            num_workers=cfg.data.workers, pin_memory=device.type == "cuda",
                            worker_init_fn=_worker_init if cfg.data.workers else None,
                            # spawn, not fork: a forked worker can inherit a lock held by one of
                            # the parent's OpenCV/OpenMP threads and hang for ever.
                            multiprocessing_context="spawn" if cfg.data.workers else None)
        for batch in loader:
            low, high = batch["low"].to(device), batch["high"].to(device)
            labels = [t.to(device) for t in batch["patch_labels"]] if "patch_labels" in batch else None
            if labels is None and np.random.default_rng((cfg.seed, step)).random() < 0.5:
                # Folder pairs come without flips (synthetic items are flipped by the dataset).
                low, high = low.flip(-1), high.flip(-1)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                pred, maps = net(low)
                loss, terms = compute_losses(model, pred, high, maps, labels, cfg.loss)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.optim.grad_clip > 0:
                scaler.unscale_(opt)
                for group in clip_groups:
                    torch.nn.utils.clip_grad_norm_(group, cfg.optim.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            step += 1
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            n_avg += 1
            bar.update(1)
            if info.main and (step % cfg.log_every == 0 or step == end):
                row = {"step": step, "epoch": epoch, "lr": sched.get_last_lr()[0],
                       **{k: v / n_avg for k, v in sums.items()},
                       "sec_per_step": (time.time() - t0) / n_avg}
                _append_log(log_path, row)
                bar.set_postfix({k: f"{row[k]:.4f}" for k in ("total", *LOSS_TERMS)})
                sums, n_avg, t0 = {}, 0, time.time()
            if step % cfg.val_every == 0 or step == cfg.steps:
                if info.main:
                    scores = val.evaluate(shipped, device)
                    vrow = {"step": step, **scores}
                    if scores["val_psnr"] > best:
                        best = scores["val_psnr"]
                        save_checkpoint(shipped, mcfg, out / "best", {**extra, "step": step, **scores})
                        vrow["best"] = True
                    _append_log(log_path, vrow)
                    tqdm.write(json.dumps(vrow))
                if info.world > 1:
                    dist.barrier()
            if step % cfg.save_every == 0 or step == end:
                if info.main:
                    save_checkpoint(shipped, mcfg, out / "last", {**extra, "step": step})
                    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                             "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
                             "step": step, "best_psnr": best, "rng": _rng_state(),
                             "config": json.dumps(cfg.to_dict())}
                    if ema is not None:
                        state["ema"] = ema.state_dict()
                    _atomic_save(state, out / STATE_FILE)
                if info.world > 1:
                    dist.barrier()
    bar.close()
    return {"step": step, "best_psnr": best, **row}


def _init_weights(model: DAPLED, mcfg: ModelConfig, path: Path) -> None:
    src, src_cfg, _ = load_checkpoint(path)
    if src_cfg.to_dict() != mcfg.to_dict():
        raise ValueError(f"init_from checkpoint {path} is a different network than the config's model")
    model.load_state_dict(src.state_dict())


def _append_log(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------------
# CLI

