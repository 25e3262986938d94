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

import numpy as np

from dap_led_ros.bag.bag_io import COMPRESSED_IMAGE, IMAGE, TYPESTORE
from dap_led_ros.imaging.compressed_image import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_PNG_LEVEL,
    compress_pixels,
    decode_compressed,
)
from dap_led_ros.imaging.image_encoding import (
    DEFAULT_MAX_INPUT_PIXELS,
    ImageEncodingError,
    decode_image,
    encode_image,
    output_encoding_for,
)


class FrameDecodeError(ValueError):
    """A bag message does not hold a frame we can decode; the message says why."""


@dataclass(frozen=True)
class CompressionSettings:
    """How enhanced CompressedImage frames are re-encoded (compressed_image_transport's defaults)."""

    jpeg_quality: int = DEFAULT_JPEG_QUALITY
    png_level: int = DEFAULT_PNG_LEVEL

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
    codec: str | None = None          # CompressedImage: "jpeg" or "png"
    grey: bool = False                # CompressedImage: the stream is single-channel
    sixteen_bit: bool = False         # CompressedImage: the stream is 16-bit (PNG)


def decode_frame(msgtype: str, raw: bytes | memoryview, max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> BagFrame:
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
                                   msg.data, max_input_pixels=max_input_pixels)
        except ImageEncodingError as exc:
            raise FrameDecodeError(str(exc)) from exc
        return BagFrame(msgtype, msg, np.ascontiguousarray(decoded.rgb), alpha=decoded.alpha)
    return _decode_compressed(msg, max_input_pixels)


def _decode_compressed(msg: Any, max_input_pixels: int) -> BagFrame:
    try:
        d = decode_compressed(msg.format, msg.data, max_input_pixels=max_input_pixels)
    except ImageEncodingError as exc:
        raise FrameDecodeError(str(exc)) from exc
    return BagFrame(COMPRESSED_IMAGE, msg, d.rgb, alpha=d.alpha, codec=d.codec, grey=d.grey,
                    sixteen_bit=d.sixteen_bit)


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
    try:
        return compress_pixels(rgb, frame.codec or "png", grey=frame.grey, sixteen_bit=frame.sixteen_bit,
                               alpha=frame.alpha, jpeg_quality=settings.jpeg_quality,
                               png_level=settings.png_level)
    except ImageEncodingError as exc:
        raise FrameDecodeError(str(exc)) from exc


def frame_rgb(msgtype: str, raw: bytes | memoryview) -> np.ndarray:
    """Just the RGB pixels of an image message (FrameDecodeError if it has none)."""
    return decode_frame(msgtype, raw).rgb
