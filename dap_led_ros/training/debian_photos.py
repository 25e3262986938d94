"""Clean natural photos taken from Debian packages: selection rules, licences and installation.

`scripts/setup_photos.sh` downloads the packages listed in `RULES`, unpacks each with
`dpkg-deb -x` and calls `install_debian_photos` on the unpacked tree, which copies the selected
photos to `<out_dir>/<package>/<relative path>` (JPEG sources byte for byte; WebP as JPEG
quality 95; PNG/PPM as PNG) and writes `<out_dir>/<package>/SOURCES.tsv`; `write_sources`
then merges those into `<out_dir>/SOURCES.tsv`. `clean_photos` finds the installed files.

A photo is kept when its path matches the package's rule and the decoded image is colour, fully
opaque and at least `MIN_SIDE` pixels on its shorter side. gcompris-qt-data ships its images
inside Qt `.rcc` resource files; `qt_rcc.read_rcc` unpacks those.

`plasma-workspace-wallpapers` is reserved for an independent evaluation and always refused.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dap_led_ros.training.qt_rcc import read_rcc

FORBIDDEN_PACKAGES: frozenset[str] = frozenset({"plasma-workspace-wallpapers"})
MIN_SIDE = 256  # shorter side in pixels
MIN_CHROMA = 3.0  # mean of max(R,G,B) - min(R,G,B); grey content stored as RGB scores ~0-1
SOURCES_FILE = "SOURCES.tsv"
SOURCES_HEADER = ("package", "version", "file", "licence")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".ppm", ".pnm")


class ForbiddenPackageError(ValueError):
    """The package must never feed the training pool."""


def refuse_forbidden(package: str) -> None:
    if package in FORBIDDEN_PACKAGES:
        raise ForbiddenPackageError(f"{package} is reserved for an independent evaluation and is never used")


# --- per-package rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class PackageRule:
    """Which files of an unpacked package are clean natural photos."""

    root: str  # folder of the unpacked package that relative paths start from
    include: tuple[str, ...]  # fnmatch globs on the relative path ("*" also matches "/")
    exclude: tuple[str, ...] = ()
    rcc: bool = False  # the images are inside .rcc files under `root`
    rcc_prefix: str = ""  # dropped from paths inside the rcc files


# (butterfly.jpg is left out: mvtb-data's butterfly in the core pool is the same photo)
_OPENCV_DATA = ("aero1", "aero3", "aloeL", "aloeR", "apple", "baboon", "board", "building", "ela_original",
                "fruits", "home", "left", "right", "messi5", "orange", "squirrel_cls", "stuff")
_OPENCV_HTML = ("pexels_double_decker_bus", "space_shuttle", "studentsSample_input", "retina_TreeHdr_small",
                "handSrc", "230501201_1", "227943776_1", "Background_Subtraction_Tutorial_frame", "astra_color")
_LXQT = ("Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
         "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg")

# Chosen by looking at every candidate: drawings, paintings, renders, annotated or processed
# copies, abstract wallpapers, textures and test patterns are left out.
RULES: dict[str, PackageRule] = {
    "gcompris-qt-data": PackageRule(
        root="usr/share/gcompris-qt/rcc",
        rcc=True,
        rcc_prefix="gcompris/src/activities/",
        include=(
            "erase/resource/*",  # animal photos, 1920x1080
            "clickgame/resource/sea[0-9].*",  # underwater photos
            "details/resource/image/*_background.*",  # monuments (paintings excluded below)
            "explore_farm_animals/resource/animals/*",
            "explore_monuments/resource/*/*",
            "explore_world_animals/resource/animals/*",
            "explore_world_music/resource/music/*",
        ),
        exclude=("*Gogh*", "*Tanguy*", "*Auvers*", "*/fish*"),
    ),
    "opencv-doc": PackageRule(
        root="usr/share/doc/opencv-doc",
        include=(
            *(f"examples/data/{n}.jpg" for n in _OPENCV_DATA),
            "examples/data/graf[13].png",
            "examples/data/leuven[AB].jpg",
            "examples/data/rubberwhale[12].png",
            "examples/alphamat/input_images/plant.jpg",
            "examples/dnn_superres/butterfly.png",
            "examples/reg/home.png",
            "examples/text/scenetext0[1-6].jpg",  # street scenes
            "examples/text/scenetext_segmented_word0[1-4].jpg",
            *(f"opencv4/html/{n}.jpg" for n in _OPENCV_HTML),
        ),
    ),
    "labelme-examples": PackageRule(
        root="usr/share/doc/labelme-examples/examples",
        include=(  # the originals only, not the label/visualisation copies
            "bbox_detection/data_annotated/*.jpg",
            "classification/data_annotated/*.jpg",
            "tutorial/apc2016_obj3.jpg",
            "video_annotation/data_annotated/*.jpg",
        ),
    ),
    "libjxl-testdata": PackageRule(
        root="usr/share/libjxl-testdata",
        include=(
            "external/wesaturate/500px/*_srgb8.png",
            "jxl/flower/flower.png",  # its re-encoded, bit-depth and small copies are left out
            "jxl/flower/flower_cropped.jpg",
            "jxl/hdr_room.png",
        ),
    ),
    "lomiri-wallpapers-16.04": PackageRule(
        root="usr/share/backgrounds",
        include=("*.jpg",),
        exclude=("analogpattern_*", "umang_*"),  # a noise texture, a gradient
    ),
    "lomiri-wallpapers-20.04": PackageRule(
        root="usr/share/backgrounds",
        include=("Kleiber_*.jpg",),  # the other three are digital art
    ),
    "mate-backgrounds": PackageRule(root="usr/share/backgrounds/mate", include=("nature/*",)),
    "lxqt-themes": PackageRule(root="usr/share/lxqt/wallpapers", include=_LXQT),
    "palapeli-data": PackageRule(root="usr/share/palapeli", include=("collection/*.jpg",)),
    "python-kivy-examples": PackageRule(
        root="usr/share/kivy-examples",
        include=(
            "canvas/kiwi.jpg",
            "demo/pictures/images/Wall.jpg",
            "demo/pictures/images/faust_github.jpg",
            "widgets/cityCC0.png",
        ),
    ),
}

# Licence of the selected images, read from each package's usr/share/doc/<pkg>/copyright.
LICENCES: dict[str, str] = {
    "gcompris-qt-data": "GPL-3+",
    "opencv-doc": "Apache-2.0 AND BSD-3-Clause",
    "labelme-examples": "GPL-3+",
    "libjxl-testdata": "BSD-3-clause-Google",
    "lomiri-wallpapers-16.04": "CC-BY-4.0",
    "lomiri-wallpapers-20.04": "CC-BY-SA-3.0",
    "mate-backgrounds": "GPL-2+",
    "lxqt-themes": "LGPL-2.1+",
    "palapeli-data": "GPL-2+",
    "python-kivy-examples": "Expat",
}
# Files whose copyright stanza differs from the package's (first matching glob wins).
LICENCE_EXCEPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "gcompris-qt-data": (
        ("clickgame/resource/sea*", "GPL-3"),
        ("details/resource/image/*", "GPL-3"),
        ("explore_farm_animals/resource/animals/*", "GPL-3"),
    ),
    "libjxl-testdata": (("external/wesaturate/*", "CC0"),),
    "lomiri-wallpapers-16.04": (
        ("Bridge_by_*", "CC-BY-SA-4.0"),
        ("Dragonfly_by_*", "CC-BY-SA-4.0"),
        ("*_by_Peter_Nerlich.*", "CC-BY-SA-4.0"),
        ("seeding_by_*", "CC0-1.0"),
    ),
}


def licence_of(package: str, rel: str) -> str:
    for pattern, licence in LICENCE_EXCEPTIONS.get(package, ()):
        if fnmatch.fnmatchcase(rel, pattern):
            return licence
    return LICENCES[package]


# --- split groups ---------------------------------------------------------------------------

# gcompris shows some subjects in two activities; these names are the same subject.
_GCOMPRIS_SUBJECTS = {
    "chateaudechenonceau": "chenonceau",
    "eiffeltower": "toureiffel",
    "greatpyramidofgiza": "gizahpyramids",
    "neuschwansteincastle": "neuschwanstein",
}
# (package, regex on the relative path without extension, replacement): views of one scene,
# frames of one video and crops of one photo get one group name.
_GROUP_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("opencv-doc", re.compile(r"^examples/data/(aloe|leuven|graf|rubberwhale)[LRAB0-9]$"), r"examples/data/\1"),
    ("opencv-doc", re.compile(r"^examples/data/(left|right)$"), "examples/data/left-right"),
    ("labelme-examples", re.compile(r"^video_annotation/data_annotated/.*$"), "video_annotation"),
    ("libjxl-testdata", re.compile(r"^jxl/flower/.*$"), "jxl/flower"),
)


def photo_group(package: str, rel_no_ext: str) -> str:
    """Split group of an installed photo: photos of one scene always share it."""
    key = rel_no_ext
    if package == "gcompris-qt-data":
        # one group per subject across activity folders ("giraffe" in two activities, sizes of one image)
        subject = rel_no_ext.rsplit("/", 1)[-1].lower().removesuffix("_background")
        key = _GCOMPRIS_SUBJECTS.get(subject, subject)
    for pkg, pattern, replacement in _GROUP_PATTERNS:
        if pkg == package:
            key = pattern.sub(replacement, key)
    return f"debian/{package}/{key}"


# --- selection and installation -------------------------------------------------------------


@dataclass(frozen=True)
class InstalledPhoto:
    package: str
    version: str
    file: str  # path relative to out_dir, e.g. "mate-backgrounds/nature/Dune.jpg"
    licence: str


def _matches(rel: str, rule: PackageRule) -> bool:
    def hit(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(rel, p) for p in patterns)

    return Path(rel).suffix.lower() in _IMAGE_SUFFIXES and hit(rule.include) and not hit(rule.exclude)


def _candidates(extracted_root: Path, rule: PackageRule) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(relative path, reader of the encoded bytes) of every file the rule selects, sorted."""
    base = extracted_root / rule.root
    if not base.is_dir():
        return
    if not rule.rcc:
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and _matches(rel, rule):
                yield rel, path.read_bytes
        return
    seen: set[str] = set()
    for rcc_path in sorted(base.rglob("*.rcc")):
        for inner, payload in read_rcc(rcc_path.read_bytes()).items():
            rel = inner.removeprefix(rule.rcc_prefix)
            if rel not in seen and _matches(rel, rule):
                seen.add(rel)
                yield rel, (lambda payload=payload: payload)


