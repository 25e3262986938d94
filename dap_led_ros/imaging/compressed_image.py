"""sensor_msgs/CompressedImage pixels <-> RGB, as image_transport's `compressed` plugin writes and reads them.

ROS-free. The plugin's `format` field reads "<raw encoding>; <codec> compressed <stored encoding>", e.g.
"rgb8; jpeg compressed bgr8" or "mono16; png compressed mono16"; drivers also send plain "jpeg" / "png".
Codecs are named as the plugin names them (`jpeg`, `png`); JPEG keeps 8 bits, PNG 8 or 16. The plugin
stores colour as bgr8/bgr16 (alpha dropped) and grey as mono8/mono16.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from dap_led_ros.imaging.image_encoding import (
    DEFAULT_MAX_INPUT_PIXELS,
    ImageDecodeError,
    ImageEncodeError,
    normalize_encoding,
    shown,
)

CODECS = ("jpeg", "png")
DEFAULT_JPEG_QUALITY = 95  # the compressed plugin's defaults
DEFAULT_PNG_LEVEL = 3
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_EXTENSION = {"jpeg": ".jpg", "png": ".png"}


@dataclass
class DecodedCompressed:
    """A CompressedImage's pixels, and what it takes to write one back in the same form."""

    rgb: np.ndarray                 # H x W x 3 uint8
    codec: str                      # "jpeg" | "png" (from the data, not the format string)
    raw_encoding: str               # the raw encoding the format names ("" when it names none)
    alpha: np.ndarray | None = None  # H x W uint8 (a PNG with alpha), else None
    grey: bool = False              # single-channel data
    sixteen_bit: bool = False       # 16-bit data (PNG)

    @property
    def encoding(self) -> str:
        """The raw encoding this frame stands for: the format's, else what the data holds."""
        if self.raw_encoding:
            return self.raw_encoding
        depth = "16" if self.sixteen_bit else "8"
        return f"mono{depth}" if self.grey else (f"bgra{depth}" if self.alpha is not None else f"bgr{depth}")


def raw_encoding_of(fmt: str) -> str:
    """The supported raw encoding before ';' in a compressed plugin format string ("" if none)."""
    if not isinstance(fmt, str) or ";" not in fmt:
        return ""
    try:
        return normalize_encoding(fmt.split(";", 1)[0])
    except ImageDecodeError:
        return ""


def _codec_of(fmt: str, data: bytes) -> str:
    if "compresseddepth" in str(fmt).lower():
        raise ImageDecodeError(f"format {shown(fmt)} is a compressed depth map, not a camera frame")
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    raise ImageDecodeError(f"data of format {shown(fmt)} is neither JPEG nor PNG "
                           f"(first bytes {data[:4].hex() or 'none'})")


# JPEG start-of-frame markers (they hold the size): C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def declared_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) the header declares, read without decoding (None when it cannot be read):
    a few hundred bytes of PNG or JPEG can declare a frame of gigabytes."""
    if codec == "png":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _JPEG_SOF:
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview | np.ndarray,
                      max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> DecodedCompressed:
    """Decode a CompressedImage (JPEG or PNG, told apart by the data); ImageDecodeError if impossible.
    A frame whose header declares more than `max_input_pixels` is refused before anything is decoded."""
    raw = bytes(data)
    codec = _codec_of(fmt, raw)
    size = declared_size(codec, raw)
    if size is not None and size[0] * size[1] > max_input_pixels:
        raise ImageDecodeError(f"the {codec} header declares {size[0]}x{size[1]}, which exceeds "
                               f"max_input_pixels={max_input_pixels}; not decoded")
    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageDecodeError(f"corrupt {codec} data ({len(raw)} bytes)")
    if img.shape[0] * img.shape[1] > max_input_pixels:
        raise ImageDecodeError(f"frame {img.shape[1]}x{img.shape[0]} exceeds max_input_pixels={max_input_pixels}")
    sixteen_bit = img.dtype == np.uint16
    if sixteen_bit:
        img = cv2.convertScaleAbs(img, alpha=1.0 / 257.0)  # cv_bridge's 16 -> 8 bit scaling
    elif img.dtype != np.uint8:
        raise ImageDecodeError(f"unsupported sample type {img.dtype} in the {codec} data")
    alpha = None
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        rgb, alpha = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB), np.ascontiguousarray(img[:, :, 3])
    else:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return DecodedCompressed(rgb, codec, raw_encoding_of(fmt), alpha=alpha, grey=img.ndim == 2,
                             sixteen_bit=sixteen_bit)


def compress_pixels(rgb: np.ndarray, codec: str, *, grey: bool = False, sixteen_bit: bool = False,
                    alpha: np.ndarray | None = None, jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                    png_level: int = DEFAULT_PNG_LEVEL) -> bytes:
    """JPEG/PNG bytes of an RGB frame: grey or colour (alpha kept when given, PNG only), 8 or 16 bits (PNG)."""
    if codec not in CODECS:
        raise ImageEncodeError(f"unknown codec {shown(codec)} (use {' or '.join(CODECS)})")
    if grey:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif alpha is not None and codec == "png":
        img = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha])
    else:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if sixteen_bit and codec == "png":
        img = img.astype(np.uint16) * np.uint16(257)
    params = ([cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if codec == "jpeg"
              else [cv2.IMWRITE_PNG_COMPRESSION, int(png_level)])
    ok, buf = cv2.imencode(_EXTENSION[codec], img, params)
    if not ok:
        raise ImageEncodeError(f"OpenCV cannot encode the frame as {codec}")
    return buf.tobytes()


def compress_for_encoding(rgb: np.ndarray, encoding: str, codec: str, *,
                          jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                          png_level: int = DEFAULT_PNG_LEVEL) -> tuple[str, bytes]:
    """(format, data) of the CompressedImage the compressed plugin would publish for a raw image of
    `encoding` holding `rgb`: mono encodings stored grey, the rest bgr; 16-bit kept by PNG only."""
    name = normalize_encoding(encoding)
    grey = name.startswith("mono")
    sixteen_bit = codec == "png" and "16" in name
    stored = ("mono" if grey else "bgr") + ("16" if sixteen_bit else "8")
    data = compress_pixels(rgb, codec, grey=grey, sixteen_bit=sixteen_bit,
                           jpeg_quality=jpeg_quality, png_level=png_level)
    return f"{name}; {codec} compressed {stored}", data
