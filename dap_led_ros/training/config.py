"""Training configuration: the dataclasses a training YAML fills (data, optimiser, losses, model)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dap_led_ros.model import ModelConfig
from dap_led_ros.settings import dataclass_from_mapping, load_yaml_mapping
from dap_led_ros.training.losses import LossConfig


@dataclass
class DataConfig:
    """Training data. Synthetic pairs from the offline clean photos unless `lolblur_root` is set."""

    crop: int = 160                      # square training crop, pixels
    epoch_length: int = 2000             # synthetic items per epoch (each epoch draws new ones)
    workers: int = 1                     # DataLoader worker processes (0 = in the main process)
    synthesis: dict[str, Any] = field(default_factory=dict)  # SynthesisConfig overrides
    camera: dict[str, Any] = field(default_factory=dict)     # CameraConfig overrides (RAW-domain path)
    camera_share: float = 0.0            # share of training pairs made by the camera path
    val_fraction: float = 0.15           # share of clean photos held out for validation
    split_seed: int = 0                  # seed of the photo train/val split
    val_size: tuple[int, int] = (400, 640)  # validation frame height, width
    val_count: int | None = None         # validation pairs (None: two per validation photo)
    val_seed: int = 1234
    val2_count: int | None = None        # second validation set: pairs (None: one per photo)
    val2_seed: int = 4321
    cross_validation: bool = True        # validate on the cross-model split too (validation_sets)
    cross_count: int | None = None       # its pairs per path (None: one per held-out photo)
    cross_seed: int = 2718
    # Degradation preset under `synthesis` / `camera` (degradation_presets: default | night).
    degradations: str = "default"
    # Share of the training pairs made with the `default` preset instead (under the same overrides),
    # when `degradations` is another one: fine-tuning on new degradations without forgetting the old.
    default_share: float = 0.0
    lolblur_root: str | None = None      # LOL-Blur folder (low_blur_noise/, high_sharp_scaled/)
    lolblur_split: str | None = None     # "train" when the root holds train/ and test/

    def validate(self) -> None:
        if self.crop < 16 or self.crop % 16:
            raise ValueError(f"data.crop must be a multiple of 16 and >= 16, got {self.crop}")
        if self.epoch_length < 1 or self.workers < 0:
            raise ValueError("data.epoch_length must be >= 1 and data.workers >= 0")
        if not 0.0 <= self.camera_share <= 1.0:
            raise ValueError(f"data.camera_share must be in [0, 1], got {self.camera_share}")
        from dap_led_ros.training.degradation_presets import PRESETS

        if self.degradations not in PRESETS:
            raise ValueError(f"data.degradations must be one of {sorted(PRESETS)}, got {self.degradations!r}")
        if not 0.0 <= self.default_share <= 1.0:
            raise ValueError(f"data.default_share must be in [0, 1], got {self.default_share}")
        if self.default_share > 0 and self.degradations == "default":
            raise ValueError("data.default_share needs data.degradations other than 'default'")
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
    # With init_from: the learning rate of the weights carried over from the checkpoint, as a
    # fraction of `lr` (the parts a grown network adds always train at `lr`; 0 freezes the rest).
    carried_lr_ratio: float = 1.0

    def validate(self) -> None:
        if not 0.0 <= self.carried_lr_ratio <= 1.0:
            raise ValueError(f"optim.carried_lr_ratio must be in [0, 1], got {self.carried_lr_ratio}")
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
    # Time budget of the run in minutes (0 = none): training stops, validated and saved, once this
    # run's training time (across resumes) reaches it. For equal-budget comparisons. The clock:
    # "wall" time, or the training process's "cpu" time (fair when other jobs share the cores).
    time_budget_min: float = 0.0
    time_budget_clock: str = "wall"
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
    # Validation sets whose mean PSNR is `score` (picks best.*): val, val2, xsyn, xcam, cross.
    score_sets: tuple[str, ...] = ("val", "val2")

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model)

    def validate(self) -> None:
        self.model_config()
        self.data.validate()
        self.optim.validate()
        self.loss.validate()
        if self.steps < 1 or self.batch_size < 1 or self.val_every < 1 or self.log_every < 1 or self.save_every < 1:
            raise ValueError("steps, batch_size, val_every, log_every and save_every must be >= 1")
        if self.time_budget_min < 0:
            raise ValueError(f"time_budget_min must be >= 0, got {self.time_budget_min}")
        if self.time_budget_clock not in ("wall", "cpu"):
            raise ValueError(f"time_budget_clock must be 'wall' or 'cpu', got {self.time_budget_clock!r}")
        bad = sorted(set(self.score_sets) - {"val", "val2", "xsyn", "xcam", "cross", "well"})
        if bad or not self.score_sets:
            raise ValueError(f"score_sets must name val, val2, xsyn, xcam, cross or well, got {list(self.score_sets)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "TrainConfig":
        cfg = dataclass_from_mapping(TrainConfig, d, "train config")
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
