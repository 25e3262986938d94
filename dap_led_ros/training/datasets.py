"""Torch datasets: synthetic pairs from the clean photo pool, LOL-Blur folders, generic paired folders.

Every item is a dict with `low` and `high` (3 x H x W float32 tensors in [0, 1]) and `name`;
synthetic items also carry `patch_labels` (a list, one K x g x g tensor per grid, matching the
model's heatmaps after batching) and scalar degradation summaries. Random choices come from
`numpy.random.default_rng((seed, epoch, index))`, so an item depends only on those three numbers
(not on worker processes or iteration order).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from dap_led_ros.imaging.image_io import IMAGE_SUFFIXES, list_images, read_image
from dap_led_ros.training.camera_synthesis import CameraConfig, sample_camera_params, synthesize_camera
from dap_led_ros.training.clean_photos import (
    CleanPhotoRef,
    list_clean_photos,
    load_clean_photo,
    split_photos,
    split_pool,
)
from dap_led_ros.training.synthesis import SynthesisConfig, sample_params, synthesize

DEFAULT_GRIDS: tuple[int, ...] = (1, 2, 4)
LOL_BLUR_INPUT = "low_blur_noise"
LOL_BLUR_TARGET = "high_sharp_scaled"


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))).float().div_(255.0)


def resize_to_cover(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale (keeping aspect) so the image covers height x width; upscales small images."""
    h, w = img.shape[:2]
    scale = max(height / h, width / w)
    if abs(scale - 1.0) < 1e-9:
        return img
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(img, size, interpolation=interp)


def _crop(img: np.ndarray, top: int, left: int, height: int, width: int) -> np.ndarray:
    return np.ascontiguousarray(img[top : top + height, left : left + width])


class _PhotoPool:
    """Clean photos (refs loaded lazily and cached per process, or arrays given directly)."""

    def __init__(self, photos: Sequence[CleanPhotoRef | np.ndarray], max_side: int | None) -> None:
        if len(photos) == 0:
            raise ValueError("no clean photos given (is scikit-image or mvtb-data installed?)")
        for i, p in enumerate(photos):
            if isinstance(p, np.ndarray) and (p.dtype != np.uint8 or p.ndim != 3 or p.shape[2] != 3):
                raise ValueError(f"photo {i}: arrays must be HxWx3 uint8 RGB, got {p.dtype} {p.shape}")
            if not isinstance(p, (np.ndarray, CleanPhotoRef)):
                raise TypeError(f"photo {i}: expected CleanPhotoRef or numpy array, got {type(p).__name__}")
        self.photos = list(photos)
        self.max_side = max_side
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.photos)

    def name(self, i: int) -> str:
        p = self.photos[i]
        return p.name if isinstance(p, CleanPhotoRef) else f"array/{i}"

    def image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            p = self.photos[i]
            self._cache[i] = load_clean_photo(p, self.max_side) if isinstance(p, CleanPhotoRef) else p
        return self._cache[i]


