"""Reading and writing image files as RGB uint8, keeping alpha and bit depth where they matter.

A file is read whole and checked for completeness before it is decoded (a truncated JPEG would
otherwise decode with its missing part filled grey); writes go through `file_output`, so an
output appears complete or not at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dap_led_ros.file_output import atomic_output, is_temporary

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Image formats this package does not read: named when refused or skipped, never taken silently.
UNSUPPORTED_IMAGE_SUFFIXES = {
    ".gif": "GIF is not supported (an animated GIF would give only its first frame); extract its frames "
            "first, e.g. ffmpeg -i in.gif frame_%04d.png",
    **{s: f"{s[1:].upper()} images are not supported; convert to PNG first"
       for s in (".apng", ".avif", ".heic", ".heif", ".jxl", ".exr", ".hdr", ".psd", ".xcf", ".ico", ".svg",
                 ".dng", ".cr2", ".nef", ".arw", ".raw")},
}

_JPEG, _PNG, _GIF = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", (b"GIF87a", b"GIF89a")


class ImageReadError(ValueError):
    """A file is missing, unreadable, incomplete or not an image of a supported layout."""


class ImageWriteError(ValueError):
    """An image cannot be encoded in the format its file name asks for."""


@dataclass
class LoadedImage:
    rgb: np.ndarray               # H x W x 3 uint8, what the network sees
    alpha: np.ndarray | None      # H x W uint8 when the file had an alpha channel
    grayscale: bool               # the file was single-channel
    bit_depth: int = 8            # bits per sample in the file (16: reduced to 8 in `rgb`)


def unsupported_reason(path: str | Path) -> str | None:
    """Why a file of this suffix is not read (None for every other suffix)."""
    return UNSUPPORTED_IMAGE_SUFFIXES.get(Path(path).suffix.lower())


def writable_suffix_error(path: str | Path) -> str | None:
    """None when `path` names an image format that `write_image` writes, else why not."""
    suffix = Path(path).suffix.lower()
    if suffix in IMAGE_SUFFIXES and cv2.haveImageWriter(f"x{suffix}"):
        return None
    what = f"{Path(path).suffix!r} is not an image format written here" if suffix else "it has no suffix"
    return f"cannot write an image to {path}: {what}; use one of {', '.join(IMAGE_SUFFIXES)}"


def _jpeg_complete(data: bytes) -> bool:
    """Whether the marker segments run from SOI to an EOI marker (data after EOI is allowed)."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:  # stray bytes between segments (libjpeg skips them too)
            pos = data.find(b"\xff", pos)
            if pos < 0:
                return False
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker that is not RSTn
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= n:
                    return False
                nxt = data[pos + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    pos += 1 if nxt == 0xFF else 2
                    continue
                break
    return n >= pos + 2 and data[pos:pos + 2] == b"\xff\xd9"


def _png_complete(data: bytes) -> bool:
    """Whether the chunks run from the signature to an IEND chunk, each within the file."""
    pos, n = len(_PNG), len(data)
    while pos + 12 <= n:
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        pos += 12 + length
        if pos > n:
            return False
        if kind == b"IEND":
            return True
    return False


def incomplete_reason(data: bytes) -> str | None:
    """Why the bytes of a JPEG or PNG file are not a whole file (None if whole, or another format)."""
    if data.startswith(_JPEG) and not _jpeg_complete(data):
        return "truncated or corrupt JPEG (no end-of-image marker where the data ends)"
    if data.startswith(_PNG) and not _png_complete(data):
        return "truncated or corrupt PNG (its chunks end before IEND)"
    return None


def read_image(path: str | Path) -> LoadedImage:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    reason = unsupported_reason(path)
    if reason:
        raise ImageReadError(f"{path}: {reason}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(_GIF):
        raise ImageReadError(f"{path}: {UNSUPPORTED_IMAGE_SUFFIXES['.gif']}")
    reason = incomplete_reason(data)
    if reason:
        raise ImageReadError(f"{path}: {reason}")
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if raw is None:
        raise ImageReadError(f"{path}: not a readable image")
    depth = 8
    if raw.dtype == np.uint16:
        raw, depth = (raw >> 8).astype(np.uint8), 16
    elif raw.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported sample type {raw.dtype}")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1):
        g = raw.reshape(raw.shape[0], raw.shape[1])
        return LoadedImage(np.repeat(g[:, :, None], 3, axis=2), None, True, depth)
    if raw.shape[2] == 3:
        return LoadedImage(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), None, False, depth)
    if raw.shape[2] == 4:
        return LoadedImage(cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB), raw[:, :, 3].copy(), False, depth)
    raise ImageReadError(f"{path}: unsupported channel count {raw.shape[2]}")


def encode_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                 grayscale: bool = False) -> bytes:
    """The file content for `path` (format from its suffix); ImageWriteError if it cannot be made."""
    reason = writable_suffix_error(path)
    if reason:
        raise ImageWriteError(reason)
    if grayscale:
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif alpha is not None:
        out = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    else:
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    try:
        ok, buf = cv2.imencode(Path(path).suffix.lower(), out)
    except cv2.error as exc:
        raise ImageWriteError(f"cannot encode {path}: {str(exc).strip().splitlines()[-1]}") from None
    if not ok:
        raise ImageWriteError(f"cannot encode {path} as {Path(path).suffix}")
    return buf.tobytes()


def write_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                grayscale: bool = False, force: bool = True) -> None:
    """Write RGB (plus alpha, or as grayscale) atomically: a failed write leaves no partial file.
    Encoded before anything is written; without `force` an existing file is an OutputExistsError."""
    data = encode_image(path, rgb, alpha, grayscale)
    with atomic_output(path, force) as tmp, open(tmp, "xb") as f:
        f.write(data)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursive), sorted; temporary files of interrupted writes left out."""
    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and not is_temporary(p) and p.is_file())


def list_unsupported_images(folder: str | Path) -> list[Path]:
    """Files under `folder` whose suffix names an image format that is not read (GIF, HEIC...)."""
    return sorted(p for p in Path(folder).rglob("*") if unsupported_reason(p) and p.is_file())


def contact_sheet(pairs: list[tuple[str, np.ndarray, np.ndarray]], width: int = 640,
                  labels: tuple[str, str] = ("input", "restored")) -> np.ndarray:
    """Rows of [input | restored] scaled to `width`, each captioned; RGB uint8."""
    rows = []
    half = width // 2
    for name, a, b in pairs:
        h = max(1, round(a.shape[0] * half / a.shape[1]))
        row = np.concatenate([cv2.resize(a, (half, h), interpolation=cv2.INTER_AREA),
                              cv2.resize(b, (half, h), interpolation=cv2.INTER_AREA)], axis=1)
        for i, text in enumerate((f"{name} {labels[0]}", labels[1])):
            cv2.putText(row, text, (i * half + 6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        rows.append(row)
    return np.concatenate(rows, axis=0) if rows else np.zeros((1, width, 3), np.uint8)
