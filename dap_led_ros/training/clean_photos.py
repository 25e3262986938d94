"""The offline pool of clean photos that synthetic training pairs are made from.

Sources, each used only when installed (no network access is needed or attempted):
- scikit-image's bundled colour photos (`skimage/data`),
- scikit-learn's sample images (`sklearn/datasets/images`), optional,
- PyPI's `mvtb-data` (Machine Vision Toolbox data, MIT): colour photos incl. street and campus
  scenes; calibration targets, synthetic drawings, aerial mosaics, paintings and mono images
  are left out.
- the "debian" pool: photos from Debian packages that `scripts/setup_photos.sh` installed under
  `$DAP_LED_PHOTOS`, else `<repo root>/data/photos` (see `debian_photos`), optional.

Photos are found by file path without importing the owning packages.
`split_photos` splits by *group* so near-duplicates (stereo pairs, `-1`/`-2` views, the same
photo in two formats) never straddle the train/validation split; its validation photos come
from the core (PyPI) pool only, so installing the Debian pool leaves them unchanged.
`split_pool` also holds out a second validation set (`val2`) of Debian photos.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from dap_led_ros.imaging.image_io import read_image
from dap_led_ros.training.debian_photos import photo_group, refuse_forbidden

# scikit-image files that are natural colour photos (the rest are mono, medical, astronomy or drawings).
SKIMAGE_PHOTOS: tuple[str, ...] = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",  # motorcycle_right.png is the other stereo view: left out
    "rocket.jpg",
)

# mvtb-data images that are not natural photos of a scene or are duplicates (by relative path
# without extension, or by folder prefix ending in "/").
MVTB_EXCLUDED: tuple[str, ...] = (
    "calibration/",  # checkerboard calibration frames (mono anyway)
    "mosaic/",  # aerial mosaics
    "seq/",  # mono image sequence
    "adelson",  # rendered illusion
    "apriltag12",
    "arucoboard",
    "church.jpg",  # same photo as church.png
    "fisheye_target",
    "greenscreen",
    "monalisa",  # painting
    "multiblobs_edgecase",
    "tags",
    "yellowtargets",
)

MIN_PHOTO_SIDE = 200  # shorter side in pixels; smaller images are icons and test patterns
_PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")
# Trailing "-1", "_14", "-l", "_right"... mark views of one scene; they share a split group.
_VIEW_SUFFIX = re.compile(r"[-_](\d+|l|r|left|right)$")


@dataclass(frozen=True)
class CleanPhotoRef:
    """One clean photo: a stable name, a split group and a picklable loader."""

    name: str  # "<source>/<relative path without extension>", e.g. "mvtb/campus/P1070491"
    group: str  # photos of one group always land in the same split
    loader: Callable[[], np.ndarray] = field(compare=False, repr=False)
    pool: str = field(default="core", compare=False)  # "core" (PyPI packages) or "debian"


def _read_rgb(path: Path) -> np.ndarray:
    return read_image(path).rgb


def _package_dir(package: str) -> Path | None:
    """Install folder of a top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _group_of(name: str) -> str:
    return _VIEW_SUFFIX.sub("", name)


def _is_colour_photo(path: Path) -> bool:
    """Cheap header check (PIL opens lazily): colour and not tiny."""
    from PIL import Image  # a scikit-image dependency; only the header is read

    with Image.open(path) as im:
        return im.mode in ("RGB", "RGBA") and min(im.size) >= MIN_PHOTO_SIDE


def _skimage_refs() -> list[CleanPhotoRef]:
    root = _package_dir("skimage")
    if root is None:
        return []
    refs = []
    for fname in SKIMAGE_PHOTOS:
        path = root / "data" / fname
        if path.is_file():
            name = "skimage/" + Path(fname).stem
            refs.append(CleanPhotoRef(name, _group_of(name), partial(_read_rgb, path)))
    return refs


def _sklearn_refs() -> list[CleanPhotoRef]:
    root = _package_dir("sklearn")
    folder = root / "datasets" / "images" if root else None
    if folder is None or not folder.is_dir():
        return []
    return [
        CleanPhotoRef("sklearn/" + p.stem, "sklearn/" + p.stem, partial(_read_rgb, p))
        for p in sorted(folder.glob("*.jpg"))
    ]


def _mvtb_excluded(rel_no_ext: str, rel: str) -> bool:
    for item in MVTB_EXCLUDED:
        if item.endswith("/") and rel.startswith(item):
            return True
        if item in (rel_no_ext, rel):
            return True
    return False


def _mvtb_refs() -> list[CleanPhotoRef]:
    root = _package_dir("mvtbdata")
    folder = root / "images" if root else None
    if folder is None or not folder.is_dir():
        return []
    refs = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in _PHOTO_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        rel_no_ext = rel[: -len(path.suffix)]
        if _mvtb_excluded(rel_no_ext, rel) or not _is_colour_photo(path):
            continue
        name = "mvtb/" + rel_no_ext
        refs.append(CleanPhotoRef(name, _group_of(name), partial(_read_rgb, path)))
    return refs