class SyntheticPairs(Dataset):
    """Synthetic (low, high) pairs made on the fly from clean photos.

    crop=(h, w): a random crop per item (photos smaller than the crop are upscaled to cover it);
    resize_to=(h, w): each photo resized to cover the size and centre-cropped (fixed framing,
    for validation); neither: the whole photo. With `resize_to`, item i uses photo i mod N,
    so a validation set visits every photo; otherwise the photo is drawn at random.
    augment: random horizontal flip and random downscale (`scale_range`) before cropping.
    camera_share: the share of items degraded by the RAW-domain camera path (`camera`) instead of
    the LOL-Blur-like path (`cfg`); 0 keeps the random stream of a single-path dataset.
    """

    def __init__(
        self,
        photos: Sequence[CleanPhotoRef | np.ndarray],
        cfg: SynthesisConfig | None = None,
        crop: tuple[int, int] | None = (256, 256),
        length: int = 1000,
        seed: int = 0,
        augment: bool = True,
        grids: Sequence[int] = DEFAULT_GRIDS,
        resize_to: tuple[int, int] | None = None,
        scale_range: tuple[float, float] = (0.5, 1.0),
        max_photo_side: int | None = 1280,
        camera: CameraConfig | None = None,
        camera_share: float = 0.0,
        alternate: tuple[SynthesisConfig, CameraConfig] | None = None,
        alternate_share: float = 0.0,
    ) -> None:
        if crop is not None and resize_to is not None:
            raise ValueError("give either crop or resize_to, not both")
        for name, size in (("crop", crop), ("resize_to", resize_to)):
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ValueError(f"{name} must be (height, width) with positive values, got {size}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        if not 0.0 <= camera_share <= 1.0:
            raise ValueError(f"camera_share must be in [0, 1], got {camera_share}")
        if not 0.0 <= alternate_share <= 1.0 or (alternate_share > 0 and alternate is None):
            raise ValueError(f"alternate_share must be in [0, 1] and needs `alternate`, got {alternate_share}")
        self.pool = _PhotoPool(photos, max_photo_side)
        self.cfg = cfg or SynthesisConfig()
        self.cfg.validate()
        self.camera = camera or CameraConfig()
        self.camera.validate()
        self.camera_share = float(camera_share)
        # A second pair of degradation settings (both paths) for this share of the pairs: e.g. the
        # default degradations beside the night ones, so fine-tuning keeps what was learnt on them.
        self.alternate = alternate
        self.alternate_share = float(alternate_share)
        for c in alternate or ():
            c.validate()
        self.crop = tuple(crop) if crop is not None else None
        self.resize_to = tuple(resize_to) if resize_to is not None else None
        self.length = int(length)
        self.seed = int(seed)
        self.augment = augment
        self.grids = tuple(int(g) for g in grids)
        self.scale_range = scale_range
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random stream (new crops and degradations) for a new training epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _frame(self, rng: np.random.Generator, index: int) -> tuple[np.ndarray, str]:
        if self.resize_to is not None:
            k = index % len(self.pool)
        else:
            k = int(rng.integers(len(self.pool)))
        img = self.pool.image(k)
        scale = rng.uniform(*self.scale_range) if self.augment else 1.0
        if self.crop is not None:
            # Cut a window of crop/scale pixels, then resize only that window to the crop size.
            ch, cw = self.crop
            wh, ww = max(ch, round(ch / scale)), max(cw, round(cw / scale))
            if img.shape[0] < wh or img.shape[1] < ww:
                img = resize_to_cover(img, wh, ww)
            top = int(rng.integers(img.shape[0] - wh + 1))
            left = int(rng.integers(img.shape[1] - ww + 1))
            img = _crop(img, top, left, wh, ww)
            if (wh, ww) != (ch, cw):
                img = cv2.resize(img, (cw, ch), interpolation=cv2.INTER_AREA)
        else:
            if scale < 1.0:
                h, w = img.shape[:2]
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            if self.resize_to is not None:
                rh, rw = self.resize_to
                img = resize_to_cover(img, rh, rw)
                img = _crop(img, (img.shape[0] - rh) // 2, (img.shape[1] - rw) // 2, rh, rw)
        if self.augment and rng.random() < 0.5:
            img = img[:, ::-1]
        return np.ascontiguousarray(img), self.pool.name(k)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        rng = np.random.default_rng((self.seed, self.epoch, index))
        clean, name = self._frame(rng, index)
        synth, camera = self.cfg, self.camera
        if self.alternate is not None and self.alternate_share > 0 and rng.random() < self.alternate_share:
            synth, camera = self.alternate  # drawn only with a share, so other streams stay as they were
        if self.camera_share > 0 and (self.camera_share == 1.0 or rng.random() < self.camera_share):
            pair = synthesize_camera(clean, sample_camera_params(rng, camera), rng, camera.label_rule)
        else:
            pair = synthesize(clean, sample_params(rng, synth), rng, synth.label_rule)
        return {
            "low": to_tensor(pair.low),
            "high": to_tensor(pair.high),
            "patch_labels": [
                torch.from_numpy(np.ascontiguousarray(pair.labels.patch_labels(g).transpose(2, 0, 1)))
                for g in self.grids
            ],
            "exposure": float(pair.labels.exposure.mean()),
            "blur_length": float(pair.labels.blur_length.mean()),
            "noise_sigma": float(pair.labels.noise_sigma.mean()),
            "name": name,
        }


def synthetic_validation_set(
    size: tuple[int, int] = (400, 640),
    n: int | None = None,
    seed: int = 1234,
    cfg: SynthesisConfig | None = None,
    val_fraction: float = 0.15,
    split_seed: int = 0,
    grids: Sequence[int] = DEFAULT_GRIDS,
) -> SyntheticPairs:
    """Fixed, seeded validation pairs made only from the validation photos of `split_photos`.

    n defaults to two pairs per validation photo; photos are resized to cover `size` (small
    ones are upscaled) and centre-cropped.
    """
    _, val = split_photos(list_clean_photos(), val_fraction=val_fraction, seed=split_seed)
    if not val:
        raise ValueError("no validation photos: the clean photo pool has fewer than two photo groups")
    return SyntheticPairs(
        val,
        cfg,
        crop=None,
        resize_to=size,
        length=n if n is not None else 2 * len(val),
        seed=seed,
        augment=False,
        grids=grids,
    )


def well_exposed_photos(size: tuple[int, int], val_fraction: float = 0.15,
                        split_seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """The held-out (validation-split) clean photos, resized to cover `size` and centre-cropped.

    They are well exposed and sharp: a restorer should hand them back as they are.
    """
    h, w = size
    _, val = split_photos(list_clean_photos(), val_fraction=val_fraction, seed=split_seed)
    for ref in val:
        img = resize_to_cover(load_clean_photo(ref), h, w)
        y0, x0 = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
        yield ref.name.replace("/", "_"), np.ascontiguousarray(img[y0:y0 + h, x0:x0 + w])


def camera_validation_set(
    size: tuple[int, int] = (400, 640),
    n: int | None = None,
    seed: int = 4321,
    camera: CameraConfig | None = None,
    val_fraction: float = 0.15,
    split_seed: int = 0,
    grids: Sequence[int] = DEFAULT_GRIDS,
) -> SyntheticPairs:
    """The second validation set: other photos (`split_pool(...).val2`, from the Debian pool)
    degraded by the other path (the RAW-domain camera model). One pair per photo by default."""
    val2 = split_pool(list_clean_photos(), val_fraction=val_fraction, seed=split_seed).val2
    if not val2:
        raise ValueError("the second validation set needs the Debian photo pool: run scripts/setup_photos.sh")
    return SyntheticPairs(val2, crop=None, resize_to=size, length=n if n is not None else len(val2),
                          seed=seed, augment=False, grids=grids, camera=camera, camera_share=1.0)


CROSS_PATHS = ("synthetic", "camera")


def cross_model_set(
    path: str,
    size: tuple[int, int] = (400, 640),
    n: int | None = None,
    seed: int = 2718,
    val_fraction: float = 0.15,
    split_seed: int = 0,
    grids: Sequence[int] = DEFAULT_GRIDS,
) -> SyntheticPairs:
    """One half of the cross-model split: every held-out photo (both validation shares) degraded
    by one path ("synthetic": path 1, "camera": path 2) with the `night` degradations. The two
    halves share photos, seed and framing; only the generator differs. One pair per photo."""
    from dap_led_ros.training.degradation_presets import camera_config, synthesis_config

    if path not in CROSS_PATHS:
        raise ValueError(f"cross-model path must be one of {CROSS_PATHS}, got {path!r}")
    pool = split_pool(list_clean_photos(), val_fraction=val_fraction, seed=split_seed)
    photos = [*pool.val, *pool.val2]
    if not photos:
        raise ValueError("no held-out photos for the cross-model split")
    return SyntheticPairs(photos, synthesis_config("night"), crop=None, resize_to=size,
                          length=n if n is not None else len(photos), seed=seed, augment=False, grids=grids,
                          camera=camera_config("night"), camera_share=1.0 if path == "camera" else 0.0)


def _scan_images(folder: Path) -> dict[str, Path]:
    """Images under `folder` keyed by relative path without suffix."""
    found: dict[str, Path] = {}
    for path in list_images(folder):
        key = path.relative_to(folder).with_suffix("").as_posix()
        if key in found:
            raise ValueError(f"two images with the same name in {folder}: {found[key].name} and {path.name}")
        found[key] = path
    return found


class PairedFolder(Dataset):
    """(input, target) image pairs from two folders, matched by relative path (suffix ignored).

    strict=True: every input needs a target and vice versa, else ValueError listing the
    unmatched files; strict=False: unmatched files are skipped. crop=(h, w): the same random crop
    of both images (seeded by seed, epoch and index).
    """

    def __init__(
        self,
        input_dir: str | Path,
        target_dir: str | Path,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        strict: bool = True,
    ) -> None:
        self.input_dir, self.target_dir = Path(input_dir), Path(target_dir)
        for role, folder in (("input", self.input_dir), ("target", self.target_dir)):
            if not folder.is_dir():
                raise FileNotFoundError(f"{role} folder {folder} does not exist or is not a folder")
        inputs, targets = _scan_images(self.input_dir), _scan_images(self.target_dir)
        if not inputs:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {self.input_dir}")
        no_target = sorted(set(inputs) - set(targets))
        no_input = sorted(set(targets) - set(inputs))
        if strict and (no_target or no_input):
            parts = []
            if no_target:
                parts.append(f"{len(no_target)} input(s) without a target in {self.target_dir} (e.g. {no_target[:3]})")
            if no_input:
                parts.append(f"{len(no_input)} target(s) without an input in {self.input_dir} (e.g. {no_input[:3]})")
            raise ValueError("mismatched pairs: " + "; ".join(parts))
        keys = sorted(set(inputs) & set(targets))
        if not keys:
            raise ValueError(
                f"no input in {self.input_dir} has a target with the same relative path in {self.target_dir}"
            )
        self.pairs: list[tuple[str, Path, Path]] = [(k, inputs[k], targets[k]) for k in keys]
        if crop is not None and (len(crop) != 2 or min(crop) < 1):
            raise ValueError(f"crop must be (height, width) with positive values, got {crop}")
        self.crop = tuple(crop) if crop is not None else None
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.pairs):
            raise IndexError(f"index {index} out of range for {len(self.pairs)} pairs")
        name, in_path, tgt_path = self.pairs[index]
        low, high = read_image(in_path).rgb, read_image(tgt_path).rgb
        if low.shape != high.shape:
            raise ValueError(
                f"pair {name}: input {in_path} is {low.shape[:2]} but target {tgt_path} is {high.shape[:2]}"
            )
        if self.crop is not None:
            ch, cw = self.crop
            h, w = low.shape[:2]
            if h < ch or w < cw:
                raise ValueError(f"pair {name}: image {h}x{w} is smaller than the crop {ch}x{cw}")
            rng = np.random.default_rng((self.seed, self.epoch, index))
            top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            low, high = _crop(low, top, left, ch, cw), _crop(high, top, left, ch, cw)
        return {"low": to_tensor(low), "high": to_tensor(high), "name": name}


class LolBlurFolder(PairedFolder):
    """LOL-Blur pairs `low_blur_noise/<seq>/<frame>.png` <-> `high_sharp_scaled/<seq>/<frame>.png`.

    `root` holds the two folders (sequence sub-folders or flat files), or holds `train/` and
    `test/` each with the two folders, in which case `split` ("train" or "test") must be given.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        crop: tuple[int, int] | None = None,
        seed: int = 0,
        strict: bool = True,
        input_name: str = LOL_BLUR_INPUT,
        target_name: str = LOL_BLUR_TARGET,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"LOL-Blur root {root} does not exist or is not a folder")
        if split is not None:
            base = root / split
            if not base.is_dir():
                found = sorted(p.name for p in root.iterdir() if p.is_dir())
                raise FileNotFoundError(f"LOL-Blur split folder {base} not found; sub-folders of {root}: {found}")
        elif (root / input_name).is_dir() or (root / target_name).is_dir():
            base = root
        elif (root / "train").is_dir() or (root / "test").is_dir():
            raise ValueError(f"{root} holds train/ and test/ splits: pass split='train' or split='test'")
        else:
            raise FileNotFoundError(
                f"{root} is not a LOL-Blur folder: expected {input_name}/ and {target_name}/ "
                f"(or train/ and test/ holding them)"
            )
        for folder in (input_name, target_name):
            if not (base / folder).is_dir():
                raise FileNotFoundError(
                    f"LOL-Blur folder {base / folder} is missing (need {input_name}/ and {target_name}/)"
                )
        super().__init__(base / input_name, base / target_name, crop=crop, seed=seed, strict=strict)
        self.root, self.split = root, split
