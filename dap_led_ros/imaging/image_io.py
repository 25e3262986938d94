"""Reading and writing image files as RGB uint8, keeping alpha and bit depth where they matter."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageReadError(ValueError):
    """A file is missing, unreadable or not an image of a supported layout."""


@dataclass
class LoadedImage:
    rgb: np.ndarray               # H x W x 3 uint8, what the network sees
    alpha: np.ndarray | None      # H x W uint8 when the file had an alpha channel
    grayscale: bool               # the file was single-channel


def read_image(path: str | Path) -> LoadedImage:
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ImageReadError(f"{path}: not a readable image")
    if raw.dtype == np.uint16:
        raw = (raw >> 8).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise ImageReadError(f"{path}: unsupported sample type {raw.dtype}")
    if raw.ndim == 2 or (raw.ndim == 3 and raw.shape[2] == 1):
        g = raw.reshape(raw.shape[0], raw.shape[1])
        return LoadedImage(np.repeat(g[:, :, None], 3, axis=2), None, True)
    if raw.shape[2] == 3:
        return LoadedImage(cv2.cvtColor(raw, cv2.COLOR_BGR2RGB), None, False)
    if raw.shape[2] == 4:
        return LoadedImage(cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB), raw[:, :, 3].copy(), False)
    raise ImageReadError(f"{path}: unsupported channel count {raw.shape[2]}")


def write_image(path: str | Path, rgb: np.ndarray, alpha: np.ndarray | None = None,
                grayscale: bool = False) -> None:
    """Write RGB (plus alpha, or as grayscale) atomically: a failed write leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if grayscale:
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif alpha is not None:
        out = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    else:
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(path.suffix or ".png", out)
    if not ok:
        raise ImageReadError(f"{path}: cannot encode as {path.suffix}")
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under `folder` (recursive), sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