def debian_photos_dir() -> Path | None:
    """$DAP_LED_PHOTOS, else data/photos of the source checkout this package runs from (if any)."""
    env = os.environ.get("DAP_LED_PHOTOS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "package.xml").is_file() and (repo / "setup.py").is_file():  # a checkout, not site-packages
        return repo / "data" / "photos"
    return None


def _debian_refs() -> list[CleanPhotoRef]:
    root = debian_photos_dir()
    if root is None or not root.is_dir():
        return []
    refs = []
    for package_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        refuse_forbidden(package_dir.name)
        for path in sorted(package_dir.rglob("*")):
            if path.suffix.lower() not in _PHOTO_SUFFIXES or not path.is_file():
                continue
            rel_no_ext = path.relative_to(package_dir).with_suffix("").as_posix()
            name = f"debian/{package_dir.name}/{rel_no_ext}"
            group = photo_group(package_dir.name, rel_no_ext)
            refs.append(CleanPhotoRef(name, group, partial(_read_rgb, path), pool="debian"))
    return refs


def list_clean_photos() -> list[CleanPhotoRef]:
    """All clean colour photos available offline, sorted by name (stable across runs)."""
    refs = _skimage_refs() + _sklearn_refs() + _mvtb_refs() + _debian_refs()
    return sorted(refs, key=lambda r: r.name)


def load_clean_photo(ref: CleanPhotoRef, max_side: int | None = None) -> np.ndarray:
    """The photo as HxWx3 uint8 RGB, downscaled (area filter) so its longer side <= max_side."""
    img = ref.loader()
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"photo {ref.name}: loader returned {img.dtype} {img.shape}, want HxWx3 uint8")
    if max_side is not None and max(img.shape[:2]) > max_side:
        scale = max_side / max(img.shape[:2])
        size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def split_photos(
    refs: Sequence[CleanPhotoRef], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[CleanPhotoRef], list[CleanPhotoRef]]:
    """Deterministic (train, val) split by photo group; validation photos come from the core pool.

    Groups are ordered by a hash of (seed, group name), not by list position, so the split does
    not depend on the order of `refs`; core groups are taken in that order until they hold
    `val_fraction` of the core photos (at least one group for each side when there are two or
    more). Photos of other pools are all train photos here (see `split_pool` for their own
    held-out set), so adding them leaves the validation photos unchanged.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    core = [r for r in refs if r.pool == "core"]
    groups: dict[str, list[CleanPhotoRef]] = {}
    for ref in core:
        groups.setdefault(ref.group, []).append(ref)

    def rank(group: str) -> str:
        return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()

    target = val_fraction * len(core)
    val_groups: set[str] = set()
    n_val = 0
    for group in sorted(groups, key=rank):
        if len(groups) < 2 or val_fraction == 0.0:
            break
        if n_val >= target and val_groups:
            break
        if len(val_groups) == len(groups) - 1:  # keep at least one group for training
            break
        val_groups.add(group)
        n_val += len(groups[group])
    train = [r for r in refs if r.group not in val_groups]
    val = [r for r in refs if r.group in val_groups]
    return train, val


VAL2_FRACTION = 0.2  # share of the Debian photos held out as val2
VAL2_MIN = 40  # val2 holds at least this many photos once there are VAL2_MIN_POOL Debian photos
VAL2_MIN_POOL = 200


@dataclass(frozen=True)
class PoolSplit:
    """train: everything else; val: `split_photos`' core validation photos; val2: held-out Debian photos."""

    train: list[CleanPhotoRef]
    val: list[CleanPhotoRef]
    val2: list[CleanPhotoRef]


def split_pool(refs: Sequence[CleanPhotoRef], val_fraction: float = 0.15, seed: int = 0) -> PoolSplit:
    """Split all pools by group; each list keeps the order of `refs`.

    `val` is exactly `split_photos(core photos, val_fraction, seed)[1]`. `val2` takes whole
    Debian groups in the order of a hash of (seed, group) until it holds `VAL2_FRACTION` of the
    Debian photos (and at least `VAL2_MIN` once there are `VAL2_MIN_POOL` of them), so it does not
    depend on the order of `refs` either.
    """
    _, val = split_photos(refs, val_fraction, seed)
    debian = [r for r in refs if r.pool == "debian"]
    groups: dict[str, int] = {}
    for ref in debian:
        groups[ref.group] = groups.get(ref.group, 0) + 1
    target = VAL2_FRACTION * len(debian)
    if len(debian) >= VAL2_MIN_POOL:
        target = max(target, VAL2_MIN)
    val2_groups: set[str] = set()
    n_val2 = 0
    for group in sorted(groups, key=lambda g: hashlib.sha256(f"val2:{seed}:{g}".encode()).hexdigest()):
        if n_val2 >= target or len(val2_groups) == len(groups) - 1:  # keep one Debian group for training
            break
        val2_groups.add(group)
        n_val2 += groups[group]
    val_names = {r.name for r in val}
    val2 = [r for r in debian if r.group in val2_groups]
    train = [r for r in refs if r.name not in val_names and not (r.pool == "debian" and r.group in val2_groups)]
    return PoolSplit(train=train, val=list(val), val2=val2)
