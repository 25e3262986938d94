"""Training and validation data: the training dataset, collation, and the fixed validation set."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dap_led_ros.model import DAPLED
from dap_led_ros.training.config import TrainConfig
from dap_led_ros.training.metrics import mean_psnr, psnr, psnr_level_fitted, ssim


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
    from dap_led_ros.training.clean_photos import list_clean_photos, split_pool
    from dap_led_ros.training.datasets import LolBlurFolder, SyntheticPairs
    from dap_led_ros.training.degradation_presets import camera_config, synthesis_config

    d = cfg.data
    if d.lolblur_root:
        ds = LolBlurFolder(d.lolblur_root, split=d.lolblur_split, crop=(d.crop, d.crop), seed=cfg.seed)
        return ds, f"LOL-Blur pairs from {d.lolblur_root} (split {d.lolblur_split}), {len(ds)} pairs"
    pool = split_pool(list_clean_photos(), val_fraction=d.val_fraction, seed=d.split_seed)
    if not pool.train:
        raise ValueError("no clean training photos found (install scikit-image and mvtb-data)")
    ds = SyntheticPairs(pool.train, synthesis_config(d.degradations, d.synthesis), crop=(d.crop, d.crop),
                        length=d.epoch_length, seed=cfg.seed, augment=True, grids=grids,
                        camera=camera_config(d.degradations, d.camera), camera_share=d.camera_share,
                        alternate=(synthesis_config("default", d.synthesis), camera_config("default", d.camera))
                        if d.default_share > 0 else None, alternate_share=d.default_share)
    n_debian = sum(1 for r in pool.train if r.pool == "debian")
    paths = (f"{1 - d.camera_share:.0%} LOL-Blur-like (training.synthesis), "
             f"{d.camera_share:.0%} RAW-domain camera model (training.camera_synthesis)")
    desc = (f"synthetic pairs ({paths}) from {len(pool.train)} offline clean photos ({n_debian} from Debian "
            f"packages; {len(pool.val)} + {len(pool.val2)} held out for the two validation sets, split seed "
            f"{d.split_seed}), {d.crop}px crops" + (f", {d.degradations} degradations" if d.degradations != "default" else "")
            + (f" ({d.default_share:.0%} default)" if d.default_share > 0 else ""))
    return ds, desc


def _rgb8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()


class ValidationSet:
    """The fixed validation data, made once and kept as tensors: the synthetic set (`val_*`), the
    camera-model set on other photos (`val2_*`, when the Debian pool is installed), the two halves
    of the cross-model split (`xsyn_*`: path 1, `xcam_*`: path 2) and the held-out clean photos,
    which should come back unchanged (`well_*`); assembled by `validation_sets`, as `dap-led eval`
    scores them. `cross_*` is the half a single-path run did not train on (camera_share 0 or 1)."""

    KEYS = {"synthetic": "val", "camera": "val2", "cross_synthetic": "xsyn", "cross_camera": "xcam",
            "well_exposed": "well"}

    def __init__(self, cfg: TrainConfig) -> None:
        from dap_led_ros.training.datasets import to_tensor
        from dap_led_ros.training.validation_sets import SetOptions, load_set, validation_sources

        self.sets: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in self.KEYS.values()}
        self.score_sets = tuple(cfg.score_sets)
        self.held_out = self.held_out_key(cfg.data.camera_share)
        for source in validation_sources(SetOptions.for_training(cfg.data)):
            data = load_set(source)  # None: no Debian photo pool installed, the second set is skipped
            if data is None:
                continue
            if source.tag == "well_exposed":
                pairs = [(frame, frame) for frame in (to_tensor(img) for _, img in data)]
            else:
                pairs = [(item["low"], item["high"]) for item in (data[i] for i in range(len(data)))]
            self.sets[self.KEYS[source.tag]] = pairs

    @staticmethod
    def held_out_key(camera_share: float) -> str | None:
        """The cross-model half a run did not train on: path 2 for path-1-only runs and the
        reverse; None when it trained on both."""
        return "xcam" if camera_share == 0.0 else "xsyn" if camera_share == 1.0 else None

    @torch.no_grad()
    def evaluate(self, model: DAPLED, device: torch.device) -> dict[str, float]:
        """Mean PSNR (as is and level-fitted) and SSIM per set; `cross_*` for the held-out path;
        `score`: the mean PSNR of `score_sets` (best-checkpoint key)."""
        model.eval()
        out: dict[str, float] = {}
        for key, pairs in self.sets.items():
            if not pairs:
                continue
            ps, pf, ss = [], [], []
            for low, high in pairs:
                pred, gt = _rgb8(model(low[None].to(device)).float().cpu()[0]), _rgb8(high)
                ps.append(psnr(pred, gt))
                pf.append(psnr_level_fitted(pred, gt))
                ss.append(ssim(pred, gt))
            out[f"{key}_psnr"], out[f"{key}_ssim"] = mean_psnr(ps), float(np.mean(ss))
            out[f"{key}_psnr_fit"] = mean_psnr(pf)
        model.train()
        if self.held_out and f"{self.held_out}_psnr" in out:
            for m in ("psnr", "psnr_fit", "ssim"):
                out[f"cross_{m}"] = out[f"{self.held_out}_{m}"]
        out["score"] = float(np.mean([out[f"{k}_psnr"] for k in self.score_sets if f"{k}_psnr" in out]))
        return out
