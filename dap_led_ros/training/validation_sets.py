"""The named validation sets, assembled once for training (`loaders.ValidationSet`) and for
`dap-led eval` (`evaluate.score_sets`, and `--downstream`).

In order: the seeded synthetic set (`synthetic`), the camera-model set on other photos (`camera`,
skipped when the Debian photo pool is not installed), the held-out clean photos (`well_exposed`),
paired folders (`pairs`), a LOL-Blur folder (`lolblur`), the cross-model split (`cross`: every
held-out photo through path 1, `cross_synthetic`, and through path 2, `cross_camera`, both with the
`night` degradations; a model trained on one path is scored on the other) and real night frames (`real`). The two
synthetic sets always use the default degradation settings, whatever a training config overrides,
so training and `dap-led eval` score the same pairs. A set is made when it is loaded.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dap_led_ros.workspace import REAL_NIGHT_DIR

if TYPE_CHECKING:  # torch-free at import: `dap-led eval` loads this before its arguments are checked
    from dap_led_ros.training.config import DataConfig

DEFAULT_REAL_DIR = REAL_NIGHT_DIR  # eval's real night frames unless --real names others


@dataclass(frozen=True)
class SetOptions:
    """Which sets, and how they are made (defaults: those of `DataConfig`, tested equal)."""

    size: tuple[int, int] = (400, 640)  # frame height, width
    synthetic: bool = True
    val_count: int | None = None        # synthetic pairs (None: two per validation photo)
    val_seed: int = 1234
    camera: bool = True
    val2_count: int | None = None       # camera-model pairs (None: one per photo)
    val2_seed: int = 4321
    cross: bool = True                  # the cross-model split (two sets)
    cross_count: int | None = None      # pairs per path (None: one per held-out photo)
    cross_seed: int = 2718
    well_exposed: bool = True
    pairs: tuple[Path, Path] | None = None  # (input folder, target folder)
    lolblur: Path | None = None
    lolblur_split: str | None = None
    real: Path | None = None            # folder of real night frames
    val_fraction: float = 0.15          # the photo split the sets are held out from
    split_seed: int = 0

    @classmethod
    def for_training(cls, d: DataConfig) -> SetOptions:
        """The sets training validates on: synthetic, camera and well-exposed, sized and seeded by `d`."""
        return cls(size=tuple(d.val_size), val_count=d.val_count, val_seed=d.val_seed, val2_count=d.val2_count,
                   val2_seed=d.val2_seed, cross=d.cross_validation, cross_count=d.cross_count,
                   cross_seed=d.cross_seed, val_fraction=d.val_fraction, split_seed=d.split_seed)

    def folders(self) -> list[Path]:
        """The input folders the sets read."""
        return [*(self.pairs or ()), *([self.real] if self.real is not None else []),
                *([self.lolblur] if self.lolblur is not None else [])]


@dataclass(frozen=True)
class ValidationSource:
    """One named set. `load()` gives, for synthetic, camera, pairs and lolblur, a dataset of
    {"name", "low", "high"} items; for well_exposed, (name, RGB uint8 photo) pairs; for real, the folder."""

    tag: str
    title: str
    name: str  # in notes
    load: Callable[[], Any]
    synthesized: bool = False  # degraded from held-out photos (synthetic, camera)
    optional: bool = False     # ValueError from load(): its photo pool is missing, the set is skipped


def validation_sources(opts: SetOptions, short_titles: bool = False) -> list[ValidationSource]:
    """The sets `opts` asks for, in order. short_titles: the camera set's title without "on other
    photos" (as `dap-led eval --downstream` names it)."""
    from dap_led_ros.training import datasets

    h, w = opts.size
    split = {"val_fraction": opts.val_fraction, "split_seed": opts.split_seed}
    out = []
    if opts.synthetic:
        out.append(ValidationSource(
            "synthetic", f"Synthetic validation set ({w}x{h}, seed {opts.val_seed})", "synthetic validation set",
            lambda: datasets.synthetic_validation_set(size=(h, w), n=opts.val_count, seed=opts.val_seed, **split),
            synthesized=True))
    if opts.camera:
        what = "camera model" if short_titles else "camera model on other photos"
        out.append(ValidationSource(
            "camera", f"Second validation set: {what} ({w}x{h}, seed {opts.val2_seed})", "second validation set",
            lambda: datasets.camera_validation_set(size=(h, w), n=opts.val2_count, seed=opts.val2_seed, **split),
            synthesized=True, optional=True))
    if opts.well_exposed:
        out.append(ValidationSource("well_exposed", f"held-out clean photos ({w}x{h})", "held-out clean photos",
                                    lambda: datasets.well_exposed_photos((h, w), **split)))
    if opts.pairs:
        a, b = opts.pairs
        out.append(ValidationSource("pairs", f"Paired folders {a} -> {b}", "paired folders",
                                    lambda: datasets.PairedFolder(a, b)))
    if opts.lolblur:
        out.append(ValidationSource("lolblur", f"LOL-Blur {opts.lolblur}", "LOL-Blur",
                                    lambda: datasets.LolBlurFolder(opts.lolblur, split=opts.lolblur_split)))
    if opts.cross:
        for tag, what in (("cross_synthetic", "path 1, sRGB synthesis"), ("cross_camera", "path 2, RAW camera model")):
            path = tag.removeprefix("cross_")
            out.append(ValidationSource(
                tag, f"Cross-model split, {what}, calibrated noise ({w}x{h}, seed {opts.cross_seed})",
                f"cross-model split ({what})",
                lambda path=path: datasets.cross_model_set(path, size=(h, w), n=opts.cross_count,
                                                           seed=opts.cross_seed, **split),
                synthesized=True))
    if opts.real is not None:
        out.append(ValidationSource("real", f"Real night frames {opts.real}", "real night frames",
                                    lambda: opts.real))
    return out


def load_set(source: ValidationSource, skipped: Callable[[str], None] | None = None) -> Any | None:
    """`source.load()`, or None when an optional set cannot be made (`skipped` gets the note)."""
    try:
        return source.load()
    except ValueError as exc:
        if not source.optional:
            raise
        if skipped is not None:
            skipped(f"{source.name} skipped: {exc}")
        return None


def real_frames_dir(folder: Path | None, skip: bool = False) -> Path | None:
    """The real night frames to score: `folder`, else DEFAULT_REAL_DIR when present; None with skip.

    FileNotFoundError when `folder` is given and is not a folder.
    """
    if skip:
        return None
    if folder is None:
        return DEFAULT_REAL_DIR if DEFAULT_REAL_DIR.is_dir() else None
    if not folder.is_dir():
        raise FileNotFoundError(f"real-frame folder {folder} does not exist")
    return folder
