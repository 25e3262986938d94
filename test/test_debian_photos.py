"""Debian photo pool: the .rcc reader, selection rules, the refused package, discovery, split_pool."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dap_led_ros.training import debian_photos as dp
from dap_led_ros.training.clean_photos import (
    CleanPhotoRef,
    list_clean_photos,
    load_clean_photo,
    split_photos,
    split_pool,
)
from dap_led_ros.training.qt_rcc import RccError, read_rcc

# The core validation photos of split_photos(..., 0.15, seed=0): other code and published figures use them.
CORE_VAL_NAMES = [
    "mvtb/58060", "mvtb/campus/P1070495", "mvtb/campus/P1070498", "mvtb/campus/P1070500",
    "mvtb/campus/P1070501", "mvtb/campus/P1070514", "mvtb/eiffel-1", "mvtb/eiffel-2", "mvtb/flowers2",
]


# --- a hand-built .rcc ----------------------------------------------------------------------


def _build_rcc(version: int) -> bytes:
    """root/{a.txt (plain), b.bin (zlib), sub/c.txt (plain)} in Qt's binary resource layout."""
    names, data = bytearray(), bytearray()

    def name(text: str) -> int:
        offset = len(names)
        names.extend(struct.pack(">HI", len(text), 0) + text.encode("utf-16-be"))
        return offset

    def payload(raw: bytes) -> int:
        offset = len(data)
        data.extend(struct.pack(">I", len(raw)) + raw)
        return offset

    plain_a, plain_c = b"hello rcc", b"nested file"
    packed_b = struct.pack(">I", 4000) + zlib.compress(b"z" * 4000)
    tail = b"\0" * 8 if version >= 2 else b""  # u64 last-modified

    def directory(name_offset: int, count: int, first: int) -> bytes:
        return struct.pack(">IHII", name_offset, 0x02, count, first) + tail

    def file(name_offset: int, flags: int, data_offset: int) -> bytes:
        return struct.pack(">IHHHI", name_offset, flags, 0, 0, data_offset) + tail

    nodes = [
        directory(0, 3, 1),  # 0: root (its name is not read)
        file(name("a.txt"), 0x00, payload(plain_a)),  # 1
        file(name("b.bin"), 0x01, payload(packed_b)),  # 2
        directory(name("sub"), 1, 4),  # 3
        file(name("c.txt"), 0x00, payload(plain_c)),  # 4
    ]
    tree = b"".join(nodes)
    header_size = 24 if version >= 3 else 20
    tree_at = header_size
    data_at = tree_at + len(tree)
    names_at = data_at + len(data)
    header = b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree + bytes(data) + bytes(names)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader_plain_zlib_and_nested(version: int) -> None:
    files = read_rcc(_build_rcc(version))
    assert files == {"a.txt": b"hello rcc", "b.bin": b"z" * 4000, "sub/c.txt": b"nested file"}


def test_rcc_reader_rejects_other_files() -> None:
    with pytest.raises(RccError):
        read_rcc(b"PK\x03\x04 not an rcc")
    with pytest.raises(RccError):
        read_rcc(_build_rcc(3)[:40])  # truncated


