"""Training and validation data: the training dataset, collation, and the fixed validation set."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dap_led_ros.model import DAPLED
from dap_led_ros.training.config import TrainConfig
from dap_led_ros.training.metrics import psnr, ssim


def worker_init(_: int) -> None:
    """One thread per data worker: the machine's cores belong to the training step."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
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