def decode_photo(encoded: bytes) -> tuple[np.ndarray | None, str]:
    """(BGR uint8 image, "") for a usable photo, else (None, reason it is skipped)."""
    img = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None, "not decodable"
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        return None, f"sample type {img.dtype}"
    if img.ndim == 2 or img.shape[2] < 3:
        return None, "mono"
    if min(img.shape[:2]) < MIN_SIDE:
        return None, f"too small ({img.shape[1]}x{img.shape[0]})"
    if img.shape[2] == 4:
        if int(img[:, :, 3].min()) < 255:
            return None, "transparent (a cut-out)"
        img = img[:, :, :3]
    chroma = img.max(axis=2).astype(np.int16) - img.min(axis=2)
    if float(chroma.mean()) < MIN_CHROMA:
        return None, "grey content"
    return np.ascontiguousarray(img), ""


def _write_photo(dest_no_ext: Path, rel: str, encoded: bytes, img: np.ndarray) -> Path:
    """JPEG stays byte for byte; WebP (lossy) becomes JPEG q95; lossless sources become PNG."""
    suffix = Path(rel).suffix.lower()
    dest_no_ext.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".jpg", ".jpeg"):  # decode_photo passed it: 8-bit colour
        dest = dest_no_ext.with_name(dest_no_ext.name + ".jpg")
        dest.write_bytes(encoded)
        return dest
    if suffix == ".webp":
        dest = dest_no_ext.with_name(dest_no_ext.name + ".jpg")
        ok = cv2.imwrite(str(dest), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        dest = dest_no_ext.with_name(dest_no_ext.name + ".png")
        ok = cv2.imwrite(str(dest), img)
    if not ok:
        raise OSError(f"could not write {dest}")
    return dest


def _write_tsv(path: Path, rows: list[tuple[str, ...]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join("\t".join(r) + "\n" for r in [SOURCES_HEADER, *rows]), encoding="utf-8")
    os.replace(tmp, path)


def install_debian_photos(extracted_root: Path, package: str, version: str, out_dir: Path) -> list[InstalledPhoto]:
    """Copy the package's selected photos from its unpacked tree to `out_dir/<package>/`.

    The package folder is rebuilt from scratch (in a temporary folder, then swapped in), so a
    second run gives the same files. Its `SOURCES.tsv` lists what was installed.
    """
    refuse_forbidden(package)
    if package not in RULES:
        raise KeyError(f"no photo rule for package {package!r}; known: {', '.join(sorted(RULES))}")
    rule, out_dir = RULES[package], Path(out_dir)
    final, staging = out_dir / package, out_dir / f".{package}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    installed: list[InstalledPhoto] = []
    for rel, read in _candidates(Path(extracted_root), rule):
        encoded = read()
        img, _reason = decode_photo(encoded)
        if img is None:
            continue
        rel_no_ext = rel[: -len(Path(rel).suffix)]
        dest = _write_photo(staging / rel_no_ext, rel, encoded, img)
        file = f"{package}/{dest.relative_to(staging).as_posix()}"
        installed.append(InstalledPhoto(package, version, file, licence_of(package, rel)))
    _write_tsv(staging / SOURCES_FILE, [(p.package, p.version, p.file, p.licence) for p in installed])
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    return installed


def write_sources(out_dir: Path) -> int:
    """Merge every `<package>/SOURCES.tsv` under out_dir into `out_dir/SOURCES.tsv`; rows written."""
    out_dir = Path(out_dir)
    rows: list[tuple[str, ...]] = []
    for part in sorted(out_dir.glob(f"*/{SOURCES_FILE}")):
        lines = part.read_text(encoding="utf-8").splitlines()
        rows += [tuple(line.split("\t")) for line in lines[1:] if line]
    _write_tsv(out_dir / SOURCES_FILE, rows)
    return len(rows)


def main(argv: list[str]) -> int:
    """`install EXTRACTED_ROOT PACKAGE VERSION OUT_DIR` or `sources OUT_DIR` (used by setup_photos.sh)."""
    if len(argv) == 5 and argv[0] == "install":
        photos = install_debian_photos(Path(argv[1]), argv[2], argv[3], Path(argv[4]))
        print(f"{argv[2]} {argv[3]}: {len(photos)} photos")
        return 0
    if len(argv) == 2 and argv[0] == "sources":
        print(f"{Path(argv[1]) / SOURCES_FILE}: {write_sources(Path(argv[1]))} photos")
        return 0
    print(main.__doc__, file=sys.stderr)
    return 2
