"""Clean photo pool, photo split, synthetic datasets and the LOL-Blur / paired folder loaders."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dap_led_ros.training.clean_photos import CleanPhotoRef, list_clean_photos, load_clean_photo, split_photos
from dap_led_ros.training.datasets import LolBlurFolder, PairedFolder, SyntheticPairs, synthetic_validation_set
from dap_led_ros.imaging.image_io import ImageReadError
from dap_led_ros.prompts import CLEAR, DEGRADATION_PROMPTS
from dap_led_ros.training.synthesis import SynthesisConfig

torch.set_num_threads(1)


def _tiny_photos(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (64 + 8 * i, 48), interpolation=cv2.INTER_CUBIC))
    return out


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img[:, :, ::-1])


# --- clean photos ---------------------------------------------------------------------------


def test_clean_photo_pool_is_sorted_and_loadable() -> None:
    refs = list_clean_photos()
    names = [r.name for r in refs]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert "skimage/astronaut" in names  # bundled with scikit-image
    assert any(n.startswith("mvtb/") for n in names)  # mvtb-data is a requirement
    assert not any("calibration" in n or "apriltag" in n for n in names)
    assert [r.name for r in list_clean_photos()] == names
    astronaut = next(r for r in refs if r.name == "skimage/astronaut")
    img = load_clean_photo(astronaut)
    assert img.dtype == np.uint8 and img.shape == (512, 512, 3)
    assert load_clean_photo(astronaut, max_side=100).shape == (100, 100, 3)


def test_split_is_disjoint_deterministic_and_by_group() -> None:
    refs = list_clean_photos()
    train, val = split_photos(refs, val_fraction=0.15, seed=0)
    assert val and train
    assert {r.name for r in train}.isdisjoint({r.name for r in val})
    assert {r.group for r in train}.isdisjoint({r.group for r in val})  # no near-duplicates across
    assert len(train) + len(val) == len(refs)
    assert split_photos(list(reversed(refs)), 0.15, 0)[1] == list(reversed(val))
    assert 0.1 <= len(val) / len(refs) <= 0.35
    assert split_photos(refs, 0.15, seed=1)[1] != val  # another seed, another split


def test_split_on_synthetic_refs() -> None:
    refs = [CleanPhotoRef(f"x/p{i}", f"x/g{i // 2}", lambda: None) for i in range(20)]
    train, val = split_photos(refs, 0.25, seed=3)
    assert len(val) >= 5 and {r.group for r in train}.isdisjoint({r.group for r in val})
    assert split_photos(refs, 0.0)[1] == []
    with pytest.raises(ValueError):
        split_photos(refs, 1.0)


# --- synthetic datasets ---------------------------------------------------------------------


def test_synthetic_pairs_items() -> None:
    ds = SyntheticPairs(_tiny_photos(), crop=(32, 40), length=5, seed=0, augment=True)
    item = ds[0]
    for key in ("low", "high"):
        t = item[key]
        assert t.shape == (3, 32, 40) and t.dtype == torch.float32
        assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert [p.shape for p in item["patch_labels"]] == [(4, 1, 1), (4, 2, 2), (4, 4, 4)]
    for p in item["patch_labels"]:
        assert torch.allclose(p.sum(0), torch.ones(p.shape[1:]), atol=1e-5)
    assert 0.03 * 0.999 <= item["exposure"] <= 0.3 * 1.001
    assert float(item["low"].mean()) < float(item["high"].mean())
    with pytest.raises(IndexError):
        ds[5]


def test_synthetic_pairs_deterministic_by_seed_and_index() -> None:
    photos = _tiny_photos()
    a = SyntheticPairs(photos, crop=(32, 32), length=4, seed=5)
    b = SyntheticPairs(photos, crop=(32, 32), length=4, seed=5)
    for i in (3, 0):  # order of access does not matter
        assert torch.equal(a[i]["low"], b[i]["low"]) and torch.equal(a[i]["high"], b[i]["high"])
    assert not torch.equal(a[0]["low"], a[1]["low"])
    c = SyntheticPairs(photos, crop=(32, 32), length=4, seed=6)
    assert not torch.equal(a[0]["low"], c[0]["low"])
    first = a[0]["low"]
    a.set_epoch(1)
    assert not torch.equal(a[0]["low"], first)


def test_synthetic_pairs_batch_and_upscale() -> None:
    # The crop is larger than the photos: they are upscaled to cover it.
    ds = SyntheticPairs(_tiny_photos(2), crop=(64, 96), length=4, seed=0, augment=False, grids=(1, 2))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["low"].shape == (2, 3, 64, 96)
    assert [p.shape for p in batch["patch_labels"]] == [(2, 4, 1, 1), (2, 4, 2, 2)]
    assert len(batch["name"]) == 2


def test_clear_labels_without_degradation() -> None:
    cfg = SynthesisConfig(
        exposure_range=(1.0, 1.0), p_blur=0.0, p_jpeg=0.0, read_noise_range=(0.0, 0.0),
        shot_gain_range=(0.0, 0.0), highlight_gain_range=(1.0, 1.0), lights_range=(0, 0),
    )
    item = SyntheticPairs(_tiny_photos(1), cfg, crop=(32, 32), length=1)[0]
    assert torch.equal(item["low"], item["high"])
    assert all(bool((p.argmax(0) == CLEAR).all()) for p in item["patch_labels"])


def test_synthetic_validation_set_uses_only_validation_photos() -> None:
    _, val = split_photos(list_clean_photos())
    val_names = {r.name for r in val}
    ds = synthetic_validation_set(size=(48, 64), n=3, seed=1234)
    again = synthetic_validation_set(size=(48, 64), n=3, seed=1234)
    assert len(ds) == 3
    for i in range(3):
        item = ds[i]
        assert item["name"] in val_names
        assert item["low"].shape == item["high"].shape == (3, 48, 64)
        assert torch.equal(item["low"], again[i]["low"])
    assert [ds[i]["name"] for i in range(3)] == [val[i].name for i in range(3)]


def test_bad_dataset_arguments() -> None:
    with pytest.raises(ValueError, match="no clean photos"):
        SyntheticPairs([], length=1)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        SyntheticPairs([np.zeros((8, 8), np.uint8)], length=1)
    with pytest.raises(ValueError, match="crop or resize_to"):
        SyntheticPairs(_tiny_photos(1), crop=(8, 8), resize_to=(8, 8))


def test_the_model_and_the_labels_use_the_same_prompts() -> None:
    """The synthetic pairs' per-patch labels index the model's prompts: same texts, same order."""
    from dap_led_ros.model.config import ModelConfig, VARIANTS

    for cfg in [ModelConfig(), *VARIANTS.values()]:
        assert cfg.prior.prompts == DEGRADATION_PROMPTS
    assert len(set(DEGRADATION_PROMPTS)) == len(DEGRADATION_PROMPTS) == 4


# --- LOL-Blur and paired folders ------------------------------------------------------------


def _make_lol_blur(base: Path, seqs: dict[str, int], flat: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(len(str(base)))
    made = {}
    for seq, frames in seqs.items():
        for f in range(frames):
            rel = f"{seq}_{f:04d}" if flat else f"{seq}/{f:04d}"
            high = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
            _write(base / "high_sharp_scaled" / f"{rel}.png", high)
            _write(base / "low_blur_noise" / f"{rel}.png", high // 8)
            made[rel] = high
    return made


def test_lol_blur_sequence_layout(tmp_path: Path) -> None:
    made = _make_lol_blur(tmp_path, {"0001": 2, "0002": 1})
    ds = LolBlurFolder(tmp_path)
    assert len(ds) == 3 and [ds[i]["name"] for i in range(3)] == ["0001/0000", "0001/0001", "0002/0000"]
    item = ds[1]
    assert item["high"].shape == (3, 24, 32)
    expected = torch.from_numpy(made["0001/0001"]).permute(2, 0, 1).float() / 255
    assert torch.allclose(item["high"], expected)
    assert torch.allclose(item["low"], torch.from_numpy(made["0001/0001"] // 8).permute(2, 0, 1).float() / 255)


def test_lol_blur_flat_and_crop(tmp_path: Path) -> None:
    _make_lol_blur(tmp_path, {"a": 2}, flat=True)
    ds = LolBlurFolder(tmp_path, crop=(16, 16), seed=3)
    item = ds[0]
    assert item["low"].shape == item["high"].shape == (3, 16, 16)
    # Same crop window in both images (low was made as high // 8).
    assert torch.allclose(item["low"] * 255, torch.floor(item["high"] * 255 / 8), atol=1e-3)
    assert torch.equal(ds[0]["low"], LolBlurFolder(tmp_path, crop=(16, 16), seed=3)[0]["low"])
    with pytest.raises(ValueError, match="smaller than the crop"):
        LolBlurFolder(tmp_path, crop=(64, 64))[0]


def test_lol_blur_train_test_root(tmp_path: Path) -> None:
    _make_lol_blur(tmp_path / "train", {"0001": 2})
    _make_lol_blur(tmp_path / "test", {"0101": 1})
    assert len(LolBlurFolder(tmp_path, split="train")) == 2
    assert len(LolBlurFolder(tmp_path, split="test")) == 1
    with pytest.raises(ValueError, match="split="):
        LolBlurFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="val"):
        LolBlurFolder(tmp_path, split="val")


def test_lol_blur_broken_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a LOL-Blur folder"):
        LolBlurFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LolBlurFolder(tmp_path / "nope")
    only_low = tmp_path / "only_low"
    _write(only_low / "low_blur_noise" / "0001" / "0000.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="high_sharp_scaled"):
        LolBlurFolder(only_low)
    mismatched = tmp_path / "mismatched"
    _make_lol_blur(mismatched, {"0001": 2})
    (mismatched / "high_sharp_scaled" / "0001" / "0001.png").unlink()
    _write(mismatched / "high_sharp_scaled" / "0009" / "0000.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"1 input\(s\) without a target.*0001/0001.*1 target\(s\) without an input"):
        LolBlurFolder(mismatched)
    assert [LolBlurFolder(mismatched, strict=False)[0]["name"]] == ["0001/0000"]
    sizes = tmp_path / "sizes"
    _write(sizes / "low_blur_noise" / "x.png", np.zeros((8, 8, 3), np.uint8))
    _write(sizes / "high_sharp_scaled" / "x.png", np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="pair x"):
        LolBlurFolder(sizes)[0]
    (sizes / "high_sharp_scaled" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="x.png"):
        LolBlurFolder(sizes)[0]
    empty = tmp_path / "empty"
    (empty / "low_blur_noise").mkdir(parents=True)
    (empty / "high_sharp_scaled").mkdir()
    with pytest.raises(ValueError, match="no images"):
        LolBlurFolder(empty)


def test_paired_folder_matches_by_relative_path(tmp_path: Path) -> None:
    img = np.full((10, 12, 3), 7, np.uint8)
    _write(tmp_path / "in" / "cam0" / "f1.png", img)
    _write(tmp_path / "in" / "cam1" / "f1.png", img)
    _write(tmp_path / "gt" / "cam0" / "f1.png", img)
    (tmp_path / "gt" / "cam1").mkdir()
    assert cv2.imwrite(str(tmp_path / "gt" / "cam1" / "f1.jpg"), img)  # suffix may differ
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    ds = PairedFolder(tmp_path / "in", tmp_path / "gt")
    assert [ds[i]["name"] for i in range(len(ds))] == ["cam0/f1", "cam1/f1"]
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["low"].shape == (2, 3, 10, 12)
    with pytest.raises(FileNotFoundError, match="target folder"):
        PairedFolder(tmp_path / "in", tmp_path / "missing")
