"""Serialized Image / CompressedImage bag messages <-> RGB frames, keeping everything else as is.

Image messages go through `dap_led_ros.imaging.image_encoding` (cv_bridge semantics; the output keeps
the input's encoding family). CompressedImage messages (compressed_image_transport's `jpeg` and
`png`, formats such as "bgr8; jpeg compressed bgr8") are decoded with OpenCV and re-encoded with
the same codec, channel count and bit depth, so the `format` string stays true.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from dap_led_ros.bag.bag_io import COMPRESSED_IMAGE, IMAGE, TYPESTORE
from dap_led_ros.imaging.image_encoding import (
    DEFAULT_MAX_PIXELS,
    ImageEncodingError,
    decode_image,
    encode_image,
    output_encoding_for,
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class FrameDecodeError(ValueError):
    """A bag message does not hold a frame we can decode; the message says why."""


@dataclass(frozen=True)
class CompressionSettings:
    """How enhanced CompressedImage frames are re-encoded (compressed_image_transport's defaults)."""

    jpeg_quality: int = 95
    png_level: int = 3

    def validate(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg quality must be in 1..100, got {self.jpeg_quality}")
        if not 0 <= self.png_level <= 9:
            raise ValueError(f"png level must be in 0..9, got {self.png_level}")


@dataclass
class BagFrame:
    """A decoded frame plus what is needed to write an enhanced one in the same form."""

    msgtype: str
    msg: Any                          # the deserialized message (header, encoding/format, ...)
    rgb: np.ndarray                   # H x W x 3 uint8
    alpha: np.ndarray | None = None   # H x W uint8 alpha channel, passed through
    codec: str | None = None          # CompressedImage: ".jpg" or ".png"
    grey: bool = False                # CompressedImage: the stream is single-channel
    sixteen_bit: bool = False         # CompressedImage: the stream is 16-bit (PNG)


def decode_frame(msgtype: str, raw: bytes | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS) -> BagFrame:
    """Deserialize and decode one Image or CompressedImage message; FrameDecodeError if impossible."""
    if msgtype not in (IMAGE, COMPRESSED_IMAGE):
        raise FrameDecodeError(f"{msgtype} is not an image type")
    try:
        msg = TYPESTORE.deserialize_cdr(raw, msgtype)
    except Exception as exc:  # truncated or garbled CDR raises struct/index/value errors
        raise FrameDecodeError(f"cannot deserialize the {msgtype}: {type(exc).__name__}: {exc}") from exc
    if msgtype == IMAGE:
        try:
            decoded = decode_image(msg.encoding, msg.width, msg.height, msg.step, msg.is_bigendian,
                                   msg.data, max_pixels=max_pixels)
        except ImageEncodingError as exc:
            raise FrameDecodeError(str(exc)) from exc
        return BagFrame(msgtype, msg, np.ascontiguousarray(decoded.rgb), alpha=decoded.alpha)
    return _decode_compressed(msg, max_pixels)


def _codec_of(fmt: str, data: bytes) -> str:
    if "compresseddepth" in fmt.lower():
        raise FrameDecodeError(f"format '{fmt}' is a compressed depth map, not a camera frame")
    if data.startswith(_PNG_MAGIC):
        return ".png"
    if data.startswith(_JPEG_MAGIC):
        return ".jpg"
    raise FrameDecodeError(f"data of format '{fmt}' is neither JPEG nor PNG "
                           f"(first bytes {data[:4].hex() or 'none'})")


def _decode_compressed(msg: Any, max_pixels: int) -> BagFrame:
    data = bytes(msg.data)
    codec = _codec_of(msg.format, data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise FrameDecodeError(f"corrupt {codec[1:]} data ({len(data)} bytes)")
    if img.shape[0] * img.shape[1] > max_pixels:
        raise FrameDecodeError(f"frame {img.shape[1]}x{img.shape[0]} exceeds max_pixels={max_pixels}")
    sixteen_bit = img.dtype == np.uint16
    if sixteen_bit:
        img = cv2.convertScaleAbs(img, alpha=1.0 / 257.0)  # cv_bridge's 16 -> 8 bit scaling
    elif img.dtype != np.uint8:
        raise FrameDecodeError(f"unsupported sample type {img.dtype}")
    alpha = None
    if img.ndim == 2:
        rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        rgb, alpha = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB), np.ascontiguousarray(img[:, :, 3])
    else:
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return BagFrame(COMPRESSED_IMAGE, msg, rgb, alpha=alpha, codec=codec, grey=img.ndim == 2,
                    sixteen_bit=sixteen_bit)


def encode_frame(frame: BagFrame, rgb: np.ndarray, settings: CompressionSettings = CompressionSettings()) -> bytes:
    """Serialize `rgb` as a message of the frame's type, header and format/encoding."""
    if frame.msgtype == IMAGE:
        enc = encode_image(rgb, output_encoding_for(frame.msg.encoding), alpha=frame.alpha,
                           bigendian=bool(frame.msg.is_bigendian))
        out = dataclasses.replace(frame.msg, height=enc.height, width=enc.width, encoding=enc.encoding,
                                  is_bigendian=enc.is_bigendian, step=enc.step,
                                  data=np.frombuffer(enc.data, np.uint8))
    else:
        out = dataclasses.replace(frame.msg, data=np.frombuffer(_compress(frame, rgb, settings), np.uint8))
    return bytes(TYPESTORE.serialize_cdr(out, frame.msgtype))


def _compress(frame: BagFrame, rgb: np.ndarray, settings: CompressionSettings) -> bytes:
    if frame.grey:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif frame.alpha is not None:
        img = np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), frame.alpha])
    else:
        img = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if frame.sixteen_bit:
        img = img.astype(np.uint16) * np.uint16(257)
    params = ([cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality] if frame.codec == ".jpg"
              else [cv2.IMWRITE_PNG_COMPRESSION, settings.png_level])
    ok, buf = cv2.imencode(frame.codec or ".png", img, params)
    if not ok:
        raise FrameDecodeError(f"OpenCV cannot encode the frame as {frame.codec}")
    return buf.tobytes()


def frame_rgb(msgtype: str, raw: bytes | memoryview) -> np.ndarray:
    """Just the RGB pixels of an image message (FrameDecodeError if it has none)."""
    return decode_frame(msgtype, raw).rgb