# --- selection rules on a fake unpacked package ---------------------------------------------


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image (BGR)."""
    small = np.random.default_rng(seed).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def _fake_mate(root: Path) -> None:
    base = root / "usr/share/backgrounds/mate"
    _write(base / "nature/Good.jpg", _photo(300, 400))
    _write(base / "nature/Wide.png", _photo(260, 500, seed=1))
    _write(base / "nature/Small.png", _photo(100, 120))  # shorter side < 256
    _write(base / "nature/Mono.png", cv2.cvtColor(_photo(300, 300), cv2.COLOR_BGR2GRAY))
    grey = cv2.cvtColor(cv2.cvtColor(_photo(300, 300), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    _write(base / "nature/GreyRGB.jpg", grey)  # three channels, no colour
    cutout = np.dstack([_photo(300, 300), np.full((300, 300), 255, np.uint8)])
    cutout[:10, :10, 3] = 0
    _write(base / "nature/Cutout.png", cutout)
    _write(base / "abstract/Art.png", _photo(300, 300))  # not a folder the rule takes


def test_selection_rules_skip_small_mono_and_unlisted(tmp_path: Path) -> None:
    _fake_mate(tmp_path / "x")
    out = tmp_path / "photos"
    installed = dp.install_debian_photos(tmp_path / "x", "mate-backgrounds", "1.0-1", out)
    assert [p.file for p in installed] == ["mate-backgrounds/nature/Good.jpg", "mate-backgrounds/nature/Wide.png"]
    assert {p.licence for p in installed} == {"GPL-2+"}
    assert (out / "mate-backgrounds/nature/Good.jpg").read_bytes() == \
        (tmp_path / "x/usr/share/backgrounds/mate/nature/Good.jpg").read_bytes()  # JPEG copied as is
    # idempotent: a second run gives the same tree, and the merged SOURCES.tsv lists both files
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    dp.install_debian_photos(tmp_path / "x", "mate-backgrounds", "1.0-1", out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert dp.write_sources(out) == 2
    lines = (out / "SOURCES.tsv").read_text().splitlines()
    assert lines[0] == "package\tversion\tfile\tlicence"
    assert lines[1] == "mate-backgrounds\t1.0-1\tmate-backgrounds/nature/Good.jpg\tGPL-2+"


def test_rcc_package_rule_decodes_webp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, webp = cv2.imencode(".webp", _photo(300, 480))
    ok2, tiny = cv2.imencode(".webp", _photo(64, 64))
    assert ok and ok2
    files = {"gcompris/src/activities/erase/resource/fox.webp": webp.tobytes(),
             "gcompris/src/activities/erase/resource/icon.webp": tiny.tobytes(),  # too small
             "gcompris/src/activities/lang/resource/cat.webp": webp.tobytes()}  # not a folder the rule takes
    rcc = tmp_path / "x/usr/share/gcompris-qt/rcc/erase.rcc"
    rcc.parent.mkdir(parents=True)
    rcc.write_bytes(_build_rcc(3))
    monkeypatch.setattr(dp, "read_rcc", lambda data: files)  # the reader itself is tested above
    installed = dp.install_debian_photos(tmp_path / "x", "gcompris-qt-data", "3.1-2", tmp_path / "out")
    assert [p.file for p in installed] == ["gcompris-qt-data/erase/resource/fox.jpg"]
    assert cv2.imread(str(tmp_path / "out" / installed[0].file)).shape == (300, 480, 3)


def test_plasma_wallpapers_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(dp.ForbiddenPackageError):
        dp.install_debian_photos(tmp_path, "plasma-workspace-wallpapers", "5.27", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    _write(tmp_path / "photos/plasma-workspace-wallpapers/Next.png", _photo(300, 400))
    monkeypatch.setenv("DAP_LED_PHOTOS", str(tmp_path / "photos"))
    with pytest.raises(dp.ForbiddenPackageError):
        list_clean_photos()


# --- discovery and the pool split -----------------------------------------------------------


def test_discovery_via_env_var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAP_LED_PHOTOS", str(tmp_path / "empty"))
    core = list_clean_photos()
    assert all(r.pool == "core" for r in core)
    _fake_mate(tmp_path / "x")
    dp.install_debian_photos(tmp_path / "x", "mate-backgrounds", "1.0-1", tmp_path / "photos")
    dp.write_sources(tmp_path / "photos")
    monkeypatch.setenv("DAP_LED_PHOTOS", str(tmp_path / "photos"))
    refs = list_clean_photos()
    debian = [r for r in refs if r.pool == "debian"]
    assert [r.name for r in debian] == ["debian/mate-backgrounds/nature/Good", "debian/mate-backgrounds/nature/Wide"]
    assert debian[0].group == "debian/mate-backgrounds/nature/Good"
    assert load_clean_photo(debian[0]).shape == (300, 400, 3)
    assert [r.name for r in refs if r.pool == "core"] == [r.name for r in core]
    assert split_photos(refs)[1] == split_photos(core)[1]  # the Debian pool leaves val alone


def test_groups_keep_views_and_crops_together() -> None:
    g = dp.photo_group
    assert g("opencv-doc", "examples/data/aloeL") == g("opencv-doc", "examples/data/aloeR")
    assert g("opencv-doc", "examples/data/left") == g("opencv-doc", "examples/data/right")
    assert g("libjxl-testdata", "jxl/flower/flower") == g("libjxl-testdata", "jxl/flower/flower_cropped")
    assert g("gcompris-qt-data", "erase/resource/giraffe") == \
        g("gcompris-qt-data", "explore_world_animals/resource/animals/giraffe")
    assert g("gcompris-qt-data", "details/resource/image/TourEiffel_background") == \
        g("gcompris-qt-data", "explore_monuments/resource/france/eiffelTower")
    assert g("gcompris-qt-data", "erase/resource/giraffe") != g("gcompris-qt-data", "erase/resource/horse")


def test_split_pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAP_LED_PHOTOS", str(tmp_path / "empty"))
    core = list_clean_photos()
    fake = [CleanPhotoRef(f"debian/p/x{i:03d}", f"debian/p/g{i // 3}", lambda: None, pool="debian")
            for i in range(240)]
    refs = sorted(core + fake, key=lambda r: r.name)
    split = split_pool(refs)
    assert split.val == split_photos(core, 0.15, 0)[1]
    assert [r.name for r in split.val] == CORE_VAL_NAMES
    assert all(r.pool == "debian" for r in split.val2)
    assert 40 <= len(split.val2) <= 0.3 * len(fake)
    assert {r.group for r in split.train}.isdisjoint({r.group for r in split.val2})
    assert {r.group for r in split.train}.isdisjoint({r.group for r in split.val})
    assert len(split.train) + len(split.val) + len(split.val2) == len(refs)
    rev = split_pool(list(reversed(refs)))
    assert rev.val2 == list(reversed(split.val2)) and rev.val == list(reversed(split.val))
    assert {r.name for r in rev.train} == {r.name for r in split.train}
    assert split_pool(refs, seed=1).val2 != split.val2
